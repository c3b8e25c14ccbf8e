# Copyright (c) 2026, es contributors
#
# 017_projector_isolation.pl: one stuck or killed projection does not stop
# the others of its database (DESIGN.md guarantee 9, issue 14).
#
# - A stuck projection: its handler loops until a row appears in
#   public.release_gate (pg_sleep(0.05) per turn, no statement_timeout
#   anywhere).  Three other async projections of the same database are
#   created beside it.  Events appended before and after the stuck handler
#   is seen sleeping are applied by the three others: es.wait_for_projection
#   succeeds for each within one shared bound, and each read table holds
#   exactly one row per event; the stuck one has applied nothing.  Once the
#   gate is released, the stuck projection catches up exactly once.
# - A worker killed while others run: three projections whose handlers sleep
#   5 ms per event work through a backlog.  The process applying one of
#   them (pg_stat_activity.query names the projection in double quotes;
#   with a build that does not, the database's 'es projector') gets
#   pg_terminate_backend.  The others' progress goes on; some other
#   projection was applied by another process than the killed one, and the
#   processes that applied them are still alive afterwards; the killed
#   projection is applied again; every projection ends with
#   exactly one row per event; the server did not restart (same
#   pg_postmaster_start_time, same checkpointer, no reinitialization in the
#   log).
#
# - Slow units: a projection whose handler sleeps 20 ms per event commits
#   part of a 500-event backlog (10 s of work, one unit of events) within
#   8 s, live (paused, appended, resumed) and catching up: a unit ends
#   after about a second.  Both end with exactly one row per event.
# - Catch-up skip: while a slow projection catches up (600 events, 20 ms
#   each) and three others take appends from a session, no projection
#   worker waits for a row lock (pg_stat_activity wait events tuple and
#   transactionid, sampled every 20 ms for 8 s; other lock waits, such as
#   a relation's extension, are shown): the worker that picks the
#   projection another one's step holds skips it.
# - A held worker is not taken from the others: the setting reloaded to
#   es.max_projection_workers = 1 (the launcher survives two reloads, the
#   workers above the setting leave) and a stuck projection: a second worker
#   starts beside the held one,
#   two other projections apply every event (one row each), and the extra
#   worker leaves once the stuck one is released.
#
# Every wait here is bounded: with one process applying all projections of
# a database in turn, the stuck handler stalls the others, and the test
# says so in seconds instead of hanging.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use Time::HiRes qw(usleep time);
use IPC::Run;

# Room for a decoder and several workers per database, both databases.
my $node = es_node('projector_isolation', "max_worker_processes = 16\n");

my $workers = $node->safe_psql('postgres',
	q{SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'es.max_projection_workers'), 'none')});
note "es.max_projection_workers: $workers";

# The es processes of database $db that may apply projections, as
# [pid, backend_type, query] rows.
sub es_processes
{
	my ($db) = @_;
	my $out = $node->safe_psql($db, qq{
SELECT pid, backend_type, translate(coalesce(query, ''), chr(10) || chr(13), '  ') FROM pg_stat_activity
 WHERE datname = '$db' AND backend_type IN ('es projection worker', 'es projector')});
	return map { [ split /\|/, $_, 3 ] } grep { $_ ne '' } split /\n/, $out;
}

# The pid of the process of $db whose activity names projection $name, or ''.
sub applying_pid
{
	my ($db, $name) = @_;
	return $node->safe_psql($db, qq{
SELECT pid FROM pg_stat_activity
 WHERE datname = '$db' AND backend_type IN ('es projection worker', 'es projector')
   AND query LIKE '%"$name"%' LIMIT 1});
}

# One row per event the projection applied: "rows:distinct:missing:unknown"
# of its read table public.seen_$name against es.events.
sub exactness
{
	my ($db, $name) = @_;
	return $node->safe_psql($db, qq{
SELECT (SELECT count(*) FROM public.seen_$name)
  || ':' || (SELECT count(DISTINCT global_position) FROM public.seen_$name)
  || ':' || (SELECT count(*) FROM es.events e WHERE NOT EXISTS
               (SELECT FROM public.seen_$name s WHERE s.global_position = e.global_position))
  || ':' || (SELECT count(*) FROM public.seen_$name s WHERE NOT EXISTS
               (SELECT FROM es.events e WHERE e.global_position = s.global_position))});
}

sub applied
{
	my ($db, $name) = @_;
	return $node->safe_psql($db, qq{SELECT count(*) FROM public.seen_$name});
}

# Append 10 events to each of the streams "$prefix-1" .. "$prefix-$n" of
# database $db, a transaction per stream.
sub append_streams
{
	my ($db, $prefix, $n) = @_;
	$node->safe_psql($db, qq{
DO \$\$
BEGIN
    FOR s IN 1..$n LOOP
        PERFORM es.append('$prefix-' || s, ARRAY(SELECT es.new_event('Deposited', jsonb_build_object('n', n))
                                                 FROM generate_series(1, 10) n));
        COMMIT;
    END LOOP;
END
\$\$});
	return;
}

# A read table public.seen_$name and its handler, which sleeps $sleep
# seconds per event (none when 0) and records the event's position.
sub create_seen
{
	my ($db, $name, $sleep) = @_;
	$node->safe_psql($db,
		es_seen_sql($name, before => $sleep ? "PERFORM pg_catalog.pg_sleep($sleep);" : ''));
}

# A gate public.release_gate, and an async projection $name whose handler
# loops until a row appears there (no timeout ends it), then records the
# event's position in public.seen_$name.
sub create_stuck
{
	my ($db, $name) = @_;
	$node->safe_psql($db,
		"CREATE TABLE public.release_gate (released boolean);\n"
		  . es_seen_sql(
			$name, before => 'WHILE NOT EXISTS (SELECT FROM public.release_gate) LOOP
    PERFORM pg_catalog.pg_sleep(0.05);
  END LOOP;'));
	return;
}

my $start_time = $node->safe_psql('postgres', q{SELECT pg_postmaster_start_time()});
my $checkpointer = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'});
my $log_offset = -s $node->logfile;

# =====================================================================
# A stuck projection
# =====================================================================
my $db = 'iso_stuck';
my @fast = qw(fast1 fast2 fast3);
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION es');
create_stuck($db, 'stuck');
create_seen($db, $_, 0) foreach @fast;
# All four are live on an empty store before the first event.
foreach my $name ('stuck', @fast)
{
	is($node->safe_psql($db, qq{SELECT es.wait_for_projection('$name', NULL, '60 seconds')}),
		't', "stuck: projection $name is live");
}
is($node->safe_psql($db, q{SELECT string_agg(name || '=' || status, ',' ORDER BY name) FROM es.projection_status}),
	'fast1=running,fast2=running,fast3=running,stuck=running', 'stuck: the four async projections run');

# A first round of events: the stuck handler takes the first one and loops.
$node->safe_psql($db, q{
SELECT es.append('acct-' || s, ARRAY[es.new_event('Opened', '{}'), es.new_event('Deposited', '{"amount": 1}')])
  FROM generate_series(1, 20) s});
ok( es_poll(
		$node, $db, qq{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE datname = '$db' AND backend_type IN ('es projection worker', 'es projector')
   AND wait_event = 'PgSleep'}, 't', 30),
	'stuck: the stuck handler is looping');

# A second round, appended while it loops, one event per transaction.
$node->safe_psql($db, q{SELECT es.append_event('acct-' || s, 'Deposited', '{"amount": 2}') FROM generate_series(1, 20) s});
$node->safe_psql($db, q{SELECT es.append_event('late-' || s, 'Opened', '{}') FROM generate_series(1, 10) s});
my $events = $node->safe_psql($db, q{SELECT count(*) FROM es.events});
is($events, '70', 'stuck: 70 events appended in two rounds');

# The three others apply everything within one shared bound of 30 seconds.
my $deadline = time() + 30;
foreach my $name (@fast)
{
	my $left = int($deadline - time());
	$left = 1 if $left < 1;
	my $t0 = time();
	is($node->safe_psql($db, qq{SELECT es.wait_for_projection('$name', NULL, '$left seconds')}),
		't', "stuck: $name applies every event while the stuck one loops");
	note sprintf('%s: waited %.1f s', $name, time() - $t0);
}
foreach my $name (@fast)
{
	is(exactness($db, $name), "$events:$events:0:0",
		"stuck: $name holds exactly one row per event (rows:distinct:missing:unknown)");
}
is(applied($db, 'stuck'), '0', 'stuck: the stuck projection has applied nothing');
is($node->safe_psql($db, q{SELECT status, lag_events > 0 FROM es.projection_status WHERE name = 'stuck'}),
	'running|t', 'stuck: it is still running, behind');

# Released, it catches up exactly once; the others are unchanged.
$node->safe_psql($db, q{INSERT INTO public.release_gate VALUES (true)});
is($node->safe_psql($db, q{SELECT es.wait_for_projection('stuck', NULL, '60 seconds')}),
	't', 'stuck: released, it catches up');
is(exactness($db, 'stuck'), "$events:$events:0:0",
	'stuck: it holds exactly one row per event (rows:distinct:missing:unknown)');
foreach my $name (@fast)
{
	is(exactness($db, $name), "$events:$events:0:0", "stuck: $name still holds exactly one row per event");
}
$node->safe_psql('postgres', "DROP DATABASE $db");

# =====================================================================
# A worker killed while others run
# =====================================================================
$db = 'iso_kill';
my @names = qw(w1 w2 w3);
my $nev = 1500;		# events, 10 per transaction
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION es');
create_seen($db, $_, 0.005) foreach @names;
foreach my $name (@names)
{
	is($node->safe_psql($db, qq{SELECT es.wait_for_projection('$name', NULL, '60 seconds')}),
		't', "kill: projection $name is live");
}
$node->safe_psql($db, qq{
SELECT es.append('k-' || s, ARRAY(SELECT es.new_event('Deposited', jsonb_build_object('n', n))
                                  FROM generate_series(1, 10) n))
  FROM generate_series(1, $nev / 10) s});

# The process applying one of them, as its activity names it; with a
# build whose activity does not name projections (no 'es projection
# worker' after 3 seconds), the database's projector.
my ($victim, $vpid, %pid_of, $t_first);
my $t_look = time();
while (time() < $t_look + 15)
{
	my @procs = es_processes($db);
	foreach my $p (@procs)
	{
		foreach my $name (@names)
		{
			$pid_of{$name} //= $p->[0] if index($p->[2], qq{"$name"}) >= 0;
		}
	}
	$t_first //= time() if keys %pid_of;
	# Seen two of them applied, or one and a second more of looking.
	last if keys %pid_of >= 2 || (defined $t_first && time() > $t_first + 1);
	last
	  if !keys %pid_of
	  && time() > $t_look + 3
	  && !grep { $_->[1] eq 'es projection worker' } @procs;
	usleep(20_000);
}
if (keys %pid_of)
{
	($victim) = sort { $a cmp $b } keys %pid_of;
	# It may have moved on: take whoever applies it now.
	$vpid = applying_pid($db, $victim) || $pid_of{$victim};
	note "kill: $victim is applied by pid $vpid (activity names the projection)";
}
else
{
	$victim = $names[0];
	$vpid   = $node->safe_psql($db,
		qq{SELECT pid FROM pg_stat_activity WHERE backend_type = 'es projector' AND datname = '$db'});
	note "kill: no activity names a projection; killing the es projector of $db, pid $vpid";
}
like($vpid, qr/^\d+$/, "kill: found the process applying $victim");
my @others = grep { $_ ne $victim } @names;
my %before = map { $_ => applied($db, $_) } @names;
cmp_ok($before{$victim}, '<', $nev, "kill: $victim is mid-backlog ($before{$victim} of $nev applied)");

# The processes applying the others, other than the victim's.
my %other_pid = map { $_ => $pid_of{$_} } grep { defined $pid_of{$_} && $pid_of{$_} ne $vpid } @others;
is($node->safe_psql($db, qq{SELECT pg_terminate_backend($vpid)}), 't', "kill: pg_terminate_backend($vpid)");
my $t_kill = time();
my $gone = 0;
for (1 .. 200) { if (!pg_alive($vpid)) { $gone = 1; last; } usleep(50_000); }
ok($gone, 'kill: the killed process is gone');
my %at_kill = map { $_ => applied($db, $_) } @names;

# The others go on: each applies more than it had when the killed process
# was gone (or all of them).
foreach my $name (@others)
{
	ok( es_poll(
			$node, $db,
			qq{SELECT count(*) > $at_kill{$name} OR count(*) = $nev FROM public.seen_$name},
			't', 60),
		"kill: $name goes on applying (had $at_kill{$name})");
	note sprintf('%s: progress seen %.1f s after the kill', $name, time() - $t_kill);
}
ok(scalar(keys %other_pid) > 0,
	'kill: another projection was applied by a process other than the killed one')
  or diag('pids seen applying: '
	  . join(', ', map { "$_=$pid_of{$_}" } sort keys %pid_of)
	  . "; killed $vpid");
SKIP:
{
	skip 'no other projection was seen in another process', 1 unless %other_pid;
	my @pids = sort { $a <=> $b } values %other_pid;
	my $list = join(',', @pids);
	is( $node->safe_psql($db, qq{
SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
 WHERE pid IN ($list) AND datname = '$db'
   AND backend_type IN ('es projection worker', 'es projector')}),
		join(',', do { my %u; grep { !$u{$_}++ } @pids }),
		'kill: the processes that applied the others are the same ('
		  . join(', ', map { "$_=$other_pid{$_}" } sort keys %other_pid) . ')');
}

# A process comes back for the killed projection; everything ends exact.
ok( es_poll(
		$node, $db,
		qq{SELECT count(*) > $at_kill{$victim} OR count(*) = $nev FROM public.seen_$victim},
		't', 60),
	"kill: $victim is applied again (had $at_kill{$victim})");
note sprintf('%s: progress seen %.1f s after the kill', $victim, time() - $t_kill);
foreach my $name (@names)
{
	is($node->safe_psql($db, qq{SELECT es.wait_for_projection('$name', NULL, '120 seconds')}),
		't', "kill: $name applies the whole backlog");
	is(exactness($db, $name), "$nev:$nev:0:0",
		"kill: $name holds exactly one row per event (rows:distinct:missing:unknown)");
}
is($node->safe_psql($db, q{SELECT string_agg(name || '=' || status, ',' ORDER BY name) FROM es.projection_status}),
	'w1=running,w2=running,w3=running', 'kill: all three run');

# =====================================================================
# A slow projection commits what it applied about every second
# (UNIT_TIME_MS), live and catching up, instead of once per unit of up to
# 5,000 events: the rows its unit locks, and the xmin horizon its
# transaction holds back, are not held for its whole backlog.
# =====================================================================
my $sdb = 'slowunits';
$node->safe_psql('postgres', "CREATE DATABASE $sdb");
$node->safe_psql($sdb, 'CREATE EXTENSION es');
create_seen($sdb, 'slow_live', 0.02);
is($node->safe_psql($sdb, q{SELECT es.wait_for_projection('slow_live', NULL, '60 seconds')}),
	't', 'slow units: slow_live is live');
# Paused while 500 events are appended in 50 transactions: then its
# backlog is one unit of events (10 s of its handler).
$node->safe_psql($sdb, q{SELECT es.pause_projection('slow_live')});
append_streams($sdb, 'slow', 50);
$node->safe_psql($sdb, q{SELECT es.resume_projection('slow_live')});
# The catch-up of another slow projection over the same 500 events.
create_seen($sdb, 'slow_cu', 0.02);
foreach my $name ('slow_live', 'slow_cu')
{
	ok( es_poll(
			$node, $sdb,
			qq{SELECT count(*) BETWEEN 1 AND 499 FROM public.seen_$name},
			't', 8),
		"slow units: $name committed part of its 500 events before the end of its backlog");
}
foreach my $name ('slow_live', 'slow_cu')
{
	is($node->safe_psql($sdb, qq{SELECT es.wait_for_projection('$name', NULL, '120 seconds')}),
		't', "slow units: $name applies the whole backlog");
	is(exactness($sdb, $name), '500:500:0:0',
		"slow units: $name holds exactly one row per event (rows:distinct:missing:unknown)");
}

# =====================================================================
# A projection that catches up holds one worker, never two.  A worker's
# pick commits before its catch-up step locks the projection's row, so
# another worker can pick the same projection meanwhile: it must skip the
# row that the first one's step then holds, not wait a whole step (about
# a second, UNIT_TIME_MS) for it while the other projections wait for
# both.  Appends from a session keep the workers looking for work; no
# projection worker may wait for a lock meanwhile.
# =====================================================================
my $kdb = 'cu_skip';
$node->safe_psql('postgres', "CREATE DATABASE $kdb");
$node->safe_psql($kdb, 'CREATE EXTENSION es');
append_streams($kdb, 'cu', 60);
my @cu_fast = qw(cu_fast1 cu_fast2 cu_fast3);
foreach my $name (@cu_fast)
{
	create_seen($kdb, $name, 0);
	is($node->safe_psql($kdb, qq{SELECT es.wait_for_projection('$name', NULL, '60 seconds')}),
		't', "catch-up skip: $name is live");
}
# 600 events at 20 ms (the later ones at once): a catch-up of about 12
# steps of a second.
$node->safe_psql($kdb,
	es_seen_sql('cu_slow', before => q{IF e.stream_id LIKE 'cu-%' THEN
    PERFORM pg_catalog.pg_sleep(0.02);
  END IF;}));
my $appender = IPC::Run::start(
	[
		'psql', '-X', '-At', '-d', $node->connstr($kdb), '-c', q{
DO $$
DECLARE
    stop timestamptz := clock_timestamp() + interval '9 seconds';
    i int := 0;
BEGIN
    WHILE clock_timestamp() < stop LOOP
        i := i + 1;
        PERFORM es.append_event('tick-' || i % 10, 'Ticked', '{}');
        COMMIT;
        PERFORM pg_catalog.pg_sleep(0.0005);
    END LOOP;
END
$$}
	],
	'<', '/dev/null', '>', \my $app_out, '2>', \my $app_err,
	IPC::Run::timeout(60));
# Sample what the workers wait for, every 20 ms, while both run (a
# transaction per sample: pg_stat_activity is read once per transaction).
my $samples = $node->safe_psql($kdb, q{
CREATE TEMP TABLE samples (waiting boolean NOT NULL, other text);
DO $$
BEGIN
    FOR i IN 1..400 LOOP
        INSERT INTO samples
        SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity
                        WHERE backend_type = 'es projection worker' AND wait_event_type = 'Lock'
                          AND wait_event IN ('tuple', 'transactionid')),
               (SELECT string_agg(wait_event || ' (' || left(query, 60) || ')', ', ')
                  FROM pg_catalog.pg_stat_activity
                 WHERE backend_type = 'es projection worker' AND wait_event_type = 'Lock'
                   AND wait_event NOT IN ('tuple', 'transactionid'));
        COMMIT;
        PERFORM pg_catalog.pg_sleep(0.02);
    END LOOP;
END
$$;
SELECT count(*) || ':' || count(*) FILTER (WHERE waiting) FROM samples;
SELECT coalesce(string_agg(other, '; '), 'none') FROM samples WHERE other IS NOT NULL;
});
# Waits for other locks (a relation's extension, say) are not what this
# is about; they are shown, not counted.
my $other_waits;
($samples, $other_waits) = split /\n/, $samples, 2;
note "other lock waits seen: $other_waits";
$appender->finish;
is($app_err, '', 'catch-up skip: the appender ran without error');
is($node->safe_psql($kdb, q{SELECT phase FROM es.projections WHERE name = 'cu_slow'}),
	'catching_up', 'catch-up skip: cu_slow was still catching up after the sampling');
is($samples, '400:0', 'catch-up skip: no projection worker waited for a row lock (samples:waiting)');
foreach my $name (@cu_fast, 'cu_slow')
{
	is($node->safe_psql($kdb, qq{SELECT es.wait_for_projection('$name', NULL, '120 seconds')}),
		't', "catch-up skip: $name applies everything");
	my $n = $node->safe_psql($kdb, q{SELECT count(*) FROM es.events});
	is(exactness($kdb, $name), "$n:$n:0:0",
		"catch-up skip: $name holds exactly one row per event (rows:distinct:missing:unknown)");
}

# =====================================================================
# A held worker is not taken from the others
# =====================================================================
# One worker (es.max_projection_workers = 1) and a stuck projection: the
# projector starts a second worker beside the held one, the other
# projections keep applying, and once the stuck one is released the extra
# worker leaves again (10 s after it was last needed).
my $hdb = 'iso_held';
$node->safe_psql('postgres', "CREATE DATABASE $hdb");
$node->safe_psql($hdb, 'CREATE EXTENSION es');
create_stuck($hdb, 'held');
my @held_others = qw(other1 other2);
create_seen($hdb, $_, 0) foreach @held_others;
foreach my $name ('held', @held_others)
{
	is($node->safe_psql($hdb, qq{SELECT es.wait_for_projection('$name', NULL, '60 seconds')}),
		't', "held: projection $name is live");
}
my $worker_count = qq{SELECT count(*) FROM pg_stat_activity
 WHERE datname = '$hdb' AND backend_type = 'es projection worker'};
ok(es_poll($node, $hdb, $worker_count, '2', 30), 'held: two workers (the default) for three projections');

# A reload, while the launcher, the projector and its workers run: each
# reads the new setting and goes on (the launcher once freed, after its
# first transaction, a list made in it: the next reload crashed the server).
my $launcher_query = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'es launcher'};
my $launcher = $node->safe_psql('postgres', $launcher_query);
isnt($launcher, '', 'held: the es launcher runs');
$node->append_conf('postgresql.conf', "es.max_projection_workers = 1\n");
$node->reload;
ok( es_poll(
		$node, 'postgres', q{SELECT current_setting('es.max_projection_workers')}, '1', 30),
	'held: es.max_projection_workers is 1 after a reload');
usleep(500_000);
$node->reload;
ok(es_poll($node, $hdb, $worker_count, '1', 30), 'held: one worker once the setting is 1');
is($node->safe_psql('postgres', $launcher_query), $launcher, 'held: the same launcher after two reloads');
append_streams($hdb, 'h1', 5);
ok( es_poll(
		$node, $hdb, qq{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE datname = '$hdb' AND backend_type = 'es projection worker' AND wait_event = 'PgSleep'}, 't', 30),
	'held: the stuck handler is looping');
append_streams($hdb, 'h2', 5);
my $hevents = $node->safe_psql($hdb, q{SELECT count(*) FROM es.events});
is($hevents, '100', 'held: 100 events appended');
foreach my $name (@held_others)
{
	is($node->safe_psql($hdb, qq{SELECT es.wait_for_projection('$name', NULL, '30 seconds')}),
		't', "held: $name applies every event while the only worker of the setting is held");
	is(exactness($hdb, $name), "$hevents:$hevents:0:0",
		"held: $name holds exactly one row per event (rows:distinct:missing:unknown)");
}
is($node->safe_psql($hdb, $worker_count), '2', 'held: two workers while one is held');
is(applied($hdb, 'held'), '0', 'held: the stuck projection has applied nothing');
$node->safe_psql($hdb, q{INSERT INTO public.release_gate VALUES (true)});
is($node->safe_psql($hdb, q{SELECT es.wait_for_projection('held', NULL, '60 seconds')}),
	't', 'held: released, it catches up');
is(exactness($hdb, 'held'), "$hevents:$hevents:0:0",
	'held: it holds exactly one row per event (rows:distinct:missing:unknown)');
ok(es_poll($node, $hdb, $worker_count, '1', 40), 'held: the extra worker leaves once none is held');
$node->safe_psql('postgres', "DROP DATABASE $hdb");

# The server did not restart: no crash-restart cycle either (it keeps
# pg_postmaster_start_time but restarts the checkpointer).
is($node->safe_psql('postgres', q{SELECT pg_postmaster_start_time()}), $start_time,
	'the server did not restart (same pg_postmaster_start_time)');
is($node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'}),
	$checkpointer, 'no crash-restart (same checkpointer)');
unlike(substr(slurp_file($node->logfile), $log_offset),
	qr/terminating any other active server processes|all server processes terminated; reinitializing/,
	'no crash-restart in the server log');

$node->stop;
done_testing();
