-- Batch handlers: an async projection's handler may take es.event[], the
-- upcast events of one or more committed transactions in commit order (a
-- catch-up: in position order), and write set-based SQL; on an error es
-- applies the events one at a time to find the failing one (stop, park).
CREATE SCHEMA bh;
CREATE TABLE bh.counts (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE TABLE bh.calls (projection text, events int, first_position bigint, last_position bigint);
CREATE FUNCTION bh.apply(events es.event[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM unnest(events) e WHERE e.event_type = 'BhBad') THEN
        RAISE EXCEPTION 'bad event in a batch of %', cardinality(events) USING ERRCODE = 'BH001';
    END IF;
    INSERT INTO bh.calls
    SELECT 'apply', cardinality(events), events[1].global_position,
           events[cardinality(events)].global_position;
    INSERT INTO bh.counts
    SELECT e.stream_id, count(*) FROM unnest(events) e GROUP BY e.stream_id
    ON CONFLICT (stream_id) DO UPDATE SET n = counts.n + excluded.n;
END $$;

-- history first: the catch-up hands it over in batches
SELECT count(es.append('bh-' || s, ARRAY(SELECT es.new_event('BhCounted', '{}') FROM generate_series(1, 10))))
  FROM generate_series(1, 5) s;
SELECT es.create_projection('bh_counts', 'bh.apply(es.event[])', event_types => ARRAY['BhCounted'],
                            tables => ARRAY['bh.counts'::regclass]);
SELECT es.wait_for_projection('bh_counts', timeout => '30 seconds');
SELECT sum(n) AS counted, count(*) AS streams FROM bh.counts;
SELECT count(*) < 50 AS fewer_calls_than_events, sum(events) AS events FROM bh.calls;

-- live: one transaction of 10 events is one call, in position order
BEGIN;
SELECT es.append('bh-live', ARRAY(SELECT es.new_event('BhCounted', '{}') FROM generate_series(1, 10))) \gset
COMMIT;
SELECT es.wait_for_projection('bh_counts', timeout => '30 seconds');
SELECT n FROM bh.counts WHERE stream_id = 'bh-live';
SELECT c.events, c.last_position - c.first_position AS span
  FROM bh.calls c ORDER BY c.last_position DESC LIMIT 1;

-- park: the failing event is found and parked, the rest of its batch applied
CREATE TABLE bh.parked_counts (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION bh.apply_parked(events es.event[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM unnest(events) e WHERE e.event_type = 'BhBad') THEN
        RAISE EXCEPTION 'bad event in a batch of %', cardinality(events) USING ERRCODE = 'BH001';
    END IF;
    INSERT INTO bh.parked_counts
    SELECT e.stream_id, count(*) FROM unnest(events) e GROUP BY e.stream_id
    ON CONFLICT (stream_id) DO UPDATE SET n = parked_counts.n + excluded.n;
END $$;
CREATE FUNCTION bh.apply_stopped(events es.event[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM unnest(events) e WHERE e.event_type = 'BhBad') THEN
        RAISE EXCEPTION 'bad event in a batch of %', cardinality(events) USING ERRCODE = 'BH001';
    END IF;
END $$;
SELECT es.create_projection('bh_parked', 'bh.apply_parked(es.event[])', on_error => 'park');
SELECT es.create_projection('bh_stopped', 'bh.apply_stopped(es.event[])', on_error => 'stop');
SELECT es.wait_for_projection('bh_parked', timeout => '30 seconds');
SELECT es.wait_for_projection('bh_stopped', timeout => '30 seconds');
BEGIN;
SELECT es.append('bh-mixed', ARRAY[es.new_event('BhCounted', '{}'), es.new_event('BhBad', '{}'),
                                   es.new_event('BhCounted', '{}')]) \gset
COMMIT;
SELECT es.wait_for_projection('bh_parked', timeout => '30 seconds');
SELECT n FROM bh.parked_counts WHERE stream_id = 'bh-mixed';
SELECT e.event_type, pe.sqlstate, pe.message, pe.attempts
  FROM es.projection_errors pe JOIN es.events e USING (global_position)
 WHERE pe.projection = 'bh_parked';
-- stop: stopped at the failing event itself (polled from PL/pgSQL, whose
-- every statement takes a new snapshot: one SELECT would see one state)
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT status FROM es.projection_status WHERE name = 'bh_stopped') = 'failed';
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT s.status, s.last_error, e.event_type AS stopped_at
  FROM es.projection_status s JOIN es.events e ON e.global_position = s.last_error_position
 WHERE s.name = 'bh_stopped';

-- each event of the array is whole, as es.read_stream returns it: metadata,
-- a payload stored out of line (64 kB of md5 hex: too big for a row, and
-- pglz finds no repeats in it), an upcast event; live and catch-up
CREATE TABLE bh.arrays (projection text, events es.event[]);
CREATE FUNCTION bh.keep_live(events es.event[]) RETURNS void LANGUAGE sql AS
$$ INSERT INTO bh.arrays VALUES ('live', events) $$;
CREATE FUNCTION bh.keep_catchup(events es.event[]) RETURNS void LANGUAGE sql AS
$$ INSERT INTO bh.arrays VALUES ('catch-up', events) $$;
SELECT es.register_upcaster('BhOld', 1, rename_fields => '{"amt": "amount"}');
SELECT es.create_projection('bh_live', 'bh.keep_live(es.event[])',
                            event_types => ARRAY['BhWhole', 'BhOld']);
SELECT es.wait_for_projection('bh_live', timeout => '30 seconds');
BEGIN;
SELECT es.append('bh-whole', ARRAY[
    es.new_event('BhWhole', '{"n": 1}', '{"by": "test"}'),
    es.new_event('BhWhole', jsonb_build_object('big',
        (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g))),
    es.new_event('BhOld', '{"amt": 5}')]) \gset
COMMIT;
SELECT es.wait_for_projection('bh_live', timeout => '30 seconds');
SELECT es.create_projection('bh_catchup', 'bh.keep_catchup(es.event[])',
                            event_types => ARRAY['BhWhole', 'BhOld']);
SELECT es.wait_for_projection('bh_catchup', timeout => '30 seconds');
SELECT a.projection, array_dims(a.events) AS dims,
       a.events = ARRAY(SELECT r FROM es.read_stream('bh-whole') r) AS same_values,
       a.events::text = ARRAY(SELECT r FROM es.read_stream('bh-whole') r)::text AS same_text,
       a.events[3].event_type AS upcast_type, a.events[3].data AS upcast_data,
       a.events[1].metadata AS metadata, length(a.events[2].data ->> 'big') AS big
  FROM bh.arrays a ORDER BY a.projection;
SELECT es.drop_projection('bh_live'), es.drop_projection('bh_catchup');

-- an inline projection takes one event at a time; other signatures are refused
\set VERBOSITY terse
SELECT es.create_projection('bh_inline', 'bh.apply(es.event[])', mode => 'inline');
CREATE FUNCTION bh.wrong(events es.event[]) RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT es.create_projection('bh_wrong', 'bh.wrong(es.event[])');
\set VERBOSITY default

SELECT es.drop_projection('bh_counts');
SELECT es.drop_projection('bh_parked');
SELECT es.drop_projection('bh_stopped');
DROP SCHEMA bh CASCADE;
