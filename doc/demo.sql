-- doc/demo.sql: the bank account of the event-sourcing literature, told in SQL.
--
-- Run it with `bash .ci/demo` (builds, installs, and runs this file in a
-- throwaway cluster), or by hand against a server where es can be created:
--
--     psql -X < doc/demo.sql 2>&1 | less
--
-- It shows each statement before its result; the errors it provokes on
-- purpose are announced ("Expected: ...") and checked, and it stops at any
-- other error.
--
-- The server needs shared_preload_libraries = 'es' and wal_level = logical
-- (section 18's asynchronous projection decodes the WAL).
--
-- Sections 1-13 are the core (appends, optimistic concurrency, reads,
-- idempotency, the append-only log); 14 evolves the deposits' schema with an
-- upcaster, 15 folds balances with a reducer and snapshots, 16 shows the
-- stream lifecycle (retention, delete, tombstone, scavenge, es.streams), 17
-- keeps a table of balances current with an inline projection, and 18 keeps
-- balances and per-account statistics with an asynchronous one.

\set ON_ERROR_STOP 1
\set QUIET 1
-- Errors and notices print their message, DETAIL and HINT (each expected
-- error's SQLSTATE is echoed after it); no CONTEXT lines.
\set VERBOSITY default
\set SHOW_CONTEXT never
\pset pager off
\pset footer off
\pset null '(null)'

-- A fresh database for the story, so the file can be run more than once.
\c postgres
SET client_min_messages = warning;
DROP DATABASE IF EXISTS es_demo;
CREATE DATABASE es_demo;
\c es_demo
\set QUIET 1
-- From here on psql prints each statement before its result.
\set ECHO queries

\echo
\echo '=== 1. Install the extension ================================================='
\echo
CREATE EXTENSION es;
SELECT extname AS extension, extversion AS version, extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'es';

\echo
\echo '=== 2. Alice opens an account ================================================'
\echo '-- A stream per account: "account-42" (category "account").'
\echo '-- expected_version 0 means: this stream must not exist yet.'
\echo
SELECT es.append_event('account-42', 'AccountOpened',
                       '{"owner": "Alice", "currency": "USD"}',
                       metadata => '{"by": "web"}',
                       expected_version => 0) AS new_version;

\echo
\echo '=== 3. Two deposits, appended atomically in one call (es.append) ============='
\echo '-- (This first version of the app writes a deposit''s amount as a string:'
\echo '-- schema version 1 of MoneyDeposited. Section 14 evolves it.)'
\echo
SELECT es.append('account-42',
                 ARRAY[es.new_event('MoneyDeposited', '{"amount": "100", "memo": "salary"}'),
                       es.new_event('MoneyDeposited', '{"amount": "50", "memo": "cash"}')],
                 expected_version => 1) AS new_version;

\echo
\echo '=== 4. A withdrawal at the ATM, sent as JSON (es.append_json) ================'
\echo
SELECT es.append_json('account-42',
                      '[{"type": "MoneyWithdrawn", "data": {"amount": 30, "via": "atm"},
                         "metadata": {"by": "atm-0815"}}]',
                      expected_version => 3) AS new_version;

\echo
\echo '-- Remember this moment in the psql variable after_atm (\\gset): section 8'
\echo '-- looks at the account as it was then.'
\echo
SELECT clock_timestamp() AS after_atm \gset
\echo 'after_atm =' :after_atm

\echo
\echo '=== 5. A concurrent writer: optimistic concurrency with ES001 ================'
\echo '-- The teller loads the account (version 4, balance 120) to withdraw 40;'
\echo '-- the version it loaded goes into the psql variable teller_version, and'
\echo '-- into the setting demo.teller_version for its code further down.'
\echo
SELECT es.stream_version('account-42') AS teller_version \gset
\echo 'teller_version =' :teller_version
SET demo.teller_version = :teller_version;

\echo
\echo '-- Meanwhile a card payment of 60 lands first, at version 5:'
\echo
SELECT es.append_event('account-42', 'MoneyWithdrawn', '{"amount": 60, "via": "card"}',
                       expected_version => :teller_version) AS new_version;

\echo
\echo '-- The teller saves with the version it loaded, 4, and is rejected.'
\echo '-- Expected: ERROR wrong expected version (SQLSTATE ES001), nothing written.'
\echo
\set ON_ERROR_STOP 0
SELECT es.append_event('account-42', 'MoneyWithdrawn', '{"amount": 40, "via": "teller"}',
                       expected_version => :teller_version) AS new_version;
-- An error provoked on purpose: psql goes on, shows its SQLSTATE, and a
-- statement it does not echo stops the demo if it was another error.
\set ON_ERROR_STOP 1
\echo '-- SQLSTATE' :SQLSTATE
\set ECHO none
SELECT CASE WHEN :'SQLSTATE' = 'ES001' THEN true
       ELSE ('demo: expected SQLSTATE ES001, got ' || :'SQLSTATE')::boolean END AS ok \gset
\set ECHO queries

\echo
\echo '-- So the teller''s command handler catches ES001, reloads the stream,'
\echo '-- re-checks the balance and retries, telling what it does in NOTICEs:'
\echo
DO $$
DECLARE
    expected bigint := current_setting('demo.teller_version')::bigint;
    balance  numeric;
    msg      text;
    detail   text;
    version  bigint;
BEGIN
    LOOP
        BEGIN
            version := es.append_event('account-42', 'MoneyWithdrawn',
                                       '{"amount": 40, "via": "teller"}',
                                       expected_version => expected);
            RAISE NOTICE 'teller: withdrawal appended, stream now at version %', version;
            EXIT;
        EXCEPTION WHEN SQLSTATE 'ES001' THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            RAISE NOTICE 'teller: ES001 %', msg;
            RAISE NOTICE 'teller: %', detail;
            -- Reload: fold the stream again to get its version and balance.
            SELECT max(stream_version),
                   sum(CASE event_type
                         WHEN 'MoneyDeposited' THEN (data ->> 'amount')::numeric
                         WHEN 'MoneyWithdrawn' THEN -(data ->> 'amount')::numeric
                         ELSE 0 END)
              INTO expected, balance
              FROM es.read_stream('account-42');
            IF balance < 40 THEN
                RAISE EXCEPTION 'insufficient funds: balance %', balance;
            END IF;
            RAISE NOTICE 'teller: reloaded version %, balance % covers 40: retrying', expected, balance;
        END;
    END LOOP;
END
$$;

\echo
\echo '=== 6. The stream read back (es.read_stream) ================================='
\echo
SELECT stream_version AS version, event_type, data, metadata
  FROM es.read_stream('account-42');

\echo
\echo '-- The last two events, newest first (backwards => true, max_count => 2):'
\echo
SELECT stream_version AS version, event_type, data
  FROM es.read_stream('account-42', max_count => 2, backwards => true);

\echo
\echo '=== 7. The balance, folded from the events with plain SQL ===================='
\echo
SELECT stream_version AS version, event_type,
       (data ->> 'amount')::numeric AS amount,
       sum(CASE event_type
             WHEN 'MoneyDeposited' THEN (data ->> 'amount')::numeric
             WHEN 'MoneyWithdrawn' THEN -(data ->> 'amount')::numeric
             ELSE 0 END) OVER (ORDER BY stream_version) AS running_balance
  FROM es.read_stream('account-42');

\echo
\echo '=== 8. The account as it was after the ATM withdrawal (as_of) ================'
\echo '-- recorded_at is the appending transaction''s start time; as_of keeps the'
\echo '-- events recorded at or before the moment remembered in section 4.'
\echo
SELECT count(*) AS events_then,
       max(stream_version) AS version_then,
       sum(CASE event_type
             WHEN 'MoneyDeposited' THEN (data ->> 'amount')::numeric
             WHEN 'MoneyWithdrawn' THEN -(data ->> 'amount')::numeric
             ELSE 0 END) AS balance_then
  FROM es.read_stream('account-42', as_of => :'after_atm');

\echo
\echo '=== 9. Idempotent retry: the same event id is written once ==================='
\echo '-- A client times out and resends its deposit with the same event id.'
\echo
SELECT es.append_event('account-42', 'MoneyDeposited', '{"amount": "25", "memo": "refund"}',
                       event_id => '0b5c6d1e-0000-4000-8000-000000000025') AS first_try;
SELECT es.append_event('account-42', 'MoneyDeposited', '{"amount": "25", "memo": "refund"}',
                       event_id => '0b5c6d1e-0000-4000-8000-000000000025') AS resent;
SELECT es.stream_version('account-42') AS stream_version,
       (SELECT count(*) FROM es.read_stream('account-42')
         WHERE event_id = '0b5c6d1e-0000-4000-8000-000000000025') AS copies;

\echo
\echo '-- The same id with a different payload is not a retry.'
\echo '-- Expected: ERROR the event id is taken (SQLSTATE ES002), nothing written.'
\echo
\set ON_ERROR_STOP 0
SELECT es.append_event('account-42', 'MoneyDeposited', '{"amount": "2500", "memo": "refund"}',
                       event_id => '0b5c6d1e-0000-4000-8000-000000000025') AS new_version;
\set ON_ERROR_STOP 1
\echo '-- SQLSTATE' :SQLSTATE
\set ECHO none
SELECT CASE WHEN :'SQLSTATE' = 'ES002' THEN true
       ELSE ('demo: expected SQLSTATE ES002, got ' || :'SQLSTATE')::boolean END AS ok \gset
\set ECHO queries

\echo
\echo '=== 10. History cannot be rewritten, not even by a superuser ================='
\echo
SELECT current_user AS who, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user;
\echo
\echo '-- A superuser tries to erase the withdrawals.'
\echo '-- Expected: ERROR es.events is append-only (SQLSTATE 42501), nothing deleted.'
\echo
\set ON_ERROR_STOP 0
DELETE FROM es.events WHERE stream_id = 'account-42' AND event_type = 'MoneyWithdrawn';
\set ON_ERROR_STOP 1
\echo '-- SQLSTATE' :SQLSTATE
\set ECHO none
SELECT CASE WHEN :'SQLSTATE' = '42501' THEN true
       ELSE ('demo: expected SQLSTATE 42501, got ' || :'SQLSTATE')::boolean END AS ok \gset
\set ECHO queries
SELECT count(*) AS withdrawals_still_stored
  FROM es.events WHERE stream_id = 'account-42' AND event_type = 'MoneyWithdrawn';

\echo
\echo '=== 11. A second account, and a category read (es.read_category) ============='
\echo '-- Bob opens account-7; a customer stream lives in another category.'
\echo
SELECT es.append_event('account-7', 'AccountOpened', '{"owner": "Bob", "currency": "USD"}',
                       expected_version => 0) AS bob_version;
SELECT es.append_event('account-7', 'MoneyDeposited', '{"amount": "500", "memo": "bonus"}',
                       expected_version => 1) AS bob_version;
SELECT es.append_event('customer-alice', 'CustomerRegistered', '{"name": "Alice"}',
                       expected_version => 0) AS customer_version;

\echo
\echo '-- Every account event, in global position order:'
\echo
SELECT global_position AS position, stream_id, stream_version AS version, event_type, data
  FROM es.read_category('account');

\echo
\echo '-- Balances of all accounts, folded from the category:'
\echo
SELECT stream_id,
       sum(CASE event_type
             WHEN 'MoneyDeposited' THEN (data ->> 'amount')::numeric
             WHEN 'MoneyWithdrawn' THEN -(data ->> 'amount')::numeric
             ELSE 0 END) AS balance
  FROM es.read_category('account')
 GROUP BY stream_id ORDER BY stream_id;

\echo
\echo '=== 12. The global log (es.read_all), paged with a checkpoint ================'
\echo '-- read_all never returns a position while a smaller one may still commit,'
\echo '-- so "the last position I saw" is a safe checkpoint.'
\echo
SELECT global_position AS position, stream_id, stream_version AS version, event_type
  FROM es.read_all(from_position => 0, max_count => 5);

\echo
\echo '-- ... next page, after checkpoint 5:'
\echo
SELECT global_position AS position, stream_id, stream_version AS version, event_type
  FROM es.read_all(from_position => 5, max_count => 100);

\echo
\echo '-- Only some event types:'
\echo
SELECT global_position AS position, stream_id, event_type, data
  FROM es.read_all(event_types => ARRAY['AccountOpened', 'CustomerRegistered']);

\echo
\echo '=== 13. Quick look-ups ======================================================='
\echo
SELECT es.stream_version('account-42') AS "account-42",
       es.stream_version('account-7')  AS "account-7",
       es.stream_version('account-99') AS "account-99 (none)";
SELECT stream_version AS version, event_type, data
  FROM es.last_event('account-42', 'MoneyWithdrawn');


\echo
\echo '=== 14. The deposits'' schema evolves: an upcaster ============================'
\echo '-- Version 2 of the app writes MoneyDeposited with the amount as a JSON'
\echo '-- number and the account''s currency (schema_version => 2):'
\echo
SELECT es.append_event('account-42', 'MoneyDeposited',
                       '{"amount": 12.50, "currency": "USD", "memo": "gift"}',
                       schema_version => 2) AS new_version;

\echo
\echo '-- Readers would now meet two shapes of the same event. Instead of teaching'
\echo '-- every reader both, register the step from version 1 to 2 once: a SQL'
\echo '-- function turns the string into a number, then a declarative default'
\echo '-- adds the currency (the bank had only USD accounts then).'
\echo
CREATE FUNCTION deposit_amount_to_number(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN data || jsonb_build_object('amount', (data ->> 'amount')::numeric);

SELECT es.register_upcaster('MoneyDeposited', 1, 'deposit_amount_to_number(jsonb)',
                            add_fields => '{"currency": "USD"}') \g /dev/null
SELECT event_type, from_schema_version AS "from", to_schema_version AS "to", kind,
       upcaster, add_fields
  FROM es.upcasters;

\echo
\echo '-- Every read now returns version 2, old events included; es.events still'
\echo '-- holds the rows exactly as they were appended:'
\echo
SELECT e.stream_version AS version,
       e.schema_version AS stored_v, e.data AS stored_data,
       r.schema_version AS read_v, r.data AS read_data
  FROM es.events e
  JOIN es.read_stream('account-42') r USING (global_position)
 WHERE e.event_type = 'MoneyDeposited'
 ORDER BY e.stream_version;

\echo
\echo '=== 15. Balances folded by a reducer, from a snapshot (es.fold) =============='
\echo '-- A reducer (state jsonb, e es.event) RETURNS jsonb applies one event to the'
\echo '-- state. It is written for version 2 only: (data -> ''amount'')::numeric needs'
\echo '-- a JSON number, and the upcaster guarantees it one.'
\echo
CREATE FUNCTION account_balance(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object(
    'balance', coalesce((state ->> 'balance')::numeric, 0)
               + CASE e.event_type
                   WHEN 'MoneyDeposited' THEN (e.data -> 'amount')::numeric
                   WHEN 'MoneyWithdrawn' THEN -(e.data -> 'amount')::numeric
                   ELSE 0 END,
    'version', e.stream_version);

SELECT es.fold('account-42', 'account_balance(jsonb, es.event)') AS state;

\echo
\echo '-- Save that state as a snapshot of the stream at its version:'
\echo
SELECT es.save_snapshot('account-42', (state ->> 'version')::bigint, state)
  FROM es.fold('account-42', 'account_balance(jsonb, es.event)') AS state \g /dev/null
SELECT version, state FROM es.load_snapshot('account-42');

\echo
\echo '-- Alice pays her phone bill. The next fold starts from the snapshot and folds'
\echo '-- only the one event after it; with snapshot_type => NULL it folds from'
\echo '-- scratch, to the same state.'
\echo
SELECT es.append_event('account-42', 'MoneyWithdrawn', '{"amount": 45, "via": "transfer"}')
       AS new_version;
SELECT s.version AS snapshot_version,
       es.stream_version('account-42') - s.version AS events_folded,
       es.fold('account-42', 'account_balance(jsonb, es.event)') AS from_snapshot,
       es.fold('account-42', 'account_balance(jsonb, es.event)',
               snapshot_type => NULL) AS from_scratch
  FROM es.load_snapshot('account-42') s;

\echo
\echo '-- Or let es.fold save snapshots itself, whenever it folded at least N events:'
\echo
SELECT es.set_snapshot_interval('default', 2) \g /dev/null
SELECT es.fold('account-7', 'account_balance(jsonb, es.event)') AS bob;
SELECT stream_id, version, state FROM es.snapshots ORDER BY stream_id;

\echo
\echo '=== 16. The stream lifecycle: retention, delete, tombstone, scavenge ========='
\echo '-- ATM 0815 reports its cash level every hour; only the last 3 reports matter.'
\echo
SELECT es.append('atm-0815',
                 ARRAY(SELECT es.new_event('CashLevelReported',
                                           jsonb_build_object('notes', 1000 - 150 * h))
                         FROM generate_series(0, 5) AS h)) AS atm_version;
SELECT es.set_stream_metadata('atm-0815', max_count => 3) \g /dev/null
SELECT stream_version AS version, data FROM es.read_stream('atm-0815');

\echo
\echo '-- Bob closes his account: he takes his money out, and the closed account'
\echo '-- is soft deleted (with the version we read, like an append):'
\echo
SELECT es.append('account-7',
                 ARRAY[es.new_event('MoneyWithdrawn', '{"amount": 500, "via": "teller"}'),
                       es.new_event('AccountClosed', '{}')],
                 expected_version => 2) AS bob_version;
SELECT es.delete_stream('account-7', expected_version => 4) AS deleted_up_to;
SELECT count(*) AS events_read, es.stream_version('account-7') AS version
  FROM es.read_stream('account-7');
SELECT count(*) AS bob_snapshots FROM es.snapshots WHERE stream_id = 'account-7';

\echo
\echo '-- A test customer registered by mistake is tombstoned: gone for good (ES003).'
\echo
SELECT es.append_event('customer-test', 'CustomerRegistered', '{"name": "Test"}') AS version;
SELECT es.tombstone_stream('customer-test') AS tombstoned_at_version;
\echo
\echo '-- Expected: ERROR the stream is deleted for good (SQLSTATE ES003).'
\echo
\set ON_ERROR_STOP 0
SELECT es.append_event('customer-test', 'CustomerRenamed', '{"name": "Test 2"}') AS version;
\set ON_ERROR_STOP 1
\echo '-- SQLSTATE' :SQLSTATE
\set ECHO none
SELECT CASE WHEN :'SQLSTATE' = 'ES003' THEN true
       ELSE ('demo: expected SQLSTATE ES003, got ' || :'SQLSTATE')::boolean END AS ok \gset
\set ECHO queries

\echo
\echo '-- es.streams, the admin view: hidden events stay stored until es.scavenge.'
\echo
SELECT stream_id, version, stored_events, state, deleted_before, max_count
  FROM es.streams ORDER BY stream_id;

\echo
\echo '-- es.scavenge removes them in batches: call it until it returns no row.'
\echo
SELECT * FROM es.scavenge(max_events => 1000);
SELECT count(*) AS rows_returned FROM es.scavenge(max_events => 1000);
SELECT stream_id, version, stored_events, state, scavenged_to
  FROM es.streams ORDER BY stream_id;

\echo
\echo '-- Versions are never reused: when Bob comes back, expected_version => 0'
\echo '-- ("no stream") recreates his account, and its numbering goes on.'
\echo
SELECT es.append_event('account-7', 'AccountOpened', '{"owner": "Bob", "currency": "USD"}',
                       expected_version => 0) AS bob_version;
SELECT stream_version AS version, event_type, data FROM es.read_stream('account-7');

\echo
\echo '=== 17. A read model kept current by an inline projection ===================='
\echo '-- The bank wants a table of balances to query, not a fold per request. A'
\echo '-- projection handler (e es.event) RETURNS void applies one event to it. It'
\echo '-- gets events upcast (amounts are numbers), runs as its owner with the'
\echo '-- search_path of the session that creates the projection (pg_temp last).'
\echo
CREATE TABLE public.account_balances (
    account text PRIMARY KEY,
    balance numeric NOT NULL,
    version bigint NOT NULL
);

CREATE FUNCTION public.project_balance(e es.event) RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO public.account_balances AS b (account, balance, version)
    VALUES (e.stream_id,
            CASE e.event_type
              WHEN 'MoneyDeposited' THEN (e.data -> 'amount')::numeric
              WHEN 'MoneyWithdrawn' THEN -(e.data -> 'amount')::numeric
              ELSE 0 END,
            e.stream_version)
    ON CONFLICT (account) DO UPDATE
       SET balance = b.balance + excluded.balance, version = excluded.version
$$;

\echo
\echo '-- mode => ''inline'' runs the handler inside every appending transaction (the'
\echo '-- default mode, ''async'', is section 18). Registering it replays the stored'
\echo '-- history into the table (only the account event types; tables => ... is'
\echo '-- what a rebuild truncates).'
\echo
SELECT es.create_projection('balances', 'public.project_balance(es.event)',
                            event_types => ARRAY['AccountOpened', 'MoneyDeposited', 'MoneyWithdrawn'],
                            mode => 'inline',
                            tables => ARRAY['public.account_balances'::regclass]) \g /dev/null
SELECT b.account, b.balance, b.version,
       es.fold(b.account, 'account_balance(jsonb, es.event)') ->> 'balance' AS folded
  FROM account_balances b ORDER BY b.account;

\echo
\echo '-- From now on every es.append* runs the handler in the appending transaction:'
\echo '-- the balance is current before the append commits.'
\echo
BEGIN;
SELECT es.append_event('account-42', 'MoneyDeposited',
                       '{"amount": 200, "currency": "USD", "memo": "salary"}',
                       schema_version => 2) AS new_version;
SELECT account, balance, version FROM account_balances WHERE account = 'account-42';
COMMIT;

\echo
\echo '-- Bob deposits 80 into his new account:'
\echo
SELECT es.append_event('account-7', 'MoneyDeposited',
                       '{"amount": 80, "currency": "USD", "memo": "cash"}',
                       schema_version => 2) AS bob_version;

\echo
\echo '-- A withdrawal of 70 that is rolled back leaves no trace. Inside its'
\echo '-- transaction the table already shows it:'
\echo
BEGIN;
SELECT es.append_event('account-7', 'MoneyWithdrawn', '{"amount": 70, "via": "atm"}')
       AS bob_version;
SELECT account, balance AS balance_before_rollback, version AS version_before_rollback
  FROM account_balances WHERE account = 'account-7';
ROLLBACK;

\echo
\echo '-- After the ROLLBACK, neither the read table nor the log has it:'
\echo
SELECT account, balance AS balance_after_rollback, version AS version_after_rollback
  FROM account_balances WHERE account = 'account-7';
SELECT es.stream_version('account-7') AS bob_version_after_rollback;

\echo
\echo '-- Read-your-writes from another connection: wait until the projection has'
\echo '-- applied a position (inline: at once, once the append committed):'
\echo
SELECT es.wait_for_projection('balances',
                              (SELECT global_position FROM es.last_event('account-7')))
       AS caught_up;

\echo
\echo '-- Paused, it lags behind; resumed, it catches up on what it missed:'
\echo
SELECT es.pause_projection('balances') \g /dev/null
SELECT es.append_event('account-42', 'MoneyWithdrawn', '{"amount": 15, "via": "card"}')
       AS new_version;
SELECT name, mode, status, last_position, lag_events FROM es.projection_status;
\echo
\echo '-- Waiting for a paused projection cannot succeed: es.wait_for_projection'
\echo '-- says so at once instead of waiting out its timeout.'
\echo '-- Expected: ERROR the projection is paused (SQLSTATE ES004), at once.'
\echo
\set ON_ERROR_STOP 0
SELECT es.wait_for_projection('balances', timeout => '5 seconds') AS caught_up;
\set ON_ERROR_STOP 1
\echo '-- SQLSTATE' :SQLSTATE
\set ECHO none
SELECT CASE WHEN :'SQLSTATE' = 'ES004' THEN true
       ELSE ('demo: expected SQLSTATE ES004, got ' || :'SQLSTATE')::boolean END AS ok \gset
\set ECHO queries
\echo
SELECT es.resume_projection('balances') \g /dev/null
SELECT name, mode, status, handler, event_types, tables, last_position, lag_events
  FROM es.projection_status;
SELECT b.account, b.balance, b.version,
       es.fold(b.account, 'account_balance(jsonb, es.event)') ->> 'balance' AS folded
  FROM account_balances b ORDER BY b.account;

\echo
\echo '=== 18. Balances kept by an asynchronous projection =========================='
\echo '-- The bank''s reports want each balance with deposit and withdrawal counts and'
\echo '-- sums per account.'
\echo '-- They need not slow the appends down: an async projection (the default'
\echo '-- mode) runs its handler in the database''s projector, a background worker'
\echo '-- that decodes the committed appends from the WAL and applies them after the'
\echo '-- commit, in commit order, exactly once. The handler is written as for an'
\echo '-- inline projection, its table named with its schema.'
\echo
CREATE TABLE public.account_stats (
    account     text PRIMARY KEY,
    deposits    int NOT NULL,
    withdrawals int NOT NULL,
    deposited   numeric NOT NULL,
    withdrawn   numeric NOT NULL,
    balance     numeric NOT NULL
);

CREATE FUNCTION public.project_account_stats(e es.event) RETURNS void
LANGUAGE sql
AS $$
    INSERT INTO public.account_stats AS s (account, deposits, withdrawals, deposited, withdrawn, balance)
    VALUES (e.stream_id,
            (e.event_type = 'MoneyDeposited')::int,
            (e.event_type = 'MoneyWithdrawn')::int,
            CASE WHEN e.event_type = 'MoneyDeposited' THEN (e.data -> 'amount')::numeric ELSE 0 END,
            CASE WHEN e.event_type = 'MoneyWithdrawn' THEN (e.data -> 'amount')::numeric ELSE 0 END,
            CASE WHEN e.event_type = 'MoneyDeposited' THEN (e.data -> 'amount')::numeric
                 ELSE -(e.data -> 'amount')::numeric END)
    ON CONFLICT (account) DO UPDATE
       SET deposits = s.deposits + excluded.deposits,
           withdrawals = s.withdrawals + excluded.withdrawals,
           deposited = s.deposited + excluded.deposited,
           withdrawn = s.withdrawn + excluded.withdrawn,
           balance = s.balance + excluded.balance
$$;

\echo
\echo '-- create_projection returns at once. After its commit the projector catches'
\echo '-- up on the stored history from the table (status catching_up), then follows'
\echo '-- the commits (running). wait_for_projection waits for that, here at most 30 s:'
\echo
SELECT es.create_projection('account_stats', 'public.project_account_stats(es.event)',
                            event_types => ARRAY['MoneyDeposited', 'MoneyWithdrawn'],
                            tables => ARRAY['public.account_stats'::regclass]) \g /dev/null
SELECT es.wait_for_projection('account_stats', timeout => '30 seconds') AS caught_up;
\echo
\echo '-- It saw the stored events the inline projection saw (Bob''s first account'
\echo '-- was scavenged in section 16), so each balance equals the inline one:'
\echo
SELECT s.account, s.deposits, s.withdrawals, s.deposited, s.withdrawn,
       s.balance, b.balance AS inline_balance
  FROM account_stats s JOIN account_balances b USING (account) ORDER BY s.account;

\echo
\echo '-- Alice''s salary arrives. The append commits without running the handler;'
\echo '-- the projector applies it a moment later. A reader that must see it (read-'
\echo '-- your-writes) waits for its position first:'
\echo
SELECT es.append_event('account-42', 'MoneyDeposited',
                       '{"amount": 300, "currency": "USD", "memo": "salary"}',
                       schema_version => 2) AS new_version;
SELECT es.wait_for_projection('account_stats',
                              (SELECT global_position FROM es.last_event('account-42')))
       AS applied;
SELECT account, deposits, deposited, balance FROM account_stats WHERE account = 'account-42';

\echo
\echo '-- es.projection_status shows both projections; the async one also shows its'
\echo '-- catch-up progress (NULL once live), parked errors, and the WAL the server'
\echo '-- keeps for it (small while it runs):'
\echo
SELECT name, mode, status, on_error, last_position, lag_events, lag_seconds,
       progress_percent, errors
  FROM es.projection_status ORDER BY name;
SELECT name, pg_size_pretty(retained_wal_bytes) AS retained_wal
  FROM es.projection_status WHERE mode = 'async';
\echo
\echo '-- The projector owns one logical slot per database and the publication'
\echo '-- es_events; it created them for the first async projection:'
\echo
SELECT backend_type, datname FROM pg_stat_activity
 WHERE backend_type IN ('es launcher', 'es projector') ORDER BY backend_type;
SELECT slot_name LIKE 'es_projector_%' AS es_slot, plugin, slot_type, active
  FROM pg_replication_slots;
SELECT pubname, pubinsert, pubupdate, pubdelete FROM pg_publication;

\echo
\echo '-- Paused, it applies nothing and keeps its place: the server keeps the WAL'
\echo '-- written since (the server log warns: "paused projection ... holds back'
\echo '-- N bytes of WAL"). Resumed, it catches up from that WAL.'
\echo
SELECT es.pause_projection('account_stats') \g /dev/null
SELECT es.append_event('account-7', 'MoneyWithdrawn', '{"amount": 30, "via": "atm"}')
       AS bob_version;
SELECT name, status, last_position, lag_events, retained_wal_bytes > 0 AS holds_wal
  FROM es.projection_status WHERE name = 'account_stats';
SELECT es.resume_projection('account_stats') \g /dev/null
SELECT es.wait_for_projection('account_stats', timeout => '30 seconds') AS applied;
SELECT name, status, last_position, lag_events FROM es.projection_status
 WHERE name = 'account_stats';
SELECT s.account, s.withdrawals, s.withdrawn, s.balance,
       b.balance AS inline_balance
  FROM account_stats s JOIN account_balances b USING (account) ORDER BY s.account;

\echo
\echo '-- Dropping the last async projection of the database: the projector drops'
\echo '-- its slot and the publication, and exits (the read table stays).'
\echo
SELECT es.drop_projection('account_stats') \g /dev/null
\echo '-- (waiting, at most 10 s, until the projector has dropped its slot:)'
DO $$
BEGIN
    FOR i IN 1..1000 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name LIKE 'es_projector_%');
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT count(*) AS es_slots FROM pg_replication_slots WHERE slot_name LIKE 'es_projector_%';
SELECT count(*) AS publications FROM pg_publication WHERE pubname = 'es_events';
SELECT count(*) AS account_stats_rows FROM account_stats;

\echo
\echo 'The end: every balance and statistic above was computed from events; the'
\echo 'snapshots and the read tables only save that work, and the stored events'
\echo 'were never changed.'
