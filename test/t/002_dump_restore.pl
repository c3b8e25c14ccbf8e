
# Copyright (c) 2025, es contributors
#
# 002_dump_restore.pl: a pg_dump -Fc / pg_restore round trip keeps every
# event, position, stream version and the position counter, and appends keep
# working on the restored database.  The dump is restored twice: into a new
# database of the same cluster, and into a fresh cluster whose transaction
# ids are far below those recorded with the events (gap-safe reads must not
# hide restored events there).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $conf = qq{
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
shared_preload_libraries = 'es'
log_statement = none
};

my $node = PostgreSQL::Test::Cluster->new('source');
$node->init;
$node->append_conf('postgresql.conf', $conf);
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');

# Move the transaction counter well past where a fresh cluster starts, so the
# events carry xids the target cluster has not reached.
$node->safe_psql(
	'src', q{
CREATE TABLE burn (i int);
DO $$
BEGIN
  FOR i IN 1..5000 LOOP
    BEGIN
      INSERT INTO burn VALUES (i);
      RAISE EXCEPTION 'burn';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
  END LOOP;
END $$;
DROP TABLE burn;
});

$node->safe_psql('src', 'CREATE EXTENSION es');

# Several streams: single appends, batches, metadata, explicit ids and
# schema versions, and JSON batches.
$node->safe_psql(
	'src', q{
SELECT es.append_event('account-1', 'Opened', '{"owner": "ada"}', '{"by": "teller-1", "ip": "10.0.0.1"}',
                       expected_version => 0, event_id => '00000000-0000-0000-0000-000000000001');
SELECT es.append_event('account-1', 'Deposited', '{"amount": 100}', expected_version => 1);
SELECT es.append('account-2', ARRAY[
  es.new_event('Opened', '{"owner": "bob"}', '{"corr": "x1"}', '00000000-0000-0000-0000-000000000002'),
  es.new_event('Deposited', '{"amount": 50}', NULL, '00000000-0000-0000-0000-000000000003', 2),
  es.new_event('Withdrawn', '{"amount": 20}')], expected_version => 0);
SELECT es.append_json('account-1', '[{"type": "Withdrawn", "data": {"amount": 30}, "metadata": {"atm": 7}},
                                     {"type": "Deposited", "data": {"amount": 5}, "id": "00000000-0000-0000-0000-000000000004", "schema_version": 3}]', 2);
SELECT es.append_event('order-9', 'Placed', '{"items": [1, 2, 3], "nested": {"a": null}}');
SELECT es.append('order-9', ARRAY(SELECT es.new_event('Line', jsonb_build_object('n', g)) FROM generate_series(1, 200) g));
SELECT es.append_event('order-10', 'Placed', '{"unicode": "\u00e9t\u00e9 \u2603"}');
});

# An inline projection counting events per stream: created over the history
# above (replay), then fed by the trigger.  A restore must bring back its
# table as it was, without running the handler again over the restored rows.
$node->safe_psql(
	'src', q{
CREATE TABLE public.counts (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION public.count_event(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.counts VALUES (e.stream_id, 1)
  ON CONFLICT (stream_id) DO UPDATE SET n = public.counts.n + 1 $$;
SELECT es.create_projection('counts', 'public.count_event(es.event)', mode => 'inline',
                            tables => '{public.counts}');
});

# A rolled-back append leaves a hole in the positions: the restore must keep
# the positions as they are, holes included.
$node->psql('src',
	q{BEGIN; SELECT es.append_event('ghost-1', 'Never', '{}'); ROLLBACK;});
$node->safe_psql('src',
	q{SELECT es.append_event('account-2', 'Deposited', '{"amount": 1}', expected_version => 3)});

my $cols = q{global_position, stream_id, stream_version, event_id, event_type,
  schema_version, data, metadata, recorded_at};
my $all_events = "SELECT $cols FROM es.events ORDER BY global_position";
my $versions = q{SELECT s, es.stream_version(s) FROM unnest(
  ARRAY['account-1', 'account-2', 'order-9', 'order-10', 'ghost-1', 'none-1']) s};
my $read_all = "SELECT $cols FROM es.read_all(0, 100000) ORDER BY global_position";
my $read_all_raw = "SELECT global_position FROM es.read_all(0, 100000)";

my $src_events = $node->safe_psql('src', $all_events);
my $counts = q{SELECT stream_id, n, es.stream_version(stream_id) FROM public.counts ORDER BY 1};
my $src_counts = $node->safe_psql('src', $counts);
is($src_counts,
	"account-1|4|4\naccount-2|4|4\norder-10|1|1\norder-9|201|201",
	'source: the inline projection counted every event once (replay, then trigger)');
my $src_versions = $node->safe_psql('src', $versions);
my $src_maxpos = $node->safe_psql('src', 'SELECT max(global_position) FROM es.events');
my $src_count = $node->safe_psql('src', 'SELECT count(*) FROM es.events');
is($src_count, 210, 'source holds the appended events');
is( $src_versions,
	"account-1|4\naccount-2|4\norder-9|201\norder-10|1\nghost-1|0\nnone-1|0",
	'source stream versions');
# The sequence went past the rolled-back position.
my $src_seq = $node->safe_psql('src',
	'SELECT last_value FROM es.events_global_position_seq');
cmp_ok($src_seq, '>=', $src_maxpos, 'sequence is at or past the largest position');

my $dumpfile = PostgreSQL::Test::Utils::tempdir() . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dumpfile, '-d', $node->connstr('src') ],
	'pg_dump -Fc');

# A fresh cluster, first with es preloaded, then without (the xmin fallback
# of the gap-safe reads must not hide restored events either).
my $fresh = PostgreSQL::Test::Cluster->new('fresh');
$fresh->init;
$fresh->append_conf('postgresql.conf', $conf);
$fresh->start;

my @targets = (
	[ $node,  'dst',  'same cluster' ],
	[ $fresh, 'dst2', 'fresh cluster' ],
	[ $fresh, 'dst3', 'fresh cluster without preload' ]);

foreach my $t (@targets)
{
	my ($n, $db, $label) = @$t;
	if ($db eq 'dst3')
	{
		$n->append_conf('postgresql.conf', "shared_preload_libraries = ''");
		$n->restart;
		is($n->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
			'fresh cluster restarted without es preloaded');
	}
	$n->safe_psql('postgres', "CREATE DATABASE $db");
	$n->command_ok([ 'pg_restore', '--exit-on-error', '-d', $n->connstr($db), $dumpfile ],
		"$label: pg_restore");

	is($n->safe_psql($db, $all_events), $src_events,
		"$label: every event restored with its position, version, id, type, data, metadata and time");
	is($n->safe_psql($db, $versions), $src_versions, "$label: stream versions restored");
	is($n->safe_psql($db,
		'SELECT last_value FROM es.events_global_position_seq'),
		$src_seq, "$label: position sequence restored");
	is($n->safe_psql($db, $read_all), $src_events,
		"$label: es.read_all returns every restored event");
	is($n->safe_psql($db,
		"SELECT string_agg(global_position::text, ',') FROM es.read_all(0, 100000)"),
		$n->safe_psql($db,
		"SELECT string_agg(global_position::text, ',' ORDER BY global_position) FROM es.events"),
		"$label: es.read_all returns them in position order");
	is($n->safe_psql($db,
		"SELECT string_agg(stream_version::text, ',') FROM es.read_stream('account-2')"),
		'1,2,3,4', "$label: es.read_stream reads a restored stream");
	is($n->safe_psql($db,
		"SELECT count(*) FROM es.read_category('order')"),
		'202', "$label: es.read_category reads a restored category");
	is($n->safe_psql($db,
		"SELECT (es.last_event('account-1')).event_id"),
		'00000000-0000-0000-0000-000000000004', "$label: es.last_event on a restored stream");

	is($n->safe_psql($db, $counts), $src_counts,
		"$label: the projection's table restored as it was (the handler did not run again)");

	# The append-only guard is restored with the extension.
	my ($rc, $out, $err) = $n->psql($db, 'DELETE FROM es.events', extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/42501/, "$label: es.events is still append-only after restore");

	# Appends continue: versions follow the restored ones, positions are new.
	is($n->safe_psql($db,
		q{SELECT es.append_event('account-1', 'Deposited', '{"amount": 7}', expected_version => 4)}),
		'5', "$label: append with expected version continues the restored stream");
	my ($rc2, $o2, $e2) = $n->psql($db,
		q{SELECT es.append_event('account-1', 'Deposited', '{}', expected_version => 4)},
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($e2, qr/ES001/, "$label: a stale expected version is still rejected");
	is($n->safe_psql($db,
		q{SELECT es.append('account-2', ARRAY[es.new_event('A', '{}'), es.new_event('B', '{}')])}),
		'6', "$label: batch append continues the restored stream");
	is($n->safe_psql($db,
		q{SELECT es.append_event('fresh-1', 'New', '{}')}),
		'1', "$label: a new stream starts at version 1");
	# Idempotency by event id survives the restore.
	is($n->safe_psql($db,
		q{SELECT es.append_event('account-1', 'Opened', '{"owner": "ada"}', '{"by": "teller-1", "ip": "10.0.0.1"}',
		                         event_id => '00000000-0000-0000-0000-000000000001')}),
		'1', "$label: re-appending a restored event id is idempotent");

	my $new_min = $n->safe_psql($db,
		q{SELECT min(global_position) FROM es.events WHERE (stream_id, stream_version) IN
		    (('account-1', 5), ('account-2', 5), ('account-2', 6), ('fresh-1', 1))});
	cmp_ok($new_min, '>', $src_seq,
		"$label: new appends get positions above the restored sequence value");
	is($n->safe_psql($db,
		q{SELECT count(*) FROM public.counts WHERE n <> es.stream_version(stream_id)}),
		'0', "$label: the restored inline projection counts the new appends");
	is($n->safe_psql($db, q{SELECT n FROM public.counts WHERE stream_id = 'fresh-1'}),
		'1', "$label: and a new stream's first event");
	is($n->safe_psql($db, 'SELECT count(*) FROM es.events'), $src_count + 4,
		"$label: restored events plus the new ones");
	is($n->safe_psql($db,
		"SELECT count(*) FROM es.read_all($src_maxpos, 100)"),
		'4', "$label: es.read_all returns the new appends after the restored ones");
	is($n->safe_psql($db, q{
SELECT (SELECT count(*) FROM (SELECT stream_version,
          row_number() OVER (PARTITION BY stream_id ORDER BY stream_version) rn, global_position,
          lag(global_position) OVER (PARTITION BY stream_id ORDER BY stream_version) prev
        FROM es.events) s WHERE stream_version <> rn OR prev >= global_position)
     + (SELECT count(*) - count(DISTINCT global_position) FROM es.events)}),
		'0', "$label: streams contiguous, positions unique and increasing after new appends");
}

# The source is untouched by the round trip.
is($node->safe_psql('src', $all_events), $src_events, 'source unchanged');

$fresh->stop;
$node->stop;
done_testing();
