-- es 0.1.0 -> 0.2.0: projections (inline and asynchronous read models)

\echo Use "ALTER EXTENSION es UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Catalog
--
-- A projection is a handler(e es.event) RETURNS void that writes read
-- tables.  Inline projections run in the appending transaction, through the
-- trigger below, which es.append* fires.  Asynchronous projections (run by
-- a background worker fed by logical decoding) are not in this version:
-- es.create_projection refuses mode 'async' with feature_not_supported.
-- ---------------------------------------------------------------------------

CREATE TABLE es.projections (
    name                text PRIMARY KEY,
    handler             regprocedure NOT NULL,
    event_types         text[],
    mode                text NOT NULL CHECK (mode = 'inline'),
    tables              regclass[] NOT NULL DEFAULT '{}',
    on_error            text NOT NULL CHECK (on_error = 'stop'),
    -- paused: events up to paused_at_position were applied
    paused              boolean NOT NULL DEFAULT false,
    paused_at_position  bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projections_name_check CHECK (name <> '')
);
COMMENT ON TABLE es.projections IS
    'Registered projections and their checkpoints; change it only with the es.*_projection functions.';
SELECT pg_catalog.pg_extension_config_dump('es.projections', '');
CREATE TRIGGER projections_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON es.projections
    FOR EACH STATEMENT EXECUTE FUNCTION es.registry_changed();

-- A projection's handler cannot be dropped (the registry holds its OID, not
-- a dependency; appends would fail): drop the projection first.
CREATE FUNCTION es.projection_drop_guard() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    proj record;
BEGIN
    IF to_regclass('es.projections') IS NULL THEN
        RETURN;     -- DROP EXTENSION es
    END IF;
    SELECT p.name, d.object_identity INTO proj
      FROM pg_event_trigger_dropped_objects() d
      JOIN es.projections p ON p.handler::oid = d.objid
     WHERE d.classid = 'pg_proc'::regclass
     ORDER BY p.name
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot drop function %: it is the handler of projection "%"',
            proj.object_identity, proj.name
            USING ERRCODE = '2BP01',
                  HINT = 'Drop the projection first with es.drop_projection().';
    END IF;
END
$$;
COMMENT ON FUNCTION es.projection_drop_guard() IS
    'Event trigger function: refuses to drop a function that is a projection''s handler.';
CREATE EVENT TRIGGER es_projection_drop_guard ON sql_drop
    EXECUTE FUNCTION es.projection_drop_guard();
COMMENT ON EVENT TRIGGER es_projection_drop_guard IS
    'Refuses to drop a function that is a projection''s handler.';

-- ---------------------------------------------------------------------------
-- Internal functions (C); not for direct use.
-- ---------------------------------------------------------------------------

CREATE FUNCTION es.project_inline() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_project_inline' LANGUAGE C;
COMMENT ON FUNCTION es.project_inline() IS
    'Trigger function: runs the inline projections'' handlers for an event appended by es.append*.';
CREATE TRIGGER events_project_inline
    AFTER INSERT ON es.events
    FOR EACH ROW EXECUTE FUNCTION es.project_inline();
ALTER TABLE es.events ENABLE ALWAYS TRIGGER events_project_inline;

CREATE FUNCTION es._projection_replay(name text, from_position bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_projection_replay' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION es._projection_replay(text, bigint) IS
    'Internal: applies to a projection every event after from_position that the current snapshot shows; returns the last position.';

CREATE FUNCTION es._projection_lookup(name text) RETURNS es.projections
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'projection name must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO p FROM es.projections WHERE projections.name = _projection_lookup.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" does not exist', name USING ERRCODE = '42704';
    END IF;
    RETURN p;
END
$$;
COMMENT ON FUNCTION es._projection_lookup(text) IS
    'Internal: a projection''s row, or an error naming it.';

-- ---------------------------------------------------------------------------
-- Administration.  Each function that changes what inline handlers see
-- takes es.events in SHARE mode: it waits for appends in flight and holds
-- new ones until it commits, so every event is applied exactly once, by
-- the replay or by the trigger.
-- ---------------------------------------------------------------------------

CREATE FUNCTION es.create_projection(
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
    IF mode = 'async' THEN
        RAISE EXCEPTION 'asynchronous projections are not available in es 0.2.0'
            USING ERRCODE = '0A000',
                  HINT = 'Use mode => ''inline'': the handler then runs in each appending transaction.';
    END IF;
    IF on_error = 'park' THEN
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

    LOCK TABLE es.events IN SHARE MODE;
    INSERT INTO es.projections (name, handler, event_types, mode, tables, on_error)
    VALUES (name, handler, event_types, mode, coalesce(tables, '{}'), on_error);
    PERFORM es._projection_replay(name, 0);
END
$$;
COMMENT ON FUNCTION es.create_projection(text, regprocedure, text[], text, regclass[], text) IS
    'Registers a projection, handler(e es.event) RETURNS void, and replays the existing history into it; inline handlers then run in every appending transaction.';

CREATE FUNCTION es.drop_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
    LOCK TABLE es.events IN SHARE MODE;
    DELETE FROM es.projections WHERE projections.name = p.name;
END
$$;
COMMENT ON FUNCTION es.drop_projection(text) IS
    'Removes a projection; its read tables are left as they are.';

CREATE FUNCTION es.pause_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
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
    'Stops applying events to a projection until es.resume_projection, which catches up on what was appended meanwhile.';

CREATE FUNCTION es.resume_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
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
    'Resumes a paused projection: replays the events appended while it was paused, then runs inline again.';

CREATE FUNCTION es.rebuild_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
    t regclass;
BEGIN
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
    'Truncates a projection''s tables and replays the whole history into them, in one transaction; appends wait until it commits.';

CREATE FUNCTION es.wait_for_projection(
    name text,
    "position" bigint DEFAULT NULL,
    timeout interval DEFAULT '5 seconds')
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections;
    deadline timestamptz := clock_timestamp() + coalesce(timeout, '5 seconds');
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'es.wait_for_projection needs READ COMMITTED'
            USING ERRCODE = '25001',
                  DETAIL = 'It must see other transactions'' commits while it waits.';
    END IF;
    LOOP
        p := es._projection_lookup(name);
        -- an inline projection has applied every committed event unless paused
        IF NOT p.paused AND ("position" IS NULL OR EXISTS
               (SELECT FROM es.events e WHERE e.global_position = "position")) THEN
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

CREATE VIEW es.projection_status AS
SELECT p.name,
       p.mode,
       CASE WHEN p.paused THEN 'paused' ELSE 'running' END AS status,
       p.handler,
       p.event_types,
       p.tables,
       CASE WHEN p.paused THEN p.paused_at_position
            ELSE (SELECT coalesce(max(e.global_position), 0) FROM es.events e) END
           AS last_position,
       CASE WHEN p.paused
            THEN (SELECT count(*) FROM es.events e WHERE e.global_position > p.paused_at_position)
            ELSE 0 END AS lag_events,
       CASE WHEN p.paused
            THEN coalesce(extract(epoch FROM clock_timestamp() -
                     (SELECT min(e.recorded_at) FROM es.events e
                       WHERE e.global_position > p.paused_at_position)), 0)
            ELSE 0 END::double precision AS lag_seconds,
       p.created_at
  FROM es.projections p;
COMMENT ON VIEW es.projection_status IS
    'Each projection: status (running or paused), the last position it has applied, and its lag in events and seconds.';

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC, as for the rest of the schema.
-- ---------------------------------------------------------------------------

REVOKE ALL ON es.projections, es.projection_status FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    es.project_inline(),
    es.projection_drop_guard(),
    es._projection_replay(text, bigint),
    es._projection_lookup(text),
    es.create_projection(text, regprocedure, text[], text, regclass[], text),
    es.drop_projection(text),
    es.pause_projection(text),
    es.resume_projection(text),
    es.rebuild_projection(text),
    es.wait_for_projection(text, bigint, interval)
FROM PUBLIC;
