-- Handlers and upcasters resolve names as their author expects: with the
-- search_path of the session that registered them (pg_temp moved last),
-- shown in es.projections and es.upcaster_steps, in every context; a
-- function's own SET search_path clause still wins.
CREATE SCHEMA sp_app;
CREATE TABLE sp_app.balances (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION sp_app.bump(data jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT data || '{"bumped": true}' $$;

-- written the natural way: unqualified names, as tested in psql
CREATE FUNCTION sp_app.count_it(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO balances VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = balances.n + 1;
END $$;
-- its own SET clause wins: "balances" is sp_own.balances here
CREATE SCHEMA sp_own;
CREATE TABLE sp_own.balances (stream_id text, n int);
CREATE FUNCTION sp_app.count_own(e es.event) RETURNS void LANGUAGE sql
SET search_path = sp_own, pg_temp
AS $$ INSERT INTO balances VALUES (e.stream_id, 1) $$;
CREATE TABLE sp_app.async_counts (stream_id text, global_position bigint);

-- registered with pg_temp first: it is moved last
SET search_path = pg_temp, sp_app, public;
CREATE FUNCTION sp_app.count_async(e es.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO async_counts VALUES (e.stream_id, e.global_position) $$;
-- an SQL upcaster calling a helper by its bare name (inlined as its owner)
CREATE FUNCTION sp_app.up_v1(data jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT bump(data) $$;
SELECT es.create_projection('sp_inline', 'count_it(es.event)', mode => 'inline',
                            event_types => ARRAY['SpCounted']);
SELECT es.create_projection('sp_own', 'count_own(es.event)', mode => 'inline',
                            event_types => ARRAY['SpCounted']);
SELECT es.register_upcaster('SpOld', 1, 'up_v1(jsonb)');
SELECT es.create_projection('sp_async', 'count_async(es.event)', event_types => ARRAY['SpCounted']);
RESET search_path;
SELECT name, search_path FROM es.projections WHERE name LIKE 'sp\_%' ORDER BY name;
SELECT event_type, search_path FROM es.upcaster_steps WHERE event_type = 'SpOld';

-- another session's search_path does not matter, nor a temporary table of
-- the appender named like the handler's target
SET search_path = public;
CREATE TEMP TABLE balances (stream_id text, n int);
SELECT es.append_event('sp-1', 'SpCounted', '{}');
SELECT es.append_event('sp-1', 'SpCounted', '{}');
SELECT * FROM sp_app.balances;
SELECT count(*) AS temp_rows FROM pg_temp.balances;
SELECT * FROM sp_own.balances;
DROP TABLE pg_temp.balances;
-- ... and in the projector, whose own session has none of these paths
SELECT es.wait_for_projection('sp_async', timeout => '30 seconds');
SELECT stream_id, count(*) FROM sp_app.async_counts GROUP BY stream_id;

-- the upcaster's helper resolves by its registration's path, on a read
SELECT es.append_json('sp-2', '[{"type": "SpOld", "schema_version": 1, "data": {"n": 1}}]');
SELECT event_type, schema_version, data FROM es.read_stream('sp-2');

-- registered without sp_app on the path: the handler fails as it would in
-- psql, naming the relation (42P01), and the append writes nothing
SET search_path = public;
CREATE FUNCTION public.sp_count_unresolved(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO balances VALUES (e.stream_id, 1);
END $$;
SELECT es.create_projection('sp_unresolved', 'sp_count_unresolved(es.event)', mode => 'inline',
                            event_types => ARRAY['SpUnresolved']);
SELECT search_path FROM es.projections WHERE name = 'sp_unresolved';
\set VERBOSITY terse
SELECT es.append_event('sp-3', 'SpUnresolved', '{}');
\set VERBOSITY default
SELECT es.stream_version('sp-3');
RESET search_path;

-- the path is resolved at registration: "$user" is the registrant's schema
-- (none here), not the role the handler runs as, and a schema that does not
-- exist then is not searched later: a schema named after the handler's
-- owner, created afterwards (say by a database owner, with a look-alike
-- table), is never used
CREATE ROLE sp_owner NOLOGIN;
CREATE TABLE public.sp_counts (stream_id text, n int);
GRANT INSERT ON public.sp_counts TO sp_owner;
CREATE FUNCTION public.sp_owned(e es.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO sp_counts VALUES (e.stream_id, 1) $$;
ALTER FUNCTION public.sp_owned(es.event) OWNER TO sp_owner;
SET search_path = "$user", public, sp_not_yet;
SELECT es.create_projection('sp_user', 'sp_owned(es.event)', mode => 'inline',
                            event_types => ARRAY['SpUser']);
RESET search_path;
SELECT search_path FROM es.projections WHERE name = 'sp_user';
CREATE SCHEMA sp_owner AUTHORIZATION sp_owner;
CREATE TABLE sp_owner.sp_counts (stream_id text, n int);
GRANT INSERT ON sp_owner.sp_counts TO sp_owner;
CREATE SCHEMA sp_not_yet;
SELECT es.append_event('sp-4', 'SpUser', '{}');
SELECT (SELECT count(*) FROM public.sp_counts) AS in_public,
       (SELECT count(*) FROM sp_owner.sp_counts) AS in_lookalike;
SELECT es.drop_projection('sp_user');
DROP SCHEMA sp_owner, sp_not_yet CASCADE;
DROP FUNCTION public.sp_owned(es.event);
DROP TABLE public.sp_counts;
DROP ROLE sp_owner;

-- a row loaded without the column, as a restore of a dump made before 0.5.0
-- loads it, gets the path those registrations ran with
BEGIN;
INSERT INTO es.upcaster_steps (event_type, from_schema_version, add_fields)
VALUES ('SpRestored', 1, '{"a": 1}');
SELECT search_path FROM es.upcaster_steps WHERE event_type = 'SpRestored';
ROLLBACK;

SELECT es.drop_projection('sp_unresolved');
SELECT es.drop_projection('sp_inline');
SELECT es.drop_projection('sp_own');
SELECT es.drop_projection('sp_async');
SELECT es.unregister_upcaster('SpOld', 1);
DROP FUNCTION public.sp_count_unresolved(es.event);
DROP SCHEMA sp_app, sp_own CASCADE;
