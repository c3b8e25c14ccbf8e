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
