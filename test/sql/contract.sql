-- contract: the API contract of DESIGN.md as a pgTAP suite run by pg_regress.
-- Everything happens in one transaction that is rolled back, so the suite
-- leaves no events, roles or extensions behind.  Stream ids start with
-- "ctap" so they cannot meet other tests' streams.
\set ECHO none
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
SET client_min_messages = warning;

BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS es;

-- The last position before this suite: global reads start after it.
SELECT coalesce(max(global_position), 0) AS base FROM es.events \gset

-- Versions of a stream in the order es.read_stream returns them.
CREATE FUNCTION pg_temp.sv(s text, f bigint DEFAULT 1, m bigint DEFAULT NULL,
                           b boolean DEFAULT false, a timestamptz DEFAULT NULL)
RETURNS bigint[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(r.v ORDER BY r.o), '{}')
    FROM es.read_stream(s, f, m, b, a)
         WITH ORDINALITY AS r(p, s, v, i, t, sv, d, md, ra, o)
$$;

-- "SQLSTATE: errdetail" of a statement, or 'no error'.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    d text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, d = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || coalesce(d, '');
END $$;

-- The SQLSTATE a statement gets when run as role r, or 'ok'.
CREATE FUNCTION pg_temp.as_role(r text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text := 'ok';
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    BEGIN
        EXECUTE q;
    EXCEPTION WHEN OTHERS THEN
        st := SQLSTATE;
    END;
    RESET ROLE;
    RETURN st;
END $$;

-- Does PUBLIC hold privilege p on the object with this ACL?
CREATE FUNCTION pg_temp.public_has(acl aclitem[], p text) RETURNS boolean
LANGUAGE sql AS $$
    SELECT EXISTS (SELECT 1 FROM aclexplode(acl) a
                   WHERE a.grantee = 0 AND a.privilege_type = p)
$$;

SELECT plan(204);

-- ===========================================================================
-- Schema objects
-- ===========================================================================

SELECT has_schema('es');
SELECT has_table('es', 'events', 'table es.events exists');
SELECT is(
    (SELECT array_agg(attname || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum)
     FROM pg_attribute
     WHERE attrelid = 'es.events'::regclass AND attnum > 0 AND NOT attisdropped
       AND attname <> 'xid'),
    ARRAY['global_position bigint', 'stream_id text', 'stream_version bigint',
          'event_id uuid', 'event_type text', 'schema_version integer',
          'data jsonb', 'metadata jsonb', 'recorded_at timestamp with time zone'],
    'es.events has the columns of es.event, in order');
SELECT ok(
    (SELECT bool_and(attnotnull) FROM pg_attribute
     WHERE attrelid = 'es.events'::regclass AND attnum > 0 AND NOT attisdropped),
    'every column of es.events is NOT NULL');
SELECT col_is_pk('es', 'events', ARRAY['stream_id', 'stream_version'],
    'es.events primary key is (stream_id, stream_version)');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = 'es.events'::regclass AND i.indisunique
      AND pg_get_indexdef(i.indexrelid) LIKE '%USING btree (stream_id, event_id)'),
    'a unique index on es.events (stream_id, event_id)');
SELECT is_indexed('es', 'events', ARRAY['global_position'],
    'es.events is indexed on global_position');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = 'es.events'::regclass
      AND pg_get_indexdef(i.indexrelid) LIKE
          '%(split_part(stream_id, ''-''::text, 1), global_position)%'),
    'es.events is indexed on (category, global_position)');
-- Since 0.4.0 positions are unique by constraint too (a setval() moving the
-- sequence back cannot store two events at one position); distributing the
-- table by stream_id would make that one index non-unique again.
SELECT ok(NOT EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = 'es.events'::regclass AND i.indisunique
      AND i.indexrelid <> 'es.events_global_position_idx'::regclass
      AND NOT (SELECT attnum FROM pg_attribute
               WHERE attrelid = 'es.events'::regclass AND attname = 'stream_id')
              = ANY (i.indkey::int2[])),
    'every unique index on es.events but the position''s includes stream_id (distributable)');
SELECT is(pg_get_indexdef('es.events_global_position_idx'::regclass),
    'CREATE UNIQUE INDEX events_global_position_idx ON es.events USING btree (global_position)',
    'es.events_global_position_idx is unique on global_position alone');
SELECT has_composite('es', 'event', 'composite type es.event exists');
SELECT has_composite('es', 'new_event', 'composite type es.new_event exists');
SELECT is(
    (SELECT array_agg(attname || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum)
     FROM pg_attribute WHERE attrelid = 'es.event'::regclass AND attnum > 0),
    ARRAY['global_position bigint', 'stream_id text', 'stream_version bigint',
          'event_id uuid', 'event_type text', 'schema_version integer',
          'data jsonb', 'metadata jsonb', 'recorded_at timestamp with time zone'],
    'es.event has the fields of DESIGN.md');
SELECT is(
    (SELECT array_agg(attname || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum)
     FROM pg_attribute WHERE attrelid = 'es.new_event'::regclass AND attnum > 0),
    ARRAY['event_type text', 'data jsonb', 'metadata jsonb', 'event_id uuid',
          'schema_version integer'],
    'es.new_event has the fields of DESIGN.md');

-- Functions: exact signatures, named arguments with defaults, return types.
SELECT has_function('es', 'append', ARRAY['text', 'es.new_event[]', 'bigint']);
SELECT has_function('es', 'append_json', ARRAY['text', 'jsonb', 'bigint']);
SELECT has_function('es', 'append_event',
    ARRAY['text', 'text', 'jsonb', 'jsonb', 'bigint', 'uuid', 'integer']);
SELECT has_function('es', 'read_stream',
    ARRAY['text', 'bigint', 'bigint', 'boolean', 'timestamp with time zone']);
SELECT has_function('es', 'read_all', ARRAY['bigint', 'bigint', 'text[]']);
SELECT has_function('es', 'read_category',
    ARRAY['text', 'bigint', 'bigint', 'integer', 'integer']);
SELECT has_function('es', 'stream_version', ARRAY['text']);
SELECT has_function('es', 'last_event', ARRAY['text', 'text']);
SELECT has_function('es', 'new_event', ARRAY['text', 'jsonb', 'jsonb', 'uuid', 'integer']);

SELECT function_returns('es', 'append', ARRAY['text', 'es.new_event[]', 'bigint'], 'bigint');
SELECT function_returns('es', 'append_json', ARRAY['text', 'jsonb', 'bigint'], 'bigint');
SELECT function_returns('es', 'append_event',
    ARRAY['text', 'text', 'jsonb', 'jsonb', 'bigint', 'uuid', 'integer'], 'bigint');
SELECT function_returns('es', 'read_stream',
    ARRAY['text', 'bigint', 'bigint', 'boolean', 'timestamp with time zone'], 'setof es.event');
SELECT function_returns('es', 'read_all', ARRAY['bigint', 'bigint', 'text[]'], 'setof es.event');
SELECT function_returns('es', 'read_category',
    ARRAY['text', 'bigint', 'bigint', 'integer', 'integer'], 'setof es.event');
SELECT function_returns('es', 'stream_version', ARRAY['text'], 'bigint');
SELECT function_returns('es', 'last_event', ARRAY['text', 'text'], 'es.event');
SELECT function_returns('es', 'new_event',
    ARRAY['text', 'jsonb', 'jsonb', 'uuid', 'integer'], 'es.new_event');

SELECT is(pg_get_function_arguments('es.append(text, es.new_event[], bigint)'::regprocedure),
    'stream_id text, events es.new_event[], expected_version bigint DEFAULT NULL::bigint',
    'es.append arguments and defaults');
SELECT is(pg_get_function_arguments('es.append_json(text, jsonb, bigint)'::regprocedure),
    'stream_id text, events jsonb, expected_version bigint DEFAULT NULL::bigint',
    'es.append_json arguments and defaults');
SELECT is(pg_get_function_arguments(
        'es.append_event(text, text, jsonb, jsonb, bigint, uuid, integer)'::regprocedure),
    'stream_id text, event_type text, data jsonb, metadata jsonb DEFAULT NULL::jsonb, '
    'expected_version bigint DEFAULT NULL::bigint, event_id uuid DEFAULT NULL::uuid, '
    'schema_version integer DEFAULT 1',
    'es.append_event arguments and defaults');
SELECT is(pg_get_function_arguments(
        'es.read_stream(text, bigint, bigint, boolean, timestamptz)'::regprocedure),
    'stream_id text, from_version bigint DEFAULT 1, max_count bigint DEFAULT NULL::bigint, '
    'backwards boolean DEFAULT false, as_of timestamp with time zone DEFAULT NULL::timestamp with time zone',
    'es.read_stream arguments and defaults');
SELECT is(pg_get_function_arguments('es.read_all(bigint, bigint, text[])'::regprocedure),
    'from_position bigint DEFAULT 0, max_count bigint DEFAULT 1000, event_types text[] DEFAULT NULL::text[]',
    'es.read_all arguments and defaults');
SELECT is(pg_get_function_arguments(
        'es.read_category(text, bigint, bigint, integer, integer)'::regprocedure),
    'category text, from_position bigint DEFAULT 0, max_count bigint DEFAULT 1000, '
    'consumer_group_member integer DEFAULT NULL::integer, consumer_group_size integer DEFAULT NULL::integer',
    'es.read_category arguments and defaults');
SELECT is(pg_get_function_arguments('es.stream_version(text)'::regprocedure),
    'stream_id text', 'es.stream_version arguments');
SELECT is(pg_get_function_arguments('es.last_event(text, text)'::regprocedure),
    'stream_id text, event_type text DEFAULT NULL::text',
    'es.last_event arguments and defaults');
SELECT is(pg_get_function_arguments('es.new_event(text, jsonb, jsonb, uuid, integer)'::regprocedure),
    'event_type text, data jsonb, metadata jsonb DEFAULT NULL::jsonb, '
    'event_id uuid DEFAULT NULL::uuid, schema_version integer DEFAULT 1',
    'es.new_event arguments and defaults');

-- An append function either runs as the caller (it then needs no privilege
-- on es.events, see the roles below) or is SECURITY DEFINER with a pinned
-- search_path that holds neither public nor $user; reads run as the caller.
SELECT ok(NOT prosecdef OR EXISTS (
              SELECT 1 FROM unnest(proconfig) c
              WHERE c LIKE 'search_path=%' AND c NOT LIKE '%public%' AND c NOT LIKE '%$user%'),
          oid::regprocedure::text || ' is SECURITY INVOKER or pins a safe search_path')
FROM pg_proc
WHERE oid IN ('es.append(text, es.new_event[], bigint)'::regprocedure,
              'es.append_json(text, jsonb, bigint)'::regprocedure,
              'es.append_event(text, text, jsonb, jsonb, bigint, uuid, integer)'::regprocedure)
ORDER BY oid::regprocedure::text;
SELECT ok(NOT EXISTS (
    SELECT 1 FROM pg_proc p
    WHERE p.pronamespace = 'es'::regnamespace AND p.prosecdef
      AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')),
    'every SECURITY DEFINER function of es sets search_path');
SELECT is(
    (SELECT array_agg(p.proname::text ORDER BY p.proname)
     FROM pg_proc p
     WHERE p.pronamespace = 'es'::regnamespace AND NOT p.prosecdef
       AND p.proname IN ('read_stream', 'read_all', 'read_category',
                         'stream_version', 'last_event')),
    ARRAY['last_event', 'read_all', 'read_category', 'read_stream', 'stream_version'],
    'the read functions are SECURITY INVOKER');
SELECT ok(NOT pg_temp.public_has(coalesce(proacl, acldefault('f', proowner)), 'EXECUTE'),
          'PUBLIC cannot execute ' || oid::regprocedure::text)
FROM pg_proc
WHERE oid IN ('es.append(text, es.new_event[], bigint)'::regprocedure,
              'es.append_json(text, jsonb, bigint)'::regprocedure,
              'es.append_event(text, text, jsonb, jsonb, bigint, uuid, integer)'::regprocedure)
ORDER BY oid::regprocedure::text;
SELECT ok(NOT pg_temp.public_has(coalesce(relacl, acldefault('r', relowner)), 'INSERT')
          AND NOT pg_temp.public_has(coalesce(relacl, acldefault('r', relowner)), 'UPDATE')
          AND NOT pg_temp.public_has(coalesce(relacl, acldefault('r', relowner)), 'DELETE')
          AND NOT pg_temp.public_has(coalesce(relacl, acldefault('r', relowner)), 'TRUNCATE'),
          'PUBLIC cannot write es.events')
FROM pg_class WHERE oid = 'es.events'::regclass;

-- ===========================================================================
-- Expected version: NULL any, 0 no stream, -1 existing stream, N exactly N
-- ===========================================================================

SELECT is(es.stream_version('ctapacct-1'), 0::bigint, 'a stream without events has version 0');
SELECT is(es.append_event('ctapacct-1', 'Opened', '{"owner": "ann"}', NULL, 0), 1::bigint,
    'expected 0 on a new stream appends version 1');
SELECT throws_ok($$SELECT es.append_event('ctapacct-1', 'Opened', '{}', NULL, 0)$$,
    'ES001', 'wrong expected version for stream "ctapacct-1"',
    'expected 0 on an existing stream: ES001 naming the stream');
SELECT alike(pg_temp.err($$SELECT es.append_event('ctapacct-1', 'Opened', '{}', NULL, 0)$$),
    'ES001: Expected %, actual version 1.',
    'ES001 errdetail gives the actual version');
SELECT is(es.append_event('ctapacct-1', 'Deposited', '{"amount": 100}', NULL, 1), 2::bigint,
    'expected N at version N appends N+1');
SELECT throws_ok($$SELECT es.append_event('ctapacct-1', 'Deposited', '{"amount": 1}', NULL, 1)$$,
    'ES001', NULL, 'expected N behind the stream: ES001');
SELECT is(pg_temp.err($$SELECT es.append_event('ctapacct-1', 'Deposited', '{"amount": 1}', NULL, 1)$$),
    'ES001: Expected version 1, actual version 2.',
    'ES001 errdetail: "Expected version X, actual version Y."');
SELECT throws_ok($$SELECT es.append_event('ctapacct-1', 'Deposited', '{"amount": 1}', NULL, 5)$$,
    'ES001', NULL, 'expected N ahead of the stream: ES001');
SELECT is(es.append_event('ctapacct-1', 'Deposited', '{"amount": 50}', NULL, -1), 3::bigint,
    'expected -1 on an existing stream appends');
SELECT throws_ok($$SELECT es.append_event('ctapnew-1', 'Opened', '{}', NULL, -1)$$,
    'ES001', NULL, 'expected -1 on a new stream: ES001');
SELECT is(es.stream_version('ctapnew-1'), 0::bigint, 'the failed append wrote nothing');
SELECT is(es.append_event('ctapacct-1', 'Withdrawn', '{"amount": 30}'), 4::bigint,
    'expected NULL appends at any version');
SELECT is(es.append('ctapacct-1', ARRAY[
        es.new_event('Deposited', '{"amount": 10}', '{"by": "teller"}'),
        es.new_event('Withdrawn', '{"amount": 20}', NULL, NULL, 3),
        es.new_event('Deposited', '{"amount": 30}')], 4), 7::bigint,
    'a batch appends atomically and returns the new version');
SELECT throws_ok($$SELECT es.append('ctapacct-1', ARRAY[es.new_event('Deposited', '{}'),
                                                       es.new_event('Deposited', '{}')], 6)$$,
    'ES001', NULL, 'a batch with a stale expected version: ES001');
SELECT is(pg_temp.sv('ctapacct-1'), '{1,2,3,4,5,6,7}'::bigint[],
    'versions are contiguous from 1 and no failed append left an event');
SELECT ok((SELECT bool_and(p > lp) FROM (
               SELECT global_position AS p,
                      lag(global_position) OVER (ORDER BY stream_version) AS lp
               FROM es.events WHERE stream_id = 'ctapacct-1') x
           WHERE lp IS NOT NULL),
    'global positions increase with stream versions');
SELECT throws_ok($$SELECT es.append_event('ctapatom-1', 'A', '{}'),
                          es.append_event('ctapacct-1', 'A', '{}', NULL, 1)$$,
    'ES001', NULL, 'a statement appending to two streams fails as a whole ...');
SELECT is(es.stream_version('ctapatom-1'), 0::bigint, '... and leaves the other stream empty');

-- Normalization of new events.
SELECT ok(es.new_event('T', '{"a": 1}') IS NOT DISTINCT FROM
          ROW('T', '{"a": 1}', NULL, NULL, 1)::es.new_event,
    'es.new_event fills metadata NULL, event_id NULL, schema_version 1');
SELECT results_eq(
    $$SELECT stream_version, event_type, data, metadata, schema_version
      FROM es.read_stream('ctapacct-1', 5)$$,
    $$VALUES (5::bigint, 'Deposited'::text, '{"amount": 10}'::jsonb, '{"by": "teller"}'::jsonb, 1),
             (6, 'Withdrawn', '{"amount": 20}', '{}', 3),
             (7, 'Deposited', '{"amount": 30}', '{}', 1)$$,
    'stored events keep type, data, metadata (NULL as {}) and schema version');
SELECT ok((SELECT count(DISTINCT event_id) = 7 AND count(event_id) = 7
           FROM es.events WHERE stream_id = 'ctapacct-1'),
    'events without an id get distinct fresh ids');
SELECT ok((SELECT bool_and(recorded_at IS NOT NULL AND recorded_at <= clock_timestamp())
           FROM es.events WHERE stream_id = 'ctapacct-1'),
    'events get a recorded_at time');
SELECT results_eq(
    $$SELECT * FROM es.read_stream('ctapacct-1')$$,
    $$SELECT global_position, stream_id, stream_version, event_id, event_type,
             schema_version, data, metadata, recorded_at
      FROM es.events WHERE stream_id = 'ctapacct-1' ORDER BY stream_version$$,
    'es.read_stream returns the stored rows');

-- ===========================================================================
-- Idempotency by event id
-- ===========================================================================

SELECT is(es.append('ctapidem-1', ARRAY[
        es.new_event('Deposited', '{"n": 1}', NULL, 'c0000000-0000-4000-8000-000000000001'),
        es.new_event('Deposited', '{"n": 2}', NULL, 'c0000000-0000-4000-8000-000000000002')], 0),
    2::bigint, 'append with ids');
SELECT is(es.append_event('ctapidem-1', 'Other', '{}', NULL, 2,
                          'c0000000-0000-4000-8000-000000000003'),
    3::bigint, 'append_event with an id');
SELECT is(es.append('ctapidem-1', ARRAY[
        es.new_event('Deposited', '{"n": 1}', NULL, 'c0000000-0000-4000-8000-000000000001'),
        es.new_event('Deposited', '{"n": 2}', NULL, 'c0000000-0000-4000-8000-000000000002')], 0),
    2::bigint, 're-append with its original (now stale) expected version returns the version written at');
SELECT is(es.append('ctapidem-1', ARRAY[
        es.new_event('Deposited', '{"n": 1}', NULL, 'c0000000-0000-4000-8000-000000000001'),
        es.new_event('Deposited', '{"n": 2}', NULL, 'c0000000-0000-4000-8000-000000000002')]),
    2::bigint, 're-append with expected NULL returns the version written at');
SELECT is(es.append_event('ctapidem-1', 'Other', '{}', NULL, 2,
                          'c0000000-0000-4000-8000-000000000003'),
    3::bigint, 're-append of one event returns its version');
SELECT is(es.append_json('ctapidem-1',
        '[{"type": "Deposited", "data": {"n": 1}, "id": "c0000000-0000-4000-8000-000000000001"},
          {"type": "Deposited", "data": {"n": 2}, "id": "c0000000-0000-4000-8000-000000000002", "metadata": {}, "schema_version": 1}]', 0),
    2::bigint, 're-append through append_json is the same call');
SELECT results_eq(
    $$SELECT count(*), count(DISTINCT event_id), max(stream_version)
      FROM es.events WHERE stream_id = 'ctapidem-1'$$,
    $$VALUES (3::bigint, 3::bigint, 3::bigint)$$,
    're-appends wrote nothing');
SELECT throws_ok($$SELECT es.append('ctapidem-1', ARRAY[
        es.new_event('Deposited', '{"n": 2}', NULL, 'c0000000-0000-4000-8000-000000000002'),
        es.new_event('Deposited', '{"n": 4}', NULL, 'c0000000-0000-4000-8000-000000000004')])$$,
    'ES002', NULL, 'a partial overlap (one stored, one new): ES002');
SELECT throws_ok($$SELECT es.append('ctapidem-1', ARRAY[
        es.new_event('Deposited', '{"n": 1}', NULL, 'c0000000-0000-4000-8000-000000000001'),
        es.new_event('Deposited', '{"n": 2}', NULL, 'c0000000-0000-4000-8000-000000000002'),
        es.new_event('Deposited', '{"n": 4}', NULL, 'c0000000-0000-4000-8000-000000000004')], 0)$$,
    'ES002', NULL, 'stored events followed by a new one: ES002');
SELECT throws_ok($$SELECT es.append('ctapidem-1', ARRAY[
        es.new_event('Deposited', '{"n": 2}', NULL, 'c0000000-0000-4000-8000-000000000002'),
        es.new_event('Deposited', '{"n": 1}', NULL, 'c0000000-0000-4000-8000-000000000001')])$$,
    'ES002', NULL, 'stored events in another order: ES002');
SELECT throws_ok($$SELECT es.append_event('ctapidem-1', 'Deposited', '{"n": 99}', NULL, NULL,
                                          'c0000000-0000-4000-8000-000000000001')$$,
    'ES002', NULL, 'a stored id with different data: ES002');
SELECT throws_ok($$SELECT es.append_event('ctapidem-1', 'Withdrawn', '{"n": 1}', NULL, NULL,
                                          'c0000000-0000-4000-8000-000000000001')$$,
    'ES002', NULL, 'a stored id with a different type: ES002');
SELECT throws_ok($$SELECT es.append_event('ctapidem-1', 'Deposited', '{"n": 1}', '{"x": 1}', NULL,
                                          'c0000000-0000-4000-8000-000000000001')$$,
    'ES002', NULL, 'a stored id with different metadata: ES002');
SELECT is(es.stream_version('ctapidem-1'), 3::bigint, 'the ES002 calls wrote nothing');
SELECT is(es.append_event('ctapidem-2', 'Deposited', '{"n": 1}', NULL, 0,
                          'c0000000-0000-4000-8000-000000000001'),
    1::bigint, 'event ids are unique per stream: the same id appends to another stream');

-- ===========================================================================
-- append_json
-- ===========================================================================

SELECT is(es.append_json('ctapjson-1',
        '[{"type": "A", "data": {"x": 1}},
          {"type": "B", "data": {"y": 2}, "metadata": {"m": 1},
           "id": "c0000000-0000-4000-8000-0000000000b2", "schema_version": 2}]', 0),
    2::bigint, 'append_json appends an array of events');
SELECT results_eq(
    $$SELECT stream_version, event_type, data, metadata, schema_version
      FROM es.read_stream('ctapjson-1')$$,
    $$VALUES (1::bigint, 'A'::text, '{"x": 1}'::jsonb, '{}'::jsonb, 1),
             (2, 'B', '{"y": 2}', '{"m": 1}', 2)$$,
    'append_json maps type, data, metadata and schema_version (defaults {} and 1)');
SELECT results_eq(
    $$SELECT event_id = 'c0000000-0000-4000-8000-0000000000b2', event_id IS NOT NULL
      FROM es.read_stream('ctapjson-1')$$,
    $$VALUES (false, true), (true, true)$$,
    'append_json keeps a given id and makes one when absent');
SELECT is(es.append_json('ctapjson-1', '[{"type": "C", "data": {}}]', 2), 3::bigint,
    'append_json checks the expected version');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[{"type": "C", "data": {}}]', 2)$$,
    'ES001', NULL, 'append_json with a stale expected version: ES001');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '{"type": "C", "data": {}}')$$,
    '22023', NULL, 'append_json: events not an array: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[]')$$,
    '22023', NULL, 'append_json: empty array: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[1]')$$,
    '22023', NULL, 'append_json: element not an object: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[{"data": {}}]')$$,
    '22004', NULL, 'append_json: missing type: 22004');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[{"type": "", "data": {}}]')$$,
    '22023', NULL, 'append_json: empty type: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[{"type": "C"}]')$$,
    '22004', NULL, 'append_json: missing data: 22004');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[{"type": "C", "data": [1]}]')$$,
    '22023', NULL, 'append_json: data not an object: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[{"type": "C", "data": {}, "metadata": "x"}]')$$,
    '22023', NULL, 'append_json: metadata not an object: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[{"type": "C", "data": {}, "id": 7}]')$$,
    '22023', NULL, 'append_json: id not a string: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1', '[{"type": "C", "data": {}, "typo": 1}]')$$,
    '22023', NULL, 'append_json: unknown key: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1',
        '[{"type": "C", "data": {}, "id": "c0000000-0000-4000-8000-0000000000c1"},
          {"type": "D", "data": {}, "id": "c0000000-0000-4000-8000-0000000000c1"}]')$$,
    '22023', NULL, 'append_json: the same id twice: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapjson-1',
        '[{"type": "C", "data": {}}, {"type": "D", "data": 5}]')$$,
    '22023', NULL, 'append_json: a bad second event fails the whole call');
SELECT is(es.stream_version('ctapjson-1'), 3::bigint, 'the failed append_json calls wrote nothing');

-- ===========================================================================
-- read_stream
-- ===========================================================================

SELECT is(pg_temp.sv('ctapacct-1', 3), '{3,4,5,6,7}'::bigint[], 'read_stream from_version');
SELECT is(pg_temp.sv('ctapacct-1', 1, 2), '{1,2}'::bigint[], 'read_stream max_count');
SELECT is(pg_temp.sv('ctapacct-1', 3, 2), '{3,4}'::bigint[], 'read_stream from_version and max_count');
SELECT is(pg_temp.sv('ctapacct-1', 1, 0), '{}'::bigint[], 'read_stream max_count 0');
SELECT is(pg_temp.sv('ctapacct-1', b => true), '{7,6,5,4,3,2,1}'::bigint[], 'read_stream backwards');
SELECT is(pg_temp.sv('ctapacct-1', 1, 2, true), '{7,6}'::bigint[], 'read_stream backwards, max_count');
SELECT is(pg_temp.sv('ctapacct-1', 5, NULL, true), '{7,6,5}'::bigint[],
    'read_stream backwards keeps versions >= from_version');
SELECT is(pg_temp.sv('ctapacct-1', 8), '{}'::bigint[], 'read_stream past the end is empty');
SELECT is(pg_temp.sv('ctapnone-1'), '{}'::bigint[], 'read_stream of an unknown stream is empty');
SELECT is(pg_temp.sv('ctapacct-1', a => (SELECT min(recorded_at) FROM es.events
                                         WHERE stream_id = 'ctapacct-1') - interval '1 microsecond'),
    '{}'::bigint[], 'read_stream as_of before the first event is empty');
SELECT is(pg_temp.sv('ctapacct-1', a => (SELECT max(recorded_at) FROM es.events
                                         WHERE stream_id = 'ctapacct-1')),
    '{1,2,3,4,5,6,7}'::bigint[], 'read_stream as_of the last event has every event');
SELECT is(pg_temp.sv('ctapacct-1', a => (SELECT recorded_at FROM es.events
                                         WHERE stream_id = 'ctapacct-1' AND stream_version = 4)),
    (SELECT array_agg(stream_version ORDER BY stream_version) FROM es.events
     WHERE stream_id = 'ctapacct-1'
       AND recorded_at <= (SELECT recorded_at FROM es.events
                           WHERE stream_id = 'ctapacct-1' AND stream_version = 4)),
    'read_stream as_of keeps the events recorded at or before it');

-- ===========================================================================
-- stream_version and last_event
-- ===========================================================================

SELECT is(es.stream_version('ctapacct-1'), 7::bigint, 'stream_version is the last version');
SELECT is((es.last_event('ctapacct-1')).stream_version, 7::bigint, 'last_event is the last event');
SELECT is((es.last_event('ctapacct-1', 'Withdrawn')).stream_version, 6::bigint,
    'last_event of a type is the last event of that type');
SELECT ok(es.last_event('ctapacct-1', 'NoSuchType') IS NULL, 'last_event of an absent type is NULL');
SELECT ok(es.last_event('ctapnone-1') IS NULL, 'last_event of an unknown stream is NULL');
SELECT ok(es.last_event('ctapacct-1') = (SELECT r FROM es.read_stream('ctapacct-1', 1, 1, true) r),
    'last_event returns the whole event');

-- ===========================================================================
-- read_all and read_category
-- ===========================================================================

-- Category ctapcat: streams ctapcat-1..8 with two interleaved events each,
-- ctapcat (no "-": the whole id is the category) and ctapcat-9-x; noise in
-- category ctapcatx.
SELECT is((SELECT sum(es.append_event('ctapcat-' || i, 'Tick', jsonb_build_object('i', i)))
           FROM generate_series(1, 8) i), 8::numeric, 'setup: first events of 8 streams');
SELECT is(es.append_event('ctapcatx-1', 'Tick', '{}'), 1::bigint, 'setup: another category');
SELECT is((SELECT sum(es.append_event('ctapcat-' || i, 'Tock', jsonb_build_object('i', i)))
           FROM generate_series(1, 8) i), 16::numeric, 'setup: second events of 8 streams');
SELECT is(es.append('ctapcat', ARRAY[es.new_event('Tick', '{}')]) +
          es.append('ctapcat-9-x', ARRAY[es.new_event('Tick', '{}')]), 2::bigint,
    'setup: streams ctapcat and ctapcat-9-x');

SELECT results_eq(
    format('SELECT global_position FROM es.read_all(%s)', :base),
    format('SELECT global_position FROM es.events WHERE global_position > %s ORDER BY 1', :base),
    'read_all returns every event after from_position, in position order');
SELECT results_eq(
    format('SELECT global_position FROM es.read_all(%s, 3)', :base),
    format('SELECT global_position FROM es.events WHERE global_position > %s ORDER BY 1 LIMIT 3', :base),
    'read_all max_count');
SELECT results_eq(
    $$SELECT global_position FROM es.read_all(
          (SELECT global_position FROM es.events WHERE stream_id = 'ctapacct-1' AND stream_version = 4))$$,
    $$SELECT global_position FROM es.events
      WHERE global_position > (SELECT global_position FROM es.events
                               WHERE stream_id = 'ctapacct-1' AND stream_version = 4)
      ORDER BY 1$$,
    'read_all excludes from_position itself');
SELECT results_eq(
    format($$SELECT global_position FROM es.read_all(%s, 1000, ARRAY['Withdrawn', 'Tock'])$$, :base),
    format($$SELECT global_position FROM es.events WHERE global_position > %s
             AND event_type IN ('Withdrawn', 'Tock') ORDER BY 1$$, :base),
    'read_all event_types filter');
SELECT is((SELECT count(*) FROM es.read_all(:base, 0)), 0::bigint, 'read_all max_count 0');
SELECT results_eq(
    format($$SELECT stream_id, stream_version, data FROM es.read_all(%s) WHERE stream_id LIKE 'ctapjson%%'$$, :base),
    $$SELECT stream_id, stream_version, data FROM es.read_stream('ctapjson-1')$$,
    'read_all returns the same events as read_stream');

SELECT results_eq(
    format($$SELECT global_position FROM es.read_category('ctapcat', %s)$$, :base),
    format($$SELECT global_position FROM es.events WHERE global_position > %s
             AND split_part(stream_id, '-', 1) = 'ctapcat' ORDER BY 1$$, :base),
    'read_category returns the events of the category in position order');
SELECT is((SELECT array_agg(DISTINCT stream_id ORDER BY stream_id)
           FROM es.read_category('ctapcat', :base) WHERE stream_id NOT LIKE 'ctapcat-_'),
    ARRAY['ctapcat', 'ctapcat-9-x'],
    'read_category: the category is the part before the first "-", or the whole id');
SELECT results_eq(
    format($$SELECT global_position FROM es.read_category('ctapcat', %s, 5)$$, :base),
    format($$SELECT global_position FROM es.events WHERE global_position > %s
             AND split_part(stream_id, '-', 1) = 'ctapcat' ORDER BY 1 LIMIT 5$$, :base),
    'read_category max_count');
SELECT results_eq(
    $$SELECT global_position FROM es.read_category('ctapcat',
          (SELECT global_position FROM es.events WHERE stream_id = 'ctapcat-4' AND stream_version = 2))$$,
    $$SELECT global_position FROM es.events
      WHERE global_position > (SELECT global_position FROM es.events
                               WHERE stream_id = 'ctapcat-4' AND stream_version = 2)
        AND split_part(stream_id, '-', 1) = 'ctapcat' ORDER BY 1$$,
    'read_category from_position');
SELECT bag_eq(
    format($$SELECT global_position FROM es.read_category('ctapcat', %1$s, 1000, 0, 3)
             UNION ALL SELECT global_position FROM es.read_category('ctapcat', %1$s, 1000, 1, 3)
             UNION ALL SELECT global_position FROM es.read_category('ctapcat', %1$s, 1000, 2, 3)$$, :base),
    format($$SELECT global_position FROM es.read_category('ctapcat', %s)$$, :base),
    'a consumer group of 3 reads every event of the category exactly once');
SELECT is((SELECT count(*) FROM (
               SELECT stream_id FROM (
                   SELECT m, stream_id FROM generate_series(0, 2) m,
                        LATERAL es.read_category('ctapcat', :base, 1000, m, 3)
                   GROUP BY m, stream_id) x
               GROUP BY stream_id HAVING count(*) > 1) y),
    0::bigint, 'each stream belongs to one member of the group');
SELECT results_eq(
    format($$SELECT global_position FROM es.read_category('ctapcat', %s, 1000, 1, 3)$$, :base),
    format($$SELECT global_position FROM es.read_category('ctapcat', %s, 1000, 1, 3)$$, :base),
    'a member reads the same events each time');
SELECT results_eq(
    format($$SELECT global_position FROM es.read_category('ctapcat', %s, 1000, 0, 1)$$, :base),
    format($$SELECT global_position FROM es.read_category('ctapcat', %s)$$, :base),
    'a group of one reads the whole category');
SELECT ok((SELECT bool_and(p > lp) FROM (
               SELECT global_position AS p, lag(global_position) OVER () AS lp
               FROM es.read_category('ctapcat', :base, 1000, 2, 3)) x
           WHERE lp IS NOT NULL),
    'a member reads in position order');

-- ===========================================================================
-- Bad input: a specific SQLSTATE and nothing written
-- ===========================================================================

SELECT is(es.append_event('ctapbad-1', 'Opened', '{}'), 1::bigint, 'setup: stream ctapbad-1');

SELECT throws_ok($$SELECT es.append_event(NULL, 'T', '{}')$$, '22004', NULL,
    'append_event: NULL stream id: 22004');
SELECT throws_ok($$SELECT es.append_event('', 'T', '{}')$$, '22023', NULL,
    'append_event: empty stream id: 22023');
SELECT throws_ok($$SELECT es.append(NULL, ARRAY[es.new_event('T', '{}')])$$, '22004', NULL,
    'append: NULL stream id: 22004');
SELECT throws_ok($$SELECT es.append('', ARRAY[es.new_event('T', '{}')])$$, '22023', NULL,
    'append: empty stream id: 22023');
SELECT throws_ok($$SELECT es.append_json(NULL, '[{"type": "T", "data": {}}]')$$, '22004', NULL,
    'append_json: NULL stream id: 22004');
SELECT throws_ok($$SELECT es.append_json('', '[{"type": "T", "data": {}}]')$$, '22023', NULL,
    'append_json: empty stream id: 22023');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', NULL, '{}')$$, '22004', NULL,
    'append_event: NULL event type: 22004');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', '', '{}')$$, '22023', NULL,
    'append_event: empty event type: 22023');
SELECT throws_ok($$SELECT es.append('ctapbad-1', ARRAY[es.new_event(NULL, '{}')])$$, '22004', NULL,
    'append: NULL event type: 22004');
SELECT throws_ok($$SELECT es.append('ctapbad-1', ARRAY[es.new_event('', '{}')])$$, '22023', NULL,
    'append: empty event type: 22023');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', 'T', NULL)$$, '22004', NULL,
    'append_event: NULL data: 22004');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', 'T', '[1, 2]')$$, '22023', NULL,
    'append_event: array data: 22023');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', 'T', '"text"')$$, '22023', NULL,
    'append_event: scalar data: 22023');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', 'T', 'null')$$, '22023', NULL,
    'append_event: JSON null data: 22023');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', 'T', '{}', '[]')$$, '22023', NULL,
    'append_event: array metadata: 22023');
SELECT throws_ok($$SELECT es.append('ctapbad-1', ARRAY[es.new_event('T', '{}', '7')])$$, '22023', NULL,
    'append: scalar metadata: 22023');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', 'T', '{}', NULL, -2)$$, '22023', NULL,
    'append_event: expected version -2: 22023');
SELECT throws_ok($$SELECT es.append('ctapbad-1', ARRAY[es.new_event('T', '{}')], -9223372036854775808)$$,
    '22023', NULL, 'append: expected version at the bigint minimum: 22023');
SELECT throws_ok($$SELECT es.append_json('ctapbad-1', '[{"type": "T", "data": {}}]', -5)$$,
    '22023', NULL, 'append_json: expected version -5: 22023');
SELECT throws_ok($$SELECT es.append('ctapbad-1', ARRAY[]::es.new_event[])$$, '22023', NULL,
    'append: empty array: 22023');
SELECT throws_ok($$SELECT es.append('ctapbad-1', NULL)$$, '22004', NULL,
    'append: NULL events: 22004');
SELECT throws_ok($$SELECT es.append('ctapbad-1', ARRAY[es.new_event('T', '{}'), NULL])$$, '22004', NULL,
    'append: a NULL event: 22004');
SELECT throws_ok($$SELECT es.append('ctapbad-1', ARRAY[
        es.new_event('T', '{}', NULL, 'c0000000-0000-4000-8000-0000000000d1'),
        es.new_event('U', '{}', NULL, 'c0000000-0000-4000-8000-0000000000d1')])$$, '22023', NULL,
    'append: the same event id twice in one call: 22023');
SELECT throws_ok($$SELECT es.append('ctapbad-1', ARRAY[es.new_event('T', '{}'),
                                                      es.new_event('U', '[]')])$$, '22023', NULL,
    'append: a bad second event fails the whole batch');
SELECT throws_ok($$SELECT es.append_event('ctapbad-1', 'T', '{}', NULL, NULL, NULL, 0)$$, '22023', NULL,
    'append_event: schema version 0: 22023');
SELECT throws_ok($$SELECT es.append_event('ctapbad-2', 'T', '[]', NULL, 0)$$, '22023', NULL,
    'append_event: bad data on a new stream: 22023');
SELECT is((SELECT count(*) FROM es.events WHERE stream_id IN ('ctapbad-1', 'ctapbad-2', '')),
    1::bigint, 'no bad input wrote an event');

SELECT throws_ok($$SELECT * FROM es.read_stream(NULL)$$, '22004', NULL,
    'read_stream: NULL stream id: 22004');
SELECT throws_ok($$SELECT * FROM es.read_stream('ctapacct-1', 1, -1)$$, '22023', NULL,
    'read_stream: max_count -1: 22023');
SELECT throws_ok($$SELECT * FROM es.read_all(0, -1)$$, '22023', NULL,
    'read_all: max_count -1: 22023');
SELECT throws_ok($$SELECT * FROM es.read_all(-1)$$, '22023', NULL,
    'read_all: from_position -1: 22023');
SELECT throws_ok($$SELECT * FROM es.read_category('ctapcat', 0, -1)$$, '22023', NULL,
    'read_category: max_count -1: 22023');
SELECT throws_ok($$SELECT * FROM es.read_category(NULL)$$, '22004', NULL,
    'read_category: NULL category: 22004');
SELECT throws_ok($$SELECT * FROM es.read_category('ctapcat-1')$$, '22023', NULL,
    'read_category: a category with "-": 22023');
SELECT throws_ok($$SELECT * FROM es.read_category('ctapcat', 0, 10, 3, 3)$$, '22023', NULL,
    'read_category: member = size: 22023');
SELECT throws_ok($$SELECT * FROM es.read_category('ctapcat', 0, 10, -1, 3)$$, '22023', NULL,
    'read_category: negative member: 22023');
SELECT throws_ok($$SELECT * FROM es.read_category('ctapcat', 0, 10, 0, 0)$$, '22023', NULL,
    'read_category: group size 0: 22023');
SELECT throws_ok($$SELECT * FROM es.read_category('ctapcat', 0, 10, NULL, 2)$$, '22023', NULL,
    'read_category: size without member: 22023');
SELECT throws_ok($$SELECT * FROM es.read_category('ctapcat', 0, 10, 1, NULL)$$, '22023', NULL,
    'read_category: member without size: 22023');
SELECT throws_ok($$SELECT es.stream_version(NULL)$$, '22004', NULL,
    'stream_version: NULL stream id: 22004');

-- ===========================================================================
-- Append-only: nobody may UPDATE, DELETE or TRUNCATE es.events
-- ===========================================================================

SELECT throws_ok($$UPDATE es.events SET data = '{}' WHERE stream_id = 'ctapacct-1'$$, '42501', NULL,
    'UPDATE es.events as superuser: 42501');
SELECT throws_ok($$DELETE FROM es.events WHERE stream_id = 'ctapacct-1'$$, '42501', NULL,
    'DELETE FROM es.events as superuser: 42501');
SELECT throws_ok($$TRUNCATE es.events$$, '42501', NULL,
    'TRUNCATE es.events as superuser: 42501');
SET LOCAL session_replication_role = replica;
SELECT throws_ok($$DELETE FROM es.events WHERE stream_id = 'ctapacct-1'$$, '42501', NULL,
    'DELETE FROM es.events under session_replication_role = replica: 42501');
SET LOCAL session_replication_role = origin;
SELECT is(pg_temp.sv('ctapacct-1'), '{1,2,3,4,5,6,7}'::bigint[], 'the events are intact');

-- ===========================================================================
-- Roles: appending needs EXECUTE on an append function, reading needs
-- SELECT and EXECUTE on the read functions; neither can write the table.
-- ===========================================================================

CREATE ROLE ctap_nobody;
CREATE ROLE ctap_reader;
CREATE ROLE ctap_appender;
GRANT USAGE ON SCHEMA es TO ctap_nobody, ctap_reader, ctap_appender;
GRANT SELECT ON es.events TO ctap_reader;
GRANT EXECUTE ON FUNCTION es.read_stream(text, bigint, bigint, boolean, timestamptz),
                          es.read_all(bigint, bigint, text[]),
                          es.read_category(text, bigint, bigint, int, int),
                          es.stream_version(text), es.last_event(text, text)
    TO ctap_reader;
GRANT EXECUTE ON FUNCTION es.append_event(text, text, jsonb, jsonb, bigint, uuid, int),
                          es.new_event(text, jsonb, jsonb, uuid, int),
                          es.append(text, es.new_event[], bigint)
    TO ctap_appender;

SELECT is(pg_temp.as_role('ctap_nobody', $$SELECT es.append_event('ctaprole-1', 'T', '{}')$$),
    '42501', 'a role without grants cannot append');
SELECT is(pg_temp.as_role('ctap_reader', $$SELECT * FROM es.read_stream('ctapacct-1')$$),
    'ok', 'a reader can read_stream');
SELECT is(pg_temp.as_role('ctap_reader', format('SELECT * FROM es.read_all(%s)', :base)),
    'ok', 'a reader can read_all');
SELECT is(pg_temp.as_role('ctap_reader', $$SELECT es.append_event('ctaprole-1', 'T', '{}')$$),
    '42501', 'a reader cannot append');

-- es.read_stream and es.stream_version read the table directly only with
-- SELECT on it: without, the query's own checks apply (column privileges
-- suffice, no privilege fails)
CREATE ROLE ctap_colreader;
GRANT USAGE ON SCHEMA es TO ctap_colreader;
GRANT EXECUTE ON FUNCTION es.read_stream(text, bigint, bigint, boolean, timestamptz),
                          es.stream_version(text) TO ctap_colreader;
SELECT is(pg_temp.as_role('ctap_colreader', $$SELECT * FROM es.read_stream('ctapacct-1')$$),
    '42501', 'read_stream without SELECT on es.events fails');
SELECT is(pg_temp.as_role('ctap_colreader', $$SELECT es.stream_version('ctapacct-1')$$),
    '42501', 'stream_version without SELECT on es.events fails');
GRANT SELECT (global_position, stream_id, stream_version, event_id, event_type,
              schema_version, data, metadata, recorded_at) ON es.events TO ctap_colreader;
SELECT is(pg_temp.as_role('ctap_colreader', $$SELECT * FROM es.read_stream('ctapacct-1')$$),
    'ok', 'read_stream with column privileges reads');
SELECT is((SELECT array_agg(stream_version ORDER BY stream_version) FROM es.read_stream('ctapacct-1')),
    pg_temp.sv('ctapacct-1'), 'read_stream returns every version, in order');
SELECT is((SELECT array_agg(stream_version) FROM es.read_stream('ctapacct-1', 2, 3, true)),
    '{7,6,5}'::bigint[], 'read_stream backwards from a version with a limit');
REVOKE ALL ON es.events FROM ctap_colreader;
REVOKE ALL ON SCHEMA es FROM ctap_colreader;
REVOKE ALL ON FUNCTION es.read_stream(text, bigint, bigint, boolean, timestamptz),
                       es.stream_version(text) FROM ctap_colreader;
DROP ROLE ctap_colreader;
SELECT is(pg_temp.as_role('ctap_reader',
        $$INSERT INTO es.events (global_position, stream_id, stream_version, event_id, event_type,
                                 schema_version, data, metadata, recorded_at)
          VALUES (-1, 'ctaprole-1', 1, gen_random_uuid(), 'T', 1, '{}', '{}', now())$$),
    '42501', 'a reader cannot insert into es.events');
SELECT is(pg_temp.as_role('ctap_appender', $$SELECT es.append_event('ctaprole-1', 'T', '{}', NULL, 0)$$),
    'ok', 'an appender appends with EXECUTE on the function alone');
SELECT is(pg_temp.as_role('ctap_appender',
        $$SELECT es.append('ctaprole-1', ARRAY[es.new_event('T', '{}')], 1)$$),
    'ok', 'an appender appends a batch');
SELECT is(pg_temp.as_role('ctap_appender',
        $$INSERT INTO es.events (global_position, stream_id, stream_version, event_id, event_type,
                                 schema_version, data, metadata, recorded_at)
          VALUES (-1, 'ctaprole-1', 9, gen_random_uuid(), 'T', 1, '{}', '{}', now())$$),
    '42501', 'an appender cannot insert into es.events directly');
SELECT is(pg_temp.as_role('ctap_appender', $$DELETE FROM es.events WHERE stream_id = 'ctaprole-1'$$),
    '42501', 'an appender cannot delete from es.events');
SELECT is(es.stream_version('ctaprole-1'), 2::bigint, 'exactly the appender''s two events are stored');

SELECT * FROM finish();
ROLLBACK;
