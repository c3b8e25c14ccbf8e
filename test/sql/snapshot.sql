-- snapshot.sql: es.save_snapshot, es.load_snapshot, es.fold, es.set_snapshot_interval
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;

-- the bank account: a balance folded from events
SELECT es.append('sn-1', ARRAY[
    es.new_event('Opened', '{"owner": "ann"}'),
    es.new_event('Deposited', '{"amount": 100}'),
    es.new_event('Withdrawn', '{"amount": 30}'),
    es.new_event('Deposited', '{"amount": 5}')]);
CREATE FUNCTION sn_balance(state jsonb, e es.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object(
    'balance', coalesce((state ->> 'balance')::numeric, 0)
               + CASE e.event_type WHEN 'Deposited' THEN (e.data ->> 'amount')::numeric
                                   WHEN 'Withdrawn' THEN -(e.data ->> 'amount')::numeric
                                   ELSE 0 END,
    'events', coalesce((state ->> 'events')::int, 0) + 1,
    'version', e.stream_version);
-- a plpgsql reducer works the same
CREATE FUNCTION sn_count(state jsonb, e es.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN jsonb_set(state, '{n}', to_jsonb(coalesce((state ->> 'n')::int, 0) + 1));
END $$;

SELECT es.fold('sn-1', 'sn_balance(jsonb, es.event)');
SELECT es.fold('sn-1', 'sn_count(jsonb, es.event)', '{"n": 10}');
SELECT es.fold('sn-none', 'sn_balance(jsonb, es.event)');
SELECT * FROM es.load_snapshot('sn-1');

-- a snapshot: fold starts from it (the state below is deliberately not the
-- fold of versions 1..2, which shows that they are not folded again)
SELECT es.save_snapshot('sn-1', 2, '{"balance": 1000, "events": 0}');
SELECT version, state FROM es.load_snapshot('sn-1');
SELECT es.fold('sn-1', 'sn_balance(jsonb, es.event)');
-- snapshot types are separate; NULL type means: no snapshot
SELECT es.fold('sn-1', 'sn_balance(jsonb, es.event)', '{}', 'other');
SELECT es.fold('sn-1', 'sn_balance(jsonb, es.event)', '{}', NULL);
-- a later snapshot replaces the earlier one
SELECT es.save_snapshot('sn-1', 4, '{"balance": 75, "events": 4}');
SELECT version, state FROM es.load_snapshot('sn-1');
SELECT count(*) FROM es.snapshots WHERE stream_id = 'sn-1';
SELECT es.fold('sn-1', 'sn_balance(jsonb, es.event)');
SELECT es.append_event('sn-1', 'Deposited', '{"amount": 1}');
SELECT es.fold('sn-1', 'sn_balance(jsonb, es.event)');

-- automatic snapshots: fold saves one when it folded at least N events
SELECT es.append('sn-2', ARRAY(SELECT es.new_event('Deposited', jsonb_build_object('amount', i))
                                FROM generate_series(1, 25) i));
SELECT es.set_snapshot_interval('auto', 10);
SELECT es.fold('sn-2', 'sn_balance(jsonb, es.event)', '{}', 'auto');
SELECT version, state FROM es.load_snapshot('sn-2', 'auto');
SELECT es.append('sn-2', ARRAY[es.new_event('Deposited', '{"amount": 100}')]);
-- one event after the snapshot: folded on top of it, no new snapshot
SELECT es.fold('sn-2', 'sn_balance(jsonb, es.event)', '{}', 'auto');
SELECT version FROM es.load_snapshot('sn-2', 'auto');
SELECT es.set_snapshot_interval('auto', 0);
SELECT count(*) FROM es.snapshot_intervals;

-- fold upcasts the events it gives the reducer
SELECT es.append_event('sn-3', 'SnOld', '{"amt": 7}');
SELECT es.register_upcaster('SnOld', 1, to_event_type => 'Deposited', rename_fields => '{"amt": "amount"}');
SELECT es.fold('sn-3', 'sn_balance(jsonb, es.event)');
SELECT es.unregister_upcaster('SnOld', 1);

-- bad input and failing reducers: clear errors, nothing saved
SELECT count(*) AS snapshots FROM es.snapshots \gset
\set VERBOSITY sqlstate
SELECT es.save_snapshot('sn-1', 6, '{}');
SELECT es.save_snapshot('sn-1', 0, '{}');
SELECT es.save_snapshot('sn-none', 1, '{}');
SELECT es.save_snapshot('sn-1', 1, NULL);
SELECT es.save_snapshot(NULL, 1, '{}');
SELECT es.save_snapshot('sn-1', 1, '{}', '');
SELECT es.set_snapshot_interval('auto', -1);
SELECT es.fold(NULL, 'sn_balance(jsonb, es.event)');
SELECT es.fold('sn-1', NULL);
SELECT es.fold('sn-1', 'sn_balance(jsonb, es.event)', NULL);
SELECT es.fold('sn-1', 'jsonb_concat(jsonb, jsonb)');
\set VERBOSITY default
SELECT es.save_snapshot('sn-1', 6, '{}');
SELECT es.fold('sn-1', 'jsonb_concat(jsonb, jsonb)');
CREATE FUNCTION sn_null(state jsonb, e es.event) RETURNS jsonb LANGUAGE sql
RETURN CASE WHEN e.stream_version = 3 THEN NULL ELSE state END;
CREATE FUNCTION sn_raise(state jsonb, e es.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'bad event %', e.event_type; END $$;
SELECT es.fold('sn-1', 'sn_null(jsonb, es.event)', '{}', NULL);
SELECT es.fold('sn-1', 'sn_raise(jsonb, es.event)', '{}', NULL);
SELECT count(*) = :snapshots AS nothing_saved FROM es.snapshots;
