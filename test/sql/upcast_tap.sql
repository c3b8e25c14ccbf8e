-- upcast_tap.sql: pgTAP assertions that every read path upcasts
\set QUIET 1
\pset format unaligned
\pset tuples_only true
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;
BEGIN;
SELECT plan(22);

SELECT es.append('ut-1', ARRAY[
    es.new_event('UtDeposited', '{"amt": "3", "note": "x"}'),
    es.new_event('UtDeposited', '{"amount": 4}', NULL, NULL, 2),
    es.new_event('UtOther', '{"k": 1}')]);
SELECT min(global_position) - 1 AS base FROM es.events WHERE stream_id = 'ut-1' \gset

CREATE FUNCTION ut_to_number(data jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
RETURN data || jsonb_build_object('amount', (data ->> 'amount')::numeric);
CREATE FUNCTION ut_tag(data jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN data || '{"tagged": true}'; END $$;

SELECT lives_ok($$ SELECT es.register_upcaster('UtDeposited', 1,
    rename_fields => '{"amt": "amount"}', remove_fields => ARRAY['note']) $$,
    'declarative step registers');
SELECT lives_ok($$ SELECT es.register_upcaster('UtDeposited', 2, 'ut_to_number(jsonb)',
    add_fields => '{"currency": "USD"}') $$, 'function + declarative step registers');
SELECT lives_ok($$ SELECT es.register_upcaster('UtDeposited', 3, 'ut_tag(jsonb)',
    to_event_type => 'UtFunds') $$, 'function step with a type rename registers');

SELECT is((SELECT count(*)::int FROM es.upcasters WHERE event_type = 'UtDeposited'), 3,
    'es.upcasters lists the three steps');
SELECT is((SELECT kind FROM es.upcasters WHERE event_type = 'UtDeposited' AND from_schema_version = 2),
    'function+declarative', 'es.upcasters names the kind of a step');

-- the newest shape, from every read function
SELECT results_eq(
    $$ SELECT event_type, schema_version, data FROM es.read_stream('ut-1') WHERE stream_version <= 2 $$,
    $$ VALUES ('UtFunds', 4, '{"amount": 3, "currency": "USD", "tagged": true}'::jsonb),
              ('UtFunds', 4, '{"amount": 4, "currency": "USD", "tagged": true}'::jsonb) $$,
    'read_stream upcasts v1 and v2 events to the newest shape');
SELECT results_eq(
    $$ SELECT event_type, schema_version FROM es.read_stream('ut-1', backwards => true) $$,
    $$ VALUES ('UtOther', 1), ('UtFunds', 4), ('UtFunds', 4) $$,
    'read_stream backwards upcasts');
SELECT results_eq(
    format($$ SELECT event_type, data FROM es.read_all(%s, 10) WHERE stream_id = 'ut-1' $$, :base),
    $$ VALUES ('UtFunds', '{"amount": 3, "currency": "USD", "tagged": true}'::jsonb),
              ('UtFunds', '{"amount": 4, "currency": "USD", "tagged": true}'::jsonb),
              ('UtOther', '{"k": 1}'::jsonb) $$,
    'read_all upcasts');
SELECT results_eq(
    format($$ SELECT event_type, schema_version FROM es.read_category('ut', %s) $$, :base),
    $$ VALUES ('UtFunds', 4), ('UtFunds', 4), ('UtOther', 1) $$,
    'read_category upcasts');
SELECT is((es.last_event('ut-1', 'UtFunds')).data,
    '{"amount": 4, "currency": "USD", "tagged": true}'::jsonb,
    'last_event by the new type name finds an event stored under the old one');
SELECT is((es.last_event('ut-1')).event_type, 'UtOther', 'last_event without a type');
SELECT is(es.last_event('ut-1', 'UtDeposited'), NULL,
    'last_event by the old type name finds nothing: events leave as the new type');
SELECT is((SELECT count(*)::int FROM es.read_all(:base, 10, ARRAY['UtFunds'])), 2,
    'read_all filters on the upcast type');
SELECT is((SELECT count(*)::int FROM es.read_all(:base, 10, ARRAY['UtDeposited'])), 0,
    'read_all finds no event under the old type name');
SELECT is((SELECT count(*)::int FROM es.read_all(:base, 1, ARRAY['UtFunds'])), 1,
    'read_all with a type filter honours max_count');

-- stored rows are untouched
SELECT results_eq(
    $$ SELECT event_type, schema_version, data FROM es.events WHERE stream_id = 'ut-1' ORDER BY stream_version $$,
    $$ VALUES ('UtDeposited', 1, '{"amt": "3", "note": "x"}'::jsonb),
              ('UtDeposited', 2, '{"amount": 4}'::jsonb),
              ('UtOther', 1, '{"k": 1}'::jsonb) $$,
    'stored events are never rewritten');

-- registry changes take effect on the next read
SELECT lives_ok($$ SELECT es.unregister_upcaster('UtDeposited', 3) $$, 'a step unregisters');
SELECT is((SELECT event_type FROM es.read_stream('ut-1', 1, 1)), 'UtDeposited',
    'without the rename step events keep their type');
SELECT is((SELECT schema_version FROM es.read_stream('ut-1', 1, 1)), 3,
    'and stop at the last registered version');

-- errors
SELECT throws_ok($$ SELECT es.register_upcaster('UtDeposited', 1) $$, '42710', NULL,
    'a second step for the same type and version is refused');
SELECT throws_ok($$ SELECT es.register_upcaster('UtX', 1, 'ut_to_number(jsonb)', to_event_type => 'UtX') $$,
    '22023', NULL, 'renaming a type to itself is refused');
SELECT throws_ok($$ SELECT es.unregister_upcaster('UtNope', 1) $$, '42704', NULL,
    'unregistering an unknown step is refused');

SELECT * FROM finish();
ROLLBACK;
