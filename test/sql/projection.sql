-- projection.sql: inline projections (es.create_projection, drop, pause,
-- resume, rebuild, wait_for_projection, es.projection_status) and the
-- 0.1.0 -> 0.2.0 upgrade
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
DROP ROLE IF EXISTS es_pj_owner;
DROP ROLE IF EXISTS es_pj_appender;
RESET client_min_messages;

-- runs a statement and prints its outcome: ok, or the SQLSTATE and message
CREATE FUNCTION pj_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN state || ': ' || msg;
END $$;

-- ---------------------------------------------------------------------------
-- Read model: account balances (streams "pj-*"), and a log of every event
-- of streams "pj*" as the handlers saw it
-- ---------------------------------------------------------------------------
CREATE SCHEMA pj;
CREATE TABLE pj.balances (
    account  text PRIMARY KEY,
    balance  numeric NOT NULL,
    events   int NOT NULL
);
CREATE TABLE pj.log (
    pos            bigint NOT NULL,
    stream_id      text NOT NULL,
    stream_version bigint NOT NULL,
    event_type     text NOT NULL,
    schema_version int NOT NULL,
    data           jsonb NOT NULL,
    by_user        text NOT NULL
);

-- uses unqualified names: needs its SET search_path (handlers run with
-- search_path = pg_catalog, pg_temp)
CREATE FUNCTION pj.balance_handler(e es.event) RETURNS void
LANGUAGE plpgsql SET search_path = pj AS $$
DECLARE
    delta numeric := CASE e.event_type
                       WHEN 'PjDeposited' THEN (e.data ->> 'amount')::numeric
                       WHEN 'PjWithdrawn' THEN -(e.data ->> 'amount')::numeric
                       ELSE 0 END;
BEGIN
    IF e.data ? 'fail' THEN
        RAISE EXCEPTION 'balance handler refuses event %', e.stream_version
            USING ERRCODE = 'P0001';
    END IF;
    INSERT INTO balances AS b VALUES (e.stream_id, delta, 1)
        ON CONFLICT (account) DO UPDATE
        SET balance = b.balance + delta, events = b.events + 1;
END $$;

-- schema-qualified, no search_path of its own
CREATE FUNCTION pj.log_handler(e es.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.stream_id LIKE 'pj%' THEN
        INSERT INTO pj.log VALUES (e.global_position, e.stream_id, e.stream_version,
                                   e.event_type, e.schema_version, e.data, current_user);
    END IF;
END $$;

-- the balances as computed from the stored events (PjCredited v1 is a
-- PjDeposited, see the upcaster below)
CREATE VIEW pj_expected AS
SELECT stream_id AS account,
       coalesce(sum(CASE WHEN event_type IN ('PjDeposited', 'PjCredited')
                         THEN (data ->> 'amount')::numeric
                         WHEN event_type = 'PjWithdrawn'
                         THEN -(data ->> 'amount')::numeric
                         ELSE 0 END), 0) AS balance,
       count(*)::int AS events
  FROM es.events
 WHERE stream_id LIKE 'pj-%'
   AND event_type IN ('PjOpened', 'PjDeposited', 'PjWithdrawn', 'PjCredited')
 GROUP BY stream_id;
-- true when pj.balances equals the computation
CREATE FUNCTION pj_balances_ok() RETURNS boolean LANGUAGE sql AS $$
SELECT NOT EXISTS (SELECT * FROM pj.balances EXCEPT SELECT * FROM pj_expected)
   AND NOT EXISTS (SELECT * FROM pj_expected EXCEPT SELECT * FROM pj.balances)
$$;
-- true when pj.log has exactly the stored events of streams pj*
CREATE FUNCTION pj_log_ok() RETURNS boolean LANGUAGE sql AS $$
SELECT (SELECT array_agg(pos ORDER BY pos) FROM pj.log)
       IS NOT DISTINCT FROM
       (SELECT array_agg(global_position ORDER BY global_position)
          FROM es.events WHERE stream_id LIKE 'pj%')
$$;

-- history written before the projection exists
SELECT es.append('pj-1', ARRAY[
    es.new_event('PjOpened', '{"owner": "ann"}'),
    es.new_event('PjDeposited', '{"amount": 100}'),
    es.new_event('PjWithdrawn', '{"amount": 30}')], 0);
SELECT es.append_event('pj-2', 'PjOpened', '{"owner": "bob"}');
SELECT es.append_event('pj-2', 'PjIgnored', '{"note": "not a balance event"}');

-- ---------------------------------------------------------------------------
-- Argument errors
-- ---------------------------------------------------------------------------
CREATE FUNCTION pj.returns_int(e es.event) RETURNS int LANGUAGE sql RETURN 1;
CREATE FUNCTION pj.takes_int(x int) RETURNS void LANGUAGE sql RETURN NULL;
CREATE FUNCTION pj.two_args(e es.event, x int) RETURNS void LANGUAGE sql RETURN NULL;
CREATE PROCEDURE pj.a_procedure(e es.event) LANGUAGE sql AS $$ SELECT 1 $$;

SELECT s AS statement, pj_try(s) AS outcome FROM (VALUES
  ($$SELECT es.create_projection(NULL, 'pj.balance_handler(es.event)', mode => 'inline')$$),
  ($$SELECT es.create_projection('', 'pj.balance_handler(es.event)', mode => 'inline')$$),
  ($$SELECT es.create_projection('pj_x', NULL, mode => 'inline')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.returns_int(es.event)', mode => 'inline')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.takes_int(int)', mode => 'inline')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.two_args(es.event, int)', mode => 'inline')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.a_procedure(es.event)', mode => 'inline')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', mode => 'sync')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', mode => NULL)$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', mode => 'inline', on_error => 'park')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', mode => 'inline', on_error => 'retry')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', mode => 'inline', on_error => NULL)$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', '{}', 'inline')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', ARRAY[NULL], 'inline')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', ARRAY['PjOpened', ''], 'inline')$$),
  ($$SELECT es.create_projection('pj_x', 'pj.balance_handler(es.event)', mode => 'inline', tables => ARRAY[NULL]::regclass[])$$)
) v(s);
-- nothing was registered
SELECT count(*) FROM es.projections;

-- ---------------------------------------------------------------------------
-- Creation over existing history
-- ---------------------------------------------------------------------------
CREATE ROLE es_pj_owner NOLOGIN;
GRANT USAGE ON SCHEMA pj TO es_pj_owner;
ALTER TABLE pj.log OWNER TO es_pj_owner;
ALTER FUNCTION pj.log_handler(es.event) OWNER TO es_pj_owner;

SELECT es.create_projection('pj_balances', 'pj.balance_handler(es.event)',
                            ARRAY['PjOpened', 'PjDeposited', 'PjWithdrawn'],
                            mode => 'inline', tables => ARRAY['pj.balances'::regclass]);
SELECT es.create_projection('pj_log', 'pj.log_handler(es.event)', mode => 'inline',
                            tables => ARRAY['pj.log'::regclass]);
-- duplicate name
SELECT pj_try($$SELECT es.create_projection('pj_log', 'pj.log_handler(es.event)', mode => 'inline')$$);

SELECT * FROM pj.balances ORDER BY account;
SELECT pj_balances_ok(), pj_log_ok();
SELECT name, mode, status, handler, event_types, tables,
       last_position = (SELECT max(global_position) FROM es.events) AS at_head,
       lag_events, lag_seconds
  FROM es.projection_status WHERE name LIKE 'pj%' ORDER BY name;

-- ---------------------------------------------------------------------------
-- Following appends: single, multi-event, JSON
-- ---------------------------------------------------------------------------
SELECT es.append_event('pj-1', 'PjDeposited', '{"amount": 5}');
SELECT es.append('pj-2', ARRAY[
    es.new_event('PjDeposited', '{"amount": 40}'),
    es.new_event('PjWithdrawn', '{"amount": 15}'),
    es.new_event('PjDeposited', '{"amount": 1.5}')]);
SELECT es.append_json('pj-3', '[
  {"type": "PjOpened", "data": {"owner": "cy"}},
  {"type": "PjDeposited", "data": {"amount": 12}},
  {"type": "PjIgnored", "data": {}}
]', 0);
SELECT * FROM pj.balances ORDER BY account;
SELECT pj_balances_ok(), pj_log_ok();
-- the handlers see the events as stored, one call per event
SELECT l.stream_id, l.stream_version, l.event_type, l.schema_version, l.data, l.by_user
  FROM pj.log l ORDER BY pos;
SELECT count(*) AS mismatches
  FROM pj.log l JOIN es.events e ON e.global_position = l.pos
 WHERE (l.stream_id, l.stream_version, l.event_type, l.data)
       IS DISTINCT FROM (e.stream_id, e.stream_version, e.event_type, e.data);

-- an append in a transaction that rolls back leaves the read tables alone
BEGIN;
SELECT es.append_event('pj-1', 'PjDeposited', '{"amount": 1000}');
SELECT balance FROM pj.balances WHERE account = 'pj-1';
ROLLBACK;
SELECT balance FROM pj.balances WHERE account = 'pj-1';
SELECT pj_balances_ok(), pj_log_ok();

-- ---------------------------------------------------------------------------
-- event_types applies to the upcast type
-- ---------------------------------------------------------------------------
SELECT es.register_upcaster('PjCredited', 1, to_event_type => 'PjDeposited');
CREATE TABLE pj.credited_seen (pos bigint, event_type text, schema_version int);
CREATE FUNCTION pj.credited_handler(e es.event) RETURNS void LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO pj.credited_seen VALUES (e.global_position, e.event_type, e.schema_version);
END;
-- filtered on the old type: never called
SELECT es.create_projection('pj_credited', 'pj.credited_handler(es.event)',
                            ARRAY['PjCredited'], 'inline');
SELECT es.append_event('pj-3', 'PjCredited', '{"amount": 8}');
SELECT es.append('pj-1', ARRAY[es.new_event('PjCredited', '{"amount": 2}')]);
SELECT count(*) AS credited_calls FROM pj.credited_seen;
-- the balances projection (filter PjDeposited) got them, upcast
SELECT stream_id, stream_version, event_type, schema_version, data
  FROM pj.log WHERE pos IN (SELECT global_position FROM es.events WHERE event_type = 'PjCredited')
 ORDER BY pos;
SELECT * FROM pj.balances ORDER BY account;
SELECT pj_balances_ok(), pj_log_ok();
SELECT es.drop_projection('pj_credited');

-- ---------------------------------------------------------------------------
-- A handler error aborts the append and writes nothing
-- ---------------------------------------------------------------------------
CREATE TABLE pj_before AS SELECT * FROM pj.balances;
SELECT es.stream_version('pj-1') AS v1, (SELECT count(*) FROM pj.log) AS logged \gset
DO $$
DECLARE
    state text;
    msg text;
    ctx text;
BEGIN
    PERFORM es.append('pj-1', ARRAY[
        es.new_event('PjDeposited', '{"amount": 1}'),
        es.new_event('PjDeposited', '{"amount": 2, "fail": true}')]);
    RAISE NOTICE 'appended';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            ctx = PG_EXCEPTION_CONTEXT;
    RAISE NOTICE 'caught % "%", context names the projection: %', state, msg,
        ctx LIKE '%projection "pj_balances", event at global position %';
END $$;
DO $$
DECLARE
    state text;
    msg text;
BEGIN
    PERFORM es.append_json('pj-1', jsonb_build_array(jsonb_build_object(
        'type', 'PjWithdrawn', 'data', jsonb_build_object('amount', 1, 'fail', 1))));
    RAISE NOTICE 'appended';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RAISE NOTICE 'caught % "%"', state, msg;
END $$;
SELECT es.stream_version('pj-1') = :v1 AS version_unchanged,
       NOT EXISTS (SELECT * FROM pj.balances EXCEPT SELECT * FROM pj_before)
       AND NOT EXISTS (SELECT * FROM pj_before EXCEPT SELECT * FROM pj.balances) AS balances_unchanged,
       (SELECT count(*) FROM pj.log) = :logged AS log_unchanged,
       NOT EXISTS (SELECT FROM es.events WHERE data ? 'fail' AND stream_id = 'pj-1') AS no_event_stored;
-- the same error outside a savepoint: the statement fails (terse: the
-- context gives a global position, which depends on the tests run before)
\set VERBOSITY terse
SELECT es.append_event('pj-1', 'PjDeposited', '{"amount": 3, "fail": true}');
\set VERBOSITY default
SELECT es.stream_version('pj-1') = :v1 AS version_unchanged, pj_balances_ok(), pj_log_ok();
DROP TABLE pj_before;

-- ---------------------------------------------------------------------------
-- Two-phase commit after a change of a projection: refused (COMMIT PREPARED
-- would not wake es.wait_for_projection), and the change rolled back
-- ---------------------------------------------------------------------------
BEGIN;
SELECT es.pause_projection('pj_balances');
PREPARE TRANSACTION 'es_2pc_projection';
SELECT status FROM es.projection_status WHERE name = 'pj_balances';
BEGIN;
SELECT es.create_projection('pj_2pc', 'pj.balance_handler(es.event)', mode => 'inline');
PREPARE TRANSACTION 'es_2pc_projection';
SELECT count(*) AS pj_2pc FROM es.projections WHERE name = 'pj_2pc';
SELECT count(*) AS prepared FROM pg_prepared_xacts;

-- ---------------------------------------------------------------------------
-- Pause and resume
-- ---------------------------------------------------------------------------
SELECT es.pause_projection('pj_balances');
SELECT es.pause_projection('pj_balances');	-- no-op
SELECT name, status, lag_events FROM es.projection_status WHERE name LIKE 'pj%' ORDER BY name;
CREATE TABLE pj_before AS SELECT * FROM pj.balances;
SELECT es.append_event('pj-2', 'PjWithdrawn', '{"amount": 1}');
SELECT es.append('pj-4', ARRAY[es.new_event('PjOpened', '{}'),
                               es.new_event('PjDeposited', '{"amount": 9}')]);
-- paused: nothing applied (but pj_log still runs)
SELECT NOT EXISTS (SELECT * FROM pj.balances EXCEPT SELECT * FROM pj_before)
       AND NOT EXISTS (SELECT * FROM pj_before EXCEPT SELECT * FROM pj.balances) AS balances_unchanged,
       pj_balances_ok(), pj_log_ok();
SELECT name, status, lag_events, lag_seconds > 0 AS lagging,
       last_position < (SELECT max(global_position) FROM es.events) AS behind
  FROM es.projection_status WHERE name LIKE 'pj%' ORDER BY name;
SELECT lag_events = (SELECT count(*) FROM es.events
                      WHERE global_position > (SELECT paused_at_position FROM es.projections
                                                WHERE name = 'pj_balances')) AS lag_exact
  FROM es.projection_status WHERE name = 'pj_balances';
-- a paused projection never catches up: waiting for it says so at once
-- (ES004), whatever the timeout; what it applied before its pause is there
SELECT pj_try($$ SELECT es.wait_for_projection('pj_balances', timeout => '1 hour') $$);
SELECT es.wait_for_projection('pj_balances', (SELECT min(global_position) FROM es.events),
                              timeout => '1 hour') AS applied_before_pause;
SELECT es.resume_projection('pj_log');		-- not paused: no-op
-- resume replays the events appended meanwhile, exactly once
SELECT es.resume_projection('pj_balances');
SELECT pj_balances_ok();
SELECT status FROM es.projection_status WHERE name = 'pj_balances';
DROP TABLE pj_before;

-- ---------------------------------------------------------------------------
-- Rebuild
-- ---------------------------------------------------------------------------
-- the read model drifted (say a manual fix gone wrong)
UPDATE pj.balances SET balance = -1;
INSERT INTO pj.balances VALUES ('pj-bogus', 42, 1);
SELECT pj_balances_ok();
SELECT es.rebuild_projection('pj_balances');
SELECT pj_balances_ok();
SELECT * FROM pj.balances ORDER BY account;
-- a rebuild also resumes a paused projection
SELECT es.pause_projection('pj_balances');
SELECT es.append_event('pj-3', 'PjWithdrawn', '{"amount": 2}');
SELECT es.rebuild_projection('pj_balances');
SELECT status, lag_events FROM es.projection_status WHERE name = 'pj_balances';
SELECT pj_balances_ok();
-- rebuilding pj_log (all streams) gives back the same rows
CREATE TABLE pj_log_before AS SELECT * FROM pj.log;
SELECT es.rebuild_projection('pj_log');
SELECT NOT EXISTS (SELECT * FROM pj.log EXCEPT ALL SELECT * FROM pj_log_before)
       AND NOT EXISTS (SELECT * FROM pj_log_before EXCEPT ALL SELECT * FROM pj.log) AS log_same;
DROP TABLE pj_log_before;

-- ---------------------------------------------------------------------------
-- wait_for_projection
-- ---------------------------------------------------------------------------
SELECT es.wait_for_projection('pj_balances');
SELECT es.wait_for_projection('pj_balances', (SELECT max(global_position) FROM es.events));
-- a position not (yet) stored: false after the timeout
SELECT es.wait_for_projection('pj_balances', (SELECT max(global_position) + 1000 FROM es.events),
                              '20 ms');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pj_try($$SELECT es.wait_for_projection('pj_balances')$$);
ROLLBACK;

-- ---------------------------------------------------------------------------
-- A process manager: its handler appends, and that event is projected too
-- ---------------------------------------------------------------------------
CREATE FUNCTION pj.alert_handler(e es.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF (e.data ->> 'amount')::numeric > 100 THEN
        PERFORM es.append_event('pjalert-' || e.stream_id, 'PjLargeWithdrawal',
                                jsonb_build_object('amount', e.data -> 'amount',
                                                   'source_position', e.global_position));
    END IF;
END $$;
SELECT es.create_projection('pj_alerts', 'pj.alert_handler(es.event)', ARRAY['PjWithdrawn'], 'inline');
SELECT es.append_event('pj-1', 'PjWithdrawn', '{"amount": 500}');
SELECT es.append_event('pj-2', 'PjWithdrawn', '{"amount": 5}');
SELECT stream_id, stream_version, event_type,
       (data ->> 'source_position')::bigint =
         (SELECT max(global_position) FROM es.events
           WHERE stream_id = 'pj-1' AND event_type = 'PjWithdrawn') AS source_ok
  FROM es.events WHERE stream_id LIKE 'pjalert-%';
-- pj_log (no filter) projected the process manager's event
SELECT stream_id, stream_version, event_type, data ->> 'amount' AS amount
  FROM pj.log WHERE stream_id LIKE 'pjalert-%';
SELECT pj_balances_ok(), pj_log_ok();
-- pj_alerts runs before pj_balances (by name): its append is rolled back
-- with the withdrawal when pj_balances fails
SELECT es.stream_version('pj-1') AS v1 \gset
\set VERBOSITY terse
SELECT es.append_event('pj-1', 'PjWithdrawn', '{"amount": 700, "fail": true}');
\set VERBOSITY default
SELECT es.stream_version('pj-1') = :v1 AS version_unchanged,
       es.stream_version('pjalert-pj-1') AS alert_version, pj_log_ok(), pj_balances_ok();
SELECT es.drop_projection('pj_alerts');

-- ---------------------------------------------------------------------------
-- Handlers run as the handler function's owner
-- ---------------------------------------------------------------------------
CREATE ROLE es_pj_appender NOLOGIN;
GRANT USAGE ON SCHEMA es TO es_pj_appender;
GRANT EXECUTE ON FUNCTION es.append_event(text, text, jsonb, jsonb, bigint, uuid, int)
  TO es_pj_appender;
SET ROLE es_pj_appender;
-- no privilege on the read tables themselves
SELECT pj_try($$INSERT INTO pj.log VALUES (0, 'x', 0, 'x', 0, '{}', 'x')$$);
SELECT pj_try($$SELECT count(*) FROM pj.balances$$);
SELECT es.append_event('pj-5', 'PjOpened', '{"owner": "dee"}');
SELECT es.append_event('pj-5', 'PjDeposited', '{"amount": 3}');
-- nor on the administration functions
SELECT pj_try($$SELECT es.pause_projection('pj_log')$$);
RESET ROLE;
SELECT stream_id, stream_version, event_type, by_user FROM pj.log WHERE stream_id = 'pj-5'
 ORDER BY pos;
SELECT DISTINCT by_user FROM pj.log;
SELECT * FROM pj.balances WHERE account = 'pj-5';
SELECT pj_balances_ok(), pj_log_ok();

-- ---------------------------------------------------------------------------
-- Unknown projections
-- ---------------------------------------------------------------------------
SELECT s AS statement, pj_try(s) AS outcome FROM (VALUES
  ($$SELECT es.drop_projection('pj_nope')$$),
  ($$SELECT es.pause_projection('pj_nope')$$),
  ($$SELECT es.resume_projection('pj_nope')$$),
  ($$SELECT es.rebuild_projection('pj_nope')$$),
  ($$SELECT es.wait_for_projection('pj_nope')$$),
  ($$SELECT es.drop_projection(NULL)$$),
  ($$SELECT es.pause_projection(NULL)$$)
) v(s);

-- ---------------------------------------------------------------------------
-- A projection's handler cannot be dropped, not even by CASCADE of its schema
-- ---------------------------------------------------------------------------
SELECT pj_try($$DROP FUNCTION pj.balance_handler(es.event)$$) AS drop_handler;
SET client_min_messages = warning;
SELECT pj_try($$DROP SCHEMA pj CASCADE$$) AS drop_schema_cascade;
RESET client_min_messages;
SELECT count(*) AS projections_left FROM es.projections;

-- ---------------------------------------------------------------------------
-- Drop: appends no longer reach the handler; the read table stays
-- ---------------------------------------------------------------------------
SELECT es.drop_projection('pj_balances');
SELECT es.append_event('pj-5', 'PjDeposited', '{"amount": 1000}');
SELECT * FROM pj.balances WHERE account = 'pj-5';
SELECT pj_balances_ok();
SELECT es.drop_projection('pj_log');
SELECT es.append_event('pj-5', 'PjDeposited', '{"amount": 1}');
SELECT pj_log_ok();
SELECT count(*) FROM es.projections;
SELECT count(*) FROM es.projection_status;
-- a failing handler no longer matters either
SELECT es.append_event('pj-5', 'PjDeposited', '{"amount": 1, "fail": true}');

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
SELECT es.unregister_upcaster('PjCredited', 1);
DROP SCHEMA pj CASCADE;
DROP VIEW pj_expected;
DROP FUNCTION pj_balances_ok(), pj_log_ok();
REVOKE ALL ON FUNCTION es.append_event(text, text, jsonb, jsonb, bigint, uuid, int)
  FROM es_pj_appender;
REVOKE ALL ON SCHEMA es FROM es_pj_appender;
DROP ROLE es_pj_appender;
DROP ROLE es_pj_owner;

-- ---------------------------------------------------------------------------
-- Upgrade from 0.1.0
-- ---------------------------------------------------------------------------
-- In a database of its own: the earlier tests leave objects of theirs that
-- depend on es in this one (DROP EXTENSION would need CASCADE).  This is
-- also a fresh backend: one that has run projections keeps the row type of
-- a dropped extension's es.event cached (see the report of this test).
SELECT current_database() AS pj_home \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS pj_upgrade_regress;
RESET client_min_messages;
CREATE DATABASE pj_upgrade_regress;
\c pj_upgrade_regress
CREATE EXTENSION es;
SELECT extversion FROM pg_extension WHERE extname = 'es';
DROP EXTENSION es;
CREATE EXTENSION es VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'es';
SELECT to_regclass('es.projections') AS projections, to_regclass('es.projection_status') AS status;
-- appends work against the 0.1.0 schema with the new library
SELECT es.append_event('pju-1', 'PjOpened', '{}');
SELECT es.append('pju-1', ARRAY[es.new_event('PjDeposited', '{"amount": 4}')]);
ALTER EXTENSION es UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'es';
CREATE TABLE pju_counts (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION pju_count(e es.event) RETURNS void LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO public.pju_counts VALUES (e.stream_id, 1)
        ON CONFLICT (stream_id) DO UPDATE SET n = pju_counts.n + 1;
END;
SELECT es.create_projection('pju', 'public.pju_count(es.event)', mode => 'inline',
                            tables => ARRAY['pju_counts'::regclass]);
SELECT * FROM pju_counts ORDER BY stream_id;
SELECT es.append_event('pju-1', 'PjDeposited', '{"amount": 1}');
SELECT es.append_json('pju-2', '[{"type": "PjOpened", "data": {}}]');
SELECT c.stream_id, c.n, es.stream_version(c.stream_id) AS stream_version
  FROM pju_counts c ORDER BY stream_id;
SELECT name, mode, status FROM es.projection_status;
-- 0.2.0 -> 0.3.0: the inline projection goes on; async ones become possible
ALTER EXTENSION es UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'es';
SELECT es.append_event('pju-2', 'PjDeposited', '{"amount": 2}');
SELECT c.stream_id, c.n, es.stream_version(c.stream_id) AS stream_version
  FROM pju_counts c ORDER BY stream_id;
CREATE TABLE pju_async (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION pju_async_count(e es.event) RETURNS void LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO public.pju_async VALUES (e.stream_id, 1)
        ON CONFLICT (stream_id) DO UPDATE SET n = pju_async.n + 1;
END;
SELECT es.create_projection('pju_async', 'public.pju_async_count(es.event)',
                            tables => ARRAY['pju_async'::regclass]);
SELECT es.wait_for_projection('pju_async', timeout => '30 seconds');
SELECT * FROM pju_async ORDER BY stream_id;
SELECT name, mode, status, last_position, lag_events FROM es.projection_status ORDER BY name;
-- 0.3.0 -> 0.4.0: both go on; the admin entry points keep their grants
GRANT EXECUTE ON FUNCTION es.rebuild_projection(text) TO PUBLIC;
ALTER EXTENSION es UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'es';
SELECT p.proname, l.lanname, p.prosecdef,
       pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') AS public_may
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'es'::regnamespace
   AND p.proname IN ('create_projection', 'rebuild_projection', 'register_upcaster',
                     '_create_projection', '_rebuild_projection', '_register_upcaster')
 ORDER BY p.proname;
REVOKE EXECUTE ON FUNCTION es.rebuild_projection(text) FROM PUBLIC;
-- 0.4.0 -> 0.5.0
ALTER EXTENSION es UPDATE TO '0.5.0';
SELECT extversion FROM pg_extension WHERE extname = 'es';
SELECT es.append_event('pju-3', 'PjOpened', '{}');
SELECT es.wait_for_projection('pju_async', timeout => '30 seconds');
SELECT c.stream_id, c.n, es.stream_version(c.stream_id) AS stream_version
  FROM pju_counts c ORDER BY stream_id;
SELECT * FROM pju_async ORDER BY stream_id;
SELECT es.rebuild_projection('pju');
SELECT * FROM pju_counts ORDER BY stream_id;
SELECT es.drop_projection('pju_async');
SELECT es.drop_projection('pju');
DROP FUNCTION pju_count(es.event);
DROP TABLE pju_counts;
DROP FUNCTION pju_async_count(es.event);
DROP TABLE pju_async;
\c :pj_home
DROP DATABASE pj_upgrade_regress;
DROP FUNCTION pj_try(text);
SELECT extversion FROM pg_extension WHERE extname = 'es';

-- A handler runs as its owner: an owner changed in this very session is
-- the one the next append runs it as (the cached projection list follows
-- pg_proc changes)
CREATE ROLE es_pj_owner2 NOLOGIN;
CREATE TABLE pj_who (who name);
GRANT INSERT ON pj_who TO es_pj_owner2;
CREATE FUNCTION pj_who_handler(e es.event) RETURNS void LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO public.pj_who VALUES (CURRENT_USER);
END;
SELECT es.create_projection('pj_who', 'pj_who_handler(es.event)', ARRAY['PjWho'], 'inline');
SELECT es.append_event('pj-who-1', 'PjWho', '{}');
ALTER FUNCTION pj_who_handler(es.event) OWNER TO es_pj_owner2;
SELECT es.append_event('pj-who-1', 'PjWho', '{}');
SELECT CASE WHEN who = CURRENT_USER THEN 'the old owner' ELSE who::text END AS runs_as, count(*)
  FROM pj_who GROUP BY 1 ORDER BY 1;
SELECT es.drop_projection('pj_who');
DROP FUNCTION pj_who_handler(es.event);
DROP TABLE pj_who;
DROP ROLE es_pj_owner2;
