-- security.sql: no role gets more rights through es than it was granted
-- (doc/security.md).  The roles of the README's recipe, a function owner
-- and an attacker's own schema try the attacks of each class:
--   1. es's own statements resolving names through the caller's search_path
--      (pg_temp types and domains, operators and functions that shadow
--      pg_catalog's), in every es function that runs SQL;
--   2. user code (handlers, upcasters, reducers) run as the wrong role;
--   3. settings and temporary objects leaking out of user code;
--   4. objects named in a call not checked against the caller's rights;
--   5. automatic snapshots written from a caller's reducer.
-- Every planted object writes to sec_evil.log when it runs, and tries to make
-- its role superuser: the log must stay empty and nobody may become
-- superuser.  (The projector's paths: test/t/013_security_projector.pl; the
-- append-only guard: guard.sql.)
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
DROP SCHEMA IF EXISTS sec_evil, sec_app CASCADE;
DROP ROLE IF EXISTS sec_reader, sec_writer, sec_admin, sec_fowner, sec_other;
RESET client_min_messages;

-- ---------------------------------------------------------------------------
-- The recipe's group roles, as login-less roles of this test
-- ---------------------------------------------------------------------------
CREATE ROLE sec_reader;
GRANT USAGE ON SCHEMA es TO sec_reader;
GRANT SELECT ON es.events, es.stream_metadata TO sec_reader;
GRANT EXECUTE ON FUNCTION
    es.read_stream(text, bigint, bigint, boolean, timestamptz),
    es.read_all(bigint, bigint, text[]),
    es.read_category(text, bigint, bigint, int, int),
    es.stream_version(text),
    es.last_event(text, text),
    es.category(text),
    es.fold(text, regprocedure, jsonb, text),
    es.load_snapshot(text, text),
    es.wait_for_projection(text, bigint, interval)
  TO sec_reader;
CREATE ROLE sec_writer IN ROLE sec_reader;
GRANT EXECUTE ON FUNCTION
    es.append(text, es.new_event[], bigint),
    es.append_json(text, jsonb, bigint),
    es.append_event(text, text, jsonb, jsonb, bigint, uuid, int),
    es.new_event(text, jsonb, jsonb, uuid, int),
    es.save_snapshot(text, bigint, jsonb, text)
  TO sec_writer;
CREATE ROLE sec_admin IN ROLE sec_reader;
GRANT EXECUTE ON FUNCTION
    es.register_upcaster(text, int, regprocedure, text, jsonb, jsonb, text[]),
    es.unregister_upcaster(text, int),
    es.delete_stream(text, bigint),
    es.tombstone_stream(text, bigint),
    es.set_stream_metadata(text, bigint, interval, bigint),
    es.set_snapshot_interval(text, int),
    es.scavenge(bigint),
    es.create_projection(text, regprocedure, text[], text, regclass[], text),
    es.drop_projection(text),
    es.pause_projection(text),
    es.resume_projection(text),
    es.rebuild_projection(text),
    es.retry_projection_errors(text)
  TO sec_admin;
GRANT SELECT ON es.streams, es.categories, es.event_types, es.upcasters,
                es.projection_status, es.projection_errors TO sec_admin;
-- the owner of the application's functions and read tables
CREATE ROLE sec_fowner;
-- somebody else, whose tables nobody lent to es
CREATE ROLE sec_other;

-- ---------------------------------------------------------------------------
-- The attacker's schema: a log, and a function that logs and escalates
-- ---------------------------------------------------------------------------
CREATE SCHEMA sec_evil;
CREATE TABLE sec_evil.log (who name NOT NULL, what text NOT NULL);
GRANT USAGE ON SCHEMA sec_evil TO PUBLIC;
GRANT INSERT, SELECT ON sec_evil.log TO PUBLIC;
CREATE FUNCTION sec_evil.pwn(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sec_evil.log VALUES (current_user, what);
    BEGIN
        EXECUTE 'ALTER ROLE sec_reader SUPERUSER';
        EXECUTE 'ALTER ROLE sec_writer SUPERUSER';
        EXECUTE 'ALTER ROLE sec_admin SUPERUSER';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    RETURN true;
END
$$;
GRANT EXECUTE ON FUNCTION sec_evil.pwn(text) TO PUBLIC;

-- Operators that shadow pg_catalog's for a search_path of
-- "sec_evil, pg_catalog", each answering right (so that nothing else
-- breaks), after logging.
CREATE FUNCTION sec_evil.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('text ='); RETURN a OPERATOR(pg_catalog.=) b; END$$;
CREATE OPERATOR sec_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = sec_evil.texteq);
CREATE FUNCTION sec_evil.oideq(a oid, b oid) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('oid ='); RETURN a OPERATOR(pg_catalog.=) b; END$$;
CREATE OPERATOR sec_evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = sec_evil.oideq);
-- this one deletes everything it is asked about
CREATE FUNCTION sec_evil.tideq(a tid, b tid) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('tid ='); RETURN true; END$$;
CREATE OPERATOR sec_evil.= (LEFTARG = tid, RIGHTARG = tid, FUNCTION = sec_evil.tideq);
CREATE FUNCTION sec_evil.int8lt(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('int8 <'); RETURN a OPERATOR(pg_catalog.<) b; END$$;
CREATE OPERATOR sec_evil.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = sec_evil.int8lt);
CREATE FUNCTION sec_evil.int8gt(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('int8 >'); RETURN a OPERATOR(pg_catalog.>) b; END$$;
CREATE OPERATOR sec_evil.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = sec_evil.int8gt);
CREATE FUNCTION sec_evil.int8ge(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('int8 >='); RETURN a OPERATOR(pg_catalog.>=) b; END$$;
CREATE OPERATOR sec_evil.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = sec_evil.int8ge);
CREATE FUNCTION sec_evil.int8mod(a bigint, b bigint) RETURNS bigint LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('int8 %'); RETURN a OPERATOR(pg_catalog.%) b; END$$;
CREATE OPERATOR sec_evil.% (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = sec_evil.int8mod);
-- and functions that shadow pg_catalog's
CREATE FUNCTION sec_evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('now()'); RETURN pg_catalog.now(); END$$;
CREATE FUNCTION sec_evil.split_part(a text, b text, n int) RETURNS text LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('split_part()'); RETURN pg_catalog.split_part(a, b, n); END$$;
CREATE FUNCTION sec_evil.pg_current_snapshot() RETURNS pg_snapshot LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('pg_current_snapshot()'); RETURN pg_catalog.pg_current_snapshot(); END$$;
CREATE FUNCTION sec_evil.hashtextextended(a text, s bigint) RETURNS bigint LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('hashtextextended()'); RETURN pg_catalog.hashtextextended(a, s); END$$;
CREATE FUNCTION sec_evil.count_step(n bigint) RETURNS bigint LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('count(*)'); RETURN n OPERATOR(pg_catalog.+) 1; END$$;
CREATE AGGREGATE sec_evil.count(*) (SFUNC = sec_evil.count_step, STYPE = bigint, INITCOND = 0);
CREATE FUNCTION sec_evil.int8larger(a bigint, b bigint) RETURNS bigint LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('max(bigint)'); RETURN pg_catalog.int8larger(a, b); END$$;
CREATE AGGREGATE sec_evil.max(bigint) (SFUNC = sec_evil.int8larger, STYPE = bigint);
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA sec_evil TO PUBLIC;

-- nothing ran, and nobody became superuser
CREATE FUNCTION sec_evil.clean() RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN EXISTS (SELECT FROM sec_evil.log) THEN
                    'ran: ' || (SELECT string_agg(DISTINCT who || ' ' || what, ', ') FROM sec_evil.log)
                WHEN EXISTS (SELECT FROM pg_roles r WHERE r.rolname LIKE 'sec\_%' AND r.rolsuper) THEN
                    'superuser!'
                ELSE 'clean' END
$$;
GRANT EXECUTE ON FUNCTION sec_evil.clean() TO PUBLIC;

-- runs a statement and prints its outcome: ok, or the SQLSTATE and message
CREATE FUNCTION sec_evil.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION sec_evil.try(text) TO PUBLIC;

-- ---------------------------------------------------------------------------
-- The application: its functions and read tables belong to sec_fowner
-- ---------------------------------------------------------------------------
CREATE SCHEMA sec_app AUTHORIZATION sec_fowner;
GRANT USAGE ON SCHEMA sec_app TO PUBLIC;
GRANT USAGE ON SCHEMA es TO sec_fowner;
SET ROLE sec_fowner;
-- what user code saw: who ran it, and with which settings
CREATE TABLE sec_app.seen (what text, who name, search_path text, work_mem text);
GRANT SELECT ON sec_app.seen TO PUBLIC;
CREATE TABLE sec_app.counts (stream_id text PRIMARY KEY, n int NOT NULL);
GRANT SELECT ON sec_app.counts TO PUBLIC;
CREATE FUNCTION sec_app.count_handler(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sec_app.seen VALUES ('handler ' || e.event_type, current_user,
        pg_catalog.current_setting('search_path'), pg_catalog.current_setting('work_mem'));
    INSERT INTO sec_app.counts VALUES (e.stream_id, 1)
        ON CONFLICT (stream_id) DO UPDATE SET n = sec_app.counts.n OPERATOR(pg_catalog.+) 1;
    -- settings it changes must not outlive the call
    PERFORM pg_catalog.set_config('work_mem', '77kB', false);
    PERFORM pg_catalog.set_config('search_path', 'sec_evil, pg_catalog', false);
    SET application_name = 'set by a handler';
    IF e.event_type OPERATOR(pg_catalog.=) 'SecTemp' THEN
        CREATE TEMP TABLE sec_handler_temp (x int);
    END IF;
END
$$;
-- an upcaster that reports who runs it, and changes a setting
CREATE FUNCTION sec_app.up_v1(data jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sec_app.seen VALUES ('upcaster', current_user,
        pg_catalog.current_setting('search_path'), pg_catalog.current_setting('work_mem'));
    PERFORM pg_catalog.set_config('work_mem', '78kB', false);
    RETURN data OPERATOR(pg_catalog.||) '{"v": 2}'::jsonb;
END
$$;
-- SQL upcasters, inlined: one that changes a setting, one built-in only
CREATE FUNCTION sec_app.up_v2(data jsonb) RETURNS jsonb LANGUAGE sql
RETURN data OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
    'by', CURRENT_USER, 'wm', pg_catalog.set_config('work_mem', '79kB', false));
CREATE FUNCTION sec_app.up_fast(data jsonb) RETURNS jsonb LANGUAGE sql
RETURN data OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('by', CURRENT_USER);
-- a reducer that counts events
CREATE FUNCTION sec_app.count_reducer(state jsonb, e es.event) RETURNS jsonb LANGUAGE sql
RETURN pg_catalog.jsonb_build_object('n', coalesce((state ->> 'n')::int, 0) + 1);
RESET ROLE;

-- another role's table and function, which es must not lend to the admin
CREATE TABLE public.sec_payroll (who text, salary int);
INSERT INTO public.sec_payroll VALUES ('alice', 100);
ALTER TABLE public.sec_payroll OWNER TO sec_other;
CREATE FUNCTION public.sec_other_handler(e es.event) RETURNS void LANGUAGE plpgsql AS
$$BEGIN DELETE FROM public.sec_payroll; END$$;
ALTER FUNCTION public.sec_other_handler(es.event) OWNER TO sec_other;
REVOKE EXECUTE ON FUNCTION public.sec_other_handler(es.event) FROM PUBLIC;
-- another owner's upcaster, inlined, whose built-in runs SQL that SETs
CREATE FUNCTION public.sec_other_up(data jsonb) RETURNS jsonb LANGUAGE sql VOLATILE
RETURN data OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('x', pg_catalog.query_to_xml(
    'SELECT pg_catalog.set_config(''work_mem'', ''81kB'', false)', false, false, '')::text);
ALTER FUNCTION public.sec_other_up(jsonb) OWNER TO sec_other;
SELECT es.register_upcaster('SecXml', 1, 'public.sec_other_up(jsonb)');

-- The function owner is an es admin for its own functions here (registering
-- needs the rights of the function's owner).
GRANT sec_admin TO sec_fowner;
SET ROLE sec_fowner;
SELECT es.register_upcaster('SecUp', 1, 'sec_app.up_v1(jsonb)');
SELECT es.register_upcaster('SecUp', 2, 'sec_app.up_v2(jsonb)');
SELECT es.register_upcaster('SecOpened', 1, 'sec_app.up_fast(jsonb)');
SELECT es.create_projection('sec_counts', 'sec_app.count_handler(es.event)', mode => 'inline',
                            event_types => ARRAY['SecOpened', 'SecUp', 'SecTemp', 'SecDecl', 'SecXml'],
                            tables => ARRAY['sec_app.counts'::regclass]);
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Class 4: objects named in a call are checked against the caller's rights
-- ---------------------------------------------------------------------------
SET ROLE sec_fowner;
-- a table the caller may not truncate: not registered, and nothing written
SELECT sec_evil.try($$SELECT es.create_projection('sec_payroll', 'sec_app.count_handler(es.event)',
                       mode => 'inline', tables => ARRAY['public.sec_payroll'::regclass])$$);
SELECT sec_evil.try($$SELECT es.create_projection('sec_meta', 'sec_app.count_handler(es.event)',
                       tables => ARRAY['sec_app.counts'::regclass, 'es.stream_metadata'::regclass])$$);
SELECT sec_evil.try($$SELECT es.create_projection('sec_view', 'sec_app.count_handler(es.event)',
                       mode => 'inline', tables => ARRAY['es.streams'::regclass])$$);
RESET ROLE;
SET ROLE sec_admin;
-- a function of another role, even one the admin may not execute
SELECT sec_evil.try($$SELECT es.create_projection('sec_other', 'public.sec_other_handler(es.event)',
                       mode => 'inline')$$);
SELECT sec_evil.try($$SELECT es.create_projection('sec_other', 'sec_app.count_handler(es.event)',
                       mode => 'inline')$$);
SELECT sec_evil.try($$SELECT es.register_upcaster('SecOther', 1, 'sec_app.up_v1(jsonb)')$$);
-- a temporary function (the admin's own) is refused as handler and upcaster
CREATE FUNCTION pg_temp.sec_tmp_up(data jsonb) RETURNS jsonb LANGUAGE sql RETURN data;
CREATE FUNCTION pg_temp.sec_tmp_handler(e es.event) RETURNS void LANGUAGE sql RETURN NULL;
SELECT sec_evil.try($$SELECT es.register_upcaster('SecTmp', 1, 'pg_temp.sec_tmp_up(jsonb)')$$);
SELECT sec_evil.try($$SELECT es.create_projection('sec_tmp', 'pg_temp.sec_tmp_handler(es.event)',
                       mode => 'inline')$$);
-- a temporary table is refused too
CREATE TEMP TABLE sec_tmp_table (x int);
RESET ROLE;
SET ROLE sec_fowner;
CREATE TEMP TABLE sec_fowner_tmp (x int);
SELECT sec_evil.try($$SELECT es.create_projection('sec_tmp', 'sec_app.count_handler(es.event)',
                       mode => 'inline', tables => ARRAY['sec_fowner_tmp'::regclass])$$);
RESET ROLE;
SET ROLE sec_admin;
-- the internal implementations are for nobody else
SELECT sec_evil.try($$SELECT es._create_projection('sec_x', 'sec_app.count_handler(es.event)',
                       NULL, 'inline', NULL, 'stop')$$);
SELECT sec_evil.try($$SELECT es._rebuild_projection('sec_counts')$$);
SELECT sec_evil.try($$SELECT es._register_upcaster('SecX', 1, NULL, 'SecY', NULL, NULL, NULL)$$);
SELECT sec_evil.try($$SELECT es._caller()$$);
RESET ROLE;
SELECT sec_evil.try($$SELECT es._caller()$$);
SELECT name FROM es.projections WHERE name LIKE 'sec%' ORDER BY name;
SELECT event_type FROM es.upcaster_steps WHERE event_type LIKE 'Sec%' ORDER BY 1;
SELECT * FROM public.sec_payroll;

-- ---------------------------------------------------------------------------
-- Classes 2 and 3: who user code runs as, and what it leaves behind
-- ---------------------------------------------------------------------------
SET ROLE sec_writer;
SET work_mem = '1MB';
SELECT es.append('sec-1', ARRAY[es.new_event('SecOpened', '{}'),
                                es.new_event('SecUp', '{"a": 1}'),
                                es.new_event('SecXml', '{}')]);
-- the handler's settings did not survive its call, nor the append
SELECT current_setting('work_mem') AS work_mem, current_setting('application_name') AS application_name,
       current_setting('search_path') AS search_path;
-- nor did its temporary table: the handler may not create one
SELECT sec_evil.try($$SELECT es.append_event('sec-1', 'SecTemp', '{}')$$);
SELECT count(*) AS temp_tables FROM pg_class WHERE relname = 'sec_handler_temp';
RESET ROLE;
SET ROLE sec_reader;
SET work_mem = '2MB';
SELECT stream_version, event_type, data FROM es.read_stream('sec-1');
SELECT current_setting('work_mem') AS work_mem;
RESET ROLE;
-- handlers ran as their owner with the search_path of their registration
-- (the regression session's, pg_temp last; not the appender's nor what an
-- earlier call set) and the caller's work_mem (each call starts from the
-- settings es runs it with); the upcaster ran as its owner, for the
-- appender's handler and for the reader
SELECT what, who, search_path, work_mem FROM sec_app.seen;
SELECT * FROM sec_app.counts ORDER BY stream_id;
TRUNCATE sec_app.seen;

-- a reducer runs as the role calling es.fold, which must be allowed to run it
SET ROLE sec_reader;
SELECT es.fold('sec-1', 'sec_app.count_reducer(jsonb, es.event)', '{}', NULL);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION sec_app.count_reducer(jsonb, es.event) FROM PUBLIC;
SET ROLE sec_reader;
SELECT sec_evil.try($$SELECT es.fold('sec-1', 'sec_app.count_reducer(jsonb, es.event)', '{}', NULL)$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION sec_app.count_reducer(jsonb, es.event) TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Class 1: es's statements never resolve names through the caller's path
-- ---------------------------------------------------------------------------
-- The issue's example: a reader's pg_temp domain over oid, whose check would
-- run as whoever evaluated a cast to "oid" (the registry is read as its owner)
SET ROLE sec_reader;
CREATE FUNCTION pg_temp.pwn(x pg_catalog.oid) RETURNS boolean LANGUAGE sql
    RETURN sec_evil.pwn('pg_temp.oid domain');
CREATE DOMAIN pg_temp.oid AS pg_catalog.oid CHECK (pg_temp.pwn(VALUE));
CREATE DOMAIN pg_temp.int8 AS pg_catalog.int8 CHECK (sec_evil.pwn('pg_temp.int8 domain'));
CREATE DOMAIN pg_temp.int4 AS pg_catalog.int4 CHECK (sec_evil.pwn('pg_temp.int4 domain'));
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (sec_evil.pwn('pg_temp.text domain'));
CREATE DOMAIN pg_temp.bool AS pg_catalog.bool CHECK (sec_evil.pwn('pg_temp.bool domain'));
CREATE DOMAIN pg_temp.boolean AS pg_catalog.bool CHECK (sec_evil.pwn('pg_temp.boolean domain'));
CREATE DOMAIN pg_temp.timestamptz AS pg_catalog.timestamptz CHECK (sec_evil.pwn('pg_temp.timestamptz domain'));
RESET ROLE;
-- registering anything makes es load the registry again
SET ROLE sec_admin;
SELECT es.register_upcaster('SecDecl', 1, rename_fields => '{"a": "b"}');
RESET ROLE;
SET ROLE sec_reader;
SET search_path = sec_evil, pg_catalog;
SELECT pg_catalog.count(*) FROM es.read_stream('sec-1');
SELECT pg_catalog.count(*) FROM es.read_stream('sec-1', backwards => true, as_of => pg_catalog.now());
SELECT pg_catalog.count(*) > 0 AS some FROM es.read_all(0, 5);
SELECT pg_catalog.count(*) > 0 AS some FROM es.read_all(0, 5, ARRAY['SecOpened']);
SELECT pg_catalog.count(*) FROM es.read_category('sec', 0, 10, 0, 1);
SELECT es.stream_version('sec-1');
SELECT (es.last_event('sec-1')).stream_version;
SELECT (es.last_event('sec-1', 'SecOpened')).stream_version;
SELECT es.fold('sec-1', 'sec_app.count_reducer(jsonb, es.event)', '{}', 'default');
SELECT es.load_snapshot('sec-1');
SELECT es.wait_for_projection('sec_counts', timeout => '1 second');
SELECT sec_evil.clean();
RESET search_path;
RESET ROLE;

-- a writer: appends fire the inline projection (whose list es loads as the
-- owner of es.projections) and the upcaster; save_snapshot
SET ROLE sec_writer;
SET search_path = sec_evil, pg_catalog;
SELECT es.append_event('sec-2', 'SecOpened', '{}', expected_version => 0);
SELECT es.append_json('sec-2', '[{"type": "SecUp", "data": {"a": 2}}]', 1);
SELECT es.append('sec-2', ARRAY[es.new_event('SecDecl', '{"a": 3}')], 2);
SELECT es.save_snapshot('sec-2', 3, '{"n": 3}');
SELECT sec_evil.clean();
RESET search_path;
RESET ROLE;

-- an admin: lifecycle, scavenge (whose deletes run as the owner of
-- es.events: the tid "=" above would have deleted every event), snapshot
-- intervals and the projection functions
SELECT count(*) AS events_before FROM es.events WHERE stream_id LIKE 'sec-%' \gset
SET ROLE sec_admin;
SET search_path = sec_evil, pg_catalog;
SELECT es.set_stream_metadata('sec-2', max_count => 2);
SELECT es.delete_stream('sec-1');
SELECT stream_id, events_removed, up_to_version FROM es.scavenge() WHERE stream_id LIKE 'sec-%' ORDER BY 1;
SELECT es.set_snapshot_interval('default', 1);
SELECT es.pause_projection('sec_counts');
SELECT es.resume_projection('sec_counts');
SELECT sec_evil.clean();
RESET search_path;
RESET ROLE;
-- what scavenge removed is what the lifecycle hid: sec-1's 3 and sec-2's first
SELECT :events_before - count(*) AS removed FROM es.events WHERE stream_id LIKE 'sec-%';
SELECT stream_id, stream_version FROM es.events WHERE stream_id LIKE 'sec-%' ORDER BY 1, 2;
-- es.rebuild_projection as the function owner (who may truncate its table):
-- the table's TRUNCATE trigger runs as the table's owner, not as es's
SET ROLE sec_fowner;
CREATE FUNCTION sec_app.on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sec_app.seen VALUES ('truncate trigger', current_user, NULL, NULL);
    BEGIN
        EXECUTE 'ALTER ROLE sec_fowner SUPERUSER';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    RETURN NULL;
END
$$;
CREATE TRIGGER counts_truncate BEFORE TRUNCATE ON sec_app.counts
    FOR EACH STATEMENT EXECUTE FUNCTION sec_app.on_truncate();
RESET ROLE;
SET ROLE sec_fowner;
SET search_path = sec_evil, pg_catalog;
SELECT es.rebuild_projection('sec_counts');
SELECT sec_evil.clean();
RESET search_path;
RESET ROLE;
SELECT * FROM sec_app.counts ORDER BY stream_id;
SELECT what, who FROM sec_app.seen WHERE what = 'truncate trigger';

-- ---------------------------------------------------------------------------
-- Class 5: a reader's fold never stores a snapshot others will trust
-- ---------------------------------------------------------------------------
SET ROLE sec_reader;
SELECT sec_evil.try($$SELECT es.append_event('sec-3', 'SecOpened', '{}')$$);
RESET ROLE;
SET ROLE sec_writer;
SELECT es.append('sec-3', ARRAY[es.new_event('SecOpened', '{}'), es.new_event('SecOpened', '{}')]);
RESET ROLE;
-- the reader's own reducer: 1,000,000 events, says it
SET ROLE sec_reader;
CREATE FUNCTION pg_temp.poison(state jsonb, e es.event) RETURNS jsonb LANGUAGE sql
    RETURN '{"n": 1000000}'::pg_catalog.jsonb;
SELECT es.fold('sec-3', 'pg_temp.poison(jsonb, es.event)', '{}');
RESET ROLE;
SELECT count(*) AS snapshots FROM es.snapshots WHERE stream_id = 'sec-3';
-- a writer (who may save snapshots) saves one, from its own fold
SET ROLE sec_writer;
SELECT es.fold('sec-3', 'sec_app.count_reducer(jsonb, es.event)', '{}');
RESET ROLE;
SELECT version, state FROM es.snapshots WHERE stream_id = 'sec-3';
SET ROLE sec_reader;
SELECT es.fold('sec-3', 'sec_app.count_reducer(jsonb, es.event)', '{}');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Class 4, at truncation: a right revoked after registration is checked
-- ---------------------------------------------------------------------------
-- sec_admin could register sec_app.counts only as a member of its owner;
-- make the table somebody else's, whose TRUNCATE the admin does not have
ALTER TABLE sec_app.counts OWNER TO sec_other;
SET ROLE sec_admin;
SELECT sec_evil.try($$SELECT es.rebuild_projection('sec_counts')$$);
RESET ROLE;
SELECT count(*) > 0 AS still_there FROM sec_app.counts;
ALTER TABLE sec_app.counts OWNER TO sec_fowner;

-- ---------------------------------------------------------------------------
-- Nobody escalated, nothing planted ran
-- ---------------------------------------------------------------------------
SELECT sec_evil.clean();
SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'sec\_%' ORDER BY 1;

-- ---------------------------------------------------------------------------
-- A database owner's settings reach every session, a superuser's included
-- ---------------------------------------------------------------------------
CREATE ROLE sec_dbo;
SELECT current_database() AS sec_db,
       (SELECT d.datdba::regrole FROM pg_database d WHERE d.datname = current_database()) AS sec_db_owner
\gset
ALTER DATABASE :"sec_db" OWNER TO sec_dbo;
SET ROLE sec_dbo;
-- the owner of schema public (pg_database_owner) plants its own now() and =
CREATE FUNCTION public.now() RETURNS pg_catalog.timestamptz LANGUAGE plpgsql AS
$$BEGIN PERFORM sec_evil.pwn('public.now()'); RETURN pg_catalog.now(); END$$;
CREATE OPERATOR public.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text,
                          FUNCTION = sec_evil.texteq);
ALTER DATABASE :"sec_db" SET search_path = public, pg_catalog;
RESET ROLE;
\c
SHOW search_path;
SELECT es.append_event('sec-4', 'SecUp', '{}');
SELECT pg_catalog.count(*) FROM es.read_stream('sec-4');
SELECT es.stream_version('sec-4');
SELECT es.fold('sec-4', 'sec_app.count_reducer(jsonb, es.event)', '{}', 'default');
SELECT es.delete_stream('sec-4');
SELECT stream_id FROM es.scavenge() WHERE stream_id OPERATOR(pg_catalog.=) 'sec-4';
SELECT sec_evil.clean();
ALTER DATABASE :"sec_db" RESET search_path;
ALTER DATABASE :"sec_db" OWNER TO :"sec_db_owner";
\c
DROP FUNCTION public.now();
DROP OPERATOR public.= (pg_catalog.text, pg_catalog.text);

-- clean up
SELECT es.set_snapshot_interval('default', 0);
SELECT es.drop_projection('sec_counts');
SELECT es.unregister_upcaster('SecUp', 1);
SELECT es.unregister_upcaster('SecUp', 2);
SELECT es.unregister_upcaster('SecOpened', 1);
SELECT es.unregister_upcaster('SecXml', 1);
SELECT es.unregister_upcaster('SecDecl', 1);
SET client_min_messages = warning;
DROP SCHEMA sec_evil, sec_app CASCADE;
DROP OWNED BY sec_reader, sec_writer, sec_admin, sec_fowner, sec_other, sec_dbo;
RESET client_min_messages;
DROP ROLE sec_reader, sec_writer, sec_admin, sec_fowner, sec_other, sec_dbo;
