-- es 0.2.0 -> 0.3.0: asynchronous projections, fed by logical decoding

\echo Use "ALTER EXTENSION es UPDATE TO '0.3.0'" to load this file. \quit

-- Decoding.  The projector (a background worker per database, started by a
-- launcher that es registers at server start) decodes es.events inserts with
-- PostgreSQL's own pgoutput plugin, through the publication es_events (the
-- position only; the worker reads the rows from the table).  Publications
-- cannot belong to an extension, so the projector creates it with its slot
-- and drops both when no async projection is left or es is dropped.

-- ---------------------------------------------------------------------------
-- Catalog
-- ---------------------------------------------------------------------------

ALTER TABLE es.projections
    DROP CONSTRAINT projections_mode_check,
    DROP CONSTRAINT projections_on_error_check,
    ADD CONSTRAINT projections_mode_check CHECK (mode IN ('inline', 'async')),
    ADD CONSTRAINT projections_on_error_check
        CHECK (on_error IN ('stop', 'park') AND (mode = 'async' OR on_error = 'stop')),
    -- async: catching_up (new) or rebuilding read the table in position
    -- order up to caught_up_to; live follows the decoded commits
    ADD COLUMN phase text NOT NULL DEFAULT 'live'
        CONSTRAINT projections_phase_check CHECK (phase IN ('catching_up', 'rebuilding', 'live')),
    ADD COLUMN caught_up_to bigint NOT NULL DEFAULT 0,
    ADD COLUMN catchup_target bigint NOT NULL DEFAULT 0,
    -- live: every transaction that committed up to this WAL position has
    -- been applied (except those live_snapshot shows, which the catch-up
    -- applied, as long as applied_lsn < live_snapshot_lsn)
    ADD COLUMN applied_lsn pg_lsn,
    ADD COLUMN live_snapshot pg_snapshot,
    ADD COLUMN live_snapshot_lsn pg_lsn,
    ADD COLUMN last_position bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_applied_at timestamptz,
    -- on_error = 'stop': set when the projection halted
    ADD COLUMN failed_at timestamptz,
    ADD COLUMN last_error text,
    ADD COLUMN last_error_position bigint;

-- The worker updates checkpoints on every batch: only changes that matter
-- to inline projections tell other sessions to reload.
DROP TRIGGER projections_changed ON es.projections;
CREATE TRIGGER projections_changed
    AFTER INSERT OR DELETE OR TRUNCATE
       OR UPDATE OF name, handler, event_types, mode, paused ON es.projections
    FOR EACH STATEMENT EXECUTE FUNCTION es.registry_changed();

CREATE TABLE es.projection_errors (
    projection      text NOT NULL REFERENCES es.projections (name) ON DELETE CASCADE,
    global_position bigint NOT NULL,
    event_type      text NOT NULL,
    sqlstate        text NOT NULL,
    message         text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, global_position)
);
COMMENT ON TABLE es.projection_errors IS
    'Events an async projection with on_error = ''park'' could not apply; es.retry_projection_errors applies them again.';
SELECT pg_catalog.pg_extension_config_dump('es.projection_errors', '');

-- ---------------------------------------------------------------------------
-- Internal functions (C); not for direct use.
-- ---------------------------------------------------------------------------

CREATE FUNCTION es._projector_check() RETURNS void
AS 'MODULE_PATHNAME', 'es_projector_check' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es._projector_check() IS
    'Internal: fails (55000) unless the server can run async projections (es preloaded, wal_level = logical, max_replication_slots > 0).';

CREATE FUNCTION es._projector_wake() RETURNS void
AS 'MODULE_PATHNAME', 'es_projector_wake' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es._projector_wake() IS
    'Internal: starts or wakes this database''s projector when the transaction commits.';

CREATE FUNCTION es._projector_target_lsn("position" bigint) RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'es_projector_target_lsn' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es._projector_target_lsn(bigint) IS
    'Internal: a WAL position at or after the commit of the event at position (NULL while it is not committed), or, for NULL, of every append committed in this database so far.';

CREATE FUNCTION es._projection_apply_one(name text, "position" bigint) RETURNS boolean
AS 'MODULE_PATHNAME', 'es_projection_apply_one' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION es._projection_apply_one(text, bigint) IS
    'Internal: hands the (upcast) event at position to the projection''s handler (which its event_types may skip); false when there is no event at position.';

-- ---------------------------------------------------------------------------
-- Administration.  For async projections each function locks the
-- projection's row first: the projector locks the rows of the projections
-- it applies, so a change waits for the batch in flight, and the projector
-- sees it in its next batch.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION es.create_projection(
    name text,
    handler regprocedure,
    event_types text[] DEFAULT NULL,
    mode text DEFAULT 'async',
    tables regclass[] DEFAULT NULL,
    on_error text DEFAULT 'stop')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn record;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'projection name must not be NULL or empty' USING ERRCODE = '22023';
    END IF;
    IF handler IS NULL THEN
        RAISE EXCEPTION 'handler must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT p.pronargs, p.proargtypes, p.prorettype, p.prokind INTO fn
      FROM pg_proc p WHERE p.oid = handler;
    IF fn.prokind <> 'f' OR fn.pronargs <> 1
       OR fn.proargtypes[0] <> 'es.event'::regtype OR fn.prorettype <> 'void'::regtype THEN
        RAISE EXCEPTION 'handler % must be a function (e es.event) RETURNS void', handler
            USING ERRCODE = '42P13';
    END IF;
    IF mode IS NULL OR mode NOT IN ('inline', 'async') THEN
        RAISE EXCEPTION 'invalid projection mode "%"', mode
            USING ERRCODE = '22023', HINT = 'Use ''inline'' or ''async''.';
    END IF;
    IF on_error IS NULL OR on_error NOT IN ('stop', 'park') THEN
        RAISE EXCEPTION 'invalid on_error "%"', on_error
            USING ERRCODE = '22023', HINT = 'Use ''stop'' or ''park''.';
    END IF;
    IF mode = 'inline' AND on_error = 'park' THEN
        RAISE EXCEPTION 'inline projections cannot park events'
            USING ERRCODE = '22023',
                  DETAIL = 'An inline handler runs in the appending transaction: its error aborts the append.';
    END IF;
    IF event_types IS NOT NULL AND (cardinality(event_types) = 0
       OR array_position(event_types, NULL) IS NOT NULL OR '' = ANY (event_types)) THEN
        RAISE EXCEPTION 'event_types must be NULL (all) or a non-empty array of non-empty types'
            USING ERRCODE = '22023';
    END IF;
    IF tables IS NOT NULL AND array_position(tables, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'tables must not contain NULL' USING ERRCODE = '22004';
    END IF;
    IF EXISTS (SELECT FROM es.projections p WHERE p.name = create_projection.name) THEN
        RAISE EXCEPTION 'projection "%" already exists', name USING ERRCODE = '42710';
    END IF;

    IF mode = 'async' THEN
        PERFORM es._projector_check();
        -- the projector catches up from the table, then follows commits
        INSERT INTO es.projections (name, handler, event_types, mode, tables, on_error,
                                    phase, catchup_target)
        VALUES (name, handler, event_types, mode, coalesce(tables, '{}'), on_error,
                'catching_up', (SELECT coalesce(max(global_position), 0) FROM es.events));
        PERFORM es._projector_wake();
        RETURN;
    END IF;
    LOCK TABLE es.events IN SHARE MODE;
    INSERT INTO es.projections (name, handler, event_types, mode, tables, on_error)
    VALUES (name, handler, event_types, mode, coalesce(tables, '{}'), on_error);
    PERFORM es._projection_replay(name, 0);
END
$$;
COMMENT ON FUNCTION es.create_projection(text, regprocedure, text[], text, regclass[], text) IS
    'Registers a projection, handler(e es.event) RETURNS void. Inline: replays the history now, then runs in every appending transaction. Async (the default): the projector catches up on the history, then applies each commit.';

CREATE OR REPLACE FUNCTION es.drop_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
    IF p.mode = 'inline' THEN
        LOCK TABLE es.events IN SHARE MODE;
    END IF;
    DELETE FROM es.projections WHERE projections.name = p.name;
    IF p.mode = 'async' THEN
        PERFORM es._projector_wake();   -- the last one gone: the slot goes too
    END IF;
END
$$;
COMMENT ON FUNCTION es.drop_projection(text) IS
    'Removes a projection and its parked errors; its read tables are left as they are.';

CREATE OR REPLACE FUNCTION es.pause_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
    IF p.mode = 'async' THEN
        UPDATE es.projections SET paused = true WHERE projections.name = p.name;
        RETURN;
    END IF;
    LOCK TABLE es.events IN SHARE MODE;
    p := es._projection_lookup(name);
    IF NOT p.paused THEN
        -- everything committed so far has been applied
        UPDATE es.projections SET paused = true,
               paused_at_position = (SELECT coalesce(max(global_position), 0) FROM es.events)
         WHERE projections.name = p.name;
    END IF;
END
$$;
COMMENT ON FUNCTION es.pause_projection(text) IS
    'Stops applying events to a projection until es.resume_projection, which catches up on what was appended meanwhile. A paused async projection holds WAL back.';

CREATE OR REPLACE FUNCTION es.resume_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
    IF p.mode = 'async' THEN
        PERFORM es._projector_check();
        -- a failed projection retries the event it stopped at
        UPDATE es.projections SET paused = false, failed_at = NULL
         WHERE projections.name = p.name;
        PERFORM es._projector_wake();
        RETURN;
    END IF;
    LOCK TABLE es.events IN SHARE MODE;
    p := es._projection_lookup(name);
    IF p.paused THEN
        UPDATE es.projections SET paused = false, paused_at_position = NULL
         WHERE projections.name = p.name;
        PERFORM es._projection_replay(p.name, p.paused_at_position);
    END IF;
END
$$;
COMMENT ON FUNCTION es.resume_projection(text) IS
    'Resumes a paused projection, or a failed async one (from the event it stopped at): it catches up on what it missed, then follows appends again.';

CREATE OR REPLACE FUNCTION es.rebuild_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
    t regclass;
BEGIN
    IF p.mode = 'async' THEN
        PERFORM es._projector_check();
        -- the row first: the projector's batch in flight finishes, and the
        -- next one waits for this transaction
        UPDATE es.projections
           SET phase = 'rebuilding', paused = false, failed_at = NULL, last_error = NULL,
               last_error_position = NULL, caught_up_to = 0, last_position = 0,
               applied_lsn = NULL, live_snapshot = NULL, live_snapshot_lsn = NULL,
               last_applied_at = NULL,
               catchup_target = (SELECT coalesce(max(global_position), 0) FROM es.events)
         WHERE projections.name = p.name;
        FOREACH t IN ARRAY p.tables LOOP
            EXECUTE format('TRUNCATE %s', t);
        END LOOP;
        DELETE FROM es.projection_errors e WHERE e.projection = p.name;
        PERFORM es._projector_wake();
        RETURN;
    END IF;
    LOCK TABLE es.events IN SHARE MODE;
    p := es._projection_lookup(name);
    FOREACH t IN ARRAY p.tables LOOP
        EXECUTE format('TRUNCATE %s', t);
    END LOOP;
    UPDATE es.projections SET paused = false, paused_at_position = NULL
     WHERE projections.name = p.name;
    PERFORM es._projection_replay(p.name, 0);
END
$$;
COMMENT ON FUNCTION es.rebuild_projection(text) IS
    'Truncates a projection''s tables and replays the whole history into them. Inline: in this transaction, appends wait. Async: online, the projector catches up while appends continue.';

CREATE FUNCTION es.retry_projection_errors(name text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
    e record;
    fixed bigint := 0;
    state text;
    msg text;
BEGIN
    FOR e IN SELECT pe.global_position FROM es.projection_errors pe
              WHERE pe.projection = p.name ORDER BY pe.global_position FOR UPDATE
    LOOP
        BEGIN
            PERFORM es._projection_apply_one(p.name, e.global_position);
            DELETE FROM es.projection_errors pe
             WHERE pe.projection = p.name AND pe.global_position = e.global_position;
            fixed := fixed + 1;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            UPDATE es.projection_errors pe
               SET attempts = pe.attempts + 1, sqlstate = state, message = msg,
                   last_failed_at = now()
             WHERE pe.projection = p.name AND pe.global_position = e.global_position;
        END;
    END LOOP;
    RETURN fixed;
END
$$;
COMMENT ON FUNCTION es.retry_projection_errors(text) IS
    'Applies a projection''s parked events again (in position order, in this transaction); returns how many succeeded. Those that fail again stay parked.';

CREATE OR REPLACE FUNCTION es.wait_for_projection(
    name text,
    "position" bigint DEFAULT NULL,
    timeout interval DEFAULT '5 seconds')
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections;
    target pg_lsn;
    deadline timestamptz := clock_timestamp() + coalesce(timeout, '5 seconds');
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'es.wait_for_projection needs READ COMMITTED'
            USING ERRCODE = '25001',
                  DETAIL = 'It must see other transactions'' commits while it waits.';
    END IF;
    p := es._projection_lookup(name);
    IF p.mode = 'async' AND "position" IS NULL THEN
        -- every append committed before this call
        target := es._projector_target_lsn(NULL);
    END IF;
    LOOP
        p := es._projection_lookup(name);
        IF p.mode = 'async' AND target IS NULL THEN
            -- the append of the event at position, once it has committed
            target := es._projector_target_lsn("position");
        END IF;
        IF p.mode = 'inline' THEN
            -- an inline projection has applied every committed event unless paused
            IF NOT p.paused AND ("position" IS NULL OR EXISTS
                   (SELECT FROM es.events e WHERE e.global_position = "position")) THEN
                RETURN true;
            END IF;
        ELSIF p.phase = 'live' AND p.applied_lsn >= target THEN
            RETURN true;
        ELSIF p.phase <> 'live' AND "position" IS NOT NULL AND p.caught_up_to >= "position" THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
END
$$;
COMMENT ON FUNCTION es.wait_for_projection(text, bigint, interval) IS
    'Read-your-writes: waits until the projection has applied the event at position (NULL: everything committed so far); false on timeout.';

DROP VIEW es.projection_status;
CREATE VIEW es.projection_status AS
SELECT p.name,
       p.mode,
       CASE WHEN p.paused THEN 'paused'
            WHEN p.failed_at IS NOT NULL THEN 'failed'
            WHEN p.phase <> 'live' THEN p.phase
            ELSE 'running' END AS status,
       p.handler,
       p.event_types,
       p.tables,
       p.on_error,
       s.last_position,
       s.lag_events,
       CASE WHEN s.lag_events = 0 THEN 0
            ELSE coalesce(extract(epoch FROM clock_timestamp() -
                     (SELECT e.recorded_at FROM es.events e
                       WHERE e.global_position > s.last_position
                       ORDER BY e.global_position LIMIT 1)), 0)
       END::double precision AS lag_seconds,
       CASE WHEN p.phase = 'live' THEN NULL
            WHEN p.catchup_target = 0 THEN 0
            ELSE least(round(100.0 * p.caught_up_to / p.catchup_target, 1), 100) END
           AS progress_percent,
       (SELECT count(*) FROM es.projection_errors pe WHERE pe.projection = p.name) AS errors,
       p.last_error,
       p.last_error_position,
       p.failed_at,
       CASE WHEN p.mode = 'async' AND p.applied_lsn IS NOT NULL AND NOT pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_current_wal_lsn(), p.applied_lsn) END::bigint
           AS retained_wal_bytes,
       p.created_at
  FROM es.projections p,
       LATERAL (
           SELECT l.last_position,
                  -- the events after the last applied position, counted up
                  -- to 100,000; beyond, the positions after it (an upper
                  -- bound: failed appends leave gaps), cheap at any size
                  CASE WHEN p.mode = 'inline' AND NOT p.paused THEN 0
                       ELSE (SELECT CASE WHEN c.n < 100000 THEN c.n
                                         ELSE greatest((SELECT max(e.global_position) FROM es.events e)
                                                       - l.last_position, c.n) END
                               FROM (SELECT count(*) AS n
                                       FROM (SELECT FROM es.events e
                                              WHERE e.global_position > l.last_position
                                              LIMIT 100000) x) c) END AS lag_events
             FROM (SELECT CASE WHEN p.mode = 'inline' AND p.paused THEN p.paused_at_position
                               WHEN p.mode = 'inline'
                                   THEN (SELECT coalesce(max(e.global_position), 0) FROM es.events e)
                               WHEN p.phase = 'live' THEN greatest(p.last_position, p.caught_up_to)
                               ELSE p.caught_up_to END AS last_position) l
       ) s;
COMMENT ON VIEW es.projection_status IS
    'Each projection: status (running, catching_up, rebuilding, paused, failed), the last position it applied, its lag in events and seconds, catch-up progress, parked errors, the last error, and the WAL an async projection holds back.';

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC, as for the rest of the schema.
-- ---------------------------------------------------------------------------

REVOKE ALL ON es.projection_errors, es.projection_status FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    es._projector_check(),
    es._projector_wake(),
    es._projector_target_lsn(bigint),
    es._projection_apply_one(text, bigint),
    es.retry_projection_errors(text)
FROM PUBLIC;
