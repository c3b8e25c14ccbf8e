
# Copyright (c) 2026, es contributors
#
# 009_async_rebuild.pl: an asynchronous projection that joins late (created
# over an existing history) or is rebuilt online ends exactly equal to a
# from-scratch fold of the log, while appends go on.
#
# A history of 100k events (Deposited/Withdrawn/Noted over 200 streams) is
# loaded first.  A balance projection (balance and number of money events per
# stream, Deposited and Withdrawn only) is created over it while clients
# append; then, with three psql clients appending concurrently (single
# events, batches, two-stream transfers, and transactions that roll back),
# es.rebuild_projection runs, and is called a second time in the middle of
# the rebuild.  A counting projection keeps running beside it the whole
# time.  While they catch up, es.projection_status is sampled: every sample
# must show an allowed status (catching_up or running for the new
# projection, rebuilding or running for the rebuilt one, running for the
# other one), with progress_percent between 0 and 100 and not decreasing
# during one phase, and the phase must be seen at least once.  At the end
# both projections equal a fold over es.events computed with SQL, and
# nothing of the rolled-back transactions was applied.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $NSTREAMS = 200;
my $NCLIENTS = 3;

srand($ENV{ES_TAP_SEED} // time());
note "random seed: " . ($ENV{ES_TAP_SEED} // 'time');

my $node = es_node('async_rebuild', qq{
max_connections = 30
log_min_messages = warning
});
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
CREATE TABLE public.counts (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION public.count_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.counts VALUES (e.stream_id, 1)
  ON CONFLICT (stream_id) DO UPDATE SET n = public.counts.n + 1 $$;
CREATE TABLE public.balances (stream_id text PRIMARY KEY, balance bigint NOT NULL,
                              events bigint NOT NULL, rolled_back bigint NOT NULL DEFAULT 0);
CREATE FUNCTION public.balance_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.balances VALUES (e.stream_id,
      CASE e.event_type WHEN 'Deposited' THEN (e.data->>'amount')::bigint
                        WHEN 'Withdrawn' THEN -(e.data->>'amount')::bigint END, 1,
      CASE WHEN e.data ? 'rollback' THEN 1 ELSE 0 END)
  ON CONFLICT (stream_id) DO UPDATE
     SET balance = public.balances.balance + excluded.balance,
         events = public.balances.events + 1,
         rolled_back = public.balances.rolled_back + excluded.rolled_back $$;
SELECT es.create_projection('counts', 'public.count_event(es.event)', tables => '{public.counts}');
});

# The history, in ten transactions of 10k events (batches of 10).
my $t0 = time();
for my $k (1 .. 10)
{
	$node->safe_psql(
		'postgres', qq{
SELECT count(es.append('acct-' || ((g * 7 + $k) % $NSTREAMS),
         ARRAY(SELECT es.new_event((ARRAY['Deposited', 'Deposited', 'Withdrawn', 'Noted'])[(g + i) % 4 + 1],
                                   jsonb_build_object('amount', (g * i + $k) % 100 + 1))
                 FROM generate_series(1, 10) i)))
  FROM generate_series(1, 1000) g});
}
note sprintf('history of %s events loaded in %.1fs',
	$node->safe_psql('postgres', 'SELECT count(*) FROM es.events'), time() - $t0);

my $workdir = PostgreSQL::Test::Utils::tempdir();

# Starts a psql client appending until it is stopped.
sub start_client
{
	my ($name) = @_;
	my $file = "$workdir/$name.sql";
	open(my $fh, '>', $file) or die "cannot write $file: $!";
	for my $line (1 .. 30000)
	{
		# A steady, moderate load: the machine may have two cores.
		print $fh "SELECT pg_sleep(0.004);\n";
		my $r      = rand();
		my $stream = 'acct-' . int(rand($NSTREAMS));
		my $amount = 1 + int(rand(100));
		if ($r < 0.35)
		{
			my $type = rand() < 0.6 ? 'Deposited' : 'Withdrawn';
			print $fh "SELECT es.append_event('$stream', '$type', '{\"amount\": $amount}');\n";
		}
		elsif ($r < 0.6)
		{
			my @ev = map {
				"es.new_event('"
				  . (qw(Deposited Withdrawn Noted))[ int(rand(3)) ]
				  . "', '{\"amount\": "
				  . (1 + int(rand(100))) . "}')"
			} 1 .. 2 + int(rand(4));
			print $fh "SELECT es.append('$stream', ARRAY[" . join(', ', @ev) . "]);\n";
		}
		elsif ($r < 0.85)
		{
			my $to = 'acct-' . int(rand($NSTREAMS));
			my @two = (
				"SELECT es.append_event('$stream', 'Withdrawn', '{\"amount\": $amount}');\n",
				"SELECT es.append_event('$to', 'Deposited', '{\"amount\": $amount}');\n");
			@two = reverse @two if $stream gt $to;
			print $fh "BEGIN;\n" . join('', @two) . "COMMIT;\n";
		}
		else
		{
			# Never committed: must never be applied.
			print $fh "BEGIN;\nSELECT es.append_event('$stream', 'Deposited', "
			  . "'{\"amount\": 1000000, \"rollback\": true}');\nROLLBACK;\n";
		}
	}
	close $fh;
	my $err = "$workdir/$name.err";
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-Aqt', '-d', $node->connstr('postgres'), '-f', $file ],
		'<', '/dev/null', '>', '/dev/null', '2>', $err,
		IPC::Run::timeout(300));
	return { h => $h, err => $err, name => $name };
}

# Stops the clients (their last statement may or may not commit: the
# comparison is with what es.events holds) and returns their errors.
sub stop_clients
{
	my @errors;
	foreach my $cl (@_)
	{
		$cl->{h}->signal('TERM') if $cl->{h}->pumpable;
		eval { $cl->{h}->finish; };
		foreach my $line (split /\n/, slurp_file($cl->{err}))
		{
			push @errors, "$cl->{name}: $line" if $line =~ /\bERROR:/;
		}
	}
	return @errors;
}

# Samples es.projection_status until $name is 'running' (or the timeout),
# checking each sample.  Returns (samples of $phase with progress, error list,
# number of events stored when it was first seen running).
sub sample_until_running
{
	my ($name, $phase, $timeout) = @_;
	my @bad;
	my $seen_phase = 0;
	my $last_progress = -1;
	my ($events_first, $events_last, $events_end);
	my $deadline = time() + $timeout;
	my $sampler = $node->background_psql('postgres');
	# (The view's subqueries are costed high enough to trigger JIT, which
	# costs a second per sample; this test wants many samples.)
	$sampler->query_safe('SET jit = off');
	while (1)
	{
		my $rows = $sampler->query_safe(q{
SELECT name, status, coalesce(progress_percent::text, ''), (SELECT count(*) FROM es.events)
  FROM es.projection_status ORDER BY name;});
		my $done = 0;
		foreach my $row (split /\n/, $rows)
		{
			my ($n, $status, $progress, $events) = split /\|/, $row;
			if ($n ne $name)
			{
				push @bad, "$n: $status" unless $status eq 'running';
				next;
			}
			if ($status eq $phase)
			{
				$seen_phase++;
				$events_first //= $events;
				$events_last = $events;
				if ($progress eq '' || $progress < 0 || $progress > 100)
				{
					push @bad, "$n: $status with progress_percent '$progress'";
				}
				elsif ($progress < $last_progress)
				{
					push @bad, "$n: progress_percent went back from $last_progress to $progress";
				}
				else
				{
					$last_progress = $progress;
				}
			}
			elsif ($status eq 'running')
			{
				push @bad, "$n: running with progress_percent '$progress'"
				  if $progress ne '';
				$events_end = $events;
				$done = 1;
			}
			else
			{
				push @bad, "$n: unexpected status $status";
			}
		}
		last if $done;
		if (time() > $deadline)
		{
			push @bad, "$name: not running after ${timeout}s";
			last;
		}
		usleep(100_000);
	}
	$sampler->quit;
	note "$name: $seen_phase samples in phase $phase, last progress $last_progress%";
	return ($seen_phase, \@bad, $events_end // 0);
}

# The projections against a fold over the stored events.
sub check_against_fold
{
	my ($what) = @_;
	my ($bad, $rolled, $events, $sum) = split /\|/, $node->safe_psql(
		'postgres', q{
WITH fold AS (
  SELECT stream_id,
         sum(CASE event_type WHEN 'Deposited' THEN (data->>'amount')::bigint
                             ELSE -(data->>'amount')::bigint END) AS balance,
         count(*) AS events
    FROM es.events WHERE event_type IN ('Deposited', 'Withdrawn')
   GROUP BY stream_id)
SELECT count(*) FILTER (WHERE (f.balance, f.events) IS DISTINCT FROM (b.balance, b.events)),
       (SELECT coalesce(sum(rolled_back), 0) FROM public.balances),
       (SELECT sum(events) FROM fold), (SELECT sum(balance) FROM fold)
  FROM fold f FULL JOIN public.balances b USING (stream_id)});
	is($bad, '0', "$what: every balance and event count equal the fold ($events money events, sum $sum)");
	is($rolled, '0', "$what: no event of a rolled-back transaction was applied");
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM (SELECT stream_id, max(stream_version) AS v FROM es.events GROUP BY stream_id) s
  FULL JOIN public.counts c USING (stream_id)
 WHERE s.v IS DISTINCT FROM c.n}),
		'0', "$what: the counting projection equals every stream's version");
	return;
}

# --- A new projection over the history, while clients append.
my @clients = map { start_client("create_$_") } 1 .. $NCLIENTS;
my $events_at_start = $node->safe_psql('postgres', 'SELECT count(*) FROM es.events');
$node->safe_psql('postgres',
	q{SELECT es.create_projection('balance', 'public.balance_event(es.event)',
	         event_types => '{Deposited,Withdrawn}', tables => '{public.balances}')});
my ($seen, $bad, $events_at_end) = sample_until_running('balance', 'catching_up', 150);
cmp_ok($seen, '>', 0,
	'a new async projection over 100k events shows status catching_up with progress_percent');
is(join("\n", @$bad), '', 'every status sample while it catches up is allowed');
my @errors = stop_clients(@clients);
is(join("\n", @errors), '', 'the clients appended without errors during the catch-up');
note(($events_at_end - $events_at_start) . " events appended while it caught up");
is($node->safe_psql('postgres',
		q{SELECT es.wait_for_projection('balance', NULL, '60 seconds')::text || ','
		      || es.wait_for_projection('counts', NULL, '60 seconds')::text}),
	'true,true', 'both projections apply everything committed');
check_against_fold('after the catch-up of the new projection');

# --- Rebuild under concurrent appends, twice.
@clients = map { start_client("rebuild_$_") } 1 .. $NCLIENTS;
usleep(500_000);
my $pos_at_rebuild = $node->safe_psql('postgres', 'SELECT max(global_position) FROM es.events');
$events_at_start = $node->safe_psql('postgres', 'SELECT count(*) FROM es.events');
$node->safe_psql('postgres', q{SELECT es.rebuild_projection('balance')});
is($node->safe_psql('postgres', q{SELECT status FROM es.projection_status WHERE name = 'balance'}),
	'rebuilding', 'right after es.rebuild_projection the status is rebuilding');

# Wait until the rebuild is some way in, then rebuild again.
my $deadline = time() + 60;
my $progress = '';
while (time() < $deadline)
{
	$progress = $node->safe_psql('postgres',
		q{SELECT status || ' ' || coalesce(progress_percent::text, '') FROM es.projection_status WHERE name = 'balance'});
	last if $progress =~ /^rebuilding (\d+(\.\d+)?)$/ && $1 >= 20;
	last if $progress =~ /^running/;
	usleep(50_000);
}
note "before the second rebuild: $progress";
# (Read in the rebuilding transaction: the projector cannot move it yet.)
my ($rc, $out, $err) = $node->psql(
	'postgres', q{BEGIN;
SELECT es.rebuild_projection('balance');
SELECT status || ' ' || progress_percent::text FROM es.projection_status WHERE name = 'balance';
COMMIT;}, extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is($err, '', 'a second rebuild while the first one runs and clients append succeeds');
# (the void rebuild_projection prints an empty line first)
is((split /\n/, $out)[-1], 'rebuilding 0.0', 'the second rebuild starts over at 0%');

($seen, $bad, $events_at_end) = sample_until_running('balance', 'rebuilding', 150);
cmp_ok($seen, '>', 0, 'the rebuild shows status rebuilding with progress_percent');
is(join("\n", @$bad), '', 'every status sample during the rebuild is allowed');
cmp_ok($events_at_end - $events_at_start, '>', 0,
	'events were appended while the rebuilds ran ('
	  . ($events_at_end - $events_at_start) . ')');
my $pos_after = $node->safe_psql('postgres', 'SELECT max(global_position) FROM es.events');
@errors = stop_clients(@clients);
is(join("\n", @errors), '', 'the clients appended without errors during the rebuilds');
note sprintf('events after %s appended during and after the rebuild: %s', $pos_at_rebuild,
	$node->safe_psql('postgres', "SELECT count(*) FROM es.events WHERE global_position > $pos_at_rebuild"));

is($node->safe_psql('postgres',
		q{SELECT es.wait_for_projection('balance', NULL, '60 seconds')::text || ','
		      || es.wait_for_projection('counts', NULL, '60 seconds')::text}),
	'true,true', 'after the rebuild both projections apply everything committed');
check_against_fold('after the online rebuild');
is($node->safe_psql('postgres',
		q{SELECT string_agg(name || ':' || status || ':' || lag_events || ':' || errors, ',' ORDER BY name)
		    FROM es.projection_status}),
	'balance:running:0:0,counts:running:0:0', 'both running, no lag, no errors');

# A rebuild with no appends at all, and one more append afterwards.
$node->safe_psql('postgres', q{SELECT es.rebuild_projection('balance')});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('balance', NULL, '90 seconds')}),
	't', 'a rebuild without concurrent appends completes');
$node->safe_psql('postgres', q{SELECT es.append_event('acct-new', 'Deposited', '{"amount": 5}')});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('balance', NULL, '30 seconds')}),
	't', 'and the rebuilt projection follows new appends');
check_against_fold('after a quiet rebuild and a new append');

$node->stop;
done_testing();
