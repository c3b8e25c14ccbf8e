-- lifecycle.sql: soft delete, tombstone, retention, scavenge, admin views
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS es;
RESET client_min_messages;

SELECT es.append('lc-1', ARRAY[es.new_event('Opened', '{}'), es.new_event('Deposited', '{"amount": 5}'),
                               es.new_event('Deposited', '{"amount": 7}')]);
SELECT es.append_event('lc-2', 'Opened', '{}');
SELECT min(global_position) - 1 AS base FROM es.events WHERE stream_id = 'lc-1' \gset

-- soft delete: reads return nothing of the deleted part
SELECT es.delete_stream('lc-1', expected_version => 3);
SELECT count(*) FROM es.read_stream('lc-1');
SELECT es.last_event('lc-1') IS NULL AS no_last_event;
SELECT stream_id FROM es.read_all(:base) WHERE stream_id LIKE 'lc-%';
SELECT stream_id FROM es.read_category('lc', :base);
-- the version is kept: numbering continues
SELECT es.stream_version('lc-1');
-- a later append recreates the stream: expected version 0 is accepted
SELECT es.append_event('lc-1', 'Reopened', '{}', expected_version => 0);
SELECT stream_version, event_type FROM es.read_stream('lc-1');
SELECT global_position - :base AS pos, stream_id, stream_version FROM es.read_all(:base)
 WHERE stream_id LIKE 'lc-%';
-- it exists again: expected 0 fails now, -1 works
SELECT es.append_event('lc-1', 'X', '{}', expected_version => 0);
SELECT es.append_event('lc-1', 'Deposited', '{"amount": 1}', expected_version => -1);
-- deleting again hides the new events too
SELECT es.delete_stream('lc-1');
SELECT count(*) FROM es.read_stream('lc-1');
-- a delete checks the expected version like an append
SELECT es.delete_stream('lc-2', expected_version => 5);

-- tombstone: never appended to again, and reads say it is deleted
SELECT es.tombstone_stream('lc-2', expected_version => 1);
SELECT es.append_event('lc-2', 'X', '{}');
SELECT * FROM es.read_stream('lc-2');
SELECT es.last_event('lc-2');
SELECT es.delete_stream('lc-2');
SELECT es.tombstone_stream('lc-2');
SELECT count(*) FROM es.read_all(:base) WHERE stream_id = 'lc-2';

-- retention, applied at once on every read
SELECT es.append('lc-3', ARRAY(SELECT es.new_event('Tick', jsonb_build_object('i', i))
                                FROM generate_series(1, 6) i));
SELECT es.set_stream_metadata('lc-3', max_count => 2);
SELECT stream_version FROM es.read_stream('lc-3');
SELECT es.set_stream_metadata('lc-3', truncate_before => 4);
SELECT stream_version FROM es.read_stream('lc-3');
SELECT es.set_stream_metadata('lc-3', max_count => 4, truncate_before => 2);
SELECT stream_version FROM es.read_stream('lc-3');
SELECT stream_version FROM es.read_stream('lc-3', backwards => true, max_count => 1);
SELECT (es.last_event('lc-3')).stream_version;
SELECT stream_version FROM es.read_category('lc', :base) WHERE stream_id = 'lc-3';
-- max_age: events older than the age are hidden (now() is the transaction's start)
SELECT es.set_stream_metadata('lc-3', max_age => '1 hour');
SELECT count(*) FROM es.read_stream('lc-3');
BEGIN;
SELECT es.set_stream_metadata('lc-3', max_age => '1 microsecond');
SELECT pg_sleep(0.01);
COMMIT;
SELECT count(*) FROM es.read_stream('lc-3');
SELECT count(*) FROM es.read_all(:base) WHERE stream_id = 'lc-3';
-- appends are not affected by retention: numbering goes on
SELECT es.append_event('lc-3', 'Tick', '{"i": 7}', expected_version => 6);
SELECT stream_version FROM es.read_stream('lc-3');
SELECT es.set_stream_metadata('lc-3', max_count => 3);

-- retention and snapshots: a snapshot keeps the state of truncated events
CREATE FUNCTION lc_sum(state jsonb, e es.event) RETURNS jsonb LANGUAGE sql
RETURN jsonb_build_object('sum', coalesce((state ->> 'sum')::int, 0) + coalesce((e.data ->> 'i')::int, 0));
SELECT es.fold('lc-3', 'lc_sum(jsonb, es.event)');
SELECT es.save_snapshot('lc-3', 6, '{"sum": 21}');
SELECT es.fold('lc-3', 'lc_sum(jsonb, es.event)');
-- a soft delete drops the snapshots it ends
SELECT es.append_event('lc-4', 'Tick', '{"i": 1}');
SELECT es.save_snapshot('lc-4', 1, '{"sum": 1}');
SELECT es.delete_stream('lc-4');
SELECT count(*) FROM es.load_snapshot('lc-4');
SELECT es.append_event('lc-4', 'Tick', '{"i": 10}');
SELECT es.fold('lc-4', 'lc_sum(jsonb, es.event)');

-- admin views
SELECT stream_id, category, version, stored_events, state, deleted_before, max_count,
       truncate_before, created_at IS NOT NULL AS has_times
  FROM es.streams WHERE stream_id LIKE 'lc-%' ORDER BY stream_id;
SELECT category, streams, events, first_position - :base AS first_pos, last_position - :base AS last_pos
  FROM es.categories WHERE category = 'lc';
SELECT event_type, schema_version, events FROM es.event_types
 WHERE event_type IN ('Tick', 'Reopened') ORDER BY 1;

-- scavenge: physically removes what is hidden, reports it, keeps numbering
SELECT stream_id, events_removed, up_to_version FROM es.scavenge(3) ORDER BY stream_id;
SELECT stream_id, events_removed, up_to_version FROM es.scavenge() ORDER BY stream_id;
SELECT count(*) FROM es.scavenge();
SELECT stream_id, stream_version FROM es.events WHERE stream_id LIKE 'lc-%' ORDER BY 1, 2;
SELECT stream_id, version, stored_events, state, scavenged_to
  FROM es.streams WHERE stream_id LIKE 'lc-%' ORDER BY stream_id;
-- versions and positions are never reused
SELECT es.stream_version('lc-1');
SELECT es.append_event('lc-1', 'Again', '{}', expected_version => 0);
SELECT global_position > (SELECT max(global_position) FROM es.events WHERE stream_id <> 'lc-1')
  AS newest_position FROM es.events WHERE stream_id = 'lc-1' AND stream_version = 6;
-- scavenge is the only way to delete events
DELETE FROM es.events WHERE stream_id = 'lc-1';

-- bad input
\set VERBOSITY sqlstate
SELECT es.delete_stream(NULL);
SELECT es.delete_stream('');
SELECT es.delete_stream('lc-1', -2);
SELECT es.set_stream_metadata('lc-5', max_count => 0);
SELECT es.set_stream_metadata('lc-5', max_age => '-1 day');
SELECT es.set_stream_metadata('lc-5', truncate_before => 0);
SELECT es.set_stream_metadata(NULL);
SELECT es.set_stream_metadata('lc-5', max_age => '10000 years');
SELECT * FROM es.scavenge(0);
SELECT es.save_snapshot('lc-2', 1, '{}');
SELECT es.save_snapshot('lc-1', 5, '{}');
\set VERBOSITY default
SELECT es.save_snapshot('lc-2', 1, '{}');
SELECT es.save_snapshot('lc-1', 5, '{}');
-- deleting a stream that never existed changes nothing
SELECT es.delete_stream('lc-never');
SELECT count(*) FROM es.stream_metadata WHERE stream_id = 'lc-never';
SELECT es.set_stream_metadata('lc-5', max_count => 0);
SELECT * FROM es.scavenge(0);
SELECT count(*) FROM es.stream_metadata WHERE stream_id = 'lc-5';

-- leave nothing hidden behind for the tests that follow
SELECT es.set_stream_metadata('lc-3');
SELECT count(*) FROM es.scavenge(100000);
