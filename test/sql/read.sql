-- read.sql: es.read_stream, es.read_all, es.read_category, es.stream_version, es.last_event
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;

SELECT es.append('rd-1', ARRAY[
    es.new_event('Opened', '{"owner": "ann"}'),
    es.new_event('Deposited', '{"amount": 100}'),
    es.new_event('Withdrawn', '{"amount": 30}'),
    es.new_event('Deposited', '{"amount": 5}')]);
-- positions are printed relative to the first position of this test
SELECT min(global_position) - 1 AS base FROM es.events WHERE stream_id = 'rd-1' \gset
SELECT es.append_event('rdx-1', 'Opened', '{}');
SELECT es.append_event('rd-2', 'Opened', '{"owner": "bob"}');
SELECT es.append_event('rd-2', 'Deposited', '{"amount": 1}');
SELECT es.append_event('rd', 'Opened', '{"note": "a stream without a dash is its own category"}');

-- read_stream: forward, from_version, max_count, backwards
SELECT stream_version, event_type, data FROM es.read_stream('rd-1');
SELECT stream_version FROM es.read_stream('rd-1', 2);
SELECT stream_version FROM es.read_stream('rd-1', 2, 2);
SELECT stream_version FROM es.read_stream('rd-1', backwards => true);
SELECT stream_version FROM es.read_stream('rd-1', backwards => true, max_count => 1);
SELECT stream_version FROM es.read_stream('rd-1', 3, 10, true);
SELECT stream_version FROM es.read_stream('rd-1', max_count => 0);
SELECT stream_version FROM es.read_stream('rd-1', 5);
SELECT count(*) FROM es.read_stream('rd-none');
-- the returned columns are the es.event type
SELECT (e).stream_id, (e).stream_version, (e).global_position - :base AS pos
  FROM (SELECT es.read_stream('rd-2') AS e) s;

-- as_of: the stream as it was at a time (recorded_at is the transaction time)
SELECT es.append_event('rd-3', 'Opened', '{}');
SELECT now() AS t1 \gset
SELECT pg_sleep(0.01);
SELECT es.append_event('rd-3', 'Renamed', '{}');
SELECT stream_version, event_type FROM es.read_stream('rd-3', as_of => :'t1');
SELECT stream_version, event_type FROM es.read_stream('rd-3', as_of => now());
SELECT stream_version FROM es.read_stream('rd-3', as_of => :'t1'::timestamptz - interval '1 hour');
SELECT stream_version FROM es.read_stream('rd-3', backwards => true, max_count => 1, as_of => :'t1');

-- read_all: after a position, in position order, limited, type filter
SELECT global_position - :base AS pos, stream_id, stream_version, event_type
  FROM es.read_all(:base) WHERE stream_id LIKE 'rd%';
SELECT global_position - :base AS pos FROM es.read_all(:base + 3, 2);
SELECT global_position - :base AS pos, event_type
  FROM es.read_all(:base, 100, ARRAY['Withdrawn', 'Renamed']);
SELECT count(*) FROM es.read_all(:base, 0);
SELECT bool_and(global_position > :base + 5) FROM es.read_all(:base + 5);
-- max_count defaults to 1000; NULL means no limit
SELECT count(*) <= 1000 FROM es.read_all();
SELECT count(*) = (SELECT count(*) FROM es.events) FROM es.read_all(0, NULL);

-- read_category: the part before the first '-'
SELECT global_position - :base AS pos, stream_id, stream_version
  FROM es.read_category('rd', :base);
SELECT stream_id FROM es.read_category('rdx', :base);
SELECT global_position - :base AS pos FROM es.read_category('rd', :base + 2, 2);
SELECT es.category('rd-1'), es.category('rd'), es.category('a-b-c');

-- consumer groups: each event goes to exactly one member, by stream
SELECT count(es.append_event('grp-' || i, 'Tick', jsonb_build_object('i', i)))
  FROM generate_series(1, 40) i;
SELECT count(*) AS total,
       count(DISTINCT member) = 3 AS all_members_used,
       bool_and(n_members = 1) AS stream_in_one_member
  FROM (SELECT stream_id, count(DISTINCT m) AS n_members, min(m) AS member
          FROM (SELECT 0 AS m, stream_id FROM es.read_category('grp', 0, NULL, 0, 3)
                UNION ALL
                SELECT 1, stream_id FROM es.read_category('grp', 0, NULL, 1, 3)
                UNION ALL
                SELECT 2, stream_id FROM es.read_category('grp', 0, NULL, 2, 3)) x
         GROUP BY stream_id) y;
-- a group of one gets everything
SELECT count(*) FROM es.read_category('grp', 0, NULL, 0, 1);

-- stream_version and last_event
SELECT es.stream_version('rd-1'), es.stream_version('rd-none');
SELECT (es.last_event('rd-1')).stream_version, (es.last_event('rd-1')).event_type;
SELECT (es.last_event('rd-1', 'Withdrawn')).stream_version;
SELECT es.last_event('rd-1', 'Nope') IS NULL AS no_such_type,
       es.last_event('rd-none') IS NULL AS no_such_stream;

-- a stream id that starts with '-' is in the category ''
SELECT es.append_event('-rd', 'Odd', '{}');
SELECT stream_id FROM es.read_category('', :base);

-- bad input
\set VERBOSITY sqlstate
SELECT * FROM es.read_stream(NULL);
SELECT * FROM es.read_stream('');
SELECT * FROM es.read_stream('rd-1', -1);
SELECT * FROM es.read_stream('rd-1', 1, -1);
SELECT * FROM es.read_all(-1);
SELECT * FROM es.read_all(0, -1);
SELECT * FROM es.read_category(NULL);
SELECT * FROM es.read_category('rd-1');
SELECT * FROM es.read_category('rd', 0, -5);
SELECT * FROM es.read_category('rd', 0, 10, 3, 3);
SELECT * FROM es.read_category('rd', 0, 10, -1, 3);
SELECT * FROM es.read_category('rd', 0, 10, 0, 0);
SELECT * FROM es.read_category('rd', 0, 10, 0, NULL);
SELECT * FROM es.read_category('rd', 0, 10, NULL, 2);
SELECT es.stream_version(NULL);
SELECT es.stream_version('');
SELECT es.last_event(NULL);
\set VERBOSITY default
SELECT * FROM es.read_category('rd-1');
SELECT * FROM es.read_category('rd', 0, 10, 3, 3);
SELECT * FROM es.read_stream('rd-1', 1, -1);


-- the rows of a read are kept in memory es reuses from read to read
-- ("es read results"): it is reset once no result is in use and it holds
-- more than 8 MB, never while a query still reads a result from it (up to
-- PostgreSQL 16: from 17 on, a tuplestore keeps its rows in a memory
-- context of its own, which it deletes when it ends)
SET work_mem = '64MB';
SELECT es.append('rd-big', ARRAY(SELECT es.new_event('Big', jsonb_build_object('i', i, 'pad', repeat('x', 500)))
                                   FROM generate_series(1, 20000) i));
BEGIN;
DECLARE rd_cur CURSOR FOR SELECT stream_version, data ->> 'i' AS i FROM es.read_stream('rd-big');
FETCH 2 FROM rd_cur;
SELECT count(*), sum(length(data ->> 'pad')) FROM es.read_stream('rd-big');
-- both results are in it, one still in use: not reset
SELECT total_bytes > 8 * 1024 * 1024 OR current_setting('server_version_num')::int >= 170000
       AS kept_while_in_use
  FROM pg_backend_memory_contexts WHERE name = 'es read results';
MOVE FORWARD 19995 FROM rd_cur;
FETCH 5 FROM rd_cur;
CLOSE rd_cur;
COMMIT;
-- no result in use any more: reset
SELECT total_bytes <= 8 * 1024 * 1024 AS reset_when_idle
  FROM pg_backend_memory_contexts WHERE name = 'es read results';
-- a read that ends leaves its memory there, free, for the next one
SELECT count(*) FROM es.read_stream('rd-big', 1, 3000);
SELECT total_bytes > 1024 * 1024 OR current_setting('server_version_num')::int >= 170000
       AS kept_for_reuse, used_bytes < 64 * 1024 AS all_free
  FROM pg_backend_memory_contexts WHERE name = 'es read results';
RESET work_mem;

-- an event that needs no upcasting leaves as it is stored: its values,
-- byte for byte, whatever the size of its data and metadata (short, with a
-- long header, compressed, out of line), from a whole read or a part of it
SELECT es.append('rd-bytes', ARRAY[
         es.new_event('B', '{"a": 1}'),
         es.new_event('B', jsonb_build_object('long', repeat('y', 200)),
                      jsonb_build_object('m', repeat('m', 300))),
         es.new_event('B', jsonb_build_object('compressed', repeat('z', 5000)),
                      jsonb_build_object('m', repeat('n', 3000))),
         es.new_event('B', jsonb_build_object('external',
                      (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i)))]);
SELECT r.stream_version,
       r *= (SELECT ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, e.event_type,
                        e.schema_version, e.data, e.metadata, e.recorded_at)::es.event
               FROM es.events e WHERE e.global_position = r.global_position) AS same_values,
       (pg_column_size(r), pg_column_size(r.stream_id), pg_column_size(r.event_type),
        pg_column_size(r.data), pg_column_size(r.metadata))
         = (SELECT pg_column_size(ROW(e.global_position, e.stream_id, e.stream_version, e.event_id,
                                      e.event_type, e.schema_version, e.data, e.metadata,
                                      e.recorded_at)::es.event),
                   pg_column_size(e.stream_id), pg_column_size(e.event_type),
                   pg_column_size(e.data), pg_column_size(e.metadata)
              FROM es.events e WHERE e.global_position = r.global_position) AS same_sizes,
       length(r.data::text) AS data_length, length(r.metadata::text) AS metadata_length
  FROM es.read_stream('rd-bytes') r
 ORDER BY 1;
SELECT stream_version, md5(data::text) = md5((SELECT data FROM es.events
                                             WHERE stream_id = 'rd-bytes' AND stream_version = r.stream_version)::text)
         AS same_data
  FROM es.read_stream('rd-bytes', 3, 2, true) r;
