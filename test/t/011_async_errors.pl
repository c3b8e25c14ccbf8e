
# Copyright (c) 2026, es contributors
#
# 011_async_errors.pl: what asynchronous projections do when a handler
# fails, when they are paused, and when a handler appends events.
#
# on_error = 'stop': a handler that raises for one event (after writing its
# read table, in a transaction that also holds a good event) makes the
# projection 'failed' with last_error (SQLSTATE and message) and
# last_error_position; nothing of the failing transaction nor after it is
# applied, while another projection keeps going.  After the handler is fixed
# (CREATE OR REPLACE FUNCTION) es.resume_projection applies the rest
# exactly once.  The same when the failing event is met during the catch-up
# of a projection created over the history.
#
# on_error = 'park': failing events go to es.projection_errors (projection,
# global_position, event_type, sqlstate, message, attempts) and the
# projection goes on; es.retry_projection_errors returns how many it fixed,
# a retry that still fails increments attempts, and after the last fix the
# table is empty for that projection and every event was applied once.
#
# A paused (or failed) async projection holds WAL back: es.projection_status
# shows it in retained_wal_bytes and the server log has a WARNING saying it
# "holds back" WAL.
#
# A process manager: a handler that appends events with es.append_event to
# other streams; those events are projected too, by another projection and
# by an all-events one, exactly once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use Time::HiRes qw(usleep time);

my $node = es_node('async_errors');

# The read table of every projection here: one row per applied event.
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
CREATE TABLE public.log (projection text NOT NULL, global_position bigint NOT NULL,
                         stream_id text NOT NULL, event_type text NOT NULL);
CREATE FUNCTION public.h_other(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.log VALUES ('other', e.global_position, e.stream_id, e.event_type) $$;
-- Writes, then fails on a poisoned event: the write must not stay.
CREATE FUNCTION public.h_stop(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.log VALUES ('stopper', e.global_position, e.stream_id, e.event_type);
  IF e.data ? 'poison' THEN
    RAISE EXCEPTION 'poisoned event at %', e.global_position USING ERRCODE = 'ET001';
  END IF;
END $$;
CREATE FUNCTION public.h_stop_late(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.log VALUES ('late', e.global_position, e.stream_id, e.event_type);
  IF e.data ? 'poison' THEN
    RAISE EXCEPTION 'poisoned event at %', e.global_position USING ERRCODE = 'ET001';
  END IF;
END $$;
SELECT es.create_projection('other', 'public.h_other(es.event)');
SELECT es.create_projection('stopper', 'public.h_stop(es.event)', on_error => 'stop');
});

# Last line of psql output.
sub last_line
{
	my ($s) = @_;
	$s =~ s/.*\n//s;
	return $s;
}

# Polls $sql until it returns $expected, at most $timeout seconds.
sub poll { my ($sql, $expected, $timeout) = @_; return es_poll($node, 'postgres', $sql, $expected, $timeout); }

# Waits until the server log, after $offset, matches $re (at most $timeout s).
sub log_matches { return es_log_matches($node, @_); }

# For projection $name: "missing:duplicated:unknown" against the events
# of the given SQL condition on es.events e.
sub exactness
{
	my ($name, $cond) = @_;
	$cond //= 'true';
	return $node->safe_psql(
		'postgres', qq{
SELECT (SELECT count(*) FROM es.events e WHERE ($cond) AND NOT EXISTS
          (SELECT FROM public.log l WHERE l.projection = '$name' AND l.global_position = e.global_position))
  || ':' || (SELECT count(*) - count(DISTINCT global_position) FROM public.log WHERE projection = '$name')
  || ':' || (SELECT count(*) FROM public.log l WHERE l.projection = '$name' AND NOT EXISTS
               (SELECT FROM es.events e WHERE ($cond) AND e.global_position = l.global_position))});
}

# =====================================================================
# on_error = 'stop', live
# =====================================================================
$node->safe_psql('postgres',
	q{SELECT es.append_event('good-' || g, 'Good', '{}') FROM generate_series(1, 5) g});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('stopper', NULL, '30 seconds')}),
	't', 'stop: the projection applies good events');

my $log_offset = -s $node->logfile;
# One transaction: a good event, then the poisoned one.
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT es.append_event('mixed-1', 'Good', '{}');
SELECT es.append_event('mixed-1', 'Bad', '{"poison": true}');
COMMIT;});
my ($first_bad_tx, $poison) = split /\|/, $node->safe_psql('postgres',
	q{SELECT min(global_position), max(global_position) FROM es.events WHERE stream_id = 'mixed-1'});
# Later transactions.
$node->safe_psql('postgres',
	q{SELECT es.append_event('after-' || g, 'Good', '{}') FROM generate_series(1, 3) g});
$node->safe_psql('postgres', q{SELECT es.append_event('after-4', 'Good', '{}')});

ok(poll(q{SELECT status FROM es.projection_status WHERE name = 'stopper'}, 'failed', 30),
	'stop: a handler error makes the projection failed');
my ($le, $lep, $fa) = split /\|/, $node->safe_psql('postgres',
	q{SELECT last_error, last_error_position, failed_at IS NOT NULL FROM es.projection_status WHERE name = 'stopper'});
like($le, qr/ET001/, 'stop: last_error has the SQLSTATE');
like($le, qr/poisoned event at $poison/, 'stop: last_error has the message');
is($lep, $poison, 'stop: last_error_position is the failing event');
is($fa, 't', 'stop: failed_at is set');
ok(log_matches(qr/projection "stopper" stopped at the event at position $poison/, $log_offset, 10),
	'stop: the server log says where it stopped');

is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('other', NULL, '30 seconds')}),
	't', 'stop: another projection keeps going');
is(exactness('other'), '0:0:0', 'stop: the other projection has every event exactly once');
{
	my ($rc, $out, $err) = $node->psql('postgres',
		q{SELECT es.wait_for_projection('stopper', NULL, '30 seconds')});
	like($err, qr/ERROR:  projection "stopper" has stopped at the event at position $poison\n/,
		'stop: wait_for_projection on the failed projection says at once why it cannot succeed (ES004)');
}
is(exactness('stopper', "e.global_position < $first_bad_tx"), '0:0:0',
	'stop: the failed projection has exactly the events before the failing transaction (not its good event, not the poisoned one, nothing after)');
cmp_ok($node->safe_psql('postgres', q{SELECT lag_events FROM es.projection_status WHERE name = 'stopper'}),
	'>=', 6, 'stop: lag_events counts what it has not applied');

# It stays stopped, also when more is appended.
$node->safe_psql('postgres', q{SELECT es.append_event('after-5', 'Good', '{}')});
usleep(1_000_000);
is($node->safe_psql('postgres', q{SELECT status FROM es.projection_status WHERE name = 'stopper'}),
	'failed', 'stop: it stays failed while more is appended');
is(exactness('stopper', "e.global_position < $first_bad_tx"), '0:0:0',
	'stop: and applies nothing more');
ok(log_matches(qr/failed projection "stopper" holds back \d+ bytes of WAL/, $log_offset, 15),
	'stop: the server log says the failed projection holds back WAL');
cmp_ok($node->safe_psql('postgres', q{SELECT retained_wal_bytes FROM es.projection_status WHERE name = 'stopper'}),
	'>', 0, 'stop: retained_wal_bytes of the failed projection is above zero');

# Fixed handler, resume: the rest exactly once.
$node->safe_psql(
	'postgres', q{
CREATE OR REPLACE FUNCTION public.h_stop(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.log VALUES ('stopper', e.global_position, e.stream_id, e.event_type);
END $$;
SELECT es.resume_projection('stopper');});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('stopper', NULL, '30 seconds')}),
	't', 'stop: after the fix and resume it catches up');
is(exactness('stopper'), '0:0:0',
	'stop: after resume every event was applied exactly once (missing:duplicated:unknown)');
is($node->safe_psql('postgres',
		q{SELECT status || ':' || (failed_at IS NULL) FROM es.projection_status WHERE name = 'stopper'}),
	'running:true', 'stop: running again, failed_at cleared');
$node->safe_psql('postgres', q{SELECT es.append_event('after-resume', 'Good', '{}')});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('stopper', NULL, '30 seconds')}),
	't', 'stop: it follows new appends');
is(exactness('stopper'), '0:0:0', 'stop: still exactly once');

# =====================================================================
# on_error = 'stop', during the catch-up of a new projection
# =====================================================================
$node->safe_psql('postgres',
	q{SELECT es.append_event('hist-' || g, 'Good', '{}') FROM generate_series(1, 200) g});
$node->safe_psql('postgres',
	q{SELECT es.create_projection('late', 'public.h_stop_late(es.event)', on_error => 'stop')});
ok(poll(q{SELECT status FROM es.projection_status WHERE name = 'late'}, 'failed', 30),
	'stop in catch-up: the new projection fails on the poisoned event of the history');
is($node->safe_psql('postgres', q{SELECT last_error_position FROM es.projection_status WHERE name = 'late'}),
	$poison, 'stop in catch-up: last_error_position is the poisoned event');
is(exactness('late', "e.global_position < $poison"), '0:0:0',
	'stop in catch-up: it has exactly the events before the poisoned one');
$node->safe_psql(
	'postgres', q{
CREATE OR REPLACE FUNCTION public.h_stop_late(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.log VALUES ('late', e.global_position, e.stream_id, e.event_type);
END $$;
SELECT es.resume_projection('late');});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('late', NULL, '30 seconds')}),
	't', 'stop in catch-up: after the fix and resume it catches up');
is(exactness('late'), '0:0:0', 'stop in catch-up: every event applied exactly once');

# =====================================================================
# on_error = 'park'
# =====================================================================
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION public.h_park(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.log VALUES ('parker', e.global_position, e.stream_id, e.event_type);
  IF e.data ? 'bad' THEN
    RAISE EXCEPTION 'bad event (%)', e.data->>'bad' USING ERRCODE = 'ET002';
  END IF;
END $$;
SELECT es.create_projection('parker', 'public.h_park(es.event)', on_error => 'park');});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('parker', NULL, '30 seconds')}),
	't', 'park: the projection catches up');

# Three bad events: alone, inside a transaction with good ones, in a batch.
$node->safe_psql(
	'postgres', q{
SELECT es.append_event('park-1', 'Soft', '{"bad": "soft"}');
BEGIN;
SELECT es.append_event('park-2', 'Good', '{}');
SELECT es.append_event('park-2', 'Soft', '{"bad": "soft"}');
SELECT es.append_event('park-3', 'Good', '{}');
COMMIT;
SELECT es.append('park-4', ARRAY[es.new_event('Good', '{}'), es.new_event('Hard', '{"bad": "hard"}'),
                                 es.new_event('Good', '{}')]);
SELECT es.append_event('park-5', 'Good', '{}');});
my @bad = split /\n/, $node->safe_psql('postgres',
	q{SELECT global_position || '|' || event_type FROM es.events WHERE data ? 'bad' ORDER BY global_position});
is(scalar(@bad), 3, 'park: three bad events appended');

is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('parker', NULL, '30 seconds')}),
	't', 'park: the projection goes on past the failing events');
is($node->safe_psql('postgres',
		q{SELECT string_agg(global_position || '|' || event_type || '|' || sqlstate || '|' || attempts
		                    || '|' || (message LIKE 'bad event (%)%') || '|'
		                    || (first_failed_at IS NOT NULL AND last_failed_at IS NOT NULL), ','
		                    ORDER BY global_position)
		    FROM es.projection_errors WHERE projection = 'parker'}),
	join(',', map { "$_|ET002|1|true|true" } @bad),
	'park: es.projection_errors has each failing event (position, type, sqlstate, message, attempts 1)');
is(exactness('parker', q{NOT e.data ? 'bad'}), '0:0:0',
	'park: every good event applied exactly once, no bad one');
is($node->safe_psql('postgres',
		q{SELECT status || ':' || errors FROM es.projection_status WHERE name = 'parker'}),
	'running:3', 'park: status running, errors 3');

# A retry while the handler still fails: nothing fixed, attempts go up.
is($node->safe_psql('postgres', q{SELECT es.retry_projection_errors('parker')}),
	'0', 'park: a retry that still fails fixes nothing');
is($node->safe_psql('postgres',
		q{SELECT string_agg(attempts::text, ',' ORDER BY global_position) FROM es.projection_errors WHERE projection = 'parker'}),
	'2,2,2', 'park: each failed retry increments attempts');
is(exactness('parker', q{NOT e.data ? 'bad'}), '0:0:0',
	'park: a failed retry leaves nothing in the read table');

# A partial fix: the "soft" ones pass now.
$node->safe_psql(
	'postgres', q{
CREATE OR REPLACE FUNCTION public.h_park(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.log VALUES ('parker', e.global_position, e.stream_id, e.event_type);
  IF e.data->>'bad' = 'hard' THEN
    RAISE EXCEPTION 'bad event (%)', e.data->>'bad' USING ERRCODE = 'ET002';
  END IF;
END $$;});
is($node->safe_psql('postgres', q{SELECT es.retry_projection_errors('parker')}),
	'2', 'park: after a partial fix the retry returns the number fixed (2)');
is($node->safe_psql('postgres',
		q{SELECT string_agg(event_type || ':' || attempts, ',') FROM es.projection_errors WHERE projection = 'parker'}),
	'Hard:3', 'park: only the still failing event stays parked, with attempts 3');
is(exactness('parker', q{e.data->>'bad' IS DISTINCT FROM 'hard'}), '0:0:0',
	'park: the fixed events are now applied, exactly once');

# The full fix.
$node->safe_psql(
	'postgres', q{
CREATE OR REPLACE FUNCTION public.h_park(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.log VALUES ('parker', e.global_position, e.stream_id, e.event_type);
END $$;});
is($node->safe_psql('postgres', q{SELECT es.retry_projection_errors('parker')}),
	'1', 'park: after the full fix the retry returns 1');
is($node->safe_psql('postgres', q{SELECT count(*) FROM es.projection_errors WHERE projection = 'parker'}),
	'0', 'park: es.projection_errors is empty for the projection');
is(exactness('parker'), '0:0:0', 'park: every event applied exactly once');
is($node->safe_psql('postgres', q{SELECT es.retry_projection_errors('parker')}),
	'0', 'park: a retry with nothing parked returns 0');
is($node->safe_psql('postgres',
		q{SELECT status || ':' || errors FROM es.projection_status WHERE name = 'parker'}),
	'running:0', 'park: status running, errors 0');

# =====================================================================
# A paused projection holds WAL back, and says so
# =====================================================================
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION public.h_paused(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.log VALUES ('sleeper', e.global_position, e.stream_id, e.event_type) $$;
SELECT es.create_projection('sleeper', 'public.h_paused(es.event)');});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('sleeper', NULL, '30 seconds')}),
	't', 'pause: the projection is live');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{SELECT es.pause_projection('sleeper')});
my $lsn_paused = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->safe_psql('postgres',
	q{SELECT es.append('paused-' || (g % 10), ARRAY[es.new_event('Good', jsonb_build_object('pad', repeat('x', 200)))])
	    FROM generate_series(1, 2000) g});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('other', NULL, '30 seconds')}),
	't', 'pause: the other projections go on');
my ($status, $retained, $lag, $generated) = split /\|/, $node->safe_psql('postgres',
	qq{SELECT status, retained_wal_bytes, lag_events, pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn_paused')
	     FROM es.projection_status WHERE name = 'sleeper'});
is($status, 'paused', 'pause: status paused');
cmp_ok($lag, '>=', 2000, 'pause: lag_events counts the events appended since');
cmp_ok($retained, '>=', $generated,
	"pause: retained_wal_bytes ($retained) covers at least the WAL written since the pause ($generated)");
ok(log_matches(qr/WARNING:.*paused projection "sleeper" holds back \d+ bytes of WAL/, $log_offset, 15),
	'pause: the server log has a WARNING that the paused projection holds back WAL');
{
	my ($rc, $out, $err) = $node->psql('postgres',
		q{SELECT es.wait_for_projection('sleeper', NULL, '30 seconds')});
	like($err, qr/ERROR:  projection "sleeper" is paused/,
		'pause: wait_for_projection on the paused projection says at once why it cannot succeed (ES004)');
}
$node->safe_psql('postgres', q{SELECT es.resume_projection('sleeper')});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('sleeper', NULL, '30 seconds')}),
	't', 'pause: after resume it catches up');
is(exactness('sleeper'), '0:0:0', 'pause: every event applied exactly once after resume');

# =====================================================================
# A process manager: a handler that appends events
# =====================================================================
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION public.h_orders(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.log VALUES ('orders', e.global_position, e.stream_id, e.event_type);
  PERFORM es.append_event('shipment-' || (e.data->>'order'), 'ShipmentRequested',
                          jsonb_build_object('order', e.data->>'order'));
END $$;
CREATE FUNCTION public.h_shipments(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.log VALUES ('shipments', e.global_position, e.stream_id, e.event_type) $$;
SELECT es.create_projection('orders', 'public.h_orders(es.event)', event_types => '{OrderPlaced}');
SELECT es.create_projection('shipments', 'public.h_shipments(es.event)', event_types => '{ShipmentRequested}');});
$node->safe_psql(
	'postgres', q{
SELECT es.append_event('order-' || g, 'OrderPlaced', jsonb_build_object('order', g)) FROM generate_series(1, 3) g;
SELECT es.append_event('order-4', 'OrderPlaced', '{"order": 4}');
SELECT es.append('order-5', ARRAY[es.new_event('OrderPlaced', '{"order": 5}')]);});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('orders', NULL, '30 seconds')}),
	't', 'process manager: the orders projection applies the orders');
is($node->safe_psql('postgres',
		q{SELECT count(*) || ':' || count(DISTINCT stream_id) || ':' || max(stream_version)
		    FROM es.events WHERE event_type = 'ShipmentRequested'}),
	'5:5:1', 'process manager: its handler appended one ShipmentRequested per order');
is($node->safe_psql('postgres',
		q{SELECT es.wait_for_projection('shipments', NULL, '30 seconds')::text || ','
		      || es.wait_for_projection('other', NULL, '30 seconds')::text}),
	'true,true', 'process manager: the appended events are projected');
is(exactness('shipments', q{e.event_type = 'ShipmentRequested'}), '0:0:0',
	'process manager: the shipments projection has each appended event exactly once');
is(exactness('other'), '0:0:0',
	'process manager: the all-events projection has them too, exactly once');
is(exactness('orders', q{e.event_type = 'OrderPlaced'}), '0:0:0',
	'process manager: each order applied exactly once');
usleep(1_500_000);
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM es.events WHERE event_type = 'ShipmentRequested'}),
	'5', 'process manager: nothing is appended twice later on');

is($node->safe_psql('postgres',
		q{SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM es.projection_status}),
	'late:running,orders:running,other:running,parker:running,shipments:running,sleeper:running,stopper:running',
	'all projections are running at the end');

$node->stop;
done_testing();
