# Copyright (c) 2026, es contributors
#
# 018_projector_resources.pl: the projector with fewer background worker
# slots than it wants, and its upkeep of es.projections.
#
# - max_worker_processes = 4: the es launcher, PostgreSQL's logical
#   replication launcher and the projector leave one slot, so of the two
#   projection workers two async projections want, the second cannot be
#   registered.  The projector says so in a WARNING that names the
#   database (it wrote it outside a transaction, and reading the name
#   there crashed it: signal 11, and the server restarted), keeps running
#   (same pid, no crash in the log), and the one worker applies both
#   projections, each event exactly once.
# - With autovacuum off, every unit of every projection updates its row of
#   es.projections: after 1,000 one-event transactions applied by two
#   projections, the projector has vacuumed the table itself
#   (pg_stat_user_tables.vacuum_count above zero).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use Time::HiRes qw(usleep time);

my $node = es_node('projector_resources',
	"max_worker_processes = 4\nmax_parallel_workers = 0\nautovacuum = off\n");
my $db = 'slots';
my $offset = -s $node->logfile;
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, "CREATE EXTENSION es;\n" . es_seen_sql('a') . es_seen_sql('b'));
foreach my $name (qw(a b))
{
	is($node->safe_psql($db, qq{SELECT es.wait_for_projection('$name', NULL, '60 seconds')}),
		't', "projection $name is live");
}
ok( es_log_matches(
		$node,
		qr/WARNING:  es projector: could not start projection worker 2 of database "$db"; retrying in 5 seconds/,
		$offset, 30),
	'the projector warns, naming the database, that it could not start its second worker');
my $projector_query = qq{SELECT pid FROM pg_stat_activity
 WHERE datname = '$db' AND backend_type = 'es projector'};
my $projector = $node->safe_psql($db, $projector_query);
isnt($projector, '', 'the projector runs');
is( $node->safe_psql(
		$db, qq{SELECT count(*) FROM pg_stat_activity
 WHERE datname = '$db' AND backend_type = 'es projection worker'}),
	'1', 'one projection worker runs');

# 1,000 transactions of one event, one at a time: a unit each, or nearly.
$node->safe_psql($db, q{
DO $$
BEGIN
    FOR s IN 1..1000 LOOP
        PERFORM es.append_event('s-' || s, 'Opened', '{}');
        COMMIT;
    END LOOP;
END
$$});
foreach my $name (qw(a b))
{
	is($node->safe_psql($db, qq{SELECT es.wait_for_projection('$name', NULL, '120 seconds')}),
		't', "projection $name applies every event");
	is( $node->safe_psql(
			$db, qq{SELECT count(*) || ':' || count(DISTINCT global_position) || ':'
              || (SELECT count(*) FROM es.events) FROM public.seen_$name}),
		'1000:1000:1000', "projection $name holds each event once (rows:distinct:events)");
}
# A few more warnings went by meanwhile (every 5 seconds), none fatal.
is($node->safe_psql($db, $projector_query), $projector, 'the same projector (no restart)');
unlike(substr(slurp_file($node->logfile), $offset), qr/terminated by signal/,
	'no process of the server crashed');

# es.projections: vacuumed by the projector (autovacuum is off).
ok( es_poll(
		$node, $db, q{SELECT vacuum_count > 0 FROM pg_stat_user_tables
 WHERE schemaname = 'es' AND relname = 'projections'}, 't', 30),
	'the projector vacuums es.projections (autovacuum is off)');

$node->stop;
done_testing();
