-- es 0.3.0 -> 0.4.0: no role gets more rights through es than it was granted
--
-- Who runs what, as whom (doc/security.md): handlers and upcasters run as
-- the owners of their functions, reducers as the caller of es.fold, each
-- security-restricted, under search_path = pg_catalog, pg_temp, with their
-- settings rolled back after every call (in C).  Registering a handler or
-- an upcaster takes the rights of its owner; a projection's tables take the
-- caller's TRUNCATE right, when registered and when truncated.  For those
-- checks the three admin functions that name such objects become C entry
-- points that note the calling role (es._caller()) and call their SECURITY
-- DEFINER implementations, es._<name>, which nobody else may execute.

\echo Use "ALTER EXTENSION es UPDATE TO '0.4.0'" to load this file. \quit

-- Reads use es.events itself, and 0.4.0 refuses inheritance children (a
-- child's rows would show as events): none may exist already.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_inherits i
                WHERE i.inhparent OPERATOR(pg_catalog.=) 'es.events'::pg_catalog.regclass) THEN
        RAISE EXCEPTION 'es.events has inheritance children'
            USING ERRCODE = '55000',
                  DETAIL = 'Rows of a child table would be read as events.',
                  HINT = 'Detach them (ALTER TABLE ... NO INHERIT es.events), then update again.';
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- The calling role, and the checks of its rights on what it names
-- ---------------------------------------------------------------------------

CREATE FUNCTION es._caller() RETURNS regrole
AS 'MODULE_PATHNAME', 'es_caller' LANGUAGE C STABLE;
COMMENT ON FUNCTION es._caller() IS
    'Internal: the role that called the es admin function in progress (es.create_projection, es.rebuild_projection, es.register_upcaster).';

CREATE FUNCTION es._check_function_owner(fn regprocedure, what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
BEGIN
    SELECT p.proname, p.proowner, p.pronamespace INTO f
      FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) fn;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'function % does not exist', fn USING ERRCODE = '42883';
    END IF;
    IF f.pronamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
       OR pg_catalog.pg_is_other_temp_schema(f.pronamespace) THEN
        RAISE EXCEPTION '% % must not be a temporary function', what, f.proname
            USING ERRCODE = '22023',
                  DETAIL = 'It would run for every role, and vanish with the session that created it.';
    END IF;
    IF NOT pg_catalog.pg_has_role(es._caller(), f.proowner, 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to register function % as %', fn, what
            USING ERRCODE = '42501',
                  DETAIL = format('The %s runs with the rights of its owner, role %s.',
                                  what, f.proowner::pg_catalog.regrole),
                  HINT = 'Only the function''s owner, or a member of that role, may register it.';
    END IF;
END
$$;
COMMENT ON FUNCTION es._check_function_owner(regprocedure, text) IS
    'Internal: fails unless the calling role (es._caller()) has the rights of the function''s owner, which a handler or upcaster runs as; refuses temporary functions.';

CREATE FUNCTION es._check_projection_table(t regclass, projection text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    SELECT r.relpersistence, r.relkind INTO c
      FROM pg_catalog.pg_class r WHERE r.oid OPERATOR(pg_catalog.=) t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % of projection "%" does not exist', t::pg_catalog.oid, projection
            USING ERRCODE = '42P01';
    END IF;
    IF c.relpersistence OPERATOR(pg_catalog.=) 't' THEN
        RAISE EXCEPTION 'table % of projection "%" must not be a temporary table', t, projection
            USING ERRCODE = '22023',
                  DETAIL = 'Other sessions, the projector among them, cannot see it.';
    END IF;
    IF c.relkind OPERATOR(pg_catalog.<>) ALL (ARRAY['r', 'p']::pg_catalog."char"[]) THEN
        RAISE EXCEPTION '% of projection "%" is not a table', t, projection
            USING ERRCODE = '42809';
    END IF;
    IF pg_catalog.has_table_privilege(es._caller(), t, 'TRUNCATE') IS NOT TRUE THEN
        RAISE EXCEPTION 'permission denied to truncate table %', t
            USING ERRCODE = '42501',
                  DETAIL = format('es.rebuild_projection truncates the tables of projection "%s".',
                                  projection),
                  HINT = 'The caller needs the TRUNCATE privilege on the table (its owner has it).';
    END IF;
END
$$;
COMMENT ON FUNCTION es._check_projection_table(regclass, text) IS
    'Internal: fails unless the calling role (es._caller()) may truncate the table, a permanent table of a projection.';

-- A rebuild truncates a projection's tables as their owner: their TRUNCATE
-- triggers must not run as the extension's owner.
CREATE FUNCTION es._truncate_as_owner(t regclass, projection text) RETURNS void
AS 'MODULE_PATHNAME', 'es_truncate_as_owner' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION es._truncate_as_owner(regclass, text) IS
    'Internal: truncates a table of a projection being rebuilt, as the table''s owner, security-restricted.';

-- ---------------------------------------------------------------------------
-- The implementations, SECURITY DEFINER, called only by their entry points
-- ---------------------------------------------------------------------------

CREATE FUNCTION es._register_upcaster(
    event_type text,
    from_schema_version int,
    upcaster regprocedure,
    to_event_type text,
    rename_fields jsonb,
    add_fields jsonb,
    remove_fields text[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_type  text := _register_upcaster.event_type;
    p_from  int := _register_upcaster.from_schema_version;
    p_to    text := _register_upcaster.to_event_type;
    f       record;
    k       text;
    v       jsonb;
BEGIN
    IF p_type IS NULL OR p_from IS NULL THEN
        RAISE EXCEPTION 'event_type and from_schema_version must not be null'
            USING ERRCODE = '22004';
    END IF;
    IF p_type = '' THEN
        RAISE EXCEPTION 'event_type must not be empty' USING ERRCODE = '22023';
    END IF;
    IF p_from < 1 THEN
        RAISE EXCEPTION 'from_schema_version must be at least 1, not %', p_from
            USING ERRCODE = '22023';
    END IF;

    IF upcaster IS NOT NULL THEN
        -- it will run as its owner on every read: only that owner may lend it
        PERFORM es._check_function_owner(upcaster, 'upcaster');
        SELECT p.pronargs, p.proargtypes[0] AS argtype, p.prorettype, p.proretset, p.prokind
          INTO f FROM pg_proc p WHERE p.oid = upcaster;
        IF f.prokind <> 'f' OR f.pronargs <> 1 OR f.argtype <> 'jsonb'::regtype
           OR f.prorettype <> 'jsonb'::regtype OR f.proretset THEN
            RAISE EXCEPTION 'upcaster % must be a function (data jsonb) RETURNS jsonb', upcaster
                USING ERRCODE = '42P13',
                      HINT = 'It takes the event''s data and returns it in the next schema version.';
        END IF;
    END IF;

    IF p_to IS NOT NULL THEN
        IF p_to = '' THEN
            RAISE EXCEPTION 'to_event_type must not be empty' USING ERRCODE = '22023';
        END IF;
        IF p_to = p_type THEN
            RAISE EXCEPTION 'to_event_type must differ from event_type "%"', p_type
                USING ERRCODE = '22023', HINT = 'Leave it NULL to keep the type.';
        END IF;
        -- a rename must not lead back to the type it starts from
        IF EXISTS (
            WITH RECURSIVE reach(t) AS (
                SELECT p_to
                UNION
                SELECT s.to_event_type FROM es.upcaster_steps s JOIN reach r ON s.event_type = r.t
                 WHERE s.to_event_type IS NOT NULL)
            SELECT 1 FROM reach WHERE t = p_type)
        THEN
            RAISE EXCEPTION 'renaming "%" to "%" would make a cycle of type renames', p_type, p_to
                USING ERRCODE = '42P17';
        END IF;
    END IF;

    IF rename_fields IS NOT NULL THEN
        IF jsonb_typeof(rename_fields) <> 'object' OR rename_fields = '{}' THEN
            RAISE EXCEPTION 'rename_fields must be a non-empty JSON object of "old": "new" names'
                USING ERRCODE = '22023';
        END IF;
        FOR k, v IN SELECT * FROM jsonb_each(rename_fields) LOOP
            IF jsonb_typeof(v) <> 'string' OR v #>> '{}' = '' THEN
                RAISE EXCEPTION 'rename_fields: the new name of "%" must be a non-empty string', k
                    USING ERRCODE = '22023';
            END IF;
            IF add_fields ? (v #>> '{}') OR (v #>> '{}') = ANY (remove_fields) THEN
                RAISE EXCEPTION 'rename_fields renames "%" to "%", which the same step also adds or removes',
                    k, v #>> '{}' USING ERRCODE = '22023';
            END IF;
        END LOOP;
    END IF;
    IF add_fields IS NOT NULL AND (jsonb_typeof(add_fields) <> 'object' OR add_fields = '{}') THEN
        RAISE EXCEPTION 'add_fields must be a non-empty JSON object of defaults'
            USING ERRCODE = '22023';
    END IF;
    IF remove_fields IS NOT NULL AND (cardinality(remove_fields) = 0
                                      OR array_position(remove_fields, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'remove_fields must be a non-empty array of names'
            USING ERRCODE = '22023';
    END IF;

    IF EXISTS (SELECT 1 FROM es.upcaster_steps s
                WHERE s.event_type = p_type AND s.from_schema_version = p_from) THEN
        RAISE EXCEPTION 'an upcaster for "%" version % is already registered', p_type, p_from
            USING ERRCODE = '42710',
                  HINT = 'Unregister it first with es.unregister_upcaster().';
    END IF;

    INSERT INTO es.upcaster_steps (event_type, from_schema_version, upcaster, to_event_type,
                                   rename_fields, add_fields, remove_fields)
    VALUES (p_type, p_from, upcaster, p_to, rename_fields, add_fields, remove_fields);
END
$$;
COMMENT ON FUNCTION es._register_upcaster(text, int, regprocedure, text, jsonb, jsonb, text[]) IS
    'Internal: the implementation of es.register_upcaster, which checks the caller''s rights first.';

CREATE FUNCTION es._create_projection(
    name text,
    handler regprocedure,
    event_types text[],
    mode text,
    tables regclass[],
    on_error text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn record;
    t regclass;
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
    -- it will run as its owner on every event: only that owner may lend it
    PERFORM es._check_function_owner(handler, 'handler');
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
    -- es.rebuild_projection truncates them: the caller must be allowed to
    FOREACH t IN ARRAY coalesce(tables, '{}') LOOP
        PERFORM es._check_projection_table(t, name);
    END LOOP;
    IF EXISTS (SELECT FROM es.projections p WHERE p.name = _create_projection.name) THEN
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
COMMENT ON FUNCTION es._create_projection(text, regprocedure, text[], text, regclass[], text) IS
    'Internal: the implementation of es.create_projection, which checks the caller''s rights first.';

CREATE FUNCTION es._rebuild_projection(name text) RETURNS void
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
            PERFORM es._check_projection_table(t, p.name);
        PERFORM es._truncate_as_owner(t, p.name);
        END LOOP;
        DELETE FROM es.projection_errors e WHERE e.projection = p.name;
        PERFORM es._projector_wake();
        RETURN;
    END IF;
    LOCK TABLE es.events IN SHARE MODE;
    p := es._projection_lookup(name);
    FOREACH t IN ARRAY p.tables LOOP
        PERFORM es._check_projection_table(t, p.name);
        PERFORM es._truncate_as_owner(t, p.name);
    END LOOP;
    UPDATE es.projections SET paused = false, paused_at_position = NULL
     WHERE projections.name = p.name;
    PERFORM es._projection_replay(p.name, 0);
END
$$;
COMMENT ON FUNCTION es._rebuild_projection(text) IS
    'Internal: the implementation of es.rebuild_projection, which checks the caller''s rights first.';

-- ---------------------------------------------------------------------------
-- The entry points: the same signatures, OIDs and grants as before
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION es.register_upcaster(
    event_type text,
    from_schema_version int,
    upcaster regprocedure DEFAULT NULL,
    to_event_type text DEFAULT NULL,
    rename_fields jsonb DEFAULT NULL,
    add_fields jsonb DEFAULT NULL,
    remove_fields text[] DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'es_admin_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION es.create_projection(
    name text,
    handler regprocedure,
    event_types text[] DEFAULT NULL,
    mode text DEFAULT 'async',
    tables regclass[] DEFAULT NULL,
    on_error text DEFAULT 'stop')
RETURNS void
AS 'MODULE_PATHNAME', 'es_admin_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION es.rebuild_projection(name text) RETURNS void
AS 'MODULE_PATHNAME', 'es_admin_entry'
LANGUAGE C VOLATILE;

-- ---------------------------------------------------------------------------
-- Privileges: the internal functions are for nobody but their entry points
-- ---------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION
    es._caller(),
    es._check_function_owner(regprocedure, text),
    es._check_projection_table(regclass, text),
    es._truncate_as_owner(regclass, text),
    es._register_upcaster(text, int, regprocedure, text, jsonb, jsonb, text[]),
    es._create_projection(text, regprocedure, text[], text, regclass[], text),
    es._rebuild_projection(text)
FROM PUBLIC;
-- ---------------------------------------------------------------------------
-- The append-only guard covers every object of the extension
-- ---------------------------------------------------------------------------

-- Positions are unique by constraint, no longer only by construction:
-- setval() on the sequence is a function call that no event trigger sees,
-- and a duplicate position would make gap-safe readers and projections
-- skip or repeat events.  The index keeps its name (the C code opens it by
-- name).  An existing duplicate makes the update fail, with a hint.
DROP INDEX es.events_global_position_idx;
DO $$
DECLARE
    detail text;
BEGIN
    CREATE UNIQUE INDEX events_global_position_idx ON es.events (global_position);
EXCEPTION WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RAISE EXCEPTION 'es.events holds several events at the same global_position'
        USING ERRCODE = '23505',
              DETAIL = detail,
              HINT = 'Positions were reused after setval() moved es.events_global_position_seq back; es 0.4.0 needs each position once.';
END
$$;

-- The event trigger sees every command that could alter, rename, move or
-- drop an object of es, make a child of one of its tables, or change the
-- extension's members (tags cannot be added to an event trigger in place).
DROP EVENT TRIGGER es_ddl_guard;
CREATE EVENT TRIGGER es_ddl_guard ON ddl_command_start
    WHEN TAG IN (
        'ALTER AGGREGATE', 'ALTER DOMAIN', 'ALTER EXTENSION',
        'ALTER FOREIGN TABLE', 'ALTER FUNCTION', 'ALTER INDEX',
        'ALTER MATERIALIZED VIEW', 'ALTER PROCEDURE', 'ALTER ROUTINE',
        'ALTER RULE', 'ALTER SCHEMA', 'ALTER SEQUENCE', 'ALTER TABLE',
        'ALTER TRIGGER', 'ALTER TYPE', 'ALTER VIEW',
        'CREATE FOREIGN TABLE', 'CREATE FUNCTION', 'CREATE INDEX',
        'CREATE PROCEDURE', 'CREATE RULE', 'CREATE SCHEMA', 'CREATE TABLE',
        'CREATE TRIGGER', 'CREATE VIEW',
        'DROP AGGREGATE', 'DROP DOMAIN', 'DROP FOREIGN TABLE',
        'DROP FUNCTION', 'DROP INDEX', 'DROP MATERIALIZED VIEW',
        'DROP PROCEDURE', 'DROP ROUTINE', 'DROP RULE', 'DROP SEQUENCE',
        'DROP TABLE', 'DROP TRIGGER', 'DROP TYPE', 'DROP VIEW')
    EXECUTE FUNCTION es.ddl_guard();
ALTER EVENT TRIGGER es_ddl_guard ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER es_ddl_guard IS
    'Refuses DDL that would disable the append-only triggers of es.events, make a child table of it, or alter, rename, move or drop an object of es.';
COMMENT ON FUNCTION es.ddl_guard() IS
    'Event trigger function that keeps es.events append-only and the objects of es as its scripts define them.';

-- The sql_drop guards read es's tables, which most roles may not even see:
-- as SECURITY DEFINER (their search_path is pinned since they were made),
-- a role without rights on schema es can drop its own objects again.
ALTER FUNCTION es.projection_drop_guard() SECURITY DEFINER;
ALTER FUNCTION es.upcaster_drop_guard() SECURITY DEFINER;
