-- The bank example's objects (Python): a reducer for es.fold, and a
-- balance per account kept by an async projection.  Safe to run again.
CREATE EXTENSION IF NOT EXISTS es;
CREATE SCHEMA IF NOT EXISTS bank_py;
-- es.fold's reducer, (state jsonb, e es.event) RETURNS jsonb, one SQL
-- expression (es inlines it).  It runs with search_path = pg_catalog,
-- pg_temp: qualify every name outside pg_catalog.
CREATE OR REPLACE FUNCTION bank_py.apply(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT state
         || jsonb_build_object('version', e.stream_version)
         || CASE e.event_type
              WHEN 'AccountOpened' THEN jsonb_build_object('open', true, 'owner', e.data->'owner')
              WHEN 'MoneyDeposited' THEN jsonb_build_object(
                  'balance', coalesce((state->>'balance')::numeric, 0) + (e.data->>'amount')::numeric)
              ELSE '{}'::jsonb
            END
$$;
CREATE TABLE IF NOT EXISTS bank_py.balances (
    account text PRIMARY KEY,
    balance numeric NOT NULL,
    version bigint NOT NULL          -- the stream version applied last
);
CREATE OR REPLACE FUNCTION bank_py.project(e es.event) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO bank_py.balances AS b
  VALUES (e.stream_id,
          CASE e.event_type WHEN 'MoneyDeposited' THEN (e.data->>'amount')::numeric ELSE 0 END,
          e.stream_version)
  ON CONFLICT (account) DO UPDATE
     SET balance = b.balance + excluded.balance, version = excluded.version
$$;
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM es.projection_status WHERE name = 'bank_py_balances') THEN
    PERFORM es.create_projection('bank_py_balances', 'bank_py.project(es.event)',
                                 event_types => ARRAY['AccountOpened', 'MoneyDeposited'],
                                 mode => 'async', tables => ARRAY['bank_py.balances'::regclass]);
  END IF;
END $$;
