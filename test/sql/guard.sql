-- guard.sql: es.events is append-only; roles and privileges
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;

SELECT es.append_event('gd-1', 'Opened', '{}');
SELECT count(*) AS n FROM es.events \gset

-- nobody, superuser included, changes or removes events
UPDATE es.events SET data = '{"hacked": true}' WHERE stream_id = 'gd-1';
DELETE FROM es.events WHERE stream_id = 'gd-1';
TRUNCATE es.events;
-- not even with triggers switched off for replication
SET session_replication_role = replica;
UPDATE es.events SET data = '{"hacked": true}' WHERE stream_id = 'gd-1';
DELETE FROM es.events WHERE stream_id = 'gd-1';
RESET session_replication_role;
-- and the triggers cannot be switched off or dropped
ALTER TABLE es.events DISABLE TRIGGER events_no_update_delete;
ALTER TABLE es.events DISABLE TRIGGER ALL;
ALTER TABLE es.events DISABLE TRIGGER USER;
ALTER TABLE es.events ENABLE TRIGGER events_no_truncate;
ALTER TABLE es.events ENABLE REPLICA TRIGGER events_no_truncate;
DROP TRIGGER events_no_update_delete ON es.events;
DROP TRIGGER IF EXISTS events_no_truncate ON es.events;
SET session_replication_role = replica;
ALTER TABLE es.events DISABLE TRIGGER ALL;
RESET session_replication_role;
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'es.events'::regclass ORDER BY tgname;
-- nor its definition, nor the guard function
ALTER TABLE es.events ALTER COLUMN data TYPE jsonb USING '{"rewritten": true}'::jsonb;
ALTER TABLE es.events DROP COLUMN metadata;
ALTER TABLE es.events ADD COLUMN extra int;
CREATE OR REPLACE FUNCTION es.events_guard() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RETURN OLD; END $$;
SET search_path = es, public;
CREATE OR REPLACE FUNCTION events_guard() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RETURN OLD; END $$;
RESET search_path;
ALTER TABLE es.events RENAME COLUMN data TO payload;
ALTER TABLE es.events RENAME CONSTRAINT events_pkey TO other_name;
ALTER TABLE es.events RENAME TO old_events;
ALTER TRIGGER events_no_truncate ON es.events RENAME TO other_name;
ALTER TABLE es.events SET SCHEMA public;
-- harmless settings are allowed
ALTER TABLE es.events ALTER COLUMN data SET STATISTICS 200;
ALTER TABLE es.events ALTER COLUMN data SET STATISTICS -1;
-- no other trigger can be added (appends insert directly and would not fire it)
CREATE FUNCTION gd_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER gd_before BEFORE INSERT ON es.events FOR EACH ROW EXECUTE FUNCTION gd_trg();
CREATE TRIGGER gd_after AFTER INSERT ON es.events FOR EACH STATEMENT EXECUTE FUNCTION gd_trg();
DROP FUNCTION gd_trg();
-- other DDL on other tables is not affected
CREATE TABLE gd_other (id int);
CREATE TRIGGER gd_other_trg BEFORE DELETE ON gd_other
    FOR EACH ROW EXECUTE FUNCTION es.events_guard();
ALTER TABLE gd_other DISABLE TRIGGER ALL;
DROP TRIGGER gd_other_trg ON gd_other;
DROP TABLE gd_other;
SELECT count(*) = :n AS intact, (SELECT data FROM es.events WHERE stream_id = 'gd-1')
  FROM es.events;

-- 0.4.0: no object of es is altered, renamed, moved or dropped, superuser
-- included (the extension's own scripts excepted)
-- no child table of es.events: its rows would show in reads of es.events,
-- and deletes through es.events would reach them
CREATE TABLE gd_child (extra int) INHERITS (es.events);
CREATE TABLE gd_child () INHERITS (es.stream_metadata);
CREATE TABLE gd_child PARTITION OF es.events FOR VALUES IN (1);
CREATE SCHEMA gd_schema CREATE TABLE gd_child () INHERITS (es.events);
CREATE TABLE gd_loose (LIKE es.events);
ALTER TABLE gd_loose INHERIT es.events;
ALTER TABLE gd_loose ADD COLUMN extra int, INHERIT es.events;
-- nor does es.events become a partition of another table
CREATE TABLE gd_parted (LIKE es.events) PARTITION BY RANGE (global_position);
ALTER TABLE gd_parted ATTACH PARTITION es.events FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
DROP TABLE gd_parted, gd_loose;
SELECT count(*) AS inheritance FROM pg_inherits
 WHERE inhparent = 'es.events'::regclass OR inhrelid = 'es.events'::regclass;
SELECT to_regnamespace('gd_schema') AS gd_schema;

-- positions are unique: a sequence moved back by setval() (a function call,
-- which no event trigger sees) makes appends fail, never a duplicate
SELECT indisunique FROM pg_index
 WHERE indexrelid = 'es.events_global_position_idx'::regclass;
SELECT last_value AS gd_seq FROM es.events_global_position_seq \gset
\set VERBOSITY terse
SELECT setval('es.events_global_position_seq', max(global_position), false) > 0 AS moved_back
  FROM es.events;
SELECT es.append_event('gd-dup', 'Forged', '{}');
SELECT setval('es.events_global_position_seq', max(global_position), false) > 0 AS moved_back
  FROM es.events;
SELECT es.append('gd-dup', ARRAY[es.new_event('Forged', '{}'), es.new_event('Forged', '{}')]);
-- nor can a superuser's INSERT repeat a position
INSERT INTO es.events (global_position, stream_id, stream_version, event_id, event_type,
                       schema_version, data, metadata, recorded_at)
SELECT global_position, 'gd-dup', 1, gen_random_uuid(), event_type, schema_version,
       data, metadata, recorded_at
  FROM es.events WHERE stream_id = 'gd-1';
\set VERBOSITY default
SELECT setval('es.events_global_position_seq', :gd_seq) = :gd_seq AS restored;
SELECT count(*) = count(DISTINCT global_position) AS unique_positions,
       es.stream_version('gd-dup') AS gd_dup
  FROM es.events;
-- and the sequence itself cannot be changed
ALTER SEQUENCE es.events_global_position_seq RESTART WITH 1;
ALTER SEQUENCE es.events_global_position_seq INCREMENT BY -1 MINVALUE -100;
ALTER SEQUENCE es.events_global_position_seq OWNED BY es.events.global_position;
ALTER SEQUENCE es.events_global_position_seq AS integer;
ALTER SEQUENCE es.events_global_position_seq CACHE 100;
ALTER SEQUENCE es.events_global_position_seq RENAME TO gd_seq;
ALTER SEQUENCE es.events_global_position_seq SET SCHEMA public;
ALTER SEQUENCE es.events_global_position_seq SET UNLOGGED;
ALTER TABLE es.events_global_position_seq RENAME TO gd_seq;
DROP SEQUENCE es.events_global_position_seq;
SELECT s.seqtypid::regtype, s.seqincrement, s.seqcache, s.seqcycle, d.refobjid AS owned_by,
       q.last_value = :gd_seq AS same_value
  FROM pg_sequence s
  LEFT JOIN pg_depend d ON d.objid = s.seqrelid AND d.deptype = 'a'
  CROSS JOIN es.events_global_position_seq q
 WHERE s.seqrelid = 'es.events_global_position_seq'::regclass;

-- nor its indexes, which appends and reads rely on
DROP INDEX es.events_global_position_idx;
DROP INDEX IF EXISTS es.events_category_position_idx, es.events_stream_event_id_key;
DROP INDEX CONCURRENTLY es.events_category_position_idx;
DROP INDEX es.stream_metadata_pkey;
ALTER INDEX es.events_global_position_idx RENAME TO gd_idx;
ALTER TABLE es.events_global_position_idx RENAME TO gd_idx;
ALTER INDEX es.events_pkey DEPENDS ON EXTENSION plpgsql;
-- and no index is added: appends maintain each one (a unique one could
-- refuse them, an expression would run inside every append)
CREATE INDEX gd_idx ON es.events (event_type);
CREATE UNIQUE INDEX CONCURRENTLY gd_idx ON es.events (event_id);
-- storage and planner settings on them stay allowed
ALTER INDEX es.events_global_position_idx SET (fillfactor = 90);
ALTER INDEX es.events_global_position_idx RESET (fillfactor);
ALTER INDEX es.events_global_position_idx SET TABLESPACE pg_default;
ALTER TABLE es.events SET TABLESPACE pg_default;
ALTER INDEX es.events_category_position_idx ALTER COLUMN 1 SET STATISTICS 500;
ALTER INDEX es.events_category_position_idx ALTER COLUMN 1 SET STATISTICS -1;
SELECT c.relname, i.indisunique, i.indisvalid, c.reloptions
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'es.events'::regclass ORDER BY 1;

-- nor its types: the C code builds and takes apart their rows by position
ALTER TYPE es.new_event ADD ATTRIBUTE extra int;
ALTER TYPE es.new_event DROP ATTRIBUTE schema_version;
ALTER TYPE es.new_event ALTER ATTRIBUTE data TYPE json;
ALTER TYPE es.new_event RENAME ATTRIBUTE data TO payload;
ALTER TYPE es.new_event RENAME TO gd_new_event;
ALTER TYPE es.new_event SET SCHEMA public;
ALTER TYPE es.event ADD ATTRIBUTE extra int;
ALTER TYPE es.event DROP ATTRIBUTE IF EXISTS metadata;
ALTER TYPE es.event ALTER ATTRIBUTE recorded_at TYPE timestamp;
ALTER TYPE es.event RENAME ATTRIBUTE data TO payload;
ALTER TYPE es.event RENAME TO gd_event;
ALTER TYPE es.event SET SCHEMA public;
DROP TYPE es.event CASCADE;
SELECT t.typname, string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                             ORDER BY a.attnum) AS attributes
  FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0
 WHERE t.typnamespace = 'es'::regnamespace AND t.typname IN ('event', 'new_event')
 GROUP BY t.typname ORDER BY 1;

-- nor its other tables, views and functions, their triggers and rules, its
-- schema or its members
ALTER TABLE es.stream_metadata ADD COLUMN extra int;
ALTER TABLE es.stream_metadata DISABLE TRIGGER stream_metadata_changed;
ALTER TRIGGER stream_metadata_changed ON es.stream_metadata RENAME TO gd_trigger;
DROP TRIGGER stream_metadata_changed ON es.stream_metadata;
CREATE TRIGGER gd_trigger AFTER INSERT ON es.projections
    FOR EACH STATEMENT EXECUTE FUNCTION es.registry_changed();
CREATE RULE gd_rule AS ON DELETE TO es.events DO INSTEAD NOTHING;
CREATE RULE gd_rule AS ON INSERT TO es.snapshots DO INSTEAD NOTHING;
ALTER TABLE es.snapshots RENAME TO gd_snapshots;
ALTER TABLE es.snapshots RENAME COLUMN state TO gd_state;
ALTER TABLE es.snapshots SET SCHEMA public;
ALTER TABLE es.snapshots SET UNLOGGED;
DROP TABLE es.snapshots;
ALTER VIEW es.streams RENAME TO gd_streams;
ALTER VIEW es.streams RENAME COLUMN stream_id TO gd_id;
ALTER VIEW es.streams SET (security_barrier = true);
ALTER VIEW es.streams ALTER COLUMN stream_id SET DEFAULT 'x';
CREATE OR REPLACE VIEW es.streams AS SELECT 1 AS x;
DROP VIEW es.streams;
ALTER FUNCTION es.append_event(text, text, jsonb, jsonb, bigint, uuid, int) SECURITY DEFINER;
ALTER FUNCTION es.events_guard() RENAME TO gd_guard;
ALTER FUNCTION es.events_guard() SET SCHEMA public;
ALTER FUNCTION es.events_guard() DEPENDS ON EXTENSION plpgsql;
ALTER ROUTINE es.ddl_guard() SET search_path = public;
DROP FUNCTION es.ddl_guard() CASCADE;
ALTER EXTENSION es DROP TABLE es.events;
ALTER EXTENSION es DROP TYPE es.new_event;
ALTER SCHEMA es RENAME TO gd_es;
-- harmless settings stay allowed
ALTER TABLE es.stream_metadata SET (fillfactor = 90);
ALTER TABLE es.stream_metadata RESET (fillfactor);
ALTER TABLE es.stream_metadata ALTER COLUMN stream_id SET STATISTICS 200;
ALTER TABLE es.stream_metadata ALTER COLUMN stream_id SET STATISTICS -1;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('es.stream_metadata'::regclass, 'es.projections'::regclass)
   AND NOT tgisinternal
 ORDER BY 1, 2;
SELECT count(*) AS rules FROM pg_rules WHERE schemaname = 'es';
-- objects of others are not affected
CREATE TABLE gd_parent (id int);
CREATE TABLE gd_kid () INHERITS (gd_parent);
CREATE INDEX gd_parent_idx ON gd_parent (id);
ALTER INDEX gd_parent_idx RENAME TO gd_parent_id_idx;
DROP INDEX gd_parent_id_idx;
CREATE TYPE gd_type AS (a int);
ALTER TYPE gd_type ADD ATTRIBUTE b text;
ALTER TYPE gd_type RENAME TO gd_type2;
DROP TYPE gd_type2;
CREATE SEQUENCE gd_seq;
ALTER SEQUENCE gd_seq RESTART WITH 5;
DROP SEQUENCE gd_seq;
CREATE VIEW gd_view AS SELECT 1 AS x;
CREATE OR REPLACE VIEW gd_view AS SELECT 2 AS x;
DROP VIEW gd_view;
DROP TABLE gd_kid, gd_parent;

-- the same as a non-superuser owner of es's objects
CREATE ROLE es_test_owner NOLOGIN;
SELECT relowner::regrole AS gd_owner FROM pg_class WHERE oid = 'es.events'::regclass \gset
ALTER TABLE es.events OWNER TO es_test_owner;
ALTER TABLE es.stream_metadata OWNER TO es_test_owner;
ALTER SEQUENCE es.events_global_position_seq OWNER TO es_test_owner;
ALTER TYPE es.event OWNER TO es_test_owner;
ALTER TYPE es.new_event OWNER TO es_test_owner;
ALTER FUNCTION es.events_guard() OWNER TO es_test_owner;
GRANT USAGE ON SCHEMA es TO es_test_owner;
GRANT CREATE ON SCHEMA public TO es_test_owner;
SET ROLE es_test_owner;
CREATE TABLE gd_child () INHERITS (es.events);
CREATE TABLE gd_loose (LIKE es.events);
ALTER TABLE gd_loose INHERIT es.events;
-- (es's sql_drop guards let a role without rights on es's tables drop its own)
DROP TABLE gd_loose;
ALTER SEQUENCE es.events_global_position_seq RESTART WITH 1;
ALTER SEQUENCE es.events_global_position_seq OWNED BY es.events.global_position;
DROP INDEX es.events_global_position_idx;
ALTER INDEX es.events_global_position_idx RENAME TO gd_idx;
CREATE INDEX gd_idx ON es.events (event_type);
ALTER TYPE es.new_event ADD ATTRIBUTE extra int;
ALTER TYPE es.new_event DROP ATTRIBUTE schema_version;
ALTER TYPE es.event RENAME ATTRIBUTE data TO payload;
ALTER TYPE es.event RENAME TO gd_event;
ALTER TABLE es.events DISABLE TRIGGER ALL;
ALTER TABLE es.stream_metadata DISABLE TRIGGER USER;
DROP TRIGGER stream_metadata_changed ON es.stream_metadata;
CREATE RULE gd_rule AS ON DELETE TO es.events DO INSTEAD NOTHING;
ALTER FUNCTION es.events_guard() RENAME TO gd_guard;
ALTER FUNCTION es.events_guard() SET search_path = public;
-- the owner keeps its storage and planner settings
ALTER INDEX es.events_global_position_idx SET (fillfactor = 90);
ALTER INDEX es.events_global_position_idx RESET (fillfactor);
ALTER TABLE es.events ALTER COLUMN data SET STATISTICS -1;
RESET ROLE;
ALTER TABLE es.events OWNER TO :gd_owner;
ALTER TABLE es.stream_metadata OWNER TO :gd_owner;
ALTER SEQUENCE es.events_global_position_seq OWNER TO :gd_owner;
ALTER TYPE es.event OWNER TO :gd_owner;
ALTER TYPE es.new_event OWNER TO :gd_owner;
ALTER FUNCTION es.events_guard() OWNER TO :gd_owner;
REVOKE CREATE ON SCHEMA public FROM es_test_owner;
REVOKE USAGE ON SCHEMA es FROM es_test_owner;
DROP ROLE es_test_owner;
SELECT count(*) = :n AS intact, count(*) = count(DISTINCT global_position) AS unique_positions
  FROM es.events;

-- nothing is granted to PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p WHERE p.pronamespace = 'es'::regnamespace
 ORDER BY p.proname;
SELECT has_table_privilege('public', 'es.events', 'SELECT') AS public_select;
-- the append functions are not SECURITY DEFINER: they insert in C and need
-- no table privilege, EXECUTE on them is the right to append; the admin
-- functions that are SECURITY DEFINER pin their search_path
SELECT p.proname, p.proconfig
  FROM pg_proc p WHERE p.pronamespace = 'es'::regnamespace AND p.prosecdef
 ORDER BY p.proname;

-- the README's recipe: a writer group (append and read) and a reader group
SET client_min_messages = warning;
DROP ROLE IF EXISTS es_test_app;
DROP ROLE IF EXISTS es_test_report;
DROP ROLE IF EXISTS es_test_writer;
DROP ROLE IF EXISTS es_test_reader;
RESET client_min_messages;
CREATE ROLE es_test_reader NOLOGIN;
GRANT USAGE ON SCHEMA es TO es_test_reader;
GRANT SELECT ON es.events, es.stream_metadata TO es_test_reader;
GRANT EXECUTE ON FUNCTION
    es.read_stream(text, bigint, bigint, boolean, timestamptz),
    es.read_all(bigint, bigint, text[]),
    es.read_category(text, bigint, bigint, int, int),
    es.stream_version(text),
    es.last_event(text, text),
    es.category(text),
    es.new_event(text, jsonb, jsonb, uuid, int)
  TO es_test_reader;
CREATE ROLE es_test_writer NOLOGIN IN ROLE es_test_reader;
GRANT EXECUTE ON FUNCTION
    es.append(text, es.new_event[], bigint),
    es.append_json(text, jsonb, bigint),
    es.append_event(text, text, jsonb, jsonb, bigint, uuid, int)
  TO es_test_writer;
CREATE ROLE es_test_app LOGIN IN ROLE es_test_writer;
CREATE ROLE es_test_report LOGIN IN ROLE es_test_reader;

SET ROLE es_test_app;
SELECT es.append_event('gd-2', 'Opened', '{}');
SELECT es.append('gd-2', ARRAY[es.new_event('Deposited', '{"amount": 1}')], 1);
SELECT stream_version FROM es.read_stream('gd-2');
-- the writer still cannot touch the table itself
INSERT INTO es.events SELECT * FROM es.events LIMIT 1;
UPDATE es.events SET data = '{}' WHERE stream_id = 'gd-2';
DELETE FROM es.events WHERE stream_id = 'gd-2';
TRUNCATE es.events;
RESET ROLE;

-- readers apply upcasters without any right on the registry
SELECT es.register_upcaster('GdDeposited', 1, rename_fields => '{"amount": "value"}');
SELECT es.append_event('gd-2', 'GdDeposited', '{"amount": 5}');
SET ROLE es_test_report;
SELECT stream_version, event_type, schema_version, data FROM es.read_stream('gd-2');
SELECT stream_version, event_type, schema_version, data FROM es.read_stream('gd-2');
SELECT count(*) FROM es.read_category('gd');
SELECT es.stream_version('gd-2');
-- the reader cannot append
SELECT es.append_event('gd-2', 'Deposited', '{}');
SELECT es.append_json('gd-2', '[{"type": "A", "data": {}}]');
SELECT es.append('gd-2', ARRAY[es.new_event('A', '{}')]);
INSERT INTO es.events SELECT * FROM es.events LIMIT 1;
RESET ROLE;

SELECT es.unregister_upcaster('GdDeposited', 1);
-- a role with no grants can do nothing
CREATE ROLE es_test_nobody NOLOGIN;
SET ROLE es_test_nobody;
SELECT es.append_event('gd-3', 'A', '{}');
SELECT * FROM es.read_stream('gd-2');
RESET ROLE;
SELECT es.stream_version('gd-2') AS gd2, es.stream_version('gd-3') AS gd3;

DROP ROLE es_test_nobody;
DROP ROLE es_test_app;
DROP ROLE es_test_report;
REVOKE ALL ON es.events, es.stream_metadata FROM es_test_reader;
REVOKE ALL ON SCHEMA es FROM es_test_reader;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA es FROM es_test_reader, es_test_writer;
DROP ROLE es_test_writer;
DROP ROLE es_test_reader;

-- ---------------------------------------------------------------------------
-- In a database of its own: a fresh install, DROP EXTENSION, and es's row
-- types altered behind the guard's back
-- ---------------------------------------------------------------------------
SELECT current_database() AS gd_home \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS gd_fresh_regress;
RESET client_min_messages;
CREATE DATABASE gd_fresh_regress;
\c gd_fresh_regress
CREATE EXTENSION es;
-- a fresh install has the guard and the unique positions of 0.4.0
SELECT evtenabled, evttags FROM pg_event_trigger WHERE evtname = 'es_ddl_guard';
SELECT indisunique FROM pg_index
 WHERE indexrelid = 'es.events_global_position_idx'::regclass;
DROP INDEX es.events_global_position_idx;
-- DROP EXTENSION still works, and es installs again after it
DROP EXTENSION es;
SELECT count(*) AS es_event_triggers FROM pg_event_trigger WHERE evtname LIKE 'es\_%';
CREATE EXTENSION es;
SELECT es.append_event('gd-f', 'GdOpened', '{}');

-- A superuser can still switch the guard off and alter es's types: appends,
-- reads and folds then fail with a clear error instead of crashing
ALTER EVENT TRIGGER es_ddl_guard DISABLE;
ALTER TYPE es.new_event ADD ATTRIBUTE extra int;
SELECT es.append('gd-f', ARRAY[ROW('GdNoted', '{}', '{}', NULL, 1, 7)::es.new_event]);
ALTER TYPE es.new_event DROP ATTRIBUTE extra;
-- a dropped attribute stays in the type
SELECT es.append('gd-f', ARRAY[es.new_event('GdNoted', '{}')]);
-- es.append_event takes no es.new_event
SELECT es.append_event('gd-f', 'GdNoted', '{}');
CREATE FUNCTION gd_count(state jsonb, e es.event) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('n', coalesce((state->>'n')::int, 0) + 1) $$;
ALTER TYPE es.event RENAME ATTRIBUTE data TO payload;
SELECT stream_version, event_type FROM es.read_stream('gd-f');
SELECT es.fold('gd-f', 'gd_count(jsonb, es.event)');
-- undone, it works again
ALTER TYPE es.event RENAME ATTRIBUTE payload TO data;
SELECT stream_version, event_type FROM es.read_stream('gd-f');
SELECT es.fold('gd-f', 'gd_count(jsonb, es.event)');
ALTER TYPE es.event ALTER ATTRIBUTE recorded_at TYPE timestamp;
SELECT global_position > 0 AS read FROM es.read_all(0, 10);
SELECT es.fold('gd-f', 'gd_count(jsonb, es.event)');
ALTER TYPE es.event ALTER ATTRIBUTE recorded_at TYPE timestamptz;
ALTER TYPE es.event ADD ATTRIBUTE extra int;
SELECT event_type FROM es.last_event('gd-f');
SELECT es.fold('gd-f', 'gd_count(jsonb, es.event)');
DROP FUNCTION gd_count(jsonb, es.event);
ALTER EVENT TRIGGER es_ddl_guard ENABLE ALWAYS;
\c :gd_home
DROP DATABASE gd_fresh_regress;
