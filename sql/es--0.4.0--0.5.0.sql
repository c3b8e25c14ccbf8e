-- es 0.4.0 -> 0.5.0: robustness (issue 11) and what follows it
--
-- Each section below names what it changes and why.

\echo Use "ALTER EXTENSION es UPDATE TO '0.5.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Handlers and upcasters resolve names with the search_path of whoever
-- registered them (as SET search_path FROM CURRENT captures it), pg_temp
-- moved last; registrations made before 0.5.0 keep pg_catalog, pg_temp.
-- A function's own SET search_path clause still wins.
-- ---------------------------------------------------------------------------

CREATE FUNCTION es._caller_search_path() RETURNS text
AS 'MODULE_PATHNAME', 'es_caller_search_path' LANGUAGE C STABLE;
COMMENT ON FUNCTION es._caller_search_path() IS
    'Internal: the search_path (pg_temp last) of the caller of the es admin function in progress, which the handler or upcaster it registers runs with; pg_catalog, pg_temp outside one (rows restored from a dump made before 0.5.0).';
REVOKE EXECUTE ON FUNCTION es._caller_search_path() FROM PUBLIC;

ALTER TABLE es.projections
    ADD COLUMN search_path text NOT NULL DEFAULT 'pg_catalog, pg_temp';
ALTER TABLE es.projections
    ALTER COLUMN search_path SET DEFAULT es._caller_search_path();
COMMENT ON COLUMN es.projections.search_path IS
    'The search_path the handler runs with: its registrant''s at es.create_projection, pg_temp last.';

ALTER TABLE es.upcaster_steps
    ADD COLUMN search_path text NOT NULL DEFAULT 'pg_catalog, pg_temp';
ALTER TABLE es.upcaster_steps
    ALTER COLUMN search_path SET DEFAULT es._caller_search_path();
COMMENT ON COLUMN es.upcaster_steps.search_path IS
    'The search_path the step''s function runs (and is inlined) with: its registrant''s at es.register_upcaster, pg_temp last.';

-- ---------------------------------------------------------------------------
-- es.wait_for_projection sleeps on a condition variable that every commit
-- of a projector, an append or a projection's state change broadcasts (no
-- polling), and tells at once why it cannot succeed: a paused or stopped
-- projection raises ES004 instead of waiting out its timeout.
-- ---------------------------------------------------------------------------

CREATE FUNCTION es._projection_changes() RETURNS bigint
AS 'MODULE_PATHNAME', 'es_projection_changes' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es._projection_changes() IS
    'Internal: a counter that moves whenever a projector, an append or a change of a projection''s state commits; what es._projection_wait waits on.';
REVOKE EXECUTE ON FUNCTION es._projection_changes() FROM PUBLIC;

CREATE FUNCTION es._projection_wait(seen bigint, deadline timestamptz) RETURNS boolean
AS 'MODULE_PATHNAME', 'es_projection_wait' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION es._projection_wait(bigint, timestamptz) IS
    'Internal: sleeps until es._projection_changes() moves past seen (true) or until the deadline (false).';
REVOKE EXECUTE ON FUNCTION es._projection_wait(bigint, timestamptz) FROM PUBLIC;

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
    seen bigint;
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
        -- read before looking: a commit after this wakes the sleep below
        seen := es._projection_changes();
        p := es._projection_lookup(name);
        IF p.mode = 'async' AND target IS NULL THEN
            -- the append of the event at position, once it has committed
            target := es._projector_target_lsn("position");
        END IF;
        IF p.mode = 'inline' THEN
            -- an inline projection has applied every committed event unless
            -- paused, and before its pause everything up to paused_at_position
            IF ("position" IS NULL AND NOT p.paused) OR
               ("position" IS NOT NULL
                AND (NOT p.paused OR "position" <= p.paused_at_position)
                AND EXISTS (SELECT FROM ONLY es.events e
                             WHERE e.global_position OPERATOR(pg_catalog.=) "position")) THEN
                RETURN true;
            END IF;
        ELSIF p.phase = 'live' AND p.applied_lsn >= target THEN
            RETURN true;
        ELSIF p.phase <> 'live' AND "position" IS NOT NULL AND p.caught_up_to >= "position" THEN
            RETURN true;
        END IF;
        IF p.paused THEN
            RAISE EXCEPTION 'projection "%" is paused', p.name
                USING ERRCODE = 'ES004',
                      DETAIL = 'A paused projection applies no events, so waiting for it cannot succeed.',
                      HINT = format('Resume it with es.resume_projection(%L).', p.name);
        END IF;
        IF p.failed_at IS NOT NULL THEN
            RAISE EXCEPTION 'projection "%" has stopped at the event at position %',
                            p.name, p.last_error_position
                USING ERRCODE = 'ES004',
                      DETAIL = 'Its handler failed on that event; es.projection_status shows the error.',
                      HINT = format('Fix the handler, then call es.resume_projection(%L).', p.name);
        END IF;
        IF NOT es._projection_wait(seen, deadline) THEN
            RETURN false;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION es.wait_for_projection(text, bigint, interval) IS
    'Read-your-writes: waits until the projection has applied the event at position (NULL: everything committed so far); false on timeout, ES004 at once for a paused or stopped projection.';

CREATE FUNCTION es._projection_changed() RETURNS void
AS 'MODULE_PATHNAME', 'es_projection_changed' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es._projection_changed() IS
    'Internal: wakes the waiters of es.wait_for_projection when this transaction commits (a projection''s state changed).';
REVOKE EXECUTE ON FUNCTION es._projection_changed() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Try appends (issue 13, item 1)
--
-- es.try_append, es.try_append_json and es.try_append_event are the append
-- functions with one difference: a stale expected version returns NULL
-- instead of raising ES001, so that a retry loop neither aborts its
-- transaction nor writes an ERROR to the server log per conflict.  They run
-- the same C code as es.append* (src/append.c), under the same stream lock;
-- every other error still raises.  The expected version is required (NULL
-- is 22004).  Like es.append*, they insert in C, need no privilege on
-- es.events, and are not SECURITY DEFINER: EXECUTE on them is the right to
-- append, granted to nobody by default.
-- ---------------------------------------------------------------------------

CREATE FUNCTION es.try_append(
    stream_id text,
    events es.new_event[],
    expected_version bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_try_append'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.try_append(text, es.new_event[], bigint) IS
    'es.append that returns NULL, writing nothing and raising nothing, when the stream is not at expected_version (required: 0 none, -1 some, N exactly N); other errors raise. A repeat of an earlier call (same event ids) returns its version.';

CREATE FUNCTION es.try_append_json(
    stream_id text,
    events jsonb,
    expected_version bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_try_append_json'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.try_append_json(text, jsonb, bigint) IS
    'es.append_json that returns NULL instead of raising ES001 when the stream is not at expected_version (required).';

-- expected_version keeps its place and its DEFAULT so that named calls can
-- leave metadata out; a call that leaves it out too gets 22004.
CREATE FUNCTION es.try_append_event(
    stream_id text,
    event_type text,
    data jsonb,
    metadata jsonb DEFAULT NULL,
    expected_version bigint DEFAULT NULL,
    event_id uuid DEFAULT NULL,
    schema_version int DEFAULT 1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_try_append_event'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es.try_append_event(text, text, jsonb, jsonb, bigint, uuid, int) IS
    'es.append_event that returns NULL instead of raising ES001 when the stream is not at expected_version (required: NULL is an error).';

REVOKE EXECUTE ON FUNCTION
    es.try_append(text, es.new_event[], bigint),
    es.try_append_json(text, jsonb, bigint),
    es.try_append_event(text, text, jsonb, jsonb, bigint, uuid, int)
  FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Batch handlers (issue 14, item 2): an async projection's handler may take
-- es.event[]: the upcast events of one or more committed transactions, in
-- commit order (in position order in a catch-up or rebuild), for set-based
-- SQL.  On an error, es applies the events one at a time to find the one
-- that fails, for on_error.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION es._create_projection(
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
    t pg_catalog.regclass;
BEGIN
    IF name IS NULL OR name OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'projection name must not be NULL or empty' USING ERRCODE = '22023';
    END IF;
    IF handler IS NULL THEN
        RAISE EXCEPTION 'handler must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT p.pronargs, p.proargtypes, p.prorettype, p.prokind INTO fn
      FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) handler;
    IF fn.prokind OPERATOR(pg_catalog.<>) 'f' OR fn.pronargs OPERATOR(pg_catalog.<>) 1
       OR fn.proargtypes[0] OPERATOR(pg_catalog.<>)
              ALL (ARRAY['es.event', 'es.event[]']::pg_catalog.regtype[]::pg_catalog.oid[])
       OR fn.prorettype OPERATOR(pg_catalog.<>) 'pg_catalog.void'::pg_catalog.regtype THEN
        RAISE EXCEPTION 'handler % must be a function (e es.event) RETURNS void, or a batch handler (events es.event[]) RETURNS void', handler
            USING ERRCODE = '42P13';
    END IF;
    -- a batch handler takes the events of one or more committed transactions
    IF fn.proargtypes[0] OPERATOR(pg_catalog.=) 'es.event[]'::pg_catalog.regtype
       AND mode OPERATOR(pg_catalog.=) 'inline' THEN
        RAISE EXCEPTION 'inline projections take one event at a time'
            USING ERRCODE = '22023',
                  DETAIL = pg_catalog.format('The handler %s takes es.event[], a batch of events: that is for async projections.', handler),
                  HINT = 'Use mode => ''async'', or a handler (e es.event) RETURNS void.';
    END IF;
    -- it will run as its owner on every event: only that owner may lend it
    PERFORM es._check_function_owner(handler, 'handler');
    IF mode IS NULL OR mode OPERATOR(pg_catalog.<>) ALL (ARRAY['inline', 'async']) THEN
        RAISE EXCEPTION 'invalid projection mode "%"', mode
            USING ERRCODE = '22023', HINT = 'Use ''inline'' or ''async''.';
    END IF;
    IF on_error IS NULL OR on_error OPERATOR(pg_catalog.<>) ALL (ARRAY['stop', 'park']) THEN
        RAISE EXCEPTION 'invalid on_error "%"', on_error
            USING ERRCODE = '22023', HINT = 'Use ''stop'' or ''park''.';
    END IF;
    IF mode OPERATOR(pg_catalog.=) 'inline' AND on_error OPERATOR(pg_catalog.=) 'park' THEN
        RAISE EXCEPTION 'inline projections cannot park events'
            USING ERRCODE = '22023',
                  DETAIL = 'An inline handler runs in the appending transaction: its error aborts the append.';
    END IF;
    IF event_types IS NOT NULL AND (pg_catalog.cardinality(event_types) OPERATOR(pg_catalog.=) 0
       OR pg_catalog.array_position(event_types, NULL) IS NOT NULL
       OR '' OPERATOR(pg_catalog.=) ANY (event_types)) THEN
        RAISE EXCEPTION 'event_types must be NULL (all) or a non-empty array of non-empty types'
            USING ERRCODE = '22023';
    END IF;
    IF tables IS NOT NULL AND pg_catalog.array_position(tables, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'tables must not contain NULL' USING ERRCODE = '22004';
    END IF;
    -- es.rebuild_projection truncates them: the caller must be allowed to
    FOREACH t IN ARRAY coalesce(tables, '{}') LOOP
        PERFORM es._check_projection_table(t, name);
    END LOOP;
    IF EXISTS (SELECT FROM ONLY es.projections p
                WHERE p.name OPERATOR(pg_catalog.=) _create_projection.name) THEN
        RAISE EXCEPTION 'projection "%" already exists', name USING ERRCODE = '42710';
    END IF;

    IF mode OPERATOR(pg_catalog.=) 'async' THEN
        PERFORM es._projector_check();
    ELSE
        -- no append in flight: the replay and the trigger apply each event once
        LOCK TABLE ONLY es.events IN SHARE MODE;
    END IF;
    PERFORM es._projection_register(name, handler, event_types, mode, tables, on_error);
END
$$;
COMMENT ON FUNCTION es._create_projection(text, regprocedure, text[], text, regclass[], text) IS
    'Internal: the implementation of es.create_projection, which checks the caller''s rights first.';

-- ---------------------------------------------------------------------------
-- One owner for a projection's state (issue 14): every change of a
-- projection's row (its phase, paused, failed, its checkpoints) is a
-- transition in C (src/projector/state.c), the same code whether an admin
-- function, a projection worker or the projector makes it.  The admin
-- functions keep their checks of the arguments and of the caller's rights,
-- and their locks, and call es._projection_register (es._create_projection,
-- above) or es._projection_transition.  Pausing or dropping also wakes the
-- waiters of es.wait_for_projection (which then raise ES004 or 42704).
-- ---------------------------------------------------------------------------

CREATE FUNCTION es._projection_register(
    name text,
    handler regprocedure,
    event_types text[],
    mode text,
    tables regclass[],
    on_error text)
RETURNS void
AS 'MODULE_PATHNAME', 'es_projection_register' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION es._projection_register(text, regprocedure, text[], text, regclass[], text) IS
    'Internal: registers a projection that es._create_projection checked, in its first state: an inline one replays the history, an async one starts catching up.';

CREATE FUNCTION es._projection_transition(name text, transition text) RETURNS void
AS 'MODULE_PATHNAME', 'es_projection_transition' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION es._projection_transition(text, text) IS
    'Internal: locks a projection''s row, then pauses, resumes, rebuilds (truncating its tables as their owners) or drops it: transition ''pause'', ''resume'', ''rebuild'' or ''drop''.';

REVOKE EXECUTE ON FUNCTION
    es._projection_register(text, regprocedure, text[], text, regclass[], text),
    es._projection_transition(text, text)
FROM PUBLIC;

CREATE OR REPLACE FUNCTION es.pause_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
    IF p.mode OPERATOR(pg_catalog.=) 'inline' THEN
        -- appends in flight commit first: the pause is after each of them
        LOCK TABLE ONLY es.events IN SHARE MODE;
    END IF;
    PERFORM es._projection_transition(p.name, 'pause');
END
$$;

CREATE OR REPLACE FUNCTION es.resume_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
    IF p.mode OPERATOR(pg_catalog.=) 'async' THEN
        PERFORM es._projector_check();
    ELSE
        -- no append in flight: the replay and the trigger apply each event once
        LOCK TABLE ONLY es.events IN SHARE MODE;
    END IF;
    PERFORM es._projection_transition(p.name, 'resume');
END
$$;

CREATE OR REPLACE FUNCTION es._rebuild_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
    t pg_catalog.regclass;
BEGIN
    IF p.mode OPERATOR(pg_catalog.=) 'async' THEN
        PERFORM es._projector_check();
    ELSE
        -- no append in flight: the replay and the trigger apply each event once
        LOCK TABLE ONLY es.events IN SHARE MODE;
    END IF;
    -- the row first (a worker's unit in flight finishes), then the caller's
    -- right to truncate each of its tables: the ones the transition
    -- truncates, as their owners, while this transaction holds the row
    SELECT * INTO p FROM ONLY es.projections j
     WHERE j.name OPERATOR(pg_catalog.=) p.name FOR NO KEY UPDATE OF j;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" does not exist', name USING ERRCODE = '42704';
    END IF;
    FOREACH t IN ARRAY p.tables LOOP
        PERFORM es._check_projection_table(t, p.name);
    END LOOP;
    PERFORM es._projection_transition(p.name, 'rebuild');
END
$$;

CREATE OR REPLACE FUNCTION es.drop_projection(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p es.projections := es._projection_lookup(name);
BEGIN
    IF p.mode OPERATOR(pg_catalog.=) 'inline' THEN
        -- appends in flight commit first: each ran the handler or will not
        LOCK TABLE ONLY es.events IN SHARE MODE;
    END IF;
    PERFORM es._projection_transition(p.name, 'drop');
END
$$;
