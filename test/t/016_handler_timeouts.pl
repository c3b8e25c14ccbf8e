# Copyright (c) 2026, es contributors
#
# 016_handler_timeouts.pl: a handler that never returns does not hold the
# projector for ever.
#
# - The projector applies the statement_timeout a session of the handler's
#   owner would have: the owner's setting in the database (ALTER ROLE ... IN
#   DATABASE ... SET), the database's (ALTER DATABASE ... SET); a handler
#   of another owner, in the same database, is not limited by it.
# - lock_timeout likewise (ALTER ROLE ... SET): a handler waiting for a lock
#   that a prepared transaction holds fails with 55P03.
# - A timeout, or pg_cancel_backend() on the projection worker, fails that event
#   once: parked (on_error = 'park') or stopped at (on_error = 'stop'),
#   without running the endless handler again; the projector goes on with
#   the next events, in the same process.
#
# How often a handler ran for the hanging event is counted by a sequence,
# which the rollback of the failed attempt does not undo.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;

my $node = es_node('handler_timeouts', "max_prepared_transactions = 5\nmax_worker_processes = 16\n");

# The objects of one database: a read table, a counter of the hanging
# handler's runs, a handler owned by $owner.
sub setup_db
{
	my ($db, $owner) = @_;
	sql(
		$db, qq{
CREATE EXTENSION es;
CREATE TABLE public.applied (projection text, global_position bigint);
CREATE SEQUENCE public.hang_runs;
CREATE TABLE public.locked (x int);
GRANT INSERT ON public.applied TO $owner;
GRANT USAGE ON SEQUENCE public.hang_runs TO $owner;
GRANT SELECT ON public.locked TO $owner;
CREATE FUNCTION public.h(e es.event) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  IF e.event_type = 'Hang' THEN
    PERFORM pg_catalog.nextval('public.hang_runs');
    PERFORM pg_catalog.pg_sleep(3600);
  ELSIF e.event_type = 'Locked' THEN
    PERFORM pg_catalog.count(*) FROM public.locked;
  END IF;
  INSERT INTO public.applied VALUES ('h', e.global_position);
END \$\$;
ALTER FUNCTION public.h(es.event) OWNER TO $owner;
});
}

# Every session here ignores the database's statement_timeout (which the
# test gives db_timeout for the projector's handlers only).
sub sql
{
	my ($db, $text) = @_;
	return $node->safe_psql($db, "SET statement_timeout = 0;\n" . $text);
}

# The processes of the database's projector and projection workers: a
# timeout or a cancel must not end any of them.
sub projector_pids
{
	my ($db) = @_;
	return sql($db,
		qq{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
		    WHERE backend_type IN ('es projector', 'es projection worker') AND datname = '$db'});
}

$node->safe_psql('postgres', q{
CREATE ROLE hang_owner NOLOGIN;
CREATE ROLE free_owner NOLOGIN;
CREATE ROLE lock_owner NOLOGIN;
CREATE DATABASE role_timeout;
CREATE DATABASE db_timeout;
CREATE DATABASE cancelled;
ALTER ROLE hang_owner IN DATABASE role_timeout SET statement_timeout = '300ms';
ALTER ROLE lock_owner SET lock_timeout = '200ms';
ALTER DATABASE db_timeout SET statement_timeout = '300ms';
});

# ---------------------------------------------------------------------------
# The owner's statement_timeout in the database; on_error = 'park'
# ---------------------------------------------------------------------------
setup_db('role_timeout', 'hang_owner');
sql('role_timeout', q{
CREATE FUNCTION public.slow(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_sleep(0.6);
  INSERT INTO public.applied VALUES ('slow', e.global_position);
END $$;
ALTER FUNCTION public.slow(es.event) OWNER TO free_owner;
GRANT INSERT ON public.applied TO free_owner;
SELECT es.create_projection('parker', 'public.h(es.event)', on_error => 'park');
SELECT es.create_projection('other_owner', 'public.slow(es.event)');
});
sql('role_timeout', q{SELECT es.append_event('s', 'Good', '{}')});
is(sql('role_timeout', q{SELECT es.wait_for_projection('parker', NULL, '60 seconds')}),
	't', 'role_timeout: the projector runs');
my $pids = projector_pids('role_timeout');

sql('role_timeout', q{
BEGIN;
SELECT es.append_event('s', 'Hang', '{}');
SELECT es.append_event('s', 'Good', '{}');
COMMIT;});
is(sql('role_timeout', q{SELECT es.wait_for_projection('parker', NULL, '60 seconds')}),
	't', 'the owner\'s statement_timeout ends the hanging handler');
is(sql('role_timeout', q{SELECT sqlstate, message, attempts FROM es.projection_errors WHERE projection = 'parker'}),
	'57014|canceling statement due to statement timeout|1',
	'the hanging event is parked with the timeout as its error');
is(sql('role_timeout', q{SELECT last_value FROM public.hang_runs}), '1',
	'the hanging handler ran once: the timeout failed its event, no retry ran it again');
is(sql('role_timeout', q{SELECT count(*) FROM public.applied a JOIN es.events e USING (global_position) WHERE a.projection = 'h' AND e.event_type = 'Good'}),
	'2', 'the events around it are applied');
is(sql('role_timeout', q{SELECT es.wait_for_projection('other_owner', NULL, '60 seconds')}),
	't', 'a handler of another owner is not limited by that setting');
is(sql('role_timeout', q{SELECT count(*) FROM public.applied WHERE projection = 'slow'}),
	'3', 'its slow handler applied every event');
is(projector_pids('role_timeout'), $pids, 'the same projector and worker processes go on');

# ---------------------------------------------------------------------------
# The database's statement_timeout; on_error = 'stop'
# ---------------------------------------------------------------------------
setup_db('db_timeout', 'free_owner');
sql('db_timeout', q{
SET statement_timeout = 0;
SELECT es.create_projection('stopper', 'public.h(es.event)', on_error => 'stop');
SELECT es.append_event('t', 'Good', '{}');
});
is(sql('db_timeout', q{SELECT es.wait_for_projection('stopper', NULL, '60 seconds')}),
	't', 'db_timeout: the projection is live');
sql('db_timeout', q{
SELECT es.append_event('t', 'Hang', '{}');
SELECT es.append_event('t', 'Good', '{}');
});
ok(es_poll($node, 'db_timeout', q{SELECT status FROM es.projection_status WHERE name = 'stopper'}, 'failed', 60),
	'the database\'s statement_timeout stops the projection');
is(sql('db_timeout', q{SELECT p.last_error_position = e.global_position, p.last_error FROM es.projections p, es.events e WHERE p.name = 'stopper' AND e.event_type = 'Hang'}),
	't|57014: canceling statement due to statement timeout',
	'it stopped at the hanging event, with the timeout as its error');
is(sql('db_timeout', q{SELECT last_value FROM public.hang_runs}), '1',
	'the hanging handler ran once');
my ($rc, $out, $err) = $node->psql('db_timeout',
	q{SET statement_timeout = 0; SELECT es.wait_for_projection('stopper', NULL, '60 seconds')});
like($err, qr/projection "stopper" has stopped at the event at position \d+/,
	'es.wait_for_projection says at once why it cannot succeed');

# ---------------------------------------------------------------------------
# lock_timeout of the owner (all databases)
# ---------------------------------------------------------------------------
sql('db_timeout', q{
SET statement_timeout = 0;
CREATE FUNCTION public.lk(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.event_type = 'Locked' THEN
    PERFORM pg_catalog.count(*) FROM public.locked;
  END IF;
END $$;
ALTER FUNCTION public.lk(es.event) OWNER TO lock_owner;
GRANT SELECT ON public.locked TO lock_owner;
SELECT es.create_projection('locker', 'public.lk(es.event)', on_error => 'park');
-- its own SET clause applies: lock_timeout, before the database's statement_timeout
CREATE FUNCTION public.lk_own(e es.event) RETURNS void LANGUAGE plpgsql
SET lock_timeout = '100ms' AS $$
BEGIN
  IF e.event_type = 'Locked' THEN
    PERFORM pg_catalog.count(*) FROM public.locked;
  END IF;
END $$;
ALTER FUNCTION public.lk_own(es.event) OWNER TO free_owner;
SELECT es.create_projection('locker_own', 'public.lk_own(es.event)', on_error => 'park');
SELECT es.wait_for_projection('locker', NULL, '60 seconds');
SELECT es.wait_for_projection('locker_own', NULL, '60 seconds');
BEGIN;
LOCK TABLE public.locked IN ACCESS EXCLUSIVE MODE;
PREPARE TRANSACTION 'hold_locked';
SELECT es.append_event('u', 'Locked', '{}');
SELECT es.append_event('u', 'Good', '{}');
});
is(sql('db_timeout', q{SET statement_timeout = 0; SELECT es.wait_for_projection('locker', NULL, '60 seconds')}),
	't', 'the owner\'s lock_timeout ends the handler\'s wait for a lock');
is(sql('db_timeout', q{SELECT sqlstate FROM es.projection_errors WHERE projection = 'locker'}),
	'55P03', 'the locked event is parked with the lock timeout as its error');
is(sql('db_timeout', q{SELECT es.wait_for_projection('locker_own', NULL, '60 seconds')}),
	't', 'a handler with its own SET lock_timeout clause ...');
is(sql('db_timeout', q{SELECT sqlstate FROM es.projection_errors WHERE projection = 'locker_own'}),
	'55P03', '... gets it (a lock timeout, not the database\'s statement_timeout)');
sql('db_timeout', q{COMMIT PREPARED 'hold_locked'});

# ---------------------------------------------------------------------------
# pg_cancel_backend() on the projection worker, no timeout anywhere
# ---------------------------------------------------------------------------
setup_db('cancelled', 'free_owner');
sql('cancelled', q{
SELECT es.create_projection('parker', 'public.h(es.event)', on_error => 'park');
SELECT es.append_event('c', 'Good', '{}');
});
is(sql('cancelled', q{SELECT es.wait_for_projection('parker', NULL, '60 seconds')}),
	't', 'cancelled: the projector runs');
$pids = projector_pids('cancelled');
sql('cancelled', q{SELECT es.append_event('c', 'Hang', '{}'); SELECT es.append_event('c', 'Good', '{}');});
# the projection worker that runs the hanging handler
ok(es_poll($node, 'cancelled',
		q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'cancelled'
		    AND backend_type = 'es projection worker' AND wait_event = 'PgSleep'}, '1', 60),
	'the handler hangs');
my $pid = sql('cancelled', q{SELECT pid FROM pg_stat_activity WHERE datname = 'cancelled'
    AND backend_type = 'es projection worker' AND wait_event = 'PgSleep'});
is(sql('cancelled', q{SELECT es.wait_for_projection('parker', NULL, '1 second')}), 'f',
	'es.wait_for_projection times out behind it');
sql('cancelled', qq{SELECT pg_cancel_backend($pid)});
is(sql('cancelled', q{SELECT es.wait_for_projection('parker', NULL, '60 seconds')}),
	't', 'one cancel ends the hanging handler');
is(sql('cancelled', q{SELECT sqlstate, message, attempts FROM es.projection_errors WHERE projection = 'parker'}),
	'57014|canceling statement due to user request|1',
	'the event is parked with the cancel as its error');
is(sql('cancelled', q{SELECT last_value FROM public.hang_runs}), '1',
	'the hanging handler ran once: one cancel failed its event');
is(projector_pids('cancelled'), $pids, 'the same projector and worker processes go on');

$node->stop;
done_testing();
