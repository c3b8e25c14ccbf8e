-- projection_async.sql: asynchronous projections (the projector worker):
-- catch-up over history, live appends, pause and resume, the stop and park
-- error policies, retries, rebuild, process managers, wait_for_projection,
-- es.projection_status, and the slot's life.  Needs the server settings
-- shared_preload_libraries = 'es' and wal_level = logical.
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
DROP SCHEMA IF EXISTS pa CASCADE;
RESET client_min_messages;
CREATE SCHEMA pa;

-- waits until a projection has the given status (the projector is async)
CREATE FUNCTION pa.wait_status(p text, want text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s text;
BEGIN
    FOR i IN 1..3000 LOOP
        SELECT status INTO s FROM es.projection_status WHERE name = p;
        IF s = want THEN
            RETURN s;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN s;
END
$$;

-- runs a statement and prints its outcome: ok, or the SQLSTATE and message
CREATE FUNCTION pa.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- events that make the handlers fail while they are listed here
CREATE TABLE pa.poison (stream_id text PRIMARY KEY);

CREATE TABLE pa.balances (account text PRIMARY KEY, balance numeric NOT NULL, events int NOT NULL);
CREATE FUNCTION pa.balance_handler(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM pa.poison p WHERE p.stream_id = e.stream_id) THEN
        RAISE EXCEPTION 'poisoned stream %', e.stream_id USING ERRCODE = 'P0001';
    END IF;
    INSERT INTO pa.balances VALUES (e.stream_id,
        CASE e.event_type WHEN 'PaDeposited' THEN (e.data->>'amount')::numeric
                          WHEN 'PaWithdrawn' THEN -(e.data->>'amount')::numeric
                          ELSE 0 END, 1)
    ON CONFLICT (account) DO UPDATE
       SET balance = pa.balances.balance + excluded.balance,
           events = pa.balances.events + 1;
END
$$;

-- what the balances must be: a fold over the events
CREATE FUNCTION pa.balances_ok() RETURNS boolean LANGUAGE sql AS $$
    SELECT NOT EXISTS (
        SELECT e.stream_id, sum(CASE e.event_type WHEN 'PaDeposited' THEN (e.data->>'amount')::numeric
                                                  WHEN 'PaWithdrawn' THEN -(e.data->>'amount')::numeric
                                                  ELSE 0 END), count(*)::int
          FROM es.events e WHERE e.stream_id LIKE 'pa-%'
               AND e.event_type IN ('PaOpened', 'PaDeposited', 'PaWithdrawn')
         GROUP BY e.stream_id
        EXCEPT
        SELECT account, balance, events FROM pa.balances)
    AND NOT EXISTS (
        SELECT account FROM pa.balances
        EXCEPT
        SELECT stream_id FROM es.events WHERE stream_id LIKE 'pa-%')
$$;

-- ---------------------------------------------------------------------------
-- A new projection catches up on the history, then follows live appends
-- ---------------------------------------------------------------------------
SELECT count(*) FROM (
    SELECT es.append_event('pa-' || (i % 7), CASE WHEN i % 3 = 0 THEN 'PaWithdrawn' ELSE 'PaDeposited' END,
                           jsonb_build_object('amount', i))
      FROM generate_series(1, 300) i) a;
SELECT es.create_projection('pa_balances', 'pa.balance_handler(es.event)',
                            ARRAY['PaOpened', 'PaDeposited', 'PaWithdrawn'],
                            tables => ARRAY['pa.balances'::regclass]);
-- async is the default mode
SELECT mode, on_error, status IN ('catching_up', 'running') AS starting FROM es.projection_status
 WHERE name = 'pa_balances';
SELECT es.wait_for_projection('pa_balances', timeout => '60 seconds');
SELECT pa.balances_ok(), (SELECT sum(events) FROM pa.balances) AS applied;
SELECT status, lag_events, lag_seconds, progress_percent, errors, last_error,
       retained_wal_bytes >= 0 AS holds_wal_bytes
  FROM es.projection_status WHERE name = 'pa_balances';
-- the projector owns one slot and the publication it decodes through
SELECT slot_name = 'es_projector_' || (SELECT oid FROM pg_database WHERE datname = current_database()) AS slot,
       plugin, slot_type, database = current_database() AS here
  FROM pg_replication_slots;
SELECT pubname, puballtables, pubinsert, pubupdate, pubdelete FROM pg_publication;
SELECT count(*) AS projectors FROM pg_stat_activity WHERE backend_type = 'es projector';

-- live: several streams, a batch, one that is filtered out
SELECT es.append('pa-1', ARRAY[es.new_event('PaDeposited', '{"amount": 10}'),
                             es.new_event('PaWithdrawn', '{"amount": 3}'),
                             es.new_event('PaNoted', '{"note": "not a balance event"}')]);
SELECT es.append_event('pa-new', 'PaOpened', '{}');
SELECT es.wait_for_projection('pa_balances');
SELECT pa.balances_ok(), balance, events FROM pa.balances WHERE account IN ('pa-new');

-- a rolled-back append is never projected
BEGIN;
SELECT es.append_event('pa-new', 'PaDeposited', '{"amount": 1000}');
ROLLBACK;
SELECT es.append_event('pa-new', 'PaDeposited', '{"amount": 1}');
SELECT es.wait_for_projection('pa_balances');
SELECT balance, events FROM pa.balances WHERE account = 'pa-new';

-- read-your-writes with a position: the event at it is applied on return
SELECT es.append_event('pa-new', 'PaDeposited', '{"amount": 2}') AS v \gset
SELECT es.wait_for_projection('pa_balances',
         (SELECT global_position FROM es.events WHERE stream_id = 'pa-new' AND stream_version = :v));
SELECT balance FROM pa.balances WHERE account = 'pa-new';

-- ---------------------------------------------------------------------------
-- Pause and resume: a paused projection holds WAL and lags, then catches up
-- ---------------------------------------------------------------------------
SELECT es.pause_projection('pa_balances');
SELECT es.append_event('pa-new', 'PaDeposited', '{"amount": 5}');
-- waiting for a paused projection fails at once (ES004) whatever the timeout
SELECT pa.try($$ SELECT es.wait_for_projection('pa_balances', timeout => '1 hour') $$)
    AS wait_while_paused;
SELECT status, lag_events, retained_wal_bytes > 0 AS holds_wal FROM es.projection_status
 WHERE name = 'pa_balances';
SELECT balance FROM pa.balances WHERE account = 'pa-new';
SELECT es.resume_projection('pa_balances');
SELECT es.wait_for_projection('pa_balances', timeout => '30 seconds');
SELECT pa.balances_ok(), balance FROM pa.balances WHERE account = 'pa-new';
SELECT status, lag_events FROM es.projection_status WHERE name = 'pa_balances';

-- ---------------------------------------------------------------------------
-- on_error = 'stop': the projection halts before the failing transaction
-- (nothing of it applied, nothing after it), the others go on
-- ---------------------------------------------------------------------------
CREATE TABLE pa.counts (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION pa.count_handler(e es.event) RETURNS void LANGUAGE sql BEGIN ATOMIC
    INSERT INTO pa.counts VALUES (e.stream_id, 1)
        ON CONFLICT (stream_id) DO UPDATE SET n = pa.counts.n + 1;
END;
SELECT es.create_projection('pa_counts', 'pa.count_handler(es.event)',
                            tables => ARRAY['pa.counts'::regclass]);
SELECT es.wait_for_projection('pa_counts', timeout => '60 seconds');
INSERT INTO pa.poison VALUES ('pa-bad');
SELECT es.append('pa-bad', ARRAY[es.new_event('PaOpened', '{}'),
                                es.new_event('PaDeposited', '{"amount": 7}')]);
SELECT es.append_event('pa-after', 'PaOpened', '{}');
SELECT pa.wait_status('pa_balances', 'failed');
SELECT es.wait_for_projection('pa_counts');
SELECT stream_id, n FROM pa.counts WHERE stream_id IN ('pa-bad', 'pa-after') ORDER BY 1;
SELECT count(*) AS applied_bad_or_after FROM pa.balances WHERE account IN ('pa-bad', 'pa-after');
SELECT status, last_error, last_error_position = (SELECT global_position FROM es.events
                                                  WHERE stream_id = 'pa-bad' AND stream_version = 1) AS at_first_bad,
       failed_at IS NOT NULL AS failed_at_set
  FROM es.projection_status WHERE name = 'pa_balances';
-- ... and for a failed one, naming the event it stopped at
SELECT regexp_replace(pa.try($$ SELECT es.wait_for_projection('pa_balances', timeout => '1 hour') $$),
                      'position \d+', 'position N') AS wait_while_failed;
-- resuming without a fix fails again at the same event
SELECT es.resume_projection('pa_balances');
SELECT pa.wait_status('pa_balances', 'failed');
DELETE FROM pa.poison;
SELECT es.resume_projection('pa_balances');
SELECT es.wait_for_projection('pa_balances', timeout => '30 seconds');
SELECT pa.balances_ok(), status, last_error IS NOT NULL AS error_kept
  FROM es.projection_status WHERE name = 'pa_balances';
SELECT account, balance, events FROM pa.balances WHERE account IN ('pa-bad', 'pa-after') ORDER BY 1;

-- ---------------------------------------------------------------------------
-- on_error = 'park': failing events are set aside, the rest goes on
-- ---------------------------------------------------------------------------
CREATE TABLE pa.parked_balances (LIKE pa.balances INCLUDING ALL);
CREATE FUNCTION pa.parked_handler(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM pa.poison p WHERE p.stream_id = e.stream_id) THEN
        RAISE EXCEPTION 'poisoned stream %', e.stream_id USING ERRCODE = '22012';
    END IF;
    INSERT INTO pa.parked_balances VALUES (e.stream_id, coalesce((e.data->>'amount')::numeric, 0), 1)
    ON CONFLICT (account) DO UPDATE
       SET balance = pa.parked_balances.balance + excluded.balance,
           events = pa.parked_balances.events + 1;
END
$$;
SELECT es.create_projection('pa_parked', 'pa.parked_handler(es.event)', ARRAY['PaDeposited'],
                            tables => ARRAY['pa.parked_balances'::regclass], on_error => 'park');
SELECT es.wait_for_projection('pa_parked', timeout => '60 seconds');
INSERT INTO pa.poison VALUES ('pa-park');
SELECT es.append('pa-park', ARRAY[es.new_event('PaDeposited', '{"amount": 1}'),
                                 es.new_event('PaDeposited', '{"amount": 2}')]);
SELECT es.append_event('pa-fine', 'PaDeposited', '{"amount": 3}');
SELECT es.wait_for_projection('pa_parked', timeout => '30 seconds');
SELECT account, balance, events FROM pa.parked_balances WHERE account IN ('pa-park', 'pa-fine') ORDER BY 1;
SELECT e.projection, ev.stream_id, ev.stream_version, e.event_type, e.sqlstate, e.message, e.attempts
  FROM es.projection_errors e JOIN es.events ev USING (global_position) ORDER BY e.global_position;
SELECT status, errors FROM es.projection_status WHERE name = 'pa_parked';
-- a retry that fails again keeps them, counting the attempt
SELECT es.retry_projection_errors('pa_parked');
SELECT attempts FROM es.projection_errors ORDER BY global_position;
DELETE FROM pa.poison;
SELECT es.retry_projection_errors('pa_parked');
SELECT count(*) AS still_parked FROM es.projection_errors;
SELECT account, balance, events FROM pa.parked_balances WHERE account = 'pa-park';
-- parking while catching up from the table (a rebuild), one event at a time
INSERT INTO pa.poison VALUES ('pa-park');
SELECT es.rebuild_projection('pa_parked');
SELECT es.wait_for_projection('pa_parked', timeout => '60 seconds');
SELECT account, balance, events FROM pa.parked_balances WHERE account IN ('pa-park', 'pa-fine') ORDER BY 1;
SELECT ev.stream_id, ev.stream_version, e.sqlstate, e.attempts
  FROM es.projection_errors e JOIN es.events ev USING (global_position) ORDER BY e.global_position;
DELETE FROM pa.poison;
SELECT es.retry_projection_errors('pa_parked');
SELECT account, balance, events FROM pa.parked_balances WHERE account = 'pa-park';
SELECT pa.try($$SELECT es.retry_projection_errors('pa_nope')$$);
SELECT pa.try($$SELECT es.retry_projection_errors(NULL)$$);

-- ---------------------------------------------------------------------------
-- Rebuild: truncate and replay online; equal to a fold from scratch
-- ---------------------------------------------------------------------------
UPDATE pa.balances SET balance = -1;     -- damage it
SELECT es.rebuild_projection('pa_balances');
SELECT status IN ('rebuilding', 'running') AS rebuilding FROM es.projection_status WHERE name = 'pa_balances';
SELECT es.wait_for_projection('pa_balances', timeout => '60 seconds');
SELECT pa.balances_ok(), status, last_error FROM es.projection_status WHERE name = 'pa_balances';

-- ---------------------------------------------------------------------------
-- A process manager: events a handler appends are projected too
-- ---------------------------------------------------------------------------
CREATE FUNCTION pa.welcome(e es.event) RETURNS void LANGUAGE sql BEGIN ATOMIC
    SELECT es.append_event('pa-mail-' || e.stream_id, 'PaWelcomeSent', '{}', expected_version => 0);
END;
SELECT es.create_projection('pa_welcome', 'pa.welcome(es.event)', ARRAY['PaOpened']);
SELECT es.wait_for_projection('pa_welcome', timeout => '60 seconds');
SELECT es.append_event('pa-pm', 'PaOpened', '{}');
SELECT es.wait_for_projection('pa_welcome');
SELECT es.wait_for_projection('pa_counts');
SELECT stream_id, n FROM pa.counts WHERE stream_id IN ('pa-pm', 'pa-mail-pa-pm') ORDER BY 1;
SELECT count(*) = (SELECT count(*) FROM es.events WHERE event_type = 'PaOpened') AS one_mail_each
  FROM es.events WHERE event_type = 'PaWelcomeSent';
SELECT (SELECT sum(n) FROM pa.counts) = (SELECT count(*) FROM es.events) AS counts_ok;

-- ---------------------------------------------------------------------------
-- Errors
-- ---------------------------------------------------------------------------
SELECT pa.try($$SELECT es.wait_for_projection('pa_nope')$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pa.try($$SELECT es.wait_for_projection('pa_counts')$$);
COMMIT;
SELECT pa.try($$SELECT es.create_projection('pa_counts', 'pa.count_handler(es.event)')$$);
-- two-phase commit after a change of an async projection: refused (COMMIT
-- PREPARED would not tell the projector), and the change rolled back
BEGIN;
SELECT es.pause_projection('pa_counts');
PREPARE TRANSACTION 'es_2pc_projection';
SELECT paused FROM es.projections WHERE name = 'pa_counts';
SELECT count(*) AS prepared FROM pg_prepared_xacts;

-- ---------------------------------------------------------------------------
-- The last async projection gone: no slot, no publication, no projector
-- ---------------------------------------------------------------------------
SELECT es.drop_projection(name) FROM es.projections WHERE mode = 'async' ORDER BY name;
DO $$
BEGIN
    FOR i IN 1..3000 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM pg_replication_slots)
              AND NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'es projector');
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT count(*) AS slots FROM pg_replication_slots;
SELECT count(*) AS publications FROM pg_publication;
SELECT count(*) AS projectors FROM pg_stat_activity WHERE backend_type = 'es projector';

SET client_min_messages = warning;
DROP SCHEMA pa CASCADE;
RESET client_min_messages;
