# Copyright (c) 2026, es contributors
#
# 012_async_wal_limit.pl: the WAL a paused async projection holds can be
# bounded with PostgreSQL's max_slot_wal_keep_size.  Past it the server
# invalidates the projector's slot; the projector then drops it, makes a new
# one and rebuilds the live projections from the table (a paused one stays
# paused), so that after a resume every event is counted exactly once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;

my $node = es_node('async_wal_limit', qq{
max_slot_wal_keep_size = 16MB
max_wal_size = 32MB
min_wal_size = 32MB
});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
CREATE TABLE public.counts (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION public.count_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.counts VALUES (e.stream_id, 1)
  ON CONFLICT (stream_id) DO UPDATE SET n = public.counts.n + 1 $$;
SELECT es.create_projection('counts', 'public.count_event(es.event)',
                            tables => ARRAY['public.counts'::regclass]);
SELECT count(es.append_event('s-' || i % 10, 'Counted', '{}')) FROM generate_series(1, 100) i;
});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', timeout => '60 s')}),
	't', 'the projection is live');

# Paused, it holds the WAL written since: more than max_slot_wal_keep_size.
$node->safe_psql('postgres', q{SELECT es.pause_projection('counts')});
$node->safe_psql(
	'postgres', q{
SELECT count(es.append_event('s-' || i % 10, 'Counted', '{}')) FROM generate_series(1, 100) i;
CREATE TABLE public.filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 200000) g;
SELECT pg_switch_wal();
CHECKPOINT;
});
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 0 OR bool_and(wal_status = 'lost')
                        FROM pg_replication_slots WHERE slot_name LIKE 'es_projector_%'}),
	'the server invalidated the slot of the paused projection');

# The projector replaces the slot and rebuilds; the projection stays paused.
ok( $node->poll_query_until(
		'postgres', q{SELECT wal_status = 'reserved' FROM pg_replication_slots
                       WHERE slot_name LIKE 'es_projector_%'}),
	'the projector made a new slot');
is($node->safe_psql('postgres', q{SELECT status FROM es.projection_status WHERE name = 'counts'}),
	'paused', 'the rebuilt projection stays paused');
# The cause as PostgreSQL names it (pg_replication_slots.invalidation_reason
# since 17), whatever the major.
like(slurp_file($node->logfile),
	qr/replication slot "es_projector_\d+" was invalidated \(wal_removed\); dropping it\n.*DETAIL:  It held more WAL than max_slot_wal_keep_size allows\./,
	'the server log says why the slot was replaced');

# Resumed, it counts every event exactly once, old and new.
$node->safe_psql(
	'postgres', q{
SELECT es.resume_projection('counts');
SELECT count(es.append_event('s-' || i % 10, 'Counted', '{}')) FROM generate_series(1, 100) i;
});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', timeout => '60 s')}),
	't', 'the resumed projection catches up');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (SELECT DISTINCT stream_id, es.stream_version(stream_id) AS v
                        FROM es.events) e
  FULL JOIN public.counts c USING (stream_id)
 WHERE c.n IS DISTINCT FROM e.v}),
	'0', 'each stream is counted exactly its version');
is($node->safe_psql('postgres', q{SELECT sum(n) FROM public.counts}),
	'300', 'all 300 events counted once');

# 18 also invalidates a slot left unused longer than
# idle_replication_slot_timeout, and the projector names that cause.  With
# es not preloaded no projector runs, so its slot idles.
SKIP:
{
	skip 'idle_replication_slot_timeout came with PostgreSQL 18', 4
	  if $node->pg_version < 18;

	$node->stop;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = ''
idle_replication_slot_timeout = 1s
});
	$node->start;
	ok( es_poll(
			$node, 'postgres', q{CHECKPOINT;
SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name LIKE 'es_projector_%'},
			'idle_timeout', 60),
		'unused, the slot is invalidated as idle');

	my $log_offset = -s $node->logfile;
	$node->stop;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'es'
idle_replication_slot_timeout = 0
});
	$node->start;
	ok( es_log_matches(
			$node,
			qr/replication slot "es_projector_\d+" was invalidated \(idle_timeout\); dropping it\n.*DETAIL:  It was unused for longer than idle_replication_slot_timeout allows\./,
			$log_offset, 60),
		'the server log names the idle timeout as the cause');
	$node->safe_psql('postgres',
		q{SELECT count(es.append_event('s-' || i % 10, 'Counted', '{}')) FROM generate_series(1, 100) i});
	is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('counts', timeout => '60 s')}),
		't', 'the rebuilt projection catches up');
	is($node->safe_psql('postgres', q{SELECT sum(n) FROM public.counts}),
		'400', 'all 400 events counted once');
}

$node->stop;
done_testing();
