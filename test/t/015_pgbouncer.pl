
# Copyright (c) 2026, es contributors
#
# 015_pgbouncer.pl: es behind PgBouncer in transaction pooling mode, the way
# applications run it.  The test starts Debian's pgbouncer itself (trust
# authentication through a userlist, on a free local port) in front of a
# node with es, with two pools: "app" (4 server connections) and "one" (a
# single server connection, so that what a client leaves on it is seen by
# the next client).
#
# Through it: a bank account's deposits by concurrent clients with retries,
# both with es.try_append (a stale version is NULL: no ERROR in the server
# log) and with es.append and ES001 (an ERROR each); reads; a gap-safe
# es.read_all follower running while appends are in flight, which sees
# every event once, in order; an async projection read with
# read-your-writes (es.wait_for_projection).
#
# And the traps (doc/poolers.md): a session-level SET es.notify stays on the
# server connection for the next client, SET LOCAL and set_config(..., true)
# do not; LISTEN belongs to the server connection, not to the client; a
# waiting es.wait_for_projection holds its server connection, so other
# clients of the pool wait; named prepared statements fail on a shared
# server connection (pgbouncer before 1.21 does not track them).

use strict;
use warnings;

use File::Path qw(make_path);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use Time::HiRes qw(usleep time);

my ($pgbouncer) =
  grep { -x $_ } map { "$_/pgbouncer" } '/usr/sbin', split(/:/, $ENV{PATH});
plan skip_all =>
  'pgbouncer is not installed (apt-get install pgbouncer; .ci/deps installs it)'
  unless defined $pgbouncer;

my $node = es_node('pgbouncer');
my $user = getpwuid($<);

# pgbouncer: its own directory, config and userlist, on a free port
my $bdir = PostgreSQL::Test::Utils::tempdir();
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $server = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
open(my $ul, '>', "$bdir/userlist.txt") or die $!;
print $ul qq{"$user" ""\n};
close $ul;
open(my $cf, '>', "$bdir/pgbouncer.ini") or die $!;
print $cf qq{[databases]
app = $server pool_size=4
one = $server pool_size=1

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $bdir/userlist.txt
pool_mode = transaction
max_client_conn = 100
default_pool_size = 4
logfile = $bdir/pgbouncer.log
pidfile = $bdir/pgbouncer.pid
};
close $cf;
my ($bout, $berr) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$bdir/pgbouncer.ini" ],
	'>', \$bout, '2>', \$berr);
END { $bouncer->kill_kill if defined $bouncer; }

sub bconn { return "host=127.0.0.1 port=$bport dbname=$_[0] user=$user"; }

# Runs $sql through pool $db of pgbouncer; returns (rc, stdout, stderr).
sub bpsql
{
	my ($db, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', $sql, connstr => bconn($db),
		stdout => \$out, stderr => \$err);
	return ($rc, $out, $err);
}

# Like bpsql, dies on error, returns stdout.
sub bsafe
{
	my ($db, $sql) = @_;
	my ($rc, $out, $err) = bpsql($db, $sql);
	die "through pgbouncer ($db): $sql\n$err" if $rc != 0;
	return $out;
}

# A client session through pool $db of pgbouncer.
sub bsession
{
	my ($db) = @_;
	return $node->background_psql('postgres',
		extra_params => [ '-d', bconn($db) ], on_error_stop => 0);
}

my $up = 0;
for (1 .. 100)
{
	my ($rc) = bpsql('app', 'SELECT 1');
	if ($rc == 0) { $up = 1; last; }
	usleep(100_000);
}
ok($up, 'pgbouncer accepts connections')
  or BAIL_OUT("pgbouncer did not start: $berr "
	  . (-e "$bdir/pgbouncer.log" ? slurp_file("$bdir/pgbouncer.log") : ''));
like(`$pgbouncer --version`, qr/PgBouncer/i, 'pgbouncer version: '
	  . (split /\n/, `$pgbouncer --version`)[0]);

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
CREATE TABLE public.balances (account text PRIMARY KEY, balance numeric NOT NULL,
                              version bigint NOT NULL);
CREATE FUNCTION public.project_balance(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.balances AS b
  VALUES (e.stream_id, coalesce((e.data->>'amount')::numeric, 0), e.stream_version)
  ON CONFLICT (account) DO UPDATE
     SET balance = b.balance + excluded.balance, version = excluded.version $$;
SELECT es.create_projection('balances', 'public.project_balance(es.event)',
                            mode => 'async');
});
ok( es_poll(
		$node, 'postgres',
		q{SELECT status FROM es.projection_status WHERE name = 'balances'},
		'running', 60),
	'the async projection is running');

# --- Appends with retries through the pooler ---------------------------

# Clients take turns: each reads the version, then each appends with it, so
# that all but the first of a round conflict and retry.  $style 'try' uses
# es.try_append (NULL on conflict), 'append' es.append (ES001 on conflict).
sub deposit_rounds
{
	my ($style, $account, $clients, $deposits) = @_;
	my @s = map { bsession('app') } 1 .. $clients;
	my @left = ($deposits) x $clients;
	my ($ok, $conflicts) = (0, 0);
	while (grep { $_ > 0 } @left)
	{
		my @version;
		for my $i (0 .. $#s)
		{
			next unless $left[$i];
			$version[$i] = $s[$i]->query_safe(
				"SELECT es.stream_version('$account')");
		}
		for my $i (0 .. $#s)
		{
			next unless $left[$i];
			my $events =
			  "ARRAY[es.new_event('Deposited', '{\"amount\": 1}')]";
			if ($style eq 'try')
			{
				my $v = $s[$i]->query_safe(
					"SELECT coalesce(es.try_append('$account', $events, $version[$i])::text, 'stale')"
				);
				if ($v eq 'stale') { $conflicts++; }
				else { $ok++; $left[$i]--; }
			}
			else
			{
				my $v = $s[$i]->query(
					"SELECT es.append('$account', $events, $version[$i])");
				if ($s[$i]->{stderr} =~ /wrong expected version/)
				{
					$conflicts++;
					$s[$i]->{stderr} = '';
				}
				elsif ($v =~ /^\d+$/) { $ok++; $left[$i]--; }
				else { die "unexpected append result: $v $s[$i]->{stderr}"; }
			}
		}
	}
	$_->quit for @s;
	return ($ok, $conflicts);
}

my $log_offset = -s $node->logfile;
my ($ok, $conflicts) = deposit_rounds('try', 'acct-try', 4, 10);
is($ok, 40, 'try_append: 4 clients made 10 deposits each through pgbouncer');
cmp_ok($conflicts, '>', 0, "try_append: $conflicts conflicts answered NULL, retried");
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*), min(stream_version), max(stream_version), sum((data->>'amount')::int)
		  FROM es.read_stream('acct-try')}),
	'40|1|40|40',
	'try_append: the stream holds versions 1..40, each deposit once');
my $log = substr(slurp_file($node->logfile), $log_offset);
unlike($log, qr/ERROR:|wrong expected version/,
	'try_append conflicts wrote nothing to the server log');

$log_offset = -s $node->logfile;
($ok, $conflicts) = deposit_rounds('append', 'acct-append', 3, 5);
is($ok, 15, 'append: 3 clients made 5 deposits each, retrying on ES001');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*), max(stream_version) FROM es.read_stream('acct-append')}),
	'15|15', 'append: versions 1..15');
$log = substr(slurp_file($node->logfile), $log_offset);
my $errors = () = $log =~ /ERROR:  wrong expected version/g;
is($errors, $conflicts,
	"append: each of the $conflicts ES001 conflicts is an ERROR in the server log");

# Real concurrency: pgbench clients through pgbouncer, each transaction a
# server-side retry loop with try_append, while a follower reads es.read_all.
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION public.deposit(account text, amount numeric) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
    result bigint;
BEGIN
    LOOP
        v := es.stream_version(account);
        result := es.try_append(account,
            ARRAY[es.new_event('Deposited', jsonb_build_object('amount', amount))], v);
        EXIT WHEN result IS NOT NULL;
    END LOOP;
    RETURN result;
END $$;
});
my $script = "$bdir/deposit.sql";
open(my $sf, '>', $script) or die $!;
print $sf "\\set a random(1, 3)\nSELECT public.deposit('acct-bench-' || :a, 1);\n";
close $sf;
my $max_before = $node->safe_psql('postgres',
	'SELECT coalesce(max(global_position), 0) FROM es.events');
my ($pout, $perr) = ('', '');
my $bench = IPC::Run::start(
	[
		$node->installed_command('pgbench'), '-n', '-c', '6', '-t', '50',
		'-f', $script, '-h', '127.0.0.1', '-p', $bport, '-U', $user, 'app'
	],
	'>', \$pout, '2>', \$perr);

# the follower: pages of read_all from its checkpoint, until it has all 300
# (nothing else appends meanwhile)
my $follower = bsession('app');
my $checkpoint = $max_before;
my @seen;
my $deadline = time() + 120;
while (time() < $deadline)
{
	my $page = $follower->query_safe(
		"SELECT global_position FROM es.read_all(from_position => $checkpoint, max_count => 50)");
	my @p = grep { length } split /\n/, $page;
	if (@p)
	{
		push @seen, @p;
		$checkpoint = $p[-1];
	}
	else
	{
		last if !$bench->pumpable && @seen >= 300;
		usleep(20_000);
	}
	$bench->pump_nb if $bench->pumpable;
}
my $bench_ok = $bench->finish;
$follower->quit;
ok($bench_ok, 'pgbench: 6 clients x 50 deposits through pgbouncer')
  or diag($perr);
is(scalar(@seen), 300, 'the read_all follower saw 300 events');
my %uniq = map { $_ => 1 } @seen;
my @sorted = sort { $a <=> $b } @seen;
ok(keys(%uniq) == @seen && "@sorted" eq "@seen",
	'the follower saw each event once, in position order');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(format('%s:%s:%s', stream_id, n, v), ' ' ORDER BY stream_id)
		  FROM (SELECT stream_id, count(*) AS n, max(stream_version) AS v
		        FROM es.events WHERE stream_id LIKE 'acct-bench-%' GROUP BY stream_id) s
		  WHERE n = v}),
	$node->safe_psql(
		'postgres',
		q{SELECT string_agg(format('%s:%s:%s', stream_id, n, n), ' ' ORDER BY stream_id)
		  FROM (SELECT stream_id, count(*) AS n FROM es.events
		        WHERE stream_id LIKE 'acct-bench-%' GROUP BY stream_id) s}),
	'each bench stream has contiguous versions');

# --- Reads and read-your-writes through the pooler ---------------------

is(bsafe('app', q{SELECT count(*) FROM es.read_stream('acct-try')}),
	'40', 'es.read_stream through pgbouncer');
my $pos = bsafe('app',
	q{SELECT global_position FROM es.read_all(0, NULL) WHERE stream_id = 'acct-try' ORDER BY 1 DESC LIMIT 1});
is( bsafe(
		'app',
		"SELECT es.wait_for_projection('balances', $pos, '30 seconds')"),
	't',
	'es.wait_for_projection through pgbouncer, for a position');
my $v = bsafe('app',
	q{SELECT es.try_append('acct-ryw', ARRAY[es.new_event('Deposited', '{"amount": 7}')], 0)});
is( bsafe(
		'app',
		q{SELECT es.wait_for_projection('balances', NULL, '30 seconds')}
		  . q{ AND (SELECT balance = 7 AND version = 1 FROM public.balances WHERE account = 'acct-ryw')}),
	't',
	'read-your-writes: the projection has the append of the previous transaction');
is( bsafe(
		'app',
		q{SELECT es.wait_for_projection('balances', NULL, '30 seconds')}),
	't', 'the projection caught up with everything');
is( $node->safe_psql(
		'postgres',
		q{SELECT (SELECT sum(balance) FROM public.balances) =
		         (SELECT sum((data->>'amount')::numeric) FROM es.events)}),
	't',
	'the projected balances add up to the deposits');

# --- Trap: a session-level SET stays on the server connection ----------

my $a = bsession('one');
$a->query_safe('SET es.notify = on');
$a->quit;
is(bsafe('one', 'SHOW es.notify'), 'on',
	'a session-level SET es.notify leaks to the next client of the server connection');
bsafe('one', 'RESET es.notify');
is(bsafe('one', 'SHOW es.notify'), 'off', 'RESET puts it back');

$a = bsession('one');
$a->query_safe(
	q{BEGIN; SET LOCAL es.notify = on;
	  SELECT es.append_event('acct-notify', 'Noted', '{}'); COMMIT;});
$a->query_safe(
	q{BEGIN; SELECT set_config('es.notify', 'on', true);
	  SELECT es.append_event('acct-notify', 'Noted', '{}'); COMMIT;});
$a->quit;
is(bsafe('one', 'SHOW es.notify'), 'off',
	'SET LOCAL and set_config(..., true) end with their transaction');

# --- Trap: LISTEN belongs to the server connection ---------------------

$a = bsession('one');
$a->query_safe('LISTEN es_events');
is(bsafe('one', 'SELECT pg_listening_channels()'),
	'es_events',
	'another client of the server connection finds itself listening on es_events');
$node->safe_psql('postgres',
	q{BEGIN; SET LOCAL es.notify = on;
	  SELECT es.append_event('acct-notify', 'Noted', '{}'); COMMIT;});
my $after = $a->query_safe('SELECT 1');
unlike($after . $a->{stderr}, qr/Asynchronous notification/,
	'the client that ran LISTEN is not told of the notification');
$a->query_safe('UNLISTEN *');
$a->quit;

# --- Trap: a waiting wait_for_projection holds its server connection ---

# (a paused or stopped projection raises ES004 at once: the waiter here
# waits for an event that nobody appends, until its timeout)
my ($wout, $werr) = ('', '');
my $waiter = IPC::Run::start(
	[
		$node->installed_command('psql'), '-XAtq', '-d', bconn('one'), '-c',
		q{SELECT es.wait_for_projection('balances',
		    (SELECT last_value + 1000000 FROM es.events_global_position_seq), '3 seconds')}
	],
	'>', \$wout, '2>', \$werr);
ok( es_poll(
		$node, 'postgres',
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE query LIKE '%wait_for_projection%' AND pid <> pg_backend_pid() AND state = 'active'},
		'1', 10),
	'the waiter is waiting');
my $t0 = time();
is(bsafe('one', 'SELECT 1'), '1', 'another client of the pool gets its answer');
my $waited = time() - $t0;
cmp_ok($waited, '>', 1.5,
	sprintf('... only after the waiter gave up its server connection (%.1f s)', $waited));
$waiter->finish;
is($wout, "f\n", 'the waiter timed out: the event it waits for was never appended');

# --- Trap: named prepared statements on a shared server connection -----

my ($bench2_out, $bench2_err) = ('', '');
IPC::Run::run(
	[
		$node->installed_command('pgbench'), '-n', '-M', 'prepared', '-c',
		'2', '-t', '5', '-f', $script, '-h', '127.0.0.1', '-p', $bport,
		'-U', $user, 'one'
	],
	'>', \$bench2_out, '2>', \$bench2_err);
# PgBouncer 1.21 and later track named prepared statements themselves
# (max_prepared_statements, on by default since 1.22): there they work.
my ($bmaj, $bmin) = `$pgbouncer --version` =~ /(\d+)\.(\d+)/;
if ($bmaj > 1 || ($bmaj == 1 && $bmin >= 22))
{
	is($bench2_err =~ /prepared statement "[^"]+" (already exists|does not exist)/ ? 'collide' : 'work',
		'work', "named prepared statements work: PgBouncer $bmaj.$bmin tracks them");
}
else
{
	like($bench2_err, qr/prepared statement "[^"]+" (already exists|does not exist)/,
		"named prepared statements collide on a shared server connection (PgBouncer $bmaj.$bmin)");
}

$bouncer->kill_kill;
undef $bouncer;
$node->stop;
done_testing();
