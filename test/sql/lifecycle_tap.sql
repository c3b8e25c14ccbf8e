-- lifecycle_tap.sql: pgTAP assertions for snapshots, es.fold and the stream
-- lifecycle (soft delete, tombstone, retention, scavenge, admin views).
-- Everything runs in one transaction that is rolled back; stream ids start
-- with "lt-" and event types with "Lt", so other tests' data cannot meet
-- these assertions.
\set QUIET 1
\pset format unaligned
\pset tuples_only true
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;
BEGIN;
SELECT plan(90);

-- Earlier tests in this database may have left hidden events behind: remove
-- them first (rolled back at the end), so the scavenge budgets below only
-- meet this suite's events.
SELECT count(*) AS earlier_hidden FROM es.scavenge(1000000000) \gset

-- Versions of a stream, in the order es.read_stream returns them
CREATE FUNCTION pg_temp.sv(s text, f bigint DEFAULT 1, m bigint DEFAULT NULL,
                           b boolean DEFAULT false)
RETURNS bigint[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(r.stream_version ORDER BY r.o), '{}')
      FROM es.read_stream(s, f, m, b) WITH ORDINALITY AS r(global_position, stream_id,
           stream_version, event_id, event_type, schema_version, data, metadata, recorded_at, o)
$$;

-- Reducers
CREATE FUNCTION lt_balance(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object(
    'balance', coalesce((state ->> 'balance')::numeric, 0)
               + CASE e.event_type WHEN 'LtDeposited' THEN (e.data ->> 'amount')::numeric
                                   WHEN 'LtWithdrawn' THEN -(e.data ->> 'amount')::numeric
                                   ELSE 0 END,
    'events', coalesce((state ->> 'events')::int, 0) + 1,
    'version', e.stream_version);
CREATE FUNCTION lt_count(state jsonb, e es.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN jsonb_set(state, '{n}', to_jsonb(coalesce((state ->> 'n')::int, 0) + 1));
END $$;
CREATE FUNCTION lt_sum(state jsonb, e es.event) RETURNS jsonb LANGUAGE sql
RETURN jsonb_build_object('sum', coalesce((state ->> 'sum')::int, 0) + coalesce((e.data ->> 'i')::int, 0),
                          'v', e.stream_version);
CREATE FUNCTION lt_text(state jsonb, e es.event) RETURNS text LANGUAGE sql RETURN 'x';
CREATE FUNCTION lt_null(state jsonb, e es.event) RETURNS jsonb LANGUAGE sql
RETURN CASE WHEN e.stream_version = 2 THEN NULL ELSE state END;
CREATE FUNCTION lt_raise(state jsonb, e es.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'lt reducer refuses %', e.event_type; END $$;

-- ---------------------------------------------------------------------------
-- Snapshots and es.fold
-- ---------------------------------------------------------------------------
SELECT es.append('lt-acct', ARRAY[
    es.new_event('LtOpened', '{"owner": "ann"}'),
    es.new_event('LtDeposited', '{"amount": 100}'),
    es.new_event('LtWithdrawn', '{"amount": 30}'),
    es.new_event('LtDeposited', '{"amount": 5}')]) AS v \gset
SELECT min(global_position) - 1 AS base FROM es.events WHERE stream_id = 'lt-acct' \gset

SELECT is(es.fold('lt-acct', 'lt_balance(jsonb, es.event)'),
    '{"balance": 75, "events": 4, "version": 4}'::jsonb,
    'fold without a snapshot folds every event from initial');
SELECT is(es.fold('lt-acct', 'lt_count(jsonb, es.event)', '{"n": 10}'), '{"n": 14}'::jsonb,
    'fold starts from the given initial state');
SELECT is_empty($$ SELECT * FROM es.load_snapshot('lt-acct') $$,
    'load_snapshot: no row before any snapshot');

-- a snapshot that is deliberately not the fold of versions 1..2: proves they are not folded again
SELECT lives_ok($$ SELECT es.save_snapshot('lt-acct', 2, '{"balance": 1000, "events": 0}') $$,
    'save_snapshot at an existing version');
SELECT lives_ok($$ SELECT es.save_snapshot('lt-acct', 3, '{"balance": 500, "events": 0}') $$,
    'a later snapshot of the same type');
SELECT results_eq($$ SELECT version, state FROM es.load_snapshot('lt-acct') $$,
    $$ VALUES (3::bigint, '{"balance": 500, "events": 0}'::jsonb) $$,
    'load_snapshot returns the latest snapshot');
SELECT is(es.fold('lt-acct', 'lt_balance(jsonb, es.event)'),
    '{"balance": 505, "events": 1, "version": 4}'::jsonb,
    'fold starts from the latest snapshot and folds only the events after it');
SELECT is((SELECT count(*)::int FROM es.snapshots WHERE stream_id = 'lt-acct'), 1,
    'only the latest snapshot of a type is kept');
SELECT lives_ok($$ SELECT es.save_snapshot('lt-acct', 1, '{"balance": -1, "events": 0}', 'lt-other') $$,
    'a snapshot of another type');
SELECT is(es.fold('lt-acct', 'lt_balance(jsonb, es.event)', '{}', 'lt-other'),
    '{"balance": 74, "events": 3, "version": 4}'::jsonb,
    'snapshot types are separate');
SELECT is(es.fold('lt-acct', 'lt_balance(jsonb, es.event)', '{}', NULL),
    '{"balance": 75, "events": 4, "version": 4}'::jsonb,
    'a NULL snapshot_type ignores every snapshot');
SELECT es.append_event('lt-acct', 'LtDeposited', '{"amount": 1}') AS v \gset
SELECT is(es.fold('lt-acct', 'lt_balance(jsonb, es.event)'),
    '{"balance": 506, "events": 2, "version": 5}'::jsonb,
    'events appended after the snapshot are folded on top of it');

-- bad snapshots and reducers: clear errors, nothing saved
SELECT count(*) AS snapshots_before FROM es.snapshots \gset
SELECT throws_ok($$ SELECT es.save_snapshot('lt-acct', 6, '{}') $$, '22023',
    'stream "lt-acct" has no version 6', 'a snapshot beyond the stream''s version is refused');
SELECT throws_ok($$ SELECT es.save_snapshot('lt-acct', 0, '{}') $$, '22023', NULL,
    'a snapshot at version 0 is refused');
SELECT throws_ok($$ SELECT es.save_snapshot('lt-nosuch', 1, '{}') $$, '22023', NULL,
    'a snapshot of a stream without events is refused');
SELECT throws_ok($$ SELECT es.fold('lt-acct', 'jsonb_concat(jsonb, jsonb)') $$, '42P13',
    'reducer jsonb_concat(jsonb,jsonb) must be a function (state jsonb, e es.event) RETURNS jsonb',
    'a reducer with the wrong arguments is refused');
SELECT throws_ok($$ SELECT es.fold('lt-acct', 'lt_text(jsonb, es.event)') $$, '42P13', NULL,
    'a reducer with the wrong result type is refused');
SELECT throws_ok($$ SELECT es.fold('lt-acct', NULL) $$, '22004', NULL, 'a NULL reducer is refused');
SELECT throws_ok($$ SELECT es.fold('lt-acct', 'lt_null(jsonb, es.event)', '{}', NULL) $$, '22004',
    'reducer public.lt_null(jsonb,es.event) returned NULL', 'a reducer returning NULL is an error');
SELECT throws_ok($$ SELECT es.fold('lt-acct', 'lt_raise(jsonb, es.event)', '{}', NULL) $$, 'P0001',
    'lt reducer refuses LtOpened', 'a reducer''s own error reaches the caller');
SELECT is((SELECT count(*) FROM es.snapshots), :snapshots_before::bigint,
    'failed snapshots and folds saved nothing');

-- automatic snapshots
SELECT es.append('lt-auto', ARRAY(SELECT es.new_event('LtDeposited', jsonb_build_object('amount', i))
                                   FROM generate_series(1, 25) i)) AS v \gset
SELECT es.set_snapshot_interval('lt-every10', 10);
SELECT is(es.fold('lt-auto', 'lt_balance(jsonb, es.event)', '{}', NULL),
    '{"balance": 325, "events": 25, "version": 25}'::jsonb,
    'fold with a NULL type folds without snapshots');
SELECT is_empty($$ SELECT * FROM es.snapshots WHERE stream_id = 'lt-auto' $$,
    'and saves none');
SELECT is(es.fold('lt-auto', 'lt_balance(jsonb, es.event)', '{}', 'lt-every10'),
    '{"balance": 325, "events": 25, "version": 25}'::jsonb,
    'fold with an interval type');
SELECT results_eq($$ SELECT version, state FROM es.load_snapshot('lt-auto', 'lt-every10') $$,
    $$ VALUES (25::bigint, '{"balance": 325, "events": 25, "version": 25}'::jsonb) $$,
    'saves a snapshot of its result when it folded at least the interval');
SELECT es.append_event('lt-auto', 'LtDeposited', '{"amount": 100}') AS v \gset
SELECT is(es.fold('lt-auto', 'lt_balance(jsonb, es.event)', '{}', 'lt-every10'),
    '{"balance": 425, "events": 26, "version": 26}'::jsonb,
    'one event after the automatic snapshot is folded on top of it');
SELECT is((SELECT version FROM es.load_snapshot('lt-auto', 'lt-every10')), 25::bigint,
    'fewer events than the interval: no new snapshot');
SELECT es.append('lt-auto', ARRAY(SELECT es.new_event('LtDeposited', '{"amount": 1}')
                                   FROM generate_series(1, 9) i)) AS v \gset
SELECT is((es.fold('lt-auto', 'lt_balance(jsonb, es.event)', '{}', 'lt-every10')) -> 'balance',
    '434'::jsonb, 'fold over ten new events');
SELECT is((SELECT version FROM es.load_snapshot('lt-auto', 'lt-every10')), 35::bigint,
    'ten events folded: the snapshot moves to the new version');
SELECT es.set_snapshot_interval('lt-every10', 0);
SELECT is_empty($$ SELECT * FROM es.snapshot_intervals WHERE snapshot_type = 'lt-every10' $$,
    'an interval of 0 removes the interval');

-- ---------------------------------------------------------------------------
-- Soft delete
-- ---------------------------------------------------------------------------
SELECT es.append('lt-del', ARRAY[es.new_event('LtTick', '{"i": 1}'), es.new_event('LtTick', '{"i": 2}'),
                                 es.new_event('LtTick', '{"i": 3}')]) AS v \gset
SELECT es.save_snapshot('lt-del', 3, '{"sum": 6}');
SELECT es.save_snapshot('lt-del', 2, '{"sum": 3}', 'lt-other');
SELECT throws_ok($$ SELECT es.delete_stream('lt-del', expected_version => 2) $$, 'ES001', NULL,
    'delete_stream checks the expected version');
SELECT is(es.delete_stream('lt-del', expected_version => 3), 3::bigint,
    'delete_stream returns the deleted version');
SELECT is(pg_temp.sv('lt-del'), '{}'::bigint[], 'read_stream of a deleted stream is empty');
SELECT is(es.last_event('lt-del'), NULL, 'last_event of a deleted stream is NULL');
SELECT is_empty(format($$ SELECT * FROM es.read_all(%s) WHERE stream_id = 'lt-del' $$, :base),
    'read_all skips the deleted events');
SELECT is_empty(format($$ SELECT * FROM es.read_category('lt', %s) WHERE stream_id = 'lt-del' $$, :base),
    'read_category skips the deleted events');
SELECT is_empty($$ SELECT * FROM es.snapshots WHERE stream_id = 'lt-del' $$,
    'the snapshots at or below the delete are dropped');
SELECT is(es.stream_version('lt-del'), 3::bigint, 'the version is kept');
SELECT throws_ok($$ SELECT es.append_event('lt-del', 'LtTick', '{}', expected_version => -1) $$,
    'ES001', NULL, 'expected_version -1 is refused while the stream is deleted');
SELECT is(es.append_event('lt-del', 'LtTick', '{"i": 10}', expected_version => 0), 4::bigint,
    'expected_version 0 recreates the stream, numbering continuing');
SELECT is(pg_temp.sv('lt-del'), '{4}'::bigint[], 'only the new event is read');
SELECT is(es.fold('lt-del', 'lt_sum(jsonb, es.event)'), '{"sum": 10, "v": 4}'::jsonb,
    'fold of a recreated stream starts after the delete');
SELECT throws_ok($$ SELECT es.append_event('lt-del', 'LtTick', '{}', expected_version => 0) $$,
    'ES001', NULL, 'once recreated, expected_version 0 is refused');
SELECT is(es.append_event('lt-del', 'LtTick', '{"i": 20}', expected_version => -1), 5::bigint,
    'and expected_version -1 accepted');

-- ---------------------------------------------------------------------------
-- Tombstone
-- ---------------------------------------------------------------------------
SELECT es.append('lt-tomb', ARRAY[es.new_event('LtTick', '{}'), es.new_event('LtTick', '{}')]) AS v \gset
SELECT is(es.tombstone_stream('lt-tomb', expected_version => 2), 2::bigint,
    'tombstone_stream returns the last version');
SELECT throws_ok($$ SELECT es.append_event('lt-tomb', 'LtTick', '{}') $$, 'ES003',
    'stream "lt-tomb" is deleted', 'append to a tombstoned stream: ES003 naming the stream');
SELECT throws_ok($$ SELECT es.append('lt-tomb', ARRAY[es.new_event('LtTick', '{}')], 0) $$, 'ES003',
    NULL, 'not even with expected_version 0');
SELECT throws_ok($$ SELECT * FROM es.read_stream('lt-tomb') $$, 'ES003', NULL,
    'read_stream says the stream is deleted');
SELECT throws_ok($$ SELECT es.last_event('lt-tomb') $$, 'ES003', NULL,
    'last_event says the stream is deleted');
SELECT throws_ok($$ SELECT es.delete_stream('lt-tomb') $$, 'ES003', NULL,
    'delete_stream of a tombstoned stream: ES003');
SELECT throws_ok($$ SELECT es.fold('lt-tomb', 'lt_sum(jsonb, es.event)') $$, 'ES003', NULL,
    'fold of a tombstoned stream: ES003');
SELECT is_empty(format($$ SELECT * FROM es.read_all(%s) WHERE stream_id = 'lt-tomb' $$, :base),
    'read_all skips the tombstoned stream');

-- ---------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------
SELECT es.append('lt-ret', ARRAY(SELECT es.new_event(CASE i WHEN 3 THEN 'LtTock' ELSE 'LtTick' END,
                                                     jsonb_build_object('i', i))
                                  FROM generate_series(1, 6) i)) AS v \gset
SELECT global_position AS checkpoint FROM es.events WHERE stream_id = 'lt-ret' AND stream_version = 2 \gset
-- a snapshot taken before any truncation
SELECT es.save_snapshot('lt-ret', 4, '{"sum": 10, "v": 4}');

SELECT es.set_stream_metadata('lt-ret', max_count => 2);
SELECT is(pg_temp.sv('lt-ret'), '{5,6}'::bigint[], 'max_count: read_stream keeps the last events');
SELECT is(pg_temp.sv('lt-ret', 1, NULL, true), '{6,5}'::bigint[], 'also backwards');
SELECT results_eq(format($$ SELECT stream_version FROM es.read_all(%s) WHERE stream_id = 'lt-ret' $$, :base),
    $$ VALUES (5::bigint), (6) $$, 'max_count: read_all hides the older events');
SELECT results_eq(format($$ SELECT stream_version FROM es.read_category('lt', %s) WHERE stream_id = 'lt-ret' $$, :base),
    $$ VALUES (5::bigint), (6) $$, 'max_count: read_category hides the older events');
SELECT is((es.last_event('lt-ret')).stream_version, 6::bigint, 'last_event is the newest event');
SELECT is(es.last_event('lt-ret', 'LtTock'), NULL, 'last_event of a type whose events are hidden is NULL');
SELECT es.set_stream_metadata('lt-ret', truncate_before => 4);
SELECT is(pg_temp.sv('lt-ret'), '{4,5,6}'::bigint[], 'truncate_before replaces max_count');
SELECT es.set_stream_metadata('lt-ret', max_count => 4, truncate_before => 2);
SELECT is(pg_temp.sv('lt-ret'), '{3,4,5,6}'::bigint[], 'max_count and truncate_before together: the stricter wins');
SELECT is((es.last_event('lt-ret', 'LtTock')).stream_version, 3::bigint, 'a visible event of the type is found again');

-- read_all positions: a consumer's checkpoint never sees hidden events, and sees later ones
SELECT es.set_stream_metadata('lt-ret', truncate_before => 5);
SELECT results_eq(format($$ SELECT stream_version FROM es.read_all(%s) WHERE stream_id = 'lt-ret' $$, :checkpoint),
    $$ VALUES (5::bigint), (6) $$, 'read_all from a checkpoint skips the events truncated after it');
SELECT is(es.append_event('lt-ret', 'LtTick', '{"i": 7}', expected_version => 6), 7::bigint,
    'appends are not affected by retention');
SELECT results_eq(format($$ SELECT stream_version FROM es.read_all(%s) WHERE stream_id = 'lt-ret' $$, :checkpoint),
    $$ VALUES (5::bigint), (6), (7) $$, 'read_all from the checkpoint returns the later event');

-- retention and snapshots: the snapshot keeps the state of truncated events
SELECT is(es.fold('lt-ret', 'lt_sum(jsonb, es.event)', '{}', NULL), '{"sum": 18, "v": 7}'::jsonb,
    'fold without a snapshot sees only the visible events');
SELECT is(es.fold('lt-ret', 'lt_sum(jsonb, es.event)'), '{"sum": 28, "v": 7}'::jsonb,
    'fold from a snapshot taken before the truncation keeps the truncated events'' state');

-- max_age compares recorded_at with the transaction start: an event appended
-- in this transaction is never older than that, so an older event is
-- written here as if appended two days ago
INSERT INTO es.events (global_position, stream_id, stream_version, event_id, event_type,
                       schema_version, data, metadata, recorded_at)
VALUES (nextval('es.events_global_position_seq'), 'lt-age', 1, gen_random_uuid(), 'LtTick',
        1, '{"i": 1}', '{}', now() - interval '2 days');
SELECT es.append_event('lt-age', 'LtTick', '{"i": 2}', expected_version => 1) AS v \gset
SELECT es.set_stream_metadata('lt-age', max_age => '3 days');
SELECT is(pg_temp.sv('lt-age'), '{1,2}'::bigint[], 'max_age longer than the events'' age hides nothing');
SELECT es.set_stream_metadata('lt-age', max_age => '1 day');
SELECT is(pg_temp.sv('lt-age'), '{2}'::bigint[], 'max_age: read_stream hides the older event');
SELECT results_eq(format($$ SELECT stream_version FROM es.read_all(%s) WHERE stream_id = 'lt-age' $$, :base),
    $$ VALUES (2::bigint) $$, 'max_age: read_all hides the older event');

-- ---------------------------------------------------------------------------
-- Admin views (before scavenge)
-- ---------------------------------------------------------------------------
SELECT results_eq($$ SELECT stream_id, category, version, stored_events, state
                       FROM es.streams WHERE stream_id IN ('lt-acct', 'lt-del', 'lt-tomb', 'lt-ret')
                      ORDER BY stream_id $$,
    $$ VALUES ('lt-acct', 'lt', 5::bigint, 5::bigint, 'active'),
              ('lt-del', 'lt', 5, 5, 'active'),
              ('lt-ret', 'lt', 7, 7, 'active'),
              ('lt-tomb', 'lt', 2, 2, 'tombstoned') $$,
    'es.streams: versions, stored events and states');
SELECT es.delete_stream('lt-del') AS v \gset
SELECT results_eq($$ SELECT state, deleted_before FROM es.streams WHERE stream_id = 'lt-del' $$,
    $$ VALUES ('deleted', 5::bigint) $$, 'es.streams: a soft deleted stream');
SELECT results_eq($$ SELECT max_count, truncate_before, max_age FROM es.streams WHERE stream_id = 'lt-ret' $$,
    $$ VALUES (NULL::bigint, 5::bigint, NULL::interval) $$, 'es.streams shows the retention');
SELECT results_eq(format($$ SELECT streams, events, first_position - %1$s, last_position - %1$s
                              FROM es.categories WHERE category = 'lt' $$, :base),
    $$ VALUES (6::bigint, 56::bigint, 1::bigint, 56::bigint) $$,
    'es.categories counts streams, stored events and positions');
SELECT results_eq($$ SELECT event_type, events FROM es.event_types
                      WHERE event_type IN ('LtTick', 'LtTock', 'LtDeposited') ORDER BY 1 $$,
    $$ VALUES ('LtDeposited', 38::bigint), ('LtTick', 15::bigint), ('LtTock', 1::bigint) $$,
    'es.event_types counts stored events per type');

-- ---------------------------------------------------------------------------
-- Scavenge
-- ---------------------------------------------------------------------------
SELECT es.set_stream_metadata('lt-ret', max_count => 3);
-- the newest event of the log is a hidden one: scavenge removes it
SELECT es.append_event('lt-last', 'LtTick', '{}') AS v \gset
SELECT es.delete_stream('lt-last') AS v \gset
CREATE TEMP TABLE lt_visible ON COMMIT DROP AS
    SELECT global_position FROM es.read_all(:base, 100000) WHERE stream_id LIKE 'lt-%';
SELECT max(global_position) AS maxpos FROM es.events \gset
SELECT is((SELECT global_position FROM es.events WHERE stream_id = 'lt-last'), :maxpos::bigint,
    'the newest stored event is a deleted one');

SELECT results_eq($$ SELECT stream_id, events_removed, up_to_version FROM es.scavenge(3)
                      WHERE stream_id LIKE 'lt-%' ORDER BY stream_id $$,
    $$ VALUES ('lt-age', 1::bigint, 1::bigint), ('lt-del', 2, 2) $$,
    'scavenge removes at most max_events, oldest versions first, and reports them');
SELECT results_eq($$ SELECT stream_id, events_removed, up_to_version FROM es.scavenge()
                      WHERE stream_id LIKE 'lt-%' ORDER BY stream_id $$,
    $$ VALUES ('lt-del', 3::bigint, 5::bigint), ('lt-last', 1, 1), ('lt-ret', 4, 4), ('lt-tomb', 2, 2) $$,
    'the next call removes the rest');
SELECT is_empty($$ SELECT * FROM es.scavenge() $$, 'a later call returns no row');
SELECT set_eq($$ SELECT global_position FROM es.events WHERE stream_id LIKE 'lt-%' $$,
    $$ SELECT global_position FROM lt_visible $$,
    'exactly the hidden events were removed: the stored events are the visible ones');
SELECT results_eq($$ SELECT stream_id, version, stored_events, state, scavenged_to FROM es.streams
                      WHERE stream_id IN ('lt-del', 'lt-ret', 'lt-tomb') ORDER BY stream_id $$,
    $$ VALUES ('lt-del', 5::bigint, 0::bigint, 'deleted', 5::bigint),
              ('lt-ret', 7, 3, 'active', 4),
              ('lt-tomb', 2, 0, 'tombstoned', 2) $$,
    'es.streams after scavenge: versions kept, scavenged_to recorded');
SELECT is(pg_temp.sv('lt-ret'), '{5,6,7}'::bigint[], 'reads are the same after scavenge');
SELECT is(es.fold('lt-ret', 'lt_sum(jsonb, es.event)'), '{"sum": 28, "v": 7}'::jsonb,
    'fold from the snapshot still has the state of the removed events');
SELECT throws_ok($$ SELECT * FROM es.read_stream('lt-tomb') $$, 'ES003', NULL,
    'a scavenged tombstoned stream is still deleted');
SELECT is(es.append_event('lt-del', 'LtTick', '{"i": 30}', expected_version => 0), 6::bigint,
    'a scavenged deleted stream is recreated at the next version');
SELECT is_empty($$ SELECT * FROM es.events WHERE stream_id = 'lt-last' $$,
    'the newest event of the log was removed');
SELECT cmp_ok((SELECT global_position FROM es.events WHERE stream_id = 'lt-del'), '>', :maxpos::bigint,
    'positions are never reused: the new event is after every earlier position, removed ones included');
SELECT results_eq(format($$ SELECT stream_id, stream_version FROM es.read_all(%s) WHERE stream_id LIKE 'lt-%%' $$, :maxpos),
    $$ VALUES ('lt-del', 6::bigint) $$, 'read_all from the last position before the scavenge returns only the new event');
SELECT throws_ok($$ DELETE FROM es.events WHERE stream_id = 'lt-ret' $$, '42501',
    'es.events is append-only: DELETE is not allowed', 'DELETE on es.events is refused outside scavenge');
SELECT throws_ok($$ UPDATE es.events SET data = '{}' WHERE stream_id = 'lt-ret' $$, '42501', NULL,
    'UPDATE on es.events is refused');
SELECT throws_ok($$ SELECT * FROM es.scavenge(0) $$, '22023', NULL, 'scavenge(0) is refused');

SELECT * FROM finish();
ROLLBACK;
