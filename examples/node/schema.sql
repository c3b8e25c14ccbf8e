-- The bank example's read model (Node.js): a balance per account, kept by
-- an async projection.  Safe to run again.
CREATE EXTENSION IF NOT EXISTS es;
CREATE SCHEMA IF NOT EXISTS bank_node;
CREATE TABLE IF NOT EXISTS bank_node.balances (
    account text PRIMARY KEY,
    balance numeric NOT NULL,
    version bigint NOT NULL          -- the stream version applied last
);
-- Handlers run with search_path = pg_catalog, pg_temp: qualify every name.
CREATE OR REPLACE FUNCTION bank_node.project(e es.event) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO bank_node.balances AS b
  VALUES (e.stream_id,
          CASE e.event_type WHEN 'MoneyDeposited' THEN (e.data->>'amount')::numeric ELSE 0 END,
          e.stream_version)
  ON CONFLICT (account) DO UPDATE
     SET balance = b.balance + excluded.balance, version = excluded.version
$$;
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM es.projection_status WHERE name = 'bank_node_balances') THEN
    PERFORM es.create_projection('bank_node_balances', 'bank_node.project(es.event)',
                                 event_types => ARRAY['AccountOpened', 'MoneyDeposited'],
                                 mode => 'async', tables => ARRAY['bank_node.balances'::regclass]);
  END IF;
END $$;
