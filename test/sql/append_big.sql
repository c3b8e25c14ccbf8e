-- append_big.sql: one es.append of many events (issue 11): linear, batched
-- inserts, every guarantee kept, and interruptible.
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;

-- 20k events with given ids, in one call
CREATE TEMP TABLE big_events AS
SELECT array_agg(es.new_event('Deposited', jsonb_build_object('amount', i), NULL,
                              md5('ab-' || i)::uuid) ORDER BY i) AS a
  FROM generate_series(1, 20000) i;
SELECT es.append('ab-1', (SELECT a FROM big_events), 0);
-- versions 1..20000 in order, contiguous increasing positions, the right data
SELECT count(*), min(stream_version), max(stream_version),
       max(global_position) - min(global_position) AS position_span,
       bool_and(data = jsonb_build_object('amount', stream_version)) AS data_ok,
       bool_and(event_id = md5('ab-' || stream_version)::uuid) AS ids_ok
  FROM es.events WHERE stream_id = 'ab-1';
SELECT count(*) AS out_of_order
  FROM (SELECT stream_version,
               global_position - lag(global_position) OVER (ORDER BY stream_version) AS step
          FROM es.events WHERE stream_id = 'ab-1') s
 WHERE step <> 1;

-- a retry of the same batch writes nothing and returns the same version
SELECT es.append('ab-1', (SELECT a FROM big_events), 0);
SELECT count(*) FROM es.events WHERE stream_id = 'ab-1';
-- the expected version is checked: a new batch at a stale version fails
SELECT es.append('ab-1', ARRAY(SELECT es.new_event('Deposited', '{}') FROM generate_series(1, 3000)), 0);
-- a batch that repeats part of the stored events is a mismatch
SELECT es.append('ab-1', (SELECT a[19000:20000] || ARRAY[es.new_event('Deposited', '{}')] FROM big_events), 20000);
-- more events at the right version continue the numbering
SELECT es.append('ab-1', ARRAY(SELECT es.new_event('Deposited', jsonb_build_object('amount', i))
                                 FROM generate_series(20001, 22500) i), 20000);
SELECT count(*), max(stream_version), bool_and(data = jsonb_build_object('amount', stream_version))
  FROM es.events WHERE stream_id = 'ab-1';

-- inline projections fire for every row of a multi-batch append
CREATE SCHEMA abp;
CREATE TABLE abp.seen (stream_version bigint PRIMARY KEY);
CREATE FUNCTION abp.handler(e es.event) RETURNS void LANGUAGE sql
AS $$ INSERT INTO abp.seen VALUES (e.stream_version) $$;
SELECT es.create_projection('abp_seen', 'abp.handler(es.event)', mode => 'inline',
                            event_types => ARRAY['Seen'], tables => ARRAY['abp.seen'::regclass]);
SELECT es.append('ab-2', ARRAY(SELECT es.new_event('Seen', jsonb_build_object('n', i))
                                 FROM generate_series(1, 2500) i), 0);
SELECT count(*), min(stream_version), max(stream_version) FROM abp.seen;
SELECT es.drop_projection('abp_seen');
DROP SCHEMA abp CASCADE;

-- statement_timeout interrupts a big append: 57014, nothing written, and
-- soon (the append checks for interrupts per event; without that, 100k
-- events took many seconds before the first check)
CREATE TEMP TABLE huge_events AS
SELECT array_agg(es.new_event('Deposited', jsonb_build_object('amount', i)) ORDER BY i) AS a
  FROM generate_series(1, 100000) i;
SELECT clock_timestamp() AS ab_t0 \gset
SET statement_timeout = '50ms';
SELECT es.append('ab-3', (SELECT a FROM huge_events), 0);
RESET statement_timeout;
\echo :LAST_ERROR_SQLSTATE
SELECT clock_timestamp() - :'ab_t0'::timestamptz < interval '1 s' AS interrupted_soon;
SELECT count(*) FROM es.events WHERE stream_id = 'ab-3';
-- the stream is still new, and appends go on
SELECT es.append('ab-3', ARRAY[es.new_event('Deposited', '{}')], 0);
SELECT count(*) FROM es.read_all((SELECT max(global_position) - 1 FROM es.events), 10)
 WHERE stream_id = 'ab-3';
