# Copyright (c) 2026, es contributors
#
# 014_projector_hygiene.pl: the projector's transactions behave like a
# backend's (as in worker_spi and the logical replication apply worker).
#
# - now() is the time of the projector's transaction, not of its start: an
#   async handler's now() and DEFAULT now(), es.projections.last_applied_at,
#   failed_at (on_error = 'stop') and es.projection_errors.first_failed_at /
#   last_failed_at (on_error = 'park') of an event appended seconds after
#   the projector started lie between a clock_timestamp() read just before
#   the append and one read once the event is applied.
# - The table statistics of the read tables the handlers write reach the
#   cumulative statistics system (and so autovacuum) while the projector
#   keeps running: pg_stat_user_tables.n_tup_ins of the read table goes
#   above zero, the projector's pid unchanged.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use Time::HiRes qw(usleep time);

my $node = es_node('projector_hygiene');

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION es;
CREATE TABLE public.seen (global_position bigint NOT NULL,
                          at timestamptz NOT NULL,
                          stmt_at timestamptz NOT NULL,
                          default_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION public.h_clock(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.seen (global_position, at, stmt_at)
  VALUES (e.global_position, now(), statement_timestamp()) $$;
CREATE FUNCTION public.h_bad(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.event_type = 'Bad' THEN
    RAISE EXCEPTION 'bad event at %', e.global_position USING ERRCODE = 'ET001';
  END IF;
END $$;
SELECT es.create_projection('clock', 'public.h_clock(es.event)');
SELECT es.create_projection('stopper', 'public.h_bad(es.event)', on_error => 'stop');
SELECT es.create_projection('parker', 'public.h_bad(es.event)', on_error => 'park');
});

# Polls $sql until it returns $expected, at most $timeout seconds.
sub poll { my ($sql, $expected, $timeout) = @_; return es_poll($node, 'postgres', $sql, $expected, $timeout); }

sub projector_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'es projector' AND datname = 'postgres'});
}

# The projector runs and has applied a first event.
$node->safe_psql('postgres', q{SELECT es.append_event('warm-up', 'Good', '{}')});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('clock', NULL, '30 seconds')}),
	't', 'the projector applies a first event');
my $pid = projector_pid();
like($pid, qr/^\d+$/, 'the projector runs');

# Seconds later: one transaction with a good and a bad event.
sleep(3);
my $t0 = $node->safe_psql('postgres', q{SELECT clock_timestamp()});
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT es.append_event('late-1', 'Good', '{}');
SELECT es.append_event('late-1', 'Bad', '{}');
COMMIT;});
my $pos = $node->safe_psql('postgres',
	q{SELECT max(global_position) FROM es.events WHERE stream_id = 'late-1'});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('clock', NULL, '30 seconds')}),
	't', 'the late events are applied');
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('parker', NULL, '30 seconds')}),
	't', 'the parking projection goes on');
ok(poll(q{SELECT status FROM es.projection_status WHERE name = 'stopper'}, 'failed', 30),
	'the stopping projection fails on the bad event');
my $t1 = $node->safe_psql('postgres', q{SELECT clock_timestamp()});

# Whether timestamp $expr (from $from) lies in [t0, t1].
sub in_window
{
	my ($expr, $from) = @_;
	return $node->safe_psql('postgres',
		"SELECT bool_and($expr BETWEEN '$t0'::timestamptz AND '$t1'::timestamptz) FROM $from");
}

is(in_window('at', "public.seen WHERE global_position = $pos"), 't',
	"a handler's now() is the time of the projector's transaction, not of its start");
is(in_window('stmt_at', "public.seen WHERE global_position = $pos"), 't',
	"a handler's statement_timestamp() too");
is(in_window('default_at', "public.seen WHERE global_position = $pos"), 't',
	'DEFAULT now() in a read table too');
is($node->safe_psql('postgres',
		qq{SELECT at >= '$t0'::timestamptz AND at - '$t0'::timestamptz < interval '1 second' FROM public.seen WHERE global_position = $pos}),
	't', "a handler's now() is within a second of the append");
is(in_window('last_applied_at', q{es.projections WHERE name = 'clock'}), 't',
	'es.projections.last_applied_at is the time of the apply');
is(in_window('failed_at', q{es.projections WHERE name = 'stopper'}), 't',
	'es.projections.failed_at is the time of the failure');
is(in_window('first_failed_at', "es.projection_errors WHERE projection = 'parker' AND global_position = $pos"),
	't', 'es.projection_errors.first_failed_at is the time of the failure');
is(in_window('last_failed_at', "es.projection_errors WHERE projection = 'parker' AND global_position = $pos"),
	't', 'es.projection_errors.last_failed_at too');

# The read table's statistics are reported while the projector runs.
ok( poll(
		# a new session each time: no cached statistics snapshot
		q{SELECT n_tup_ins > 0 FROM pg_catalog.pg_stat_user_tables WHERE relid = 'public.seen'::regclass},
		't', 30),
	"the read table's n_tup_ins reaches pg_stat_user_tables while the projector runs");
is(projector_pid(), $pid, 'the same projector runs (its statistics were not flushed by an exit)');

# And keeps doing so: later inserts are counted too.
my $before = $node->safe_psql('postgres',
	q{SELECT n_tup_ins FROM pg_catalog.pg_stat_user_tables WHERE relid = 'public.seen'::regclass});
$node->safe_psql('postgres',
	q{SELECT es.append_event('more-' || g, 'Good', '{}') FROM generate_series(1, 5) g});
is($node->safe_psql('postgres', q{SELECT es.wait_for_projection('clock', NULL, '30 seconds')}),
	't', 'more events are applied');
ok( poll(
		qq{SELECT n_tup_ins >= $before + 5 FROM pg_catalog.pg_stat_user_tables WHERE relid = 'public.seen'::regclass},
		't', 30),
	'later inserts are reported too, also when the projector goes idle');
is(projector_pid(), $pid, 'still the same projector');

$node->stop;

# es.max_projector_databases bounds the databases with a projector; one
# past it is said in the log, with the setting to raise.
my $small = es_node('projector_limit', "es.max_projector_databases = 1\n");
is($small->safe_psql('postgres', 'SHOW es.max_projector_databases'), '1',
	'es.max_projector_databases is a server setting');
foreach my $db ('one', 'two')
{
	$small->safe_psql('postgres', "CREATE DATABASE $db");
	$small->safe_psql($db, q{
		CREATE EXTENSION es;
		CREATE TABLE n (k int PRIMARY KEY, c int NOT NULL);
		CREATE FUNCTION count_it(e es.event) RETURNS void LANGUAGE sql
		BEGIN ATOMIC
			INSERT INTO public.n VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET c = n.c + 1;
		END;
		SELECT es.create_projection('n', 'public.count_it(es.event)', tables => ARRAY['public.n'::regclass]);
		SELECT es.append_event('s-1', 'E', '{}');});
}
is($small->safe_psql('one', q{SELECT es.wait_for_projection('n', NULL, '60 seconds')}),
	't', 'the first database gets the projector');
ok($small->wait_for_log(qr/the async projections of database \d+ are not applied for now.*\n.*es\.max_projector_databases = 1/, 0),
	'the database past the limit is named in the log, with the setting');
$small->stop;
done_testing();
