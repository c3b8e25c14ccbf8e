-- append.sql: es.append, es.append_json, es.append_event
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;

-- number of stored events in this test's streams (prefix "ap")
CREATE FUNCTION ap_count() RETURNS bigint LANGUAGE sql
AS $$ SELECT count(*) FROM es.events WHERE stream_id LIKE 'ap%' $$;

-- expected version 0: the stream must not exist
SELECT es.append_event('ap-1', 'Opened', '{"owner": "ann"}', expected_version => 0);
SELECT es.append_event('ap-1', 'Opened', '{"owner": "ann"}', expected_version => 0);
-- N: exactly version N
SELECT es.append_event('ap-1', 'Deposited', '{"amount": 10}', expected_version => 1);
SELECT es.append_event('ap-1', 'Deposited', '{"amount": 10}', expected_version => 1);
SELECT es.append_event('ap-1', 'Deposited', '{"amount": 10}', expected_version => 7);
-- -1: the stream must exist
SELECT es.append_event('ap-1', 'Deposited', '{"amount": 5}', expected_version => -1);
SELECT es.append_event('ap-none', 'Deposited', '{"amount": 5}', expected_version => -1);
-- NULL: any version, including a new stream
SELECT es.append_event('ap-1', 'Withdrawn', '{"amount": 3}');
SELECT es.append_event('ap-2', 'Opened', '{}');
SELECT ap_count();

-- the error carries expected and actual versions
DO $$
DECLARE
    state text;
    msg text;
    detail text;
BEGIN
    PERFORM es.append_event('ap-1', 'X', '{}', expected_version => 2);
EXCEPTION WHEN SQLSTATE 'ES001' THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'caught % "%" (%)', state, msg, detail;
END $$;

-- batches: atomic, contiguous, one position per event, increasing
SELECT es.append('ap-3', ARRAY[
    es.new_event('Opened', '{"owner": "bob"}'),
    es.new_event('Deposited', '{"amount": 100}', '{"by": "teller"}'),
    es.new_event('Deposited', '{"amount": 50}', NULL, NULL, 2)], 0);
SELECT stream_version, event_type, schema_version, data, metadata,
       global_position - min(global_position) OVER () AS rel_position
  FROM es.read_stream('ap-3');
SELECT es.append('ap-3', ARRAY[es.new_event('Deposited', '{"amount": 1}')], 3);
SELECT es.append('ap-3', ARRAY[es.new_event('Deposited', '{"amount": 1}'),
                               es.new_event('Deposited', '{"amount": 2}')], 3);
SELECT es.stream_version('ap-3');

-- append_json: type, data, metadata, id, schema_version
SELECT es.append_json('ap-4', '[
  {"type": "Opened", "data": {"owner": "cy"}},
  {"type": "Deposited", "data": {"amount": 7}, "metadata": {"ip": "10.0.0.1"},
   "id": "00000000-0000-4000-8000-000000000001", "schema_version": 3}
]', 0);
SELECT stream_version, event_type,
       CASE WHEN stream_version = 1 THEN 'generated' ELSE event_id::text END AS event_id,
       schema_version, data, metadata
  FROM es.read_stream('ap-4');

-- several appends in one transaction commit or roll back together
BEGIN;
SELECT es.append_event('ap-5', 'A', '{}');
SELECT es.append_event('ap-6', 'B', '{}');
ROLLBACK;
SELECT es.stream_version('ap-5'), es.stream_version('ap-6');
BEGIN;
SELECT es.append_event('ap-5', 'A', '{}');
SELECT es.append_event('ap-6', 'B', '{}');
SELECT es.append_event('ap-5', 'A2', '{}', expected_version => 1);
COMMIT;
SELECT es.stream_version('ap-5'), es.stream_version('ap-6');
-- a failing append inside a transaction aborts the whole transaction
BEGIN;
SELECT es.append_event('ap-7', 'A', '{}');
SELECT es.append_event('ap-5', 'A', '{}', expected_version => 0);
COMMIT;
SELECT es.stream_version('ap-7');

-- idempotency by event id: a repeated call writes nothing, returns the version
SELECT es.append('ap-8', ARRAY[
    es.new_event('A', '{"n": 1}', NULL, '00000000-0000-4000-8000-0000000000a1'),
    es.new_event('B', '{"n": 2}', NULL, '00000000-0000-4000-8000-0000000000a2')], 0);
SELECT es.append_event('ap-8', 'C', '{"n": 3}', event_id => '00000000-0000-4000-8000-0000000000a3');
SELECT ap_count() AS before_repeat \gset
-- same events, same order: succeeds with their version, whatever the expected version
SELECT es.append('ap-8', ARRAY[
    es.new_event('A', '{"n": 1}', NULL, '00000000-0000-4000-8000-0000000000a1'),
    es.new_event('B', '{"n": 2}', NULL, '00000000-0000-4000-8000-0000000000a2')], 0);
SELECT es.append('ap-8', ARRAY[
    es.new_event('A', '{"n": 1}', NULL, '00000000-0000-4000-8000-0000000000a1'),
    es.new_event('B', '{"n": 2}', NULL, '00000000-0000-4000-8000-0000000000a2')]);
SELECT es.append_event('ap-8', 'C', '{"n": 3}', event_id => '00000000-0000-4000-8000-0000000000a3');
SELECT es.append_json('ap-8', '[{"type": "C", "data": {"n": 3}, "id": "00000000-0000-4000-8000-0000000000a3"}]', 3);
SELECT ap_count() = :before_repeat AS nothing_written;
-- partial overlap: ES002
SELECT es.append('ap-8', ARRAY[
    es.new_event('C', '{"n": 3}', NULL, '00000000-0000-4000-8000-0000000000a3'),
    es.new_event('D', '{"n": 4}', NULL, '00000000-0000-4000-8000-0000000000a4')]);
SELECT es.append('ap-8', ARRAY[
    es.new_event('B', '{"n": 2}', NULL, '00000000-0000-4000-8000-0000000000a2'),
    es.new_event('D', '{"n": 4}', NULL, '00000000-0000-4000-8000-0000000000a4')], 3);
-- same ids, other order: ES002
SELECT es.append('ap-8', ARRAY[
    es.new_event('B', '{"n": 2}', NULL, '00000000-0000-4000-8000-0000000000a2'),
    es.new_event('A', '{"n": 1}', NULL, '00000000-0000-4000-8000-0000000000a1')]);
-- same id, different content: ES002
SELECT es.append_event('ap-8', 'C', '{"n": 33}', event_id => '00000000-0000-4000-8000-0000000000a3');
SELECT es.append_event('ap-8', 'C', '{"n": 3}', '{"m": 1}', event_id => '00000000-0000-4000-8000-0000000000a3');
SELECT es.append_event('ap-8', 'C', '{"n": 3}', event_id => '00000000-0000-4000-8000-0000000000a3', schema_version => 2);
-- an id from another stream is not a repeat: ids are unique per stream
SELECT es.append_event('ap-9', 'C', '{"n": 3}', event_id => '00000000-0000-4000-8000-0000000000a3');
SELECT ap_count() = :before_repeat + 1 AS only_ap9_written;

-- es.notify is a boolean GUC, off by default (test/t/005_notify.pl checks the NOTIFY)
SHOW es.notify;
SET es.notify = on;
SHOW es.notify;
RESET es.notify;

-- bad input: a clear error with its SQLSTATE, and nothing written
SELECT ap_count() AS before_bad \gset
\set VERBOSITY sqlstate
SELECT es.append_event(NULL, 'A', '{}');
SELECT es.append_event('', 'A', '{}');
SELECT es.append_event('ap-bad', NULL, '{}');
SELECT es.append_event('ap-bad', '', '{}');
SELECT es.append_event('ap-bad', 'A', NULL);
SELECT es.append_event('ap-bad', 'A', '[1, 2]');
SELECT es.append_event('ap-bad', 'A', '"text"');
SELECT es.append_event('ap-bad', 'A', '{}', '[]');
SELECT es.append_event('ap-bad', 'A', '{}', expected_version => -2);
SELECT es.append_event('ap-bad', 'A', '{}', schema_version => 0);
SELECT es.append('ap-bad', ARRAY[]::es.new_event[]);
SELECT es.append('ap-bad', NULL);
SELECT es.append('ap-bad', ARRAY[NULL]::es.new_event[]);
SELECT es.append('ap-bad', ARRAY[es.new_event('A', '{}'), es.new_event(NULL, '{}')]);
SELECT es.append('ap-bad', ARRAY[es.new_event('A', '{}'), es.new_event('B', '5')]);
SELECT es.append('ap-bad', ARRAY[
    es.new_event('A', '{}', NULL, '00000000-0000-4000-8000-0000000000b1'),
    es.new_event('B', '{}', NULL, '00000000-0000-4000-8000-0000000000b1')]);
SELECT es.append_json('ap-bad', NULL);
SELECT es.append_json('ap-bad', '[]');
SELECT es.append_json('ap-bad', '{"type": "A", "data": {}}');
SELECT es.append_json('ap-bad', '[1]');
SELECT es.append_json('ap-bad', '[{"data": {}}]');
SELECT es.append_json('ap-bad', '[{"type": 5, "data": {}}]');
SELECT es.append_json('ap-bad', '[{"type": "A"}]');
SELECT es.append_json('ap-bad', '[{"type": "A", "data": []}]');
SELECT es.append_json('ap-bad', '[{"type": "A", "data": {}, "metadata": 1}]');
SELECT es.append_json('ap-bad', '[{"type": "A", "data": {}, "id": "not-a-uuid"}]');
SELECT es.append_json('ap-bad', '[{"type": "A", "data": {}, "schema_version": "2"}]');
SELECT es.append_json('ap-bad', '[{"type": "A", "data": {}, "typo": 1}]');
-- schema versions out of int range either way: 22023, as documented
SELECT es.append_json('ap-bad', '[{"type": "A", "data": {}, "schema_version": -1e20}]');
SELECT es.append_json('ap-bad', '[{"type": "A", "data": {}, "schema_version": 1e20}]');
\set VERBOSITY default
-- the messages themselves
SELECT es.append_event('ap-bad', 'A', '[1, 2]');
SELECT es.append('ap-bad', ARRAY[
    es.new_event('A', '{}', NULL, '00000000-0000-4000-8000-0000000000b1'),
    es.new_event('B', '{}', NULL, '00000000-0000-4000-8000-0000000000b1')]);
SELECT es.append_json('ap-bad', '[{"type": "A", "data": {}, "typo": 1}]');
SELECT es.append_event('ap-bad', 'A', '{}', expected_version => -2);
SELECT ap_count() = :before_bad AS nothing_written, es.stream_version('ap-bad');

-- a read-only transaction cannot append
BEGIN READ ONLY;
SELECT es.append_event('ap-ro', 'A', '{}');
ROLLBACK;

-- two-phase commit would hide open positions from gap-safe readers
BEGIN;
SELECT es.append_event('ap-2pc', 'A', '{}');
PREPARE TRANSACTION 'es_2pc';
SELECT es.stream_version('ap-2pc');

-- event ids es generates are UUIDv7 (RFC 9562): version 7, variant 10, the
-- first 48 bits the append's Unix time in ms, and increasing within a backend
-- (within a call and across calls); given ids are kept as given
SELECT es.append('ap-v7', ARRAY(SELECT es.new_event('A', '{}') FROM generate_series(1, 200)));
SELECT es.append_event('ap-v7', 'A', '{}');
SELECT es.append('ap-v7', ARRAY[es.new_event('A', '{}', NULL, '00000000-0000-4000-8000-0000000000c1'),
                                es.new_event('A', '{}')]);
SELECT count(*) AS generated,
       bool_and(substr(event_id::text, 15, 1) = '7') AS version_7,
       bool_and(substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS variant_10,
       bool_and(abs(('x' || substr(replace(event_id::text, '-', ''), 1, 12))::bit(48)::bigint
                    - (extract(epoch FROM recorded_at) * 1000)::bigint) < 60000) AS unix_ms,
       bool_and(event_id > prev) AS increasing
  FROM (SELECT event_id, recorded_at, lag(event_id) OVER (ORDER BY stream_version) AS prev
          FROM es.events WHERE stream_id = 'ap-v7'
           AND event_id <> '00000000-0000-4000-8000-0000000000c1') e;
SELECT event_id FROM es.events WHERE stream_id = 'ap-v7' AND stream_version = 202;
