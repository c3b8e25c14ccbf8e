
# Copyright (c) 2026, es contributors
#
# 007_async_restart.pl: the projector of asynchronous projections comes back
# by itself after a server restart and resumes exactly where it stopped.
#
# An async projection counts events per stream (an upsert) and logs every
# position it applies.  Events are appended, then the server is stopped
# (fast, then immediate) while the projector may still be working through a
# large batch, and once more (immediate) right after it has applied a large
# and a small transaction; after each restart nothing is done by hand: the
# projector process must appear by itself and finish the backlog,
# es.wait_for_projection must say so, and after more appends the counts
# must equal the stream versions and the log must hold every event exactly
# once.  Also a restart during the catch-up of a new projection.  The test
# also checks the projector's footprint: one logical slot
# es_projector_<dboid> and the publication es_events while an async
# projection exists, both gone within seconds after the last one is
# dropped, and nothing left (slot, publication, projector process) after
# DROP EXTENSION es CASCADE.  Last, a server without
# shared_preload_libraries = 'es', or without wal_level = logical, or
# without replication slots, refuses async projections with SQLSTATE 55000
# and a hint, and creates nothing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use Time::HiRes qw(usleep time);

my $node = es_node('async_restart', qq{
log_min_messages = warning
});

# Polls $sql until it returns $expected or $timeout seconds pass; returns
# the seconds it took, or undef on timeout.
sub wait_until
{
	my ($n, $sql, $expected, $timeout) = @_;
	my $start = time();
	while (1)
	{
		my ($rc, $out) = $n->psql('postgres', $sql);
		return time() - $start if $rc == 0 && $out eq $expected;
		return undef if time() - $start > $timeout;
		usleep(50_000);
	}
}

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
CREATE TABLE public.counts (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE public.applied (global_position bigint NOT NULL, stream_id text NOT NULL,
                             stream_version bigint NOT NULL);
CREATE FUNCTION public.count_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.counts VALUES (e.stream_id, 1)
  ON CONFLICT (stream_id) DO UPDATE SET n = public.counts.n + 1;
  INSERT INTO public.applied VALUES (e.global_position, e.stream_id, e.stream_version) $$;
});
my $dboid = $node->safe_psql('postgres',
	q{SELECT oid FROM pg_database WHERE datname = 'postgres'});
my $slot = "es_projector_$dboid";

# Appends $n events spread over 20 streams, in batches of 10 per es.append
# call, all in one statement (one transaction).
sub append_many
{
	my ($tag, $n) = @_;
	my $calls = int($n / 10);
	$node->safe_psql(
		'postgres', qq{
SELECT count(es.append('acct-' || (g % 20),
         ARRAY(SELECT es.new_event('Counted', jsonb_build_object('tag', '$tag', 'g', g, 'i', i))
                 FROM generate_series(1, 10) i)))
  FROM generate_series(1, $calls) g});
	return;
}

# The projection matches the log: per-stream counts equal the versions, and
# every event was applied exactly once.
sub check_exact
{
	my ($what) = @_;
	my $total = $node->safe_psql('postgres', 'SELECT count(*) FROM es.events');
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM (SELECT stream_id, max(stream_version) AS v FROM es.events GROUP BY stream_id) s
  FULL JOIN public.counts c USING (stream_id)
 WHERE s.v IS DISTINCT FROM c.n}),
		'0',
		"$what: the count of every stream equals its version ($total events)");
	is( $node->safe_psql(
			'postgres', q{
SELECT (SELECT count(*) FROM es.events e WHERE NOT EXISTS
          (SELECT FROM public.applied a WHERE a.global_position = e.global_position))
  || '|' ||
       (SELECT count(*) - count(DISTINCT global_position) FROM public.applied)
  || '|' ||
       (SELECT count(*) FROM public.applied a WHERE NOT EXISTS
          (SELECT FROM es.events e WHERE e.global_position = a.global_position
              AND e.stream_id = a.stream_id AND e.stream_version = a.stream_version))}),
		'0|0|0',
		"$what: every event applied exactly once (missing|duplicated|unknown)");
	return;
}

my $projector_sql = q{SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'es projector' AND datname = 'postgres'};

# --- History, then the projection catches up and follows.
append_many('before', 2000);
$node->safe_psql('postgres',
	q{SELECT es.create_projection('counts', 'public.count_event(es.event)', mode => 'async',
	                              tables => '{public.counts,public.applied}')});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', NULL, '60 seconds')}),
	't', 'the new async projection catches up on the history');
append_many('live', 500);
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', NULL, '60 seconds')}),
	't', 'it follows live appends');
check_exact('before any restart');

is($node->safe_psql('postgres', q{SELECT status FROM es.projection_status WHERE name = 'counts'}),
	'running', 'status is running once caught up');
is($node->safe_psql('postgres',
		q{SELECT string_agg(slot_name || ':' || plugin || ':' || slot_type || ':' || database, ',')
		    FROM pg_replication_slots}),
	"$slot:pgoutput:logical:postgres",
	"exactly one replication slot, $slot, logical, pgoutput, in this database");
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_publication WHERE pubname = 'es_events'}),
	'1', 'the publication es_events exists');
is($node->safe_psql('postgres', $projector_sql), '1', 'one es projector process runs');

# --- Restarts: fast, then immediate (crash recovery), with a large
# transaction committed just before the stop, so that the projector is
# likely mid-way; then immediate again, right after the projector has
# applied a large transaction and a small one (its slot is confirmed on
# disk only now and then, so decoding restarts from further back than the
# projection's checkpoint).
foreach my $case ([ 'fast', 0 ], [ 'immediate', 0 ], [ 'immediate', 1 ])
{
	my ($mode, $applied_first) = @$case;
	my $a_mode = $mode eq 'fast' ? 'a fast' : 'an immediate';
	$a_mode .= ' (after everything was applied)' if $applied_first;
	append_many("pre-$mode", $applied_first ? 25000 : 20000);
	if ($applied_first)
	{
		is($node->safe_psql('postgres',
				q{SELECT es.wait_for_projection('counts', NULL, '60 seconds')}),
			't', 'a large transaction is applied');
		append_many("pre-$mode-small", 100);
		is($node->safe_psql('postgres',
				q{SELECT es.wait_for_projection('counts', NULL, '60 seconds')}),
			't', 'and a small one after it');
	}
	my $old_pid = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'es projector'});
	$node->stop($mode);
	$node->start;

	my $took = wait_until($node, $projector_sql, '1', 30);
	ok(defined $took, "after $a_mode restart the projector starts by itself")
	  and note sprintf('projector up %.1fs after %s restart', $took, $a_mode);
	isnt($node->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'es projector'}),
		$old_pid, "after $a_mode restart it is a new process");

	# Nothing is appended and nothing is woken: the backlog must drain on its own.
	my $total = $node->safe_psql('postgres', 'SELECT count(*) FROM es.events');
	$took = wait_until($node, "SELECT count(*) >= $total FROM public.applied", 't', 120);
	ok(defined $took,
		"after $a_mode restart the projector finishes the backlog without any action");
	is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', NULL, '30 seconds')}),
		't', "after $a_mode restart wait_for_projection returns true");
	check_exact("after $a_mode restart, before new appends");

	append_many("post-$mode", 1000);
	$node->safe_psql('postgres',
		q{SELECT es.append_event('single-' || g, 'Counted', '{}') FROM generate_series(1, 50) g});
	is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', NULL, '60 seconds')}),
		't', "after $a_mode restart new appends are projected");
	check_exact("after $a_mode restart and new appends");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots}),
		'1', "after $a_mode restart there is still exactly one slot");
}

# --- A restart with a projection whose catch-up was interrupted.
append_many('second-history', 10000);
$node->safe_psql(
	'postgres', q{
CREATE TABLE public.counts2 (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION public.count_event2(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.counts2 VALUES (e.stream_id, 1)
  ON CONFLICT (stream_id) DO UPDATE SET n = public.counts2.n + 1 $$;
SELECT es.create_projection('counts2', 'public.count_event2(es.event)', tables => '{public.counts2}');
});
usleep(200_000);
note 'counts2 at stop: '
  . $node->safe_psql('postgres',
	q{SELECT status || ' ' || coalesce(progress_percent::text, '-') FROM es.projection_status WHERE name = 'counts2'});
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts2', NULL, '90 seconds')}),
	't', 'a projection interrupted during its catch-up finishes it after the restart');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (SELECT stream_id, max(stream_version) AS v FROM es.events GROUP BY stream_id) s
  FULL JOIN public.counts2 c USING (stream_id)
 WHERE s.v IS DISTINCT FROM c.n}),
	'0', 'its counts equal the stream versions');
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', NULL, '30 seconds')}),
	't', 'the first projection is current too');
check_exact('after the restart during a catch-up');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots}),
	'1', 'two async projections share the one slot');

# --- Dropping the last async projection removes the slot and the publication.
$node->safe_psql('postgres', q{SELECT es.drop_projection('counts2')});
usleep(500_000);
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'"),
	'1', 'the slot stays while an async projection is left');
$node->safe_psql('postgres', q{SELECT es.drop_projection('counts')});
my $took = wait_until($node,
	q{SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication)},
	'0', 10);
ok(defined $took,
	'after dropping the last async projection the slot and the publication es_events are gone within seconds')
  and note sprintf('slot and publication gone after %.1fs', $took);
ok(defined wait_until($node, $projector_sql, '0', 10),
	'and the projector process leaves');

# An inline projection does not need the projector (it filters out every
# event, so that registering it does not replay the whole history).
$node->safe_psql('postgres',
	q{SELECT es.create_projection('inline_counts', 'public.count_event2(es.event)', mode => 'inline',
	                              event_types => '{NoSuchType}')});
usleep(1_500_000);
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots}),
	'0', 'an inline projection creates no slot');
$node->safe_psql('postgres', q{SELECT es.drop_projection('inline_counts')});

# --- A new async projection brings them back; DROP EXTENSION removes all.
$node->safe_psql(
	'postgres', q{
TRUNCATE public.counts, public.applied;
SELECT es.create_projection('counts', 'public.count_event(es.event)', tables => '{public.counts,public.applied}');
});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', NULL, '90 seconds')}),
	't', 'an async projection created again catches up');
check_exact('after creating the projection again');
is($node->safe_psql('postgres',
		q{SELECT (SELECT string_agg(slot_name, ',') FROM pg_replication_slots) || '|' ||
		         (SELECT string_agg(pubname, ',') FROM pg_publication)}),
	"$slot|es_events", 'the slot and the publication are back');

$node->safe_psql('postgres', 'DROP EXTENSION es CASCADE');
$took = wait_until(
	$node, qq{SELECT (SELECT count(*) FROM pg_replication_slots)
                + (SELECT count(*) FROM pg_publication)
                + ($projector_sql)}, '0', 10);
ok(defined $took,
	'after DROP EXTENSION es CASCADE: no slot, no publication, no es projector process')
  or diag $node->safe_psql('postgres',
	qq{SELECT (SELECT string_agg(slot_name, ',') FROM pg_replication_slots) || '|' ||
	          (SELECT string_agg(pubname, ',') FROM pg_publication) || '|' || ($projector_sql)});
note sprintf('cleaned up after %.1fs', $took) if defined $took;
# And it stays clean across a restart.
$node->restart;
usleep(2_000_000);
is($node->safe_psql('postgres',
		qq{SELECT (SELECT count(*) FROM pg_replication_slots) || '|' ||
		          (SELECT count(*) FROM pg_publication) || '|' || ($projector_sql)}),
	'0|0|0', 'after a restart without the extension: still no slot, publication or projector');

# The extension can be installed again and async projections work.
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
TRUNCATE public.counts, public.applied;
CREATE OR REPLACE FUNCTION public.count_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.counts VALUES (e.stream_id, 1)
  ON CONFLICT (stream_id) DO UPDATE SET n = public.counts.n + 1;
  INSERT INTO public.applied VALUES (e.global_position, e.stream_id, e.stream_version) $$;
SELECT es.create_projection('counts', 'public.count_event(es.event)');
SELECT es.append_event('again-1', 'Counted', '{}');
});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', NULL, '30 seconds')}),
	't', 'after CREATE EXTENSION again an async projection works');
check_exact('after reinstalling the extension');
$node->stop;

# --- Servers that cannot run async projections refuse them with 55000.
my $bare = PostgreSQL::Test::Cluster->new('async_refused');
$bare->init;
$bare->append_conf('postgresql.conf', qq{
wal_level = logical
max_replication_slots = 10
log_statement = none
});

# Runs $sql and checks for SQLSTATE 55000 and a hint matching $hint.
sub refused
{
	my ($n, $sql, $hint, $what) = @_;
	my ($rc, $out, $err) =
	  $n->psql('postgres', $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	isnt($rc, 0, "$what: refused");
	like($err, qr/ERROR:\s+55000:/, "$what: SQLSTATE 55000");
	like($err, qr/HINT:.*$hint/, "$what: the hint names $hint");
	return;
}

$bare->start;
$bare->safe_psql('postgres', q{CREATE EXTENSION es;
CREATE FUNCTION public.noop(e es.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;});
refused($bare, q{SELECT es.create_projection('p', 'public.noop(es.event)', mode => 'async')},
	'shared_preload_libraries', 'without es preloaded');
is($bare->safe_psql('postgres', 'SELECT count(*) FROM es.projections'),
	'0', 'without es preloaded: no projection was created');
is($bare->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'),
	'0', 'without es preloaded: no slot was created');
# The default mode is async: the same refusal.
refused($bare, q{SELECT es.create_projection('p', 'public.noop(es.event)')},
	'shared_preload_libraries', 'without es preloaded, default mode');
# Inline still works there.
$bare->safe_psql('postgres',
	q{SELECT es.create_projection('p', 'public.noop(es.event)', mode => 'inline')});
is($bare->safe_psql('postgres', q{SELECT mode FROM es.projections}),
	'inline', 'without es preloaded an inline projection can be created');
$bare->safe_psql('postgres', q{SELECT es.drop_projection('p')});
$bare->stop;

$bare->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'es'
wal_level = replica
});
$bare->start;
is($bare->safe_psql('postgres', 'SHOW wal_level'), 'replica', 'restarted with wal_level = replica');
refused($bare, q{SELECT es.create_projection('p', 'public.noop(es.event)', mode => 'async')},
	'wal_level', 'with wal_level = replica');
is($bare->safe_psql('postgres', 'SELECT count(*) FROM es.projections'),
	'0', 'with wal_level = replica: no projection was created');
$bare->stop;

$bare->append_conf('postgresql.conf', qq{
wal_level = logical
max_replication_slots = 0
max_wal_senders = 0
});
if ($bare->start(fail_ok => 1))
{
	refused($bare, q{SELECT es.create_projection('p', 'public.noop(es.event)', mode => 'async')},
		'max_replication_slots', 'with max_replication_slots = 0');
	$bare->stop;
}
else
{
	note 'the server does not start with wal_level = logical and max_replication_slots = 0';
}

# With both settings the same database accepts async projections.
$bare->append_conf('postgresql.conf', qq{
max_replication_slots = 10
max_wal_senders = 10
});
$bare->start;
$bare->safe_psql('postgres', q{SELECT es.create_projection('p', 'public.noop(es.event)', mode => 'async')});
is($bare->safe_psql('postgres', q{SELECT es.wait_for_projection('p', NULL, '30 seconds')}),
	't', 'with both settings, the same database accepts an async projection');
$bare->stop;

done_testing();
