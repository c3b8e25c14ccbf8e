-- try_append.sql: es.try_append, es.try_append_json, es.try_append_event
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;

-- number of stored events in this test's streams (prefix "ta")
CREATE FUNCTION ta_count() RETURNS bigint LANGUAGE sql
AS $$ SELECT count(*) FROM es.events WHERE stream_id LIKE 'ta%' $$;

-- expected version 0: a new stream gets version 1, an existing one NULL
SELECT es.try_append('ta-1', ARRAY[es.new_event('Opened', '{"owner": "ann"}')], 0);
SELECT es.try_append('ta-1', ARRAY[es.new_event('Opened', '{"owner": "bob"}')], 0) IS NULL AS stale;
-- N: exactly version N
SELECT es.try_append('ta-1', ARRAY[es.new_event('Deposited', '{"amount": 10}'),
                                   es.new_event('Deposited', '{"amount": 20}')], 1);
SELECT es.try_append('ta-1', ARRAY[es.new_event('Deposited', '{"amount": 10}')], 1) IS NULL AS stale;
SELECT es.try_append('ta-1', ARRAY[es.new_event('Deposited', '{"amount": 10}')], 7) IS NULL AS stale;
-- -1: the stream must exist
SELECT es.try_append('ta-1', ARRAY[es.new_event('Deposited', '{"amount": 5}')], -1);
SELECT es.try_append('ta-none', ARRAY[es.new_event('Deposited', '{"amount": 5}')], -1) IS NULL AS stale;
-- the stale calls wrote nothing
SELECT stream_version, event_type, data FROM es.read_stream('ta-1');
SELECT ta_count();

-- append_json and append_event have their try forms
SELECT es.try_append_json('ta-1', '[{"type": "Withdrawn", "data": {"amount": 3}}]', 4);
SELECT es.try_append_json('ta-1', '[{"type": "Withdrawn", "data": {"amount": 3}}]', 4) IS NULL AS stale;
SELECT es.try_append_event('ta-1', 'Withdrawn', '{"amount": 1}', expected_version => 5);
SELECT es.try_append_event('ta-1', 'Withdrawn', '{"amount": 1}', expected_version => 5) IS NULL AS stale;
SELECT es.try_append_event('ta-2', 'Opened', '{}', '{"by": "test"}', 0, NULL, 2);
SELECT schema_version, metadata FROM es.read_stream('ta-2');
SELECT ta_count();

-- A stale call raises nothing and aborts nothing: the transaction goes on,
-- and, holding the stream lock the call took, its retry with the version
-- read again cannot lose.
BEGIN;
SELECT es.try_append('ta-1', ARRAY[es.new_event('Deposited', '{"amount": 1}')], 2) IS NULL AS stale;
SELECT es.stream_version('ta-1');
SELECT es.try_append('ta-1', ARRAY[es.new_event('Deposited', '{"amount": 1}')],
                     es.stream_version('ta-1'));
COMMIT;
SELECT es.stream_version('ta-1');

-- The retry loop, PL/pgSQL style: reload, decide, try, until it is not NULL.
CREATE FUNCTION ta_withdraw(account text, amount numeric) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
    balance numeric;
    result bigint;
BEGIN
    LOOP
        SELECT coalesce(max(stream_version), 0),
               coalesce(sum(CASE event_type
                            WHEN 'Deposited' THEN (data->>'amount')::numeric
                            WHEN 'Withdrawn' THEN -(data->>'amount')::numeric
                            ELSE 0 END), 0)
          INTO v, balance
          FROM es.read_stream(account);
        IF balance < amount THEN
            RAISE EXCEPTION 'insufficient funds: % < %', balance, amount;
        END IF;
        result := es.try_append(account,
                                ARRAY[es.new_event('Withdrawn', jsonb_build_object('amount', amount))],
                                v);
        EXIT WHEN result IS NOT NULL;
    END LOOP;
    RETURN result;
END $$;
SELECT ta_withdraw('ta-1', 2);
SELECT ta_withdraw('ta-1', 1000);

-- The same, in plain SQL: one attempt per statement, NULL asks for another.
SELECT es.try_append('ta-1', ARRAY[es.new_event('Withdrawn', '{"amount": 1}')],
                     (SELECT es.stream_version('ta-1'))) AS version;

-- Idempotency as es.append: a repeat (same ids, same content) returns the
-- version of its events even with a stale expected version; a mismatch is
-- still ES002.
SELECT es.try_append('ta-3', ARRAY[
    es.new_event('Opened', '{}', event_id => '00000000-0000-0000-0000-0000000000a1'),
    es.new_event('Deposited', '{"amount": 1}', event_id => '00000000-0000-0000-0000-0000000000a2')], 0);
SELECT es.try_append('ta-3', ARRAY[
    es.new_event('Opened', '{}', event_id => '00000000-0000-0000-0000-0000000000a1'),
    es.new_event('Deposited', '{"amount": 1}', event_id => '00000000-0000-0000-0000-0000000000a2')], 0);
SELECT es.append('ta-3', ARRAY[
    es.new_event('Opened', '{}', event_id => '00000000-0000-0000-0000-0000000000a1'),
    es.new_event('Deposited', '{"amount": 1}', event_id => '00000000-0000-0000-0000-0000000000a2')], 0);
SELECT es.try_append_json('ta-3',
    '[{"type": "Deposited", "data": {"amount": 1}, "id": "00000000-0000-0000-0000-0000000000a2"}]', 7);
SELECT es.try_append('ta-3', ARRAY[
    es.new_event('Deposited', '{"amount": 2}', event_id => '00000000-0000-0000-0000-0000000000a2')], 2);
SELECT es.try_append('ta-3', ARRAY[
    es.new_event('Deposited', '{"amount": 1}', event_id => '00000000-0000-0000-0000-0000000000a2'),
    es.new_event('Deposited', '{"amount": 1}')], 2);
SELECT es.stream_version('ta-3');

-- Other errors still raise, as in es.append
SELECT es.try_append(NULL, ARRAY[es.new_event('X', '{}')], 0);
SELECT es.try_append('', ARRAY[es.new_event('X', '{}')], 0);
SELECT es.try_append('ta-4', NULL, 0);
SELECT es.try_append('ta-4', ARRAY[]::es.new_event[], 0);
SELECT es.try_append('ta-4', ARRAY[es.new_event('X', '[]')], 0);
SELECT es.try_append('ta-4', ARRAY[es.new_event('X', '{}')], -2);
SELECT es.try_append_json('ta-4', '[{"type": "X", "data": {}, "bogus": 1}]', 0);
SELECT es.try_append_json('ta-4', '{"type": "X"}', 0);
SELECT es.try_append_event('ta-4', '', '{}', expected_version => 0);
-- and the expected version is required: NULL would append at any version
SELECT es.try_append('ta-4', ARRAY[es.new_event('X', '{}')], NULL);
SELECT es.try_append_json('ta-4', '[{"type": "X", "data": {}}]', NULL);
SELECT es.try_append_event('ta-4', 'X', '{}');
SELECT es.stream_version('ta-4');
-- a tombstoned stream is ES003 whatever the expected version
SELECT es.tombstone_stream('ta-2');
SELECT es.try_append('ta-2', ARRAY[es.new_event('X', '{}')], 0);
SELECT es.try_append('ta-2', ARRAY[es.new_event('X', '{}')], 1);
-- a soft deleted stream can be recreated with 0, as with es.append
SELECT es.delete_stream('ta-1');
SELECT es.try_append('ta-1', ARRAY[es.new_event('Reopened', '{}')], -1) IS NULL AS stale;
SELECT es.try_append('ta-1', ARRAY[es.new_event('Reopened', '{}')], 0);
SELECT stream_version, event_type FROM es.read_stream('ta-1');
-- read-only transactions refuse it before any check
BEGIN READ ONLY;
SELECT es.try_append('ta-1', ARRAY[es.new_event('X', '{}')], 99);
ROLLBACK;

-- Privileges: nobody may call them by default; the writer recipe grants them.
SELECT p.oid::regprocedure AS function, p.prosecdef,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p
 WHERE p.pronamespace = 'es'::regnamespace AND p.proname LIKE 'try\_append%'
 ORDER BY 1::text;
SELECT pg_get_function_arguments(p.oid) FROM pg_proc p
 WHERE p.pronamespace = 'es'::regnamespace AND p.proname LIKE 'try\_append%'
 ORDER BY p.oid::regprocedure::text;
CREATE ROLE ta_writer;
CREATE ROLE ta_other;
GRANT USAGE ON SCHEMA es TO ta_writer, ta_other;
GRANT EXECUTE ON FUNCTION es.new_event(text, jsonb, jsonb, uuid, int),
                          es.try_append(text, es.new_event[], bigint) TO ta_writer, ta_other;
REVOKE EXECUTE ON FUNCTION es.try_append(text, es.new_event[], bigint) FROM ta_other;
SET ROLE ta_writer;
SELECT es.try_append('ta-6', ARRAY[es.new_event('Opened', '{}')], 0);
SELECT es.try_append('ta-6', ARRAY[es.new_event('Opened', '{}')], 0) IS NULL AS stale;
RESET ROLE;
SET ROLE ta_other;
SELECT es.try_append('ta-6', ARRAY[es.new_event('Opened', '{}')], 1);
RESET ROLE;
REVOKE ALL ON SCHEMA es FROM ta_writer, ta_other;
REVOKE ALL ON FUNCTION es.new_event(text, jsonb, jsonb, uuid, int),
                       es.try_append(text, es.new_event[], bigint) FROM ta_writer, ta_other;
DROP ROLE ta_writer;
DROP ROLE ta_other;

SELECT ta_count();
DROP FUNCTION ta_withdraw(text, numeric);
DROP FUNCTION ta_count();
