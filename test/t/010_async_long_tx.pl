
# Copyright (c) 2026, es contributors
#
# 010_async_long_tx.pl: a long-open transaction does not stall asynchronous
# projections (guarantee 5).
#
# While other sessions keep transactions open (one that wrote an unrelated
# table and sits idle in transaction, a REPEATABLE READ report, a prepared
# transaction that wrote the unrelated table, and one that appended an event
# and stays open), later appends committed by other sessions must be
# projected within seconds: es.wait_for_projection returns true, by
# position and for "everything committed", and the read table shows them.
# A projection created while those transactions are open catches up and
# goes live too.  When the appending transaction commits, its event is
# projected, exactly once, by both projections; an appending transaction
# that rolls back is never projected.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use Time::HiRes qw(usleep time);

my $node = es_node('async_long_tx', qq{
max_prepared_transactions = 5
});
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
CREATE TABLE public.other (i int);
CREATE TABLE public.applied (projection text NOT NULL, global_position bigint NOT NULL,
                             stream_id text NOT NULL);
CREATE FUNCTION public.log_a(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.applied VALUES ('a', e.global_position, e.stream_id) $$;
CREATE FUNCTION public.log_b(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.applied VALUES ('b', e.global_position, e.stream_id) $$;
SELECT es.create_projection('a', 'public.log_a(es.event)');
});
$node->safe_psql('postgres',
	q{SELECT es.append_event('base-' || g, 'E', '{}') FROM generate_series(1, 100) g});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('a', NULL, '30 seconds')}),
	't', 'the projection is live before the long transactions start');

# Last line of a background psql result.
sub last_line
{
	my ($s) = @_;
	$s =~ s/.*\n//s;
	return $s;
}

# Appends one event in autocommit mode and returns its position.
sub append_one
{
	my ($stream) = @_;
	return last_line(
		$node->safe_psql(
			'postgres', qq{
SELECT es.append_event('$stream', 'E', '{}');
SELECT global_position FROM es.events WHERE stream_id = '$stream' ORDER BY stream_version DESC LIMIT 1}));
}

# Returns the seconds es.wait_for_projection($name, $pos) took, with its
# result (timeout 5 seconds).
sub timed_wait
{
	my ($name, $pos) = @_;
	my $t0 = time();
	my $r = $node->safe_psql('postgres',
		"SELECT es.wait_for_projection('$name', $pos, '5 seconds')");
	return ($r, time() - $t0);
}

# --- The long transactions.
my $idle = $node->background_psql('postgres');
$idle->query_safe('BEGIN; INSERT INTO public.other VALUES (1); SELECT pg_current_xact_id();');
my $report = $node->background_psql('postgres');
$report->query_safe(
	'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM es.events;');
$node->safe_psql('postgres',
	q{BEGIN; INSERT INTO public.other VALUES (2); PREPARE TRANSACTION 'long_prepared';});
my $appender = $node->background_psql('postgres');
my $open_pos = last_line($appender->query_safe(q{BEGIN;
SELECT es.append_event('open-1', 'E', '{"open": true}');
SELECT global_position FROM es.events WHERE stream_id = 'open-1';}));
my $open_xid = last_line($appender->query_safe('SELECT pg_current_xact_id()'));
note "open appending transaction $open_xid holds position $open_pos";

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'}),
	'3', 'three sessions are idle in transaction');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'1', 'one prepared transaction is pending');

# --- Later commits are projected while they stay open.
my @later;
my $max_wait = 0;
my @slow;
for my $i (1 .. 10)
{
	my $pos = append_one("later-$i");
	cmp_ok($pos, '>', $open_pos, "later append $i took a position after the open one")
	  if $i == 1;
	my ($r, $took) = timed_wait('a', $pos);
	push @slow, "later-$i: $r after ${took}s" unless $r eq 't';
	$max_wait = $took if $took > $max_wait;
	push @later, $pos;
}
is(join(', ', @slow), '',
	'while the long transactions are open, each later append is projected (wait_for_projection by position returns true)');
note sprintf('longest wait: %.3fs', $max_wait);
my ($r, $took) = timed_wait('a', 'NULL');
is($r, 't', 'wait_for_projection for everything committed returns true too');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM public.applied WHERE projection = \'a\' AND global_position IN ('
		  . join(',', @later) . ')'),
	'10', 'the read table shows the ten later events');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM public.applied WHERE global_position = $open_pos"),
	'0', 'the open transaction\'s event is not projected before it commits');

# A batch and a two-stream transaction, still with the long ones open.
$node->safe_psql(
	'postgres', q{
SELECT es.append('later-batch', ARRAY[es.new_event('E', '{}'), es.new_event('E', '{}'), es.new_event('E', '{}')]);
BEGIN;
SELECT es.append_event('later-x', 'E', '{}');
SELECT es.append_event('later-y', 'E', '{}');
COMMIT;});
($r, $took) = timed_wait('a', 'NULL');
is($r, 't', 'a batch and a two-stream transaction are projected while the long ones are open');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM public.applied WHERE projection = 'a' AND stream_id IN ('later-batch', 'later-x', 'later-y')}),
	'5', 'all five of their events are in the read table');

# An appending transaction that rolls back, while the others stay open.
my $rolled = $node->background_psql('postgres');
my $rolled_pos = last_line($rolled->query_safe(q{BEGIN;
SELECT es.append_event('rolled-1', 'E', '{}');
SELECT global_position FROM es.events WHERE stream_id = 'rolled-1';}));
my $p = append_one('later-after-rolled');
$rolled->query_safe('ROLLBACK');
$rolled->quit;
($r, $took) = timed_wait('a', $p);
is($r, 't', 'an append after a rolled-back one is projected');

# --- A new projection created while the transactions are open goes live.
$node->safe_psql('postgres', q{SELECT es.create_projection('b', 'public.log_b(es.event)')});
($r, $took) = timed_wait('b', 'NULL');
is($r, 't', 'a projection created while the long transactions are open catches up');
note sprintf('new projection caught up in %.2fs', $took);
my $p2 = append_one('later-for-b');
($r, $took) = timed_wait('b', $p2);
is($r, 't', 'the new projection follows later appends while they are still open');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM es.events e
 WHERE NOT EXISTS (SELECT FROM public.applied a WHERE a.projection = 'b' AND a.global_position = e.global_position)}),
	'0', 'the new projection has every committed event');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM es.projection_status}),
	'a:running,b:running', 'both projections are running');

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'}),
	'3', 'the three transactions were open all along');

# --- The open appending transaction commits: its event is projected once.
$appender->query_safe('COMMIT');
($r, $took) = timed_wait('a', $open_pos);
is($r, 't', 'after the long appending transaction commits, its event is projected by a');
($r, $took) = timed_wait('b', $open_pos);
is($r, 't', 'and by the projection created while it was open');
($r, $took) = timed_wait('a', 'NULL');
($r, $took) = timed_wait('b', 'NULL');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(projection, ',' ORDER BY projection) FROM public.applied WHERE global_position = $open_pos"),
	'a,b', 'its event was applied exactly once by each projection');

# The rest ends.
$idle->query_safe('COMMIT');
$report->query_safe('COMMIT');
$node->safe_psql('postgres', q{COMMIT PREPARED 'long_prepared'});
$idle->quit;
$report->quit;
$appender->quit;
append_one('final');
is($node->safe_psql('postgres',
		q{SELECT es.wait_for_projection('a', NULL, '10 seconds')::text || ',' || es.wait_for_projection('b', NULL, '10 seconds')::text}),
	'true,true', 'both projections are current at the end');

# Exactly once, nothing else: each projection holds each committed event once
# and no rolled-back one.
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(x.projection || ':' || x.missing || ':' || x.dup || ':' || x.unknown, ',' ORDER BY x.projection)
  FROM (SELECT p.projection,
               (SELECT count(*) FROM es.events e WHERE NOT EXISTS
                  (SELECT FROM public.applied a WHERE a.projection = p.projection
                      AND a.global_position = e.global_position)) AS missing,
               (SELECT count(*) - count(DISTINCT global_position) FROM public.applied a
                 WHERE a.projection = p.projection) AS dup,
               (SELECT count(*) FROM public.applied a WHERE a.projection = p.projection
                  AND NOT EXISTS (SELECT FROM es.events e WHERE e.global_position = a.global_position)) AS unknown
          FROM (VALUES ('a'), ('b')) p(projection)) x}),
	'a:0:0:0,b:0:0:0',
	'each projection applied every committed event exactly once (projection:missing:duplicated:unknown)');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM public.applied WHERE global_position = $rolled_pos OR stream_id = 'rolled-1'"),
	'0', 'the rolled-back append was never projected');

$node->stop;
done_testing();
