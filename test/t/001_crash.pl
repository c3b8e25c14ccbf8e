
# Copyright (c) 2025, es contributors
#
# 001_crash.pl: nothing acknowledged is lost when the postmaster is killed.
#
# Four psql clients append concurrently (single events with and without an
# expected version, batches through es.append and es.append_json, and a
# private stream per client whose every append names its exact expected
# version).  Every event carries a unique id ("uid") in its data, and each
# append statement prints its uids, stream and returned version: psql prints
# a row only after the server has sent CommandComplete, which in autocommit
# mode follows the (flushed) commit, so the client's stdout is exactly the
# list of acknowledged appends.  At a random moment the postmaster is killed
# with SIGKILL (alternately alone, letting orphaned backends finish their
# statement, and together with all its children), the server is restarted,
# and the log is checked: every acknowledged append is there at its stream
# and version, every stream is contiguous 1..N without duplicates, positions
# are unique and increase with the version, and es.read_all pages through
# everything in position order.  The cycle runs four times.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $NCLIENTS  = 4;
my $NSTREAMS  = 50;
my $NCYCLES   = 4;
my $NSTMTS    = 40000;    # per client and cycle: far more than can run

srand($ENV{ES_TAP_SEED} // time());
note "random seed: " . ($ENV{ES_TAP_SEED} // 'time');

my $node = es_node('crash', qq{
shared_buffers = 32MB
max_connections = 30
log_min_messages = warning
});
$node->safe_psql('postgres', 'CREATE EXTENSION es');
# An inline projection counting events per stream: it commits with the
# appends or not at all, so after every crash it must equal the versions.
$node->safe_psql(
	'postgres', q{
CREATE TABLE public.counts (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION public.count_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.counts VALUES (e.stream_id, 1)
  ON CONFLICT (stream_id) DO UPDATE SET n = public.counts.n + 1 $$;
SELECT es.create_projection('counts', 'public.count_event(es.event)', mode => 'inline');
});

my $workdir = PostgreSQL::Test::Utils::tempdir();

# uid => [stream, version] for every acknowledged event, over all cycles.
my %acked;
# Total number of acknowledged append calls (for the report).
my $acked_calls = 0;


# Writes the SQL script of one client for one cycle.  Each statement prints
# "uid[,uid...]|stream|version" when acknowledged.
sub write_client_script
{
	my ($cycle, $client) = @_;
	my $file = "$workdir/client_${cycle}_$client.sql";
	my $own  = "own-c${cycle}x$client";
	my $own_version = 0;
	my $n = 0;
	my %own_lines;

	open(my $fh, '>', $file) or die "cannot write $file: $!";
	for my $line (1 .. $NSTMTS)
	{
		my $r      = rand();
		my $stream = 'acct-' . int(rand($NSTREAMS));
		if ($r < 0.45)
		{
			my $uid = "c${cycle}_${client}_" . ++$n;
			print $fh "SELECT '$uid', '$stream', es.append_event('$stream', "
			  . "'Deposited', '{\"uid\": \"$uid\", \"amount\": $n}');\n";
		}
		elsif ($r < 0.60)
		{
			# Racing expected version: may fail with ES001, never wrongly succeed.
			my $uid = "c${cycle}_${client}_" . ++$n;
			print $fh "SELECT '$uid', '$stream', es.append_event('$stream', "
			  . "'Withdrawn', '{\"uid\": \"$uid\"}', '{\"by\": $client}', "
			  . "expected_version => es.stream_version('$stream'));\n";
		}
		elsif ($r < 0.72)
		{
			my $k = 2 + int(rand(3));
			my @uids = map { "c${cycle}_${client}_" . ++$n } 1 .. $k;
			my $arr = join(', ',
				map { "es.new_event('Batched', '{\"uid\": \"$_\"}')" } @uids);
			print $fh "SELECT '"
			  . join(',', @uids)
			  . "', '$stream', es.append('$stream', ARRAY[$arr]);\n";
		}
		elsif ($r < 0.82)
		{
			my @uids = map { "c${cycle}_${client}_" . ++$n } 1 .. 2;
			my $json = join(', ',
				map { "{\"type\": \"Json\", \"data\": {\"uid\": \"$_\"}}" }
				  @uids);
			print $fh "SELECT '"
			  . join(',', @uids)
			  . "', '$stream', es.append_json('$stream', '[$json]');\n";
		}
		else
		{
			# Private stream, exact expected version: never conflicts.
			my $uid = "c${cycle}_${client}_" . ++$n;
			print $fh "SELECT '$uid', '$own', es.append_event('$own', "
			  . "'Own', '{\"uid\": \"$uid\"}', expected_version => $own_version);\n";
			$own_version++;
			$own_lines{$line} = 1;
		}
	}
	close $fh;
	return ($file, \%own_lines);
}

# Number of events stored.
sub event_count
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM es.events');
}

# Kills the postmaster with SIGKILL; with $all, its children too at the same
# instant.  Waits until no process of the old server is left, so that the
# restart does not find the old shared memory still attached.
sub crash
{
	my ($all) = @_;
	my $pm =
	  (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
	my @kids = children_of($pm);
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

	my $deadline = time() + 60;
	while (grep { pg_alive($_) } $pm, @kids)
	{
		if (time() > $deadline)
		{
			diag "orphaned server processes still alive after 60s, killing them";
			kill 'KILL', grep { pg_alive($_) } @kids;
			$deadline = time() + 60;
		}
		usleep(50_000);
	}

	# The new postmaster refuses to start while the old pid still exists,
	# even as a zombie: wait for it to be reaped.
	$deadline = time() + 30;
	usleep(50_000) while -e "/proc/$pm" && time() < $deadline;
	return;
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

my $total_before = 0;
for my $cycle (1 .. $NCYCLES)
{
	my $kill_all = $cycle % 2 == 0;
	my @clients;
	for my $c (1 .. $NCLIENTS)
	{
		my ($script, $own_lines) = write_client_script($cycle, $c);
		my $out = "$workdir/client_${cycle}_$c.out";
		my $err = "$workdir/client_${cycle}_$c.err";
		my $h = IPC::Run::start(
			[
				'psql', '-X', '-At', '-v', 'VERBOSITY=verbose',
				'-d', $node->connstr('postgres'),
				'-f', $script
			],
			'<', '/dev/null', '>', $out, '2>', $err,
			IPC::Run::timeout(180));
		push @clients,
		  { h => $h, out => $out, err => $err, c => $c, own => $own_lines };
	}

	# Let the clients append a random amount, then crash.
	my $target = $total_before + 300 + int(rand(1500));
	my $deadline = time() + 60;
	while (event_count() < $target && time() < $deadline)
	{
		usleep(20_000);
	}
	usleep(int(rand(300_000)));
	crash($kill_all);

	my $running_at_crash = 0;
	my @cycle_acks;
	my @bad_errors;
	foreach my $cl (@clients)
	{
		eval { $cl->{h}->finish; };
		my $rc = $cl->{h}->result(0);
		# psql exits with 2 when it loses the connection, 0 when the script ended.
		$running_at_crash++ if defined $rc && $rc == 2;

		foreach my $line (split /\n/, slurp_file($cl->{out}))
		{
			next if $line eq '';
			my ($uids, $stream, $version) = split /\|/, $line;
			push @cycle_acks, [ $uids, $stream, $version ];
		}

		# The only statement error allowed is ES001 from a racing expected
		# version; the rest of stderr must be about the lost connection.
		foreach my $line (split /\n/, slurp_file($cl->{err}))
		{
			if ($line =~ /(?::(\d+):\s+)?\b(ERROR|FATAL|PANIC):\s+(\S+):/)
			{
				my ($lineno, $level, $code) = ($1, $2, $3);
				# ES001 is fine on shared streams, never on a private one.
				next
				  if $level eq 'ERROR'
				  && $code eq 'ES001'
				  && !(defined $lineno && $cl->{own}{$lineno});
				# Orphaned backend noticing the postmaster's death.
				next if $level eq 'FATAL' && $code eq '57P01';
				next if $level eq 'FATAL' && $code eq '57P02';
				push @bad_errors, $line;
			}
		}
	}
	is($running_at_crash, $NCLIENTS,
		"cycle $cycle: all $NCLIENTS clients were appending when the postmaster was killed"
	);
	is(join("\n", @bad_errors), '',
		"cycle $cycle: no client error other than ES001 and the lost connection"
	);
	ok(@cycle_acks > 0, "cycle $cycle: clients got acknowledgements ("
		  . scalar(@cycle_acks) . " calls)");

	# Private streams: each append named the exact expected version, so the
	# acknowledged versions of one client's stream are exactly 1..k.
	my %own_versions;
	foreach my $a (@cycle_acks)
	{
		my ($uids, $stream, $version) = @$a;
		my @u = split /,/, $uids;
		for my $i (0 .. $#u)
		{
			my $v = $version - scalar(@u) + 1 + $i;
			die "uid $u[$i] acknowledged twice" if exists $acked{ $u[$i] };
			$acked{ $u[$i] } = [ $stream, $v ];
		}
		push @{ $own_versions{$stream} }, $version if $stream =~ /^own-/;
		$acked_calls++;
	}
	my @own_bad = grep {
		my $vs = $own_versions{$_};
		join(',', @$vs) ne join(',', 1 .. scalar(@$vs))
	} sort keys %own_versions;
	is("@own_bad", '',
		"cycle $cycle: private streams with exact expected versions acknowledged 1..k"
	);

	# Restart (crash recovery) and check.
	restart_after_crash();

	# Read the heap directly: do not trust the indexes for the reference.
	my $heap = $node->safe_psql(
		'postgres', q{
SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off;
SELECT coalesce(data->>'uid', ''), stream_id, stream_version, global_position
FROM es.events ORDER BY global_position});
	my %stored;    # uid => [stream, version, position]
	my @positions;
	my $dup_uids = 0;
	foreach my $line (split /\n/, $heap)
	{
		my ($uid, $stream, $version, $pos) = split /\|/, $line;
		$dup_uids++ if exists $stored{$uid};
		$stored{$uid} = [ $stream, $version, $pos ];
		push @positions, $pos;
	}
	is($dup_uids, 0, "cycle $cycle: no event stored twice");

	my @missing;
	my @misplaced;
	foreach my $uid (sort keys %acked)
	{
		my $s = $stored{$uid};
		if (!defined $s)
		{
			push @missing, $uid;
		}
		elsif ($s->[0] ne $acked{$uid}[0] || $s->[1] != $acked{$uid}[1])
		{
			push @misplaced,
			  "$uid acked $acked{$uid}[0]\@$acked{$uid}[1], stored $s->[0]\@$s->[1]";
		}
	}
	is(scalar(@missing), 0,
		"cycle $cycle: all " . scalar(keys %acked) . " acknowledged events survive the crash")
	  or diag("missing: @missing[0 .. ($#missing < 20 ? $#missing : 19)]");
	is(join("\n", @misplaced), '',
		"cycle $cycle: acknowledged events are at the stream and version returned");

	my $checks = $node->safe_psql(
		'postgres', q{
SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off;
SELECT
  (SELECT count(*) FROM (SELECT stream_version,
          row_number() OVER (PARTITION BY stream_id ORDER BY stream_version, global_position) AS rn
        FROM es.events) s WHERE stream_version <> rn),
  (SELECT count(*) FROM (SELECT global_position,
          lag(global_position) OVER (PARTITION BY stream_id ORDER BY stream_version) AS prev
        FROM es.events) s WHERE prev >= global_position),
  (SELECT count(*) - count(DISTINCT global_position) FROM es.events),
  (SELECT count(*) - count(DISTINCT (stream_id, event_id)) FROM es.events)});
	is($checks, '0|0|0|0',
		"cycle $cycle: versions contiguous 1..N without duplicates, positions unique and increasing with version, event ids unique"
	);

	# The index-driven reads agree with the heap.
	my $stream_checks = $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (
  SELECT stream_id, count(*) AS n, max(stream_version) AS maxv
  FROM es.events GROUP BY stream_id) s
WHERE es.stream_version(s.stream_id) <> s.n OR s.maxv <> s.n
   OR (SELECT count(*) FROM es.read_stream(s.stream_id)) <> s.n
   OR (SELECT array_agg(stream_version) FROM es.read_stream(s.stream_id))
      <> (SELECT array_agg(g) FROM generate_series(1, s.n) g)});
	is($stream_checks, '0',
		"cycle $cycle: es.stream_version and es.read_stream match the stored streams");

	# The inline projection saw each committed event exactly once.
	is($node->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT stream_id, count(*) AS n FROM es.events GROUP BY stream_id) s
  FULL JOIN public.counts c USING (stream_id)
 WHERE s.n IS DISTINCT FROM c.n}),
		'0', "cycle $cycle: the inline projection's count equals each stream's version");

	# es.read_all pages through every event in position order.
	my @read_all;
	my $from = 0;
	my $pages = 0;
	while (1)
	{
		my $page = $node->safe_psql('postgres',
			"SELECT global_position FROM es.read_all($from, 5000)");
		last if $page eq '';
		my @p = split /\n/, $page;
		push @read_all, @p;
		$from = $p[-1];
		last if ++$pages > 1000;
	}
	is(scalar(@read_all), scalar(@positions),
		"cycle $cycle: es.read_all returns all " . scalar(@positions) . " events");
	is(join(',', @read_all), join(',', @positions),
		"cycle $cycle: es.read_all returns them in position order");

	$total_before = scalar(@positions);
	note "cycle $cycle: $total_before events stored, "
	  . scalar(keys %acked) . " acknowledged so far";
}

# After the last recovery, appends continue the streams and the positions.
my ($maxpos, $v) = split /\|/, $node->safe_psql('postgres',
	"SELECT max(global_position), es.stream_version('acct-1') FROM es.events");
my $newv = $node->safe_psql('postgres',
	q{SELECT es.append_event('acct-1', 'After', '{"uid": "after"}', expected_version => es.stream_version('acct-1'))});
is($newv, $v + 1, 'append after recovery continues the stream version');
my $newpos = $node->safe_psql('postgres',
	q{SELECT global_position FROM es.events WHERE stream_id = 'acct-1' AND data->>'uid' = 'after'});
cmp_ok($newpos, '>', $maxpos,
	'append after recovery gets a position above every stored one');
my $ra = $node->safe_psql('postgres',
	"SELECT global_position FROM es.read_all($maxpos, 10)");
is($ra, $newpos, 'es.read_all returns the new append at once');

note "acknowledged append calls: $acked_calls";
$node->stop;
done_testing();
