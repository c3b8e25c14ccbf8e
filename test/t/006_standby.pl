
# Copyright (c) 2025, es contributors
#
# 006_standby.pl: reads on a physical streaming standby.  The events
# replicate, and es.read_all / es.read_category on the standby stay
# gap-safe: a position committed on the primary is not returned on the
# standby while a smaller position is still held by an open appending
# transaction on the primary (the standby's own shared memory knows nothing
# of the primary's appenders, so it must not rely on it alone).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 'logical');
$primary->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'es'
shared_buffers = 16MB
max_connections = 20
log_statement = none
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION es');
$primary->safe_psql('postgres',
	q{SELECT es.append('acct-1', ARRAY[es.new_event('A', '{"n": 1}'), es.new_event('B', '{"n": 2}')])});

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

$primary->safe_psql('postgres', q{SELECT es.append_event('acct-2', 'C', '{"n": 3}')});
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is($standby->safe_psql('postgres',
	q{SELECT string_agg(stream_id || '@' || stream_version, ',') FROM es.read_all()}),
	'acct-1@1,acct-1@2,acct-2@1', 'read_all on the standby returns the replicated events');
is($standby->safe_psql('postgres',
	q{SELECT string_agg(data->>'n', ',') FROM es.read_stream('acct-1')}),
	'1,2', 'read_stream on the standby');
is($standby->safe_psql('postgres', q{SELECT es.stream_version('acct-1')}), '2',
	'stream_version on the standby');

my $maxpos = $primary->safe_psql('postgres', 'SELECT max(global_position) FROM es.events');

# An appending transaction stays open on the primary while a later append
# commits.
my $tx = $primary->background_psql('postgres');
my $small = $tx->query_safe(q{BEGIN;
SELECT es.append_event('acct-3', 'D', '{"n": 4}');
SELECT global_position FROM es.events WHERE stream_id = 'acct-3';});
$small =~ s/.*\n//s;
$primary->safe_psql('postgres', q{SELECT es.append_event('acct-4', 'E', '{"n": 5}')});
my $large = $primary->safe_psql('postgres',
	q{SELECT global_position FROM es.events WHERE stream_id = 'acct-4'});
cmp_ok($large, '>', $small, 'the committed append has the larger position');
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', q{SELECT es.stream_version('acct-4')}), '1',
	'the larger position has replicated to the standby');
is($primary->safe_psql('postgres', "SELECT count(*) FROM es.read_all($maxpos)"), '0',
	'read_all on the primary holds the larger position back');
is($standby->safe_psql('postgres', "SELECT count(*) FROM es.read_all($maxpos)"), '0',
	'read_all on the standby holds the larger position back while the smaller one is in flight on the primary');
is($standby->safe_psql('postgres', "SELECT count(*) FROM es.read_category('acct', $maxpos)"), '0',
	'read_category on the standby holds it back too');

$tx->query_safe('COMMIT');
$tx->quit;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres',
	"SELECT string_agg(global_position::text, ',') FROM es.read_all($maxpos)"),
	"$small,$large", 'after the commit the standby returns both positions in order');

# Appending on the standby is refused (read-only).
my ($rc, $out, $err) = $standby->psql('postgres',
	q{SELECT es.append_event('acct-5', 'F', '{}')});
isnt($rc, 0, 'appending on the standby fails');

$standby->stop;
$primary->stop;
done_testing();
