
# Copyright (c) 2025, es contributors
#
# 004_long_tx.pl: with es preloaded, gap-safe reads are held back only by
# in-flight appending transactions.  An unrelated long transaction (one that
# wrote another table, or a REPEATABLE READ report) does not delay later
# appends; an open appending transaction holds back larger positions until
# it commits, aborts, or its backend dies; and a failed append leaves nothing
# behind that would stall readers.  A prepared transaction that appended may
# still commit, so it must hold readers back too, across a restart.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;

my $node = es_node('longtx', qq{
max_prepared_transactions = 5
});
$node->safe_psql('postgres', 'CREATE EXTENSION es; CREATE TABLE other (i int)');

# Appends one event in autocommit mode and returns its position.
sub append_one
{
	my ($stream) = @_;
	$node->safe_psql('postgres',
		"SELECT es.append_event('$stream', 'E', '{}')");
	return $node->safe_psql('postgres',
		"SELECT max(global_position) FROM es.events WHERE stream_id = '$stream'");
}

# Positions read_all returns after $from, comma separated.
sub read_all_after
{
	my ($from) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(global_position::text, ','), '') FROM es.read_all($from)");
}

# Last line of a background psql result.
sub last_line
{
	my ($s) = @_;
	$s =~ s/.*\n//s;
	return $s;
}

my $p0 = append_one('base-1');
is(read_all_after(0), $p0, 'a committed append is returned');

# --- Unrelated long transactions do not hold readers back.
my $long = $node->background_psql('postgres');
$long->query_safe('BEGIN; INSERT INTO other VALUES (1); SELECT pg_current_xact_id();');
my $report = $node->background_psql('postgres');
$report->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM es.events;');

my $p1 = append_one('acct-1');
is(read_all_after($p0), $p1,
	'an open transaction that wrote another table does not hold back a later append');
is($node->safe_psql('postgres', "SELECT count(*) FROM es.read_category('acct', $p0)"),
	'1', 'nor does it hold back read_category');
my $p2 = append_one('acct-2');
is(read_all_after($p1), $p2, 'later appends are returned at once, one after the other');

# The unrelated transaction may append later in its life: from then on it
# holds back larger positions.
my $ps = last_line($long->query_safe(q{SELECT es.append_event('acct-3', 'E', '{}');
SELECT global_position FROM es.events WHERE stream_id = 'acct-3';}));
cmp_ok($ps, '>', $p2, 'the long transaction appended at a new position');
my $p3 = append_one('acct-4');
is(read_all_after($p2), '',
	'once it has appended, the long transaction holds back the larger position');
$long->query_safe('COMMIT');
is(read_all_after($p2), "$ps,$p3", 'its commit releases both positions, in order');
$report->query_safe('COMMIT');
$long->quit;
$report->quit;

# --- An open appending transaction holds back larger positions.
my $tx = $node->background_psql('postgres', on_error_stop => 0);
$ps = last_line($tx->query_safe(q{BEGIN;
SELECT es.append('tx-1', ARRAY[es.new_event('A', '{}'), es.new_event('B', '{}')]);
SELECT max(global_position) FROM es.events WHERE stream_id = 'tx-1';}));
my $p4 = append_one('acct-5');
cmp_ok($p4, '>', $ps, 'the later append has the larger position');
is(read_all_after($p3), '', 'the larger position waits for the open appending transaction');
is($node->safe_psql('postgres', "SELECT count(*) FROM es.read_category('acct', $p3)"),
	'0', 'read_category waits too');
$tx->query_safe('COMMIT');
is($node->safe_psql('postgres',
	"SELECT string_agg(stream_id, ',') FROM es.read_all($p3)"),
	'tx-1,tx-1,acct-5', 'after commit all three events are returned in position order');

# --- Rollback releases too.
$ps = last_line($tx->query_safe(q{BEGIN;
SELECT es.append_event('tx-2', 'A', '{}');
SELECT max(global_position) FROM es.events WHERE stream_id = 'tx-2';}));
my $p5 = append_one('acct-6');
is(read_all_after($p4), '', 'held back while the appending transaction is open');
$tx->query_safe('ROLLBACK');
is(read_all_after($p4), $p5, 'rollback releases the larger position');

# --- An append that fails inside a transaction, then the transaction is
# rolled back; and a failed append in autocommit mode.
$tx->query(q{BEGIN;
SELECT es.append_event('acct-6', 'A', '{}', expected_version => 7);});
like($tx->{stderr}, qr/ES001|expected version/i, 'append with a wrong expected version fails');
$tx->{stderr} = '';
$tx->query_safe('ROLLBACK');
my ($rc, $o, $e) = $node->psql('postgres',
	q{SELECT es.append_event('acct-6', 'A', '{}', expected_version => 0)});
isnt($rc, 0, 'failed append in autocommit mode');
my $p6 = append_one('acct-7');
is(read_all_after($p5), $p6, 'failed appends leave nothing that holds readers back');

# --- A savepoint rolled back inside a still-open transaction.
$tx->query_safe(q{BEGIN; SAVEPOINT s1;
SELECT es.append_event('tx-3', 'A', '{}');
ROLLBACK TO SAVEPOINT s1; INSERT INTO other VALUES (2);});
my $p7 = append_one('acct-8');
$tx->query_safe('COMMIT');
is(read_all_after($p6), $p7,
	'an append rolled back to a savepoint does not hold readers back after commit');

# --- The backend of an open appending transaction dies.
$ps = last_line($tx->query_safe(q{BEGIN;
SELECT es.append_event('tx-4', 'A', '{}');
SELECT pg_backend_pid();}));
my $p8 = append_one('acct-9');
is(read_all_after($p7), '', 'held back by the open transaction');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($ps, 10000)");
ok($node->poll_query_until('postgres',
	"SELECT coalesce(string_agg(global_position::text, ','), '') = '$p8' FROM es.read_all($p7)"),
	'a terminated appending backend releases the larger position');
eval { $tx->quit };

# --- A prepared transaction that appended may still commit: it holds back
# larger positions until COMMIT PREPARED, also across a restart.
my $prep = $node->background_psql('postgres', on_error_stop => 0);
my $pp = last_line($prep->query(q{BEGIN;
SELECT es.append_event('prep-1', 'A', '{}');
SELECT max(global_position) FROM es.events WHERE stream_id = 'prep-1';
PREPARE TRANSACTION 'es_prep';}));
my $prepared = $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'es_prep'});
if ($prepared eq '1')
{
	my $p9 = append_one('acct-10');
	is(read_all_after($p8), '',
		'a prepared appending transaction holds back the larger position');
	$node->restart;
	my $p10 = append_one('acct-11');
	is(read_all_after($p8), '',
		'after a restart the prepared appending transaction still holds back larger positions');
	$node->safe_psql('postgres', q{COMMIT PREPARED 'es_prep'});
	is(read_all_after($p8), "$pp,$p9,$p10",
		'COMMIT PREPARED releases all positions, in order');
}
else
{
	# Refusing PREPARE for appending transactions is a valid way to stay gap-safe.
	like($prep->{stderr}, qr/ERROR/, 'PREPARE TRANSACTION of an appending transaction is refused');
	my $p9 = append_one('acct-10');
	is(read_all_after($p8), $p9, 'the refused transaction holds nothing back');
}
eval { $prep->quit };

$node->stop;
done_testing();
