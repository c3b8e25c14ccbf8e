-- test/readme_roles.sql: run by test/readme_check right after the README's
-- role recipe, in the same database, as a superuser. Each login role of the
-- recipe does what the README's table says it can, and is refused the rest
-- with the error shown after the statement (checked like the README's).
-- It removes what it creates, so that the README's uninstall section finds
-- the database as the README left it.

-- bank_app (es_writer): appends, reads, folds, locks a stream, saves a
-- snapshot, waits for a projection.
SET SESSION AUTHORIZATION bank_app;
SELECT es.append_event('account-1', 'AccountOpened', '{"owner": "Bob"}',
                       expected_version => 0);
SELECT es.append('account-1', ARRAY[es.new_event('MoneyDeposited', '{"amount": 10}')],
                 expected_version => 1);
SELECT es.append_json('account-1', '[{"type": "MoneyWithdrawn", "data": {"amount": 3}}]',
                      expected_version => 2);
SELECT count(*) FROM es.read_stream('account-1');
SELECT count(*) FROM es.read_all(from_position => 0, max_count => 1000);
SELECT count(*) FROM es.read_category('account');
SELECT es.stream_version('account-1'), es.category('account-1');
SELECT stream_version FROM es.last_event('account-1');
BEGIN;
SELECT es.lock_stream('account-1');
SELECT es.save_snapshot('account-1', es.stream_version('account-1'),
                        es.fold('account-1', 'account_balance(jsonb, es.event)'));
COMMIT;
SELECT version, state FROM es.load_snapshot('account-1');
SELECT es.wait_for_projection('balances');
SELECT es.delete_stream('account-1');
-- ERROR:  permission denied for function delete_stream
SELECT count(*) FROM es.streams;
-- ERROR:  permission denied for view streams
INSERT INTO es.events (stream_id, stream_version, event_type, data)
VALUES ('account-1', 4, 'MoneyDeposited', '{"amount": 1000}');
-- ERROR:  permission denied for table events
RESET SESSION AUTHORIZATION;

-- reporting (es_reader): reads and folds, after a stream has a lifecycle
-- row (the README's atm-0815), nothing else.
SET SESSION AUTHORIZATION reporting;
SELECT count(*) FROM es.read_stream('account-1');
SELECT count(*) FROM es.read_all(from_position => 0, max_count => 1000);
SELECT count(*) FROM es.read_category('account');
SELECT es.stream_version('account-1'), es.category('account-1');
SELECT stream_version FROM es.last_event('account-1');
SELECT es.fold('account-1', 'account_balance(jsonb, es.event)');
SELECT version FROM es.load_snapshot('account-1');
SELECT es.wait_for_projection('balances');
SELECT es.append_event('account-1', 'MoneyDeposited', '{"amount": 1}');
-- ERROR:  permission denied for function append_event
SELECT es.save_snapshot('account-1', 3, '{"balance": 1000, "version": 3}');
-- ERROR:  permission denied for function save_snapshot
SELECT es.lock_stream('account-1');
-- ERROR:  permission denied for function lock_stream
SELECT count(*) FROM es.projection_status;
-- ERROR:  permission denied for view projection_status
RESET SESSION AUTHORIZATION;

-- dba_alice (es_admin): the admin views, the lifecycle, snapshot intervals,
-- the README's projections (rebuilding one truncates its table: only with
-- TRUNCATE on it, which dba_alice has not); no appends.
SET SESSION AUTHORIZATION dba_alice;
SELECT count(*) FROM es.streams;
SELECT count(*) FROM es.categories;
SELECT count(*) FROM es.event_types;
SELECT count(*) FROM es.upcasters;
SELECT count(*) FROM es.projection_status;
SELECT count(*) FROM es.projection_errors;
SELECT es.set_stream_metadata('account-1', max_count => 100);
SELECT es.set_snapshot_interval('default', 50);
BEGIN;
SELECT es.lock_stream('customer-carol');
SELECT es.tombstone_stream('customer-carol');
COMMIT;
SELECT * FROM es.scavenge();
SELECT es.pause_projection('deposits');
SELECT es.resume_projection('deposits');
SELECT es.rebuild_projection('deposits');
-- ERROR:  permission denied to truncate table public.deposits
-- DETAIL:  es.rebuild_projection truncates the tables of projection "deposits".
-- HINT:  The caller needs the TRUNCATE privilege on the table (its owner has it).
SELECT es.pause_projection('balances');
SELECT es.resume_projection('balances');
SELECT es.retry_projection_errors('balances');
SELECT es.append_event('account-1', 'MoneyDeposited', '{"amount": 1}');
-- ERROR:  permission denied for function append_event
SELECT es.save_snapshot('account-1', 3, '{"balance": 1000, "version": 3}');
-- ERROR:  permission denied for function save_snapshot
RESET SESSION AUTHORIZATION;

-- The README's advice for handlers and upcasters: one role owns them and
-- the read tables, and the admin is a member of it.
CREATE ROLE bank_owner NOLOGIN;
GRANT USAGE ON SCHEMA es TO bank_owner;
GRANT bank_owner TO dba_alice;
CREATE SCHEMA bank AUTHORIZATION bank_owner;
SET ROLE bank_owner;
CREATE TABLE bank.event_counts (stream_id text PRIMARY KEY, events bigint NOT NULL);
CREATE FUNCTION bank.count_event(e es.event) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO bank.event_counts AS c VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET events = c.events + 1
$$;
CREATE FUNCTION bank.add_channel(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE RETURN data || '{"channel": "web"}';
RESET ROLE;

SET SESSION AUTHORIZATION dba_alice;
SELECT es.create_projection('event_counts', 'bank.count_event(es.event)',
                            mode => 'inline',
                            tables => ARRAY['bank.event_counts'::regclass]);
SELECT es.register_upcaster('AccountOpened', 1, 'bank.add_channel(jsonb)');
SELECT es.rebuild_projection('event_counts');
RESET SESSION AUTHORIZATION;

-- bank_app's appends run the handler as bank_owner, with no grant on its
-- table; its reads run the upcaster, with no grant on its function.
SET SESSION AUTHORIZATION bank_app;
SELECT es.append_event('account-1', 'MoneyDeposited', '{"amount": 5}');
SELECT data ->> 'channel' FROM es.read_stream('account-1') WHERE event_type = 'AccountOpened';
SELECT count(*) FROM bank.event_counts;
-- ERROR:  permission denied for schema bank
RESET SESSION AUTHORIZATION;
SELECT events FROM bank.event_counts WHERE stream_id = 'account-1';

-- The reference's "snapshot, then truncate" as a role in es_writer and
-- es_admin (it saves a snapshot and sets retention).
CREATE ROLE bank_ops LOGIN IN ROLE es_writer, es_admin;
SET SESSION AUTHORIZATION bank_ops;
BEGIN;
SELECT es.lock_stream('account-1');
SELECT es.stream_version('account-1') AS v \gset
SELECT es.save_snapshot('account-1', :v,
                        es.fold('account-1', 'account_balance(jsonb, es.event)'));
SELECT es.set_stream_metadata('account-1', truncate_before => :v + 1);
COMMIT;
SELECT es.fold('account-1', 'account_balance(jsonb, es.event)');
RESET SESSION AUTHORIZATION;

-- Remove what this file created.
SELECT es.drop_projection('event_counts');
SELECT es.unregister_upcaster('AccountOpened', 1);
DROP SCHEMA bank CASCADE;
REVOKE USAGE ON SCHEMA es FROM bank_owner;
DROP ROLE bank_owner, bank_ops;
