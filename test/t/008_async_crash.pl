
# Copyright (c) 2026, es contributors
#
# 008_async_crash.pl: asynchronous projections apply every committed event
# exactly once across crashes (guarantee 4).
#
# Two async projections run while four psql clients append concurrently
# (single events, batches through es.append, and two-stream "transfers" in
# one transaction, some of them with an event type the balance projection
# filters out):
#   - counts: an upsert of the number of events per stream, plus a log of
#     every position it applied;
#   - balance: Deposited adds and Withdrawn subtracts data->'amount', only
#     for those two event types.
# At a random moment the postmaster is killed with SIGKILL (alternately
# alone, letting orphaned backends and the projector finish what they are
# doing, and together with all its children), the server is restarted, both
# projections are waited for with es.wait_for_projection, and compared with
# the log: the counts equal each stream's version, the applied positions
# are exactly the stored ones (zero missing, zero duplicates), and the
# balances equal a fold over the events computed with SQL.  The balance
# projection is created while the first cycle's clients append on top of a
# history, so the first crash may hit its catch-up.  The cycle runs six
# times.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $NCLIENTS = 4;
my $NSTREAMS = 60;
my $NCYCLES  = 6;
my $NSTMTS   = 20000;    # per client and cycle: far more than can run

srand($ENV{ES_TAP_SEED} // time());
note "random seed: " . ($ENV{ES_TAP_SEED} // 'time');

my $node = es_node('async_crash', qq{
shared_buffers = 32MB
max_connections = 30
log_min_messages = warning
});
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
CREATE TABLE public.counts (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE public.applied (global_position bigint NOT NULL);
CREATE FUNCTION public.count_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.counts VALUES (e.stream_id, 1)
  ON CONFLICT (stream_id) DO UPDATE SET n = public.counts.n + 1;
  INSERT INTO public.applied VALUES (e.global_position) $$;
CREATE TABLE public.balances (stream_id text PRIMARY KEY, balance bigint NOT NULL,
                              events bigint NOT NULL);
CREATE FUNCTION public.balance_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.balances VALUES (e.stream_id,
      CASE e.event_type WHEN 'Deposited' THEN (e.data->>'amount')::bigint
                        WHEN 'Withdrawn' THEN -(e.data->>'amount')::bigint END, 1)
  ON CONFLICT (stream_id) DO UPDATE
     SET balance = public.balances.balance + excluded.balance,
         events = public.balances.events + 1 $$;
SELECT es.create_projection('counts', 'public.count_event(es.event)', mode => 'async',
                            tables => '{public.counts,public.applied}');
});

# A history for the balance projection to catch up on.
$node->safe_psql(
	'postgres', qq{
SELECT count(es.append('acct-' || (g % $NSTREAMS),
         ARRAY[es.new_event('Deposited', jsonb_build_object('amount', g % 97 + 1)),
               es.new_event('Withdrawn', jsonb_build_object('amount', g % 13)),
               es.new_event('Noted', jsonb_build_object('amount', 1000))]))
  FROM generate_series(1, 5000) g});

my $workdir = PostgreSQL::Test::Utils::tempdir();


# Writes the SQL script of one client for one cycle.
sub write_client_script
{
	my ($cycle, $client) = @_;
	my $file = "$workdir/client_${cycle}_$client.sql";

	open(my $fh, '>', $file) or die "cannot write $file: $!";
	for my $line (1 .. $NSTMTS)
	{
		my $r      = rand();
		my $stream = 'acct-' . int(rand($NSTREAMS));
		my $amount = 1 + int(rand(100));
		if ($r < 0.40)
		{
			my $type = rand() < 0.6 ? 'Deposited' : 'Withdrawn';
			print $fh "SELECT es.append_event('$stream', '$type', "
			  . "'{\"amount\": $amount, \"c\": \"$cycle.$client.$line\"}');\n";
		}
		elsif ($r < 0.65)
		{
			my @ev;
			for (1 .. 2 + int(rand(4)))
			{
				my $t = (qw(Deposited Deposited Withdrawn Noted))[ int(rand(4)) ];
				push @ev,
				  "es.new_event('$t', '{\"amount\": " . (1 + int(rand(100))) . "}')";
			}
			print $fh "SELECT es.append('$stream', ARRAY[" . join(', ', @ev) . "]);\n";
		}
		elsif ($r < 0.90)
		{
			# A transfer: two streams in one transaction (appended in name
			# order, so that opposite transfers cannot deadlock).
			my $to = 'acct-' . int(rand($NSTREAMS));
			my @two = (
				"SELECT es.append_event('$stream', 'Withdrawn', '{\"amount\": $amount, \"to\": \"$to\"}');\n",
				"SELECT es.append_event('$to', 'Deposited', '{\"amount\": $amount, \"from\": \"$stream\"}');\n"
			);
			@two = reverse @two if $stream gt $to;
			print $fh "BEGIN;\n" . join('', @two) . "COMMIT;\n";
		}
		else
		{
			print $fh "SELECT es.append_event('$stream', 'Noted', '{\"amount\": $amount}');\n";
		}
	}
	close $fh;
	return $file;
}

# Number of events stored.
sub event_count
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM es.events');
}

# The process title of $pid ("postgres: es projector ...").
sub title_of
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/cmdline") or return "$pid";
	local $/;
	my $t = <$fh> // '';
	close $fh;
	$t =~ s/\0+$//;
	$t =~ s/\0/ /g;
	return "$pid ($t)";
}

# Kills the postmaster with SIGKILL; with $all, its children too at the same
# instant.  Waits until no process of the old server is left.  Returns the
# titles of the orphaned processes that were still alive 20 seconds after the
# postmaster's death (then killed): a server process must exit soon after the
# postmaster dies, or the restart cannot happen.
sub crash
{
	my ($all) = @_;
	my $pm =
	  (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
	my @kids = children_of($pm);
	my %titles = map { $_ => title_of($_) } @kids;
	note "killing postmaster $pm"
	  . ($all ? " and its " . scalar(@kids) . " children" : " alone");
	if ($all)
	{
		kill 'KILL', $pm, @kids;
	}
	else
	{
		kill 'KILL', $pm;
	}
	$node->{_pid} = undef;    # what $node->kill9 does

	my @lingering;
	my $deadline = time() + 20;
	while (grep { pg_alive($_) } $pm, @kids)
	{
		if (time() > $deadline)
		{
			my @alive = grep { pg_alive($_) } @kids;
			push @lingering, map { $titles{$_} } @alive;
			kill 'KILL', @alive;
			$deadline = time() + 60;
		}
		usleep(50_000);
	}
	$deadline = time() + 30;
	usleep(50_000) while -e "/proc/$pm" && time() < $deadline;
	return @lingering;
}

# Restarts the node after a crash, retrying while the old server's
# resources are being released.
sub restart_after_crash
{
	for my $try (1 .. 10)
	{
		return if $node->start(fail_ok => 1);
		note "restart attempt $try failed, retrying";
		sleep 1;
	}
	BAIL_OUT('the node does not restart after the crash');
}

my $started = time();
for my $cycle (1 .. $NCYCLES)
{
	my $kill_all = $cycle % 2 == 0;
	my $before   = event_count();
	my @clients;
	for my $c (1 .. $NCLIENTS)
	{
		my $script = write_client_script($cycle, $c);
		my $err    = "$workdir/client_${cycle}_$c.err";
		my $h      = IPC::Run::start(
			[
				'psql', '-X', '-Aqt', '-d', $node->connstr('postgres'),
				'-f', $script
			],
			'<', '/dev/null', '>', '/dev/null', '2>', $err,
			IPC::Run::timeout(180));
		push @clients, { h => $h, err => $err };
	}

	if ($cycle == 1)
	{
		# Joins late: catches up on the history while the clients append.
		$node->safe_psql('postgres',
			q{SELECT es.create_projection('balance', 'public.balance_event(es.event)',
			         event_types => '{Deposited,Withdrawn}', tables => '{public.balances}')});
	}

	# Let the clients append a random amount, then crash.
	my $target   = $before + 500 + int(rand(4000));
	my $deadline = time() + 60;
	while (event_count() < $target && time() < $deadline)
	{
		usleep(20_000);
	}
	usleep(int(rand(500_000)));
	note "cycle $cycle: "
	  . $node->safe_psql('postgres',
		q{SELECT string_agg(name || ' ' || status || ' lag ' || lag_events, ', ' ORDER BY name)
		    FROM es.projection_status});
	my @lingering = crash($kill_all);
	is(join(', ', @lingering), '',
		"cycle $cycle: every server process exits within 20s of the postmaster's death");

	my @bad_errors;
	my $running_at_crash = 0;
	foreach my $cl (@clients)
	{
		eval { $cl->{h}->finish; };
		my $rc = $cl->{h}->result(0);
		$running_at_crash++ if defined $rc && $rc == 2;
		foreach my $line (split /\n/, slurp_file($cl->{err}))
		{
			next unless $line =~ /\b(ERROR|PANIC):/;
			push @bad_errors, $line;
		}
	}
	is($running_at_crash, $NCLIENTS,
		"cycle $cycle: all $NCLIENTS clients were appending when the postmaster was killed");
	is(join("\n", @bad_errors), '', "cycle $cycle: no client statement failed");

	restart_after_crash();

	my $t0 = time();
	is( $node->safe_psql(
			'postgres',
			q{SELECT es.wait_for_projection('counts', NULL, '60 seconds')::text || ','
			      || es.wait_for_projection('balance', NULL, '60 seconds')::text}),
		'true,true',
		"cycle $cycle: both projections catch up after the restart");
	note sprintf('cycle %d: caught up %.1fs after the restart', $cycle, time() - $t0);
	is($node->safe_psql('postgres',
			q{SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM es.projection_status}),
		'balance:running,counts:running', "cycle $cycle: both projections are running");

	my ($events, $streams) = split /\|/,
	  $node->safe_psql('postgres',
		'SELECT count(*), count(DISTINCT stream_id) FROM es.events');

	# counts: per stream, equal to the version.
	my ($count_bad, $count_sum) = split /\|/, $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE s.v IS DISTINCT FROM c.n), (SELECT sum(n) FROM public.counts)
  FROM (SELECT stream_id, max(stream_version) AS v FROM es.events GROUP BY stream_id) s
  FULL JOIN public.counts c USING (stream_id)});
	is($count_bad, '0',
		"cycle $cycle: counts equal the version of each of the $streams streams");

	# The log of applied positions: exactly the stored ones.
	my ($missing, $dups, $unknown, $applied) = split /\|/, $node->safe_psql(
		'postgres', q{
SELECT (SELECT count(*) FROM es.events e WHERE NOT EXISTS
          (SELECT FROM public.applied a WHERE a.global_position = e.global_position)),
       (SELECT count(*) - count(DISTINCT global_position) FROM public.applied),
       (SELECT count(*) FROM public.applied a WHERE NOT EXISTS
          (SELECT FROM es.events e WHERE e.global_position = a.global_position)),
       (SELECT count(*) FROM public.applied)});
	is("$missing|$dups|$unknown", '0|0|0',
		"cycle $cycle: every event applied exactly once by counts (missing|duplicated|unknown)");

	# balance: equal to a fold over the events.
	my ($bal_bad, $bal_events, $bal_sum, $fold_events, $fold_sum) = split /\|/,
	  $node->safe_psql(
		'postgres', q{
WITH fold AS (
  SELECT stream_id,
         sum(CASE event_type WHEN 'Deposited' THEN (data->>'amount')::bigint
                             ELSE -(data->>'amount')::bigint END) AS balance,
         count(*) AS events
    FROM es.events WHERE event_type IN ('Deposited', 'Withdrawn')
   GROUP BY stream_id)
SELECT count(*) FILTER (WHERE (f.balance, f.events) IS DISTINCT FROM (b.balance, b.events)),
       (SELECT sum(events) FROM public.balances), (SELECT sum(balance) FROM public.balances),
       (SELECT sum(events) FROM fold), (SELECT sum(balance) FROM fold)
  FROM fold f FULL JOIN public.balances b USING (stream_id)});
	is($bal_bad, '0',
		"cycle $cycle: every balance and its event count equal the fold over the events");

	note "cycle $cycle: $events events in $streams streams ("
	  . ($events - $before)
	  . " this cycle); counts sum $count_sum, applied $applied, missing $missing, duplicated $dups; "
	  . "balance events $bal_events / fold $fold_events, balance sum $bal_sum / fold $fold_sum";
}

# After the last recovery, new appends are still projected exactly once.
$node->safe_psql('postgres',
	q{SELECT es.append_event('acct-after', 'Deposited', '{"amount": 7}');
	  SELECT es.append_event('acct-after', 'Withdrawn', '{"amount": 2}')});
is( $node->safe_psql(
		'postgres',
		q{SELECT es.wait_for_projection('counts', NULL, '30 seconds')::text || ','
		      || es.wait_for_projection('balance', NULL, '30 seconds')::text}),
	'true,true', 'appends after the last recovery are projected');
is($node->safe_psql('postgres',
		q{SELECT c.n || ':' || b.balance || ':' || b.events FROM public.counts c JOIN public.balances b USING (stream_id)
		   WHERE stream_id = 'acct-after'}),
	'2:5:2', 'a new stream after the last recovery: count 2, balance 5');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'),
	'1', 'still exactly one replication slot');

note sprintf('total %.0fs', time() - $started);
$node->stop;
done_testing();
