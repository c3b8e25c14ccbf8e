
# Copyright (c) 2025, es contributors
#
# 003_no_preload.pl: without es in shared_preload_libraries the extension
# still works, and the gap-safe reads fall back to the documented xmin rule:
# a larger position is not returned while a transaction holding a smaller
# one is open, and is returned once it commits or aborts.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('nopreload');
$node->init;
$node->append_conf('postgresql.conf', "log_statement = none\n");
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'es is not preloaded');
$node->safe_psql('postgres', 'CREATE EXTENSION es');

# Plain use.
is($node->safe_psql('postgres',
	q{SELECT es.append_event('cart-1', 'Created', '{"n": 1}', expected_version => 0)}),
	'1', 'append_event works without preload');
is($node->safe_psql('postgres',
	q{SELECT es.append('cart-1', ARRAY[es.new_event('Added', '{"n": 2}'), es.new_event('Added', '{"n": 3}')], 1)}),
	'3', 'append works without preload');
is($node->safe_psql('postgres',
	q{SELECT es.append_json('cart-2', '[{"type": "Created", "data": {"n": 4}}]')}),
	'1', 'append_json works without preload');
is($node->safe_psql('postgres',
	q{SELECT string_agg(stream_version || ':' || (data->>'n'), ',') FROM es.read_stream('cart-1')}),
	'1:1,2:2,3:3', 'read_stream works without preload');
is($node->safe_psql('postgres',
	q{SELECT string_agg(stream_id || '@' || stream_version, ',') FROM es.read_all()}),
	'cart-1@1,cart-1@2,cart-1@3,cart-2@1', 'read_all returns the committed events');
is($node->safe_psql('postgres', q{SELECT es.stream_version('cart-1')}), '3',
	'stream_version works without preload');
my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT es.append_event('cart-1', 'Added', '{}', expected_version => 2)},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ES001/, 'a wrong expected version is rejected without preload');

my $maxpos = $node->safe_psql('postgres', 'SELECT max(global_position) FROM es.events');

# An open appending transaction holds a smaller position.
my $tx = $node->background_psql('postgres');
my $small = $tx->query_safe(q{BEGIN;
SELECT es.append_event('cart-3', 'Created', '{"open": true}');
SELECT global_position FROM es.events WHERE stream_id = 'cart-3';});
$small =~ s/.*\n//s;    # keep the last line (the position)
cmp_ok($small, '>', $maxpos, 'the open transaction took a new position');

$node->safe_psql('postgres',
	q{SELECT es.append_event('cart-4', 'Created', '{"later": true}')});
my $large = $node->safe_psql('postgres',
	q{SELECT global_position FROM es.events WHERE stream_id = 'cart-4'});
cmp_ok($large, '>', $small, 'a later committed append took a larger position');

is($node->safe_psql('postgres', "SELECT count(*) FROM es.read_all($maxpos)"),
	'0', 'read_all does not return the larger position while the smaller one is in flight');
is($node->safe_psql('postgres',
	"SELECT string_agg(global_position::text, ',') FROM es.read_all()"),
	$node->safe_psql('postgres',
	"SELECT string_agg(global_position::text, ',' ORDER BY global_position) FROM es.events WHERE global_position <= $maxpos"),
	'read_all still returns the events before the open transaction');
is($node->safe_psql('postgres', "SELECT count(*) FROM es.read_category('cart', $maxpos)"),
	'0', 'read_category holds back the larger position too');

$tx->query_safe('COMMIT');
is($node->safe_psql('postgres',
	"SELECT string_agg(global_position::text, ',') FROM es.read_all($maxpos)"),
	"$small,$large", 'after commit read_all returns both positions in order');

# Same with a transaction that aborts.
$maxpos = $large;
$small = $tx->query_safe(q{BEGIN;
SELECT es.append_event('cart-5', 'Created', '{}');
SELECT global_position FROM es.events WHERE stream_id = 'cart-5';});
$small =~ s/.*\n//s;
$node->safe_psql('postgres', q{SELECT es.append_event('cart-6', 'Created', '{}')});
$large = $node->safe_psql('postgres',
	q{SELECT global_position FROM es.events WHERE stream_id = 'cart-6'});
cmp_ok($large, '>', $small, 'later append took a larger position');
is($node->safe_psql('postgres', "SELECT count(*) FROM es.read_all($maxpos)"),
	'0', 'read_all holds back the larger position while the aborting transaction is open');
$tx->query_safe('ROLLBACK');
is($node->safe_psql('postgres',
	"SELECT string_agg(global_position::text, ',') FROM es.read_all($maxpos)"),
	"$large", 'after rollback read_all returns the larger position, not the aborted one');
$tx->quit;

# After a restart (still without preload), everything committed is readable.
$node->restart;
is($node->safe_psql('postgres',
	"SELECT count(*) FROM es.read_all(0, 1000)"),
	$node->safe_psql('postgres', 'SELECT count(*) FROM es.events'),
	'read_all returns every event after a restart');

$node->stop;
done_testing();
