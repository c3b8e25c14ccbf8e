-- fold_safety.sql: es.fold and upcasting stay right when user code re-enters
-- them (a reducer that folds, an upcaster that reads events) or changes
-- functions while a fold runs; per-event memory is freed.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;

-- three small streams, and a parent whose events name them
SELECT es.append('fs-child-' || c, ARRAY(
    SELECT es.new_event('FsAdded', jsonb_build_object('amount', c * 10 + i))
      FROM generate_series(1, c) i))
  FROM generate_series(1, 3) c;
SELECT es.append('fs-parent', ARRAY(
    SELECT es.new_event('FsChild', jsonb_build_object('child', 'fs-child-' || c, 'k', c))
      FROM generate_series(1, 3) c));

-- an inlined SQL reducer
CREATE FUNCTION fs_sum(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object('sum', coalesce((state ->> 'sum')::int, 0) + (e.data ->> 'amount')::int,
                          'n', coalesce((state ->> 'n')::int, 0) + 1);
SELECT es.fold('fs-child-' || c, 'fs_sum(jsonb, es.event)', '{}', NULL) FROM generate_series(1, 3) c;

-- an inlined SQL reducer that folds, with another reducer, in the middle of
-- its expression: the inner fold compiles and runs its own reducer while
-- the outer one is half evaluated (it used to free or overwrite it)
CREATE FUNCTION fs_nested(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql VOLATILE
RETURN state || jsonb_build_object(
    'k' || (e.data ->> 'k'), e.data -> 'k',
    'child' || (e.data ->> 'k'), es.fold(e.data ->> 'child', 'fs_sum(jsonb, es.event)', '{}', NULL),
    'v' || (e.data ->> 'k'), e.stream_version);
SELECT es.fold('fs-parent', 'fs_nested(jsonb, es.event)', '{}', NULL);
-- and again, with both reducers compiled already
SELECT es.fold('fs-parent', 'fs_nested(jsonb, es.event)', '{}', NULL);

-- a reducer that folds with itself: the parent folds each child with the
-- same reducer, which counts and sums
CREATE FUNCTION fs_self(state jsonb, e es.event) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    sub jsonb;
BEGIN
    IF e.event_type = 'FsChild' THEN
        sub := es.fold(e.data ->> 'child', 'public.fs_self(jsonb, es.event)', '{}', NULL);
        RETURN jsonb_build_object('sum', coalesce((state ->> 'sum')::int, 0) + (sub ->> 'sum')::int,
                                  'n', coalesce((state ->> 'n')::int, 0) + (sub ->> 'n')::int,
                                  'parents', coalesce((state ->> 'parents')::int, 0) + 1);
    END IF;
    RETURN jsonb_build_object('sum', coalesce((state ->> 'sum')::int, 0) + (e.data ->> 'amount')::int,
                              'n', coalesce((state ->> 'n')::int, 0) + 1);
END $$;
SELECT es.fold('fs-parent', 'fs_self(jsonb, es.event)', '{}', NULL);
-- a fold inside a fold inside a fold: deeper than the cache of reducers
SELECT es.append('fs-deep-' || d, ARRAY[
    es.new_event('FsChild', jsonb_build_object('child', CASE WHEN d = 12 THEN 'fs-child-3'
                                                              ELSE 'fs-deep-' || (d + 1) END))])
  FROM generate_series(1, 12) d;
SELECT es.fold('fs-deep-1', 'fs_self(jsonb, es.event)', '{}', NULL);

-- a pg_proc invalidation while the fold runs: the reducer replaces a
-- function (the local invalidation is processed at once), on every event;
-- the compiled reducer it runs in must survive, and the results stay right
CREATE FUNCTION fs_dummy() RETURNS int LANGUAGE sql RETURN 0;
CREATE FUNCTION fs_ddl(state jsonb, e es.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE OR REPLACE FUNCTION public.fs_dummy() RETURNS int LANGUAGE sql RETURN %s',
                   e.stream_version);
    RETURN jsonb_build_object('sum', coalesce((state ->> 'sum')::int, 0) + (e.data ->> 'amount')::int,
                              'n', coalesce((state ->> 'n')::int, 0) + 1,
                              'dummy', public.fs_dummy());
END $$;
SELECT es.append('fs-many', ARRAY(
    SELECT es.new_event('FsAdded', jsonb_build_object('amount', i)) FROM generate_series(1, 300) i));
SELECT es.fold('fs-many', 'fs_ddl(jsonb, es.event)', '{}', NULL);
-- an invalidation, then a fold that compiles another reducer, inside a fold
CREATE FUNCTION fs_ddl_nested(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql VOLATILE
RETURN state || jsonb_build_object(
    'k' || (e.data ->> 'k'), e.data -> 'k',
    'ddl' || (e.data ->> 'k'), es.fold('fs-many', 'fs_ddl(jsonb, es.event)', '{}', NULL) -> 'sum',
    'child' || (e.data ->> 'k'), es.fold(e.data ->> 'child', 'fs_sum(jsonb, es.event)', '{}', NULL),
    'v' || (e.data ->> 'k'), e.stream_version);
SELECT es.fold('fs-parent', 'fs_ddl_nested(jsonb, es.event)', '{}', NULL);
SELECT public.fs_dummy();
-- a reducer replaced between folds is recompiled
CREATE OR REPLACE FUNCTION fs_sum(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object('sum', coalesce((state ->> 'sum')::int, 0) + 100 * (e.data ->> 'amount')::int);
SELECT es.fold('fs-child-2', 'fs_sum(jsonb, es.event)', '{}', NULL);
-- a failed fold leaves nothing in use: the next ones work
\set VERBOSITY terse
SELECT es.fold('fs-parent', 'fs_self(jsonb, es.event)', '{"sum": "x"}', NULL);
\set VERBOSITY default
-- a failed inner fold, caught inside the outer reducer
CREATE FUNCTION fs_catch(state jsonb, e es.event) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    failed boolean := false;
BEGIN
    BEGIN
        PERFORM es.fold(e.data ->> 'child', 'public.fs_self(jsonb, es.event)', '{"sum": "x"}', NULL);
    EXCEPTION WHEN invalid_text_representation THEN
        failed := true;
    END;
    RETURN state || jsonb_build_object(e.data ->> 'k', jsonb_build_object(
        'failed', failed,
        'sub', es.fold(e.data ->> 'child', 'public.fs_self(jsonb, es.event)', '{}', NULL)));
END $$;
SELECT es.fold('fs-parent', 'fs_catch(jsonb, es.event)', '{}', NULL);
SELECT es.fold('fs-child-2', 'fs_sum(jsonb, es.event)', '{}', NULL);
SELECT es.fold('fs-parent', 'fs_nested(jsonb, es.event)', '{}', NULL);

-- an upcaster that reads events: an inlined SQL upcaster that reads the
-- last event of another stream (upcast with the same step) in the middle of
-- its expression, and a plpgsql one that reads a stream
SELECT es.append_event('fs-up-ref', 'FsOld', '{"x": "inner-x", "y": "inner-y"}');
SELECT es.append('fs-up', ARRAY[
    es.new_event('FsOld', '{"x": "outer-x1", "y": "outer-y1", "ref": "fs-up-ref"}'),
    es.new_event('FsOld', '{"x": "outer-x2", "y": "outer-y2", "ref": "fs-up-ref"}')]);
CREATE FUNCTION fs_up(data jsonb) RETURNS jsonb
LANGUAGE sql VOLATILE
RETURN jsonb_build_object(
    'x', data -> 'x',
    'inner', CASE WHEN data ? 'ref' THEN (es.last_event(data ->> 'ref')).data END,
    'y', data -> 'y');
SELECT es.register_upcaster('FsOld', 1, 'fs_up(jsonb)');
SELECT stream_version, event_type, schema_version, data FROM es.read_stream('fs-up');
CREATE FUNCTION fs_collect(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN state || jsonb_build_object(e.stream_version::text, e.data);
SELECT es.fold('fs-up', 'fs_collect(jsonb, es.event)', '{}', NULL);
SELECT es.unregister_upcaster('FsOld', 1);
CREATE FUNCTION fs_up_count(data jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    seen jsonb;
BEGIN
    IF data ? 'ref' THEN
        SELECT jsonb_agg(r.data ORDER BY r.stream_version) INTO seen
          FROM es.read_stream(data ->> 'ref') r;
    END IF;
    RETURN data || jsonb_build_object('seen', seen);
END $$;
SELECT es.register_upcaster('FsOld', 1, 'fs_up_count(jsonb)');
SELECT stream_version, data FROM es.read_stream('fs-up');
SELECT es.fold('fs-up', 'fs_collect(jsonb, es.event)', '{}', NULL);
SELECT es.unregister_upcaster('FsOld', 1);

-- memory: a fold of 20000 upcast events keeps per-event memory bounded.
-- The reducer notes the backend's memory (all contexts) at events 2000 and
-- 20000; it used to grow by some KB per event (tens of MB here).
SELECT es.append('fs-mem', ARRAY(
    SELECT es.new_event('FsMem', jsonb_build_object('amount', i, 'pad', repeat('p', 400)))
      FROM generate_series(1, 20000) i));
CREATE FUNCTION fs_mem_up(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN data || '{"up": true}';
SELECT es.register_upcaster('FsMem', 1, 'fs_mem_up(jsonb)');
CREATE FUNCTION fs_mem(state jsonb, e es.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    state := jsonb_set(state, '{n}', to_jsonb(coalesce((state ->> 'n')::int, 0)
                                              + CASE WHEN e.data ? 'up' THEN 1 ELSE 0 END));
    IF e.stream_version IN (2000, 20000) THEN
        state := jsonb_set(state, ARRAY['m' || e.stream_version],
                           (SELECT to_jsonb(sum(total_bytes)) FROM pg_catalog.pg_backend_memory_contexts));
    END IF;
    RETURN state;
END $$;
SELECT s ->> 'n' AS n, (s ->> 'm20000')::bigint - (s ->> 'm2000')::bigint < 4 * 1024 * 1024 AS bounded
  FROM es.fold('fs-mem', 'fs_mem(jsonb, es.event)', '{}', NULL) s;
SELECT es.unregister_upcaster('FsMem', 1);
