# Copyright (c) 2026, es contributors
#
# 013_security_projector.pl: no role gains rights through the projector,
# the background worker of async projections, which connects as the
# bootstrap superuser.
#
# - Handlers run as their function's owner (current_user recorded by the
#   handler), never as the superuser; a handler with its own SET
#   search_path clause still gets it.
# - What a handler sets (SET work_mem, SET application_name,
#   set_config('search_path', ..., false)) does not reach the next call of
#   that handler, another handler, or the next batch: each call starts with
#   the search_path its registrant had (PGOPTIONS here: pg_catalog, public;
#   pg_temp last), whatever the database's settings say.
# - Handlers are security-restricted: CREATE TEMP TABLE fails (42501), and
#   with on_error => 'park' the event is parked.
# - A non-superuser database owner's ALTER DATABASE ... SET search_path =
#   evil, pg_catalog (with evil.now(), evil.count(*), evil.max(bigint),
#   evil operators =, <>, +, and evil domains oid and regclass, each of
#   which logs and tries ALTER ROLE ... SUPERUSER), SET role and SET
#   session_authorization: the projector still projects everything, never
#   calls any of them (the log table stays empty, the owner stays
#   NOSUPERUSER), before and after a restart, and creates the publication
#   as a superuser.
# - Handlers created under other search_paths (one with the trap's schema
#   first) run with theirs, whichever handler a worker ran before (a
#   worker keeps the last one's path between its transactions), and es's
#   own statements still never reach the trap.
# - An upcaster registered by its owner runs, in the projector, as that
#   owner.
# - A publication es_events created beforehand by the database owner on a
#   table of its own is not used: the server log says so, the projections
#   say why in last_error and apply nothing; then a slot of es's name made
#   with test_decoding by a REPLICATION role is refused the same way; once
#   both are gone the projector creates its own and every event is applied
#   exactly once, and nothing of the owner's table reaches a handler.
# - The automatic rebuild after a lost slot truncates a projection's table
#   as the table's owner: its TRUNCATE trigger runs as that owner, not as
#   the superuser.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;
use Time::HiRes qw(usleep time);

my $node = es_node('security_projector');

# Every session of this test resolves names in pg_catalog first and runs as
# the role it connects as, whatever the databases' settings below say (the
# projector does not read PGOPTIONS: it is not a client).
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,public -c role=none';

# SQL as the superuser, or as another role, in database $db.
sub sql
{
	my ($db, $sql, $user) = @_;
	return $node->safe_psql($db, $sql,
		$user ? (extra_params => [ '-U', $user ]) : ());
}

# Polls $sql until it returns $expected, at most $timeout seconds.
sub poll { return es_poll($node, @_); }

# Waits until the server log, after $offset, matches $re (at most $timeout s).
sub log_matches { return es_log_matches($node, @_); }

# Waits for each projection of database $db to have applied every append
# (after the first one that does not, waits no more).
sub wait_all
{
	my ($db, @names) = @_;
	my $timeout = 60;
	foreach my $name (@names)
	{
		my $ok = sql($db,
			"SELECT es.wait_for_projection('$name', NULL, '$timeout seconds')");
		is($ok, 't', "$db: projection $name catches up");
		$timeout = 1 if $ok ne 't';
	}
}

# =====================================================================
# Roles, databases, the handlers' owner
# =====================================================================
sql(
	'postgres', q{
CREATE ROLE dbowner LOGIN NOSUPERUSER;
CREATE ROLE alice LOGIN NOSUPERUSER;
CREATE ROLE repl LOGIN NOSUPERUSER REPLICATION;
CREATE DATABASE sec OWNER dbowner;
CREATE DATABASE sec2 OWNER dbowner;
});

sql(
	'sec', q{
CREATE EXTENSION es;
GRANT USAGE ON SCHEMA es TO alice;
GRANT EXECUTE ON FUNCTION
    es.register_upcaster(text, int, regprocedure, text, jsonb, jsonb, text[])
  TO alice;
CREATE SCHEMA app AUTHORIZATION alice;
});

# alice's read tables, handlers and upcaster.
sql(
	'sec', q{
CREATE TABLE app.who (projection text, global_position bigint, usr text, super boolean);
CREATE TABLE app.seen (projection text, global_position bigint, work_mem text,
                       search_path text, app_name text);
CREATE TABLE app.up_who (usr text, global_position bigint);
CREATE TABLE app.up_seen (global_position bigint, v text);
CREATE TABLE app.rt (global_position bigint);
CREATE TABLE app.trunc_log (usr text, super boolean);

CREATE FUNCTION app.h_who(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO app.who
  SELECT 'who', e.global_position, current_user,
         (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) $$;

-- Its own SET clause: the unqualified name resolves in app.
CREATE FUNCTION app.h_who_set(e es.event) RETURNS void LANGUAGE plpgsql
SET search_path = app, pg_temp AS $$
BEGIN
  INSERT INTO who SELECT 'who_set', e.global_position, current_user,
         (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
END $$;

-- Records the settings it finds, then changes them.
CREATE FUNCTION app.h_a_leak(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.seen VALUES ('a_leak', e.global_position,
    pg_catalog.current_setting('work_mem'), pg_catalog.current_setting('search_path'),
    pg_catalog.current_setting('application_name'));
  SET work_mem = '77MB';
  SET application_name = 'leaky';
  PERFORM pg_catalog.set_config('search_path', 'x', false);
END $$;

-- Runs after h_a_leak (projections are applied in name order).
CREATE FUNCTION app.h_b_seen(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.seen VALUES ('b_seen', e.global_position,
    pg_catalog.current_setting('work_mem'), pg_catalog.current_setting('search_path'),
    pg_catalog.current_setting('application_name'));
END $$;

-- Records the search_path it runs with (qualified: it may run under evil).
CREATE TABLE app.paths (projection text, global_position bigint, search_path text);
CREATE FUNCTION app.h_path_evil(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.paths VALUES ('path_evil', e.global_position,
    pg_catalog.current_setting('search_path'));
END $$;
CREATE FUNCTION app.h_path_app(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.paths VALUES ('path_app', e.global_position,
    pg_catalog.current_setting('search_path'));
END $$;

CREATE FUNCTION app.h_temp(e es.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  CREATE TEMP TABLE sneaky (x int);
END $$;

CREATE FUNCTION app.h_up(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO app.up_seen VALUES (e.global_position, e.data ->> 'v') $$;

CREATE FUNCTION app.up_v1(data jsonb) RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  INSERT INTO app.up_who VALUES (current_user, (data ->> 'n')::bigint);
  RETURN data || '{"v": "2"}';
END $$;

CREATE FUNCTION app.h_rt(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO app.rt VALUES (e.global_position) $$;

-- Fires when the projector truncates app.rt in an automatic rebuild.
CREATE FUNCTION app.on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.trunc_log
  SELECT current_user, (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user);
  BEGIN
    ALTER ROLE alice SUPERUSER;
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN NULL;
END $$;
CREATE TRIGGER rt_truncate BEFORE TRUNCATE ON app.rt
  FOR EACH STATEMENT EXECUTE FUNCTION app.on_truncate();
}, 'alice');

sql('sec',
	q{SELECT es.register_upcaster('Up', 1, 'app.up_v1(jsonb)')}, 'alice');

# =====================================================================
# The database owner's trap: a search_path of its own, objects that log
# who calls them and try to make the owner a superuser, and who the
# database's sessions run as.
# =====================================================================
sql(
	'sec', q{
CREATE SCHEMA evil;
CREATE TABLE evil.log (usr text, what text);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.log TO PUBLIC;
CREATE FUNCTION evil.spy(what text) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
  INSERT INTO evil.log VALUES (current_user, what);
  BEGIN
    ALTER ROLE dbowner SUPERUSER;
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN true;
END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('to_regclass()'); RETURN pg_catalog.to_regclass($1); END $$;
CREATE FUNCTION evil.eq_text(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('text = text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq_text);
CREATE FUNCTION evil.eq_name(name, name) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('name = name'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.eq_name);
CREATE FUNCTION evil.eq_int8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('bigint = bigint'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq_int8);
CREATE FUNCTION evil.eq_oid(oid, oid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('oid = oid'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.eq_oid);
CREATE FUNCTION evil.ne_oid(oid, oid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('oid <> oid'); RETURN $1 OPERATOR(pg_catalog.<>) $2; END $$;
CREATE OPERATOR evil.<> (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.ne_oid);
CREATE FUNCTION evil.ne_text(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('text <> text'); RETURN $1 OPERATOR(pg_catalog.<>) $2; END $$;
CREATE OPERATOR evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.ne_text);
CREATE FUNCTION evil.plus(int, int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('int + int'); RETURN $1 OPERATOR(pg_catalog.+) $2; END $$;
CREATE OPERATOR evil.+ (LEFTARG = int, RIGHTARG = int, FUNCTION = evil.plus);
CREATE FUNCTION evil.count_step(bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('count(*)'); RETURN $1 OPERATOR(pg_catalog.+) 1; END $$;
CREATE AGGREGATE evil.count(*) (SFUNC = evil.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION evil.max_step(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('max()'); RETURN pg_catalog.greatest($1, $2); END $$;
CREATE AGGREGATE evil.max(bigint) (SFUNC = evil.max_step, STYPE = bigint);
CREATE DOMAIN evil.oid AS pg_catalog.oid CHECK (evil.spy('oid domain'));
CREATE DOMAIN evil.regclass AS pg_catalog.regclass CHECK (evil.spy('regclass domain'));
CREATE DOMAIN evil.int8 AS pg_catalog.int8 CHECK (evil.spy('int8 domain'));
ALTER DATABASE sec SET search_path = evil, pg_catalog;
ALTER DATABASE sec SET role = dbowner;
ALTER DATABASE sec SET session_authorization = dbowner;
}, 'dbowner');

# The trap works: an ordinary superuser session of the database calls it.
is( $node->safe_psql(
		'postgres', q{SELECT setconfig::text FROM pg_db_role_setting s
  JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'sec'}),
	'{"search_path=evil, pg_catalog",role=dbowner,session_authorization=dbowner}',
	'the database owner set search_path, role and session_authorization for its database');
{
	local $ENV{PGOPTIONS} = '-c role=none';
	is($node->safe_psql('sec', q{SELECT 'x'::text = 'x'}), 't',
		'(a session that takes the database search_path ...)');
	is(sql('sec', q{SELECT pg_catalog.count(*) FROM evil.log}), '1',
		'(... calls evil.=, so the trap is armed)');
	sql('sec', q{TRUNCATE evil.log; ALTER ROLE dbowner NOSUPERUSER});
}

# =====================================================================
# The projections, created by the superuser (an es admin)
# =====================================================================
sql(
	'sec', q{
SELECT es.create_projection('who', 'app.h_who(es.event)');
SELECT es.create_projection('who_set', 'app.h_who_set(es.event)');
SELECT es.create_projection('a_leak', 'app.h_a_leak(es.event)');
SELECT es.create_projection('b_seen', 'app.h_b_seen(es.event)');
SELECT es.create_projection('temp_park', 'app.h_temp(es.event)', on_error => 'park');
SELECT es.create_projection('up', 'app.h_up(es.event)', event_types => '{Up}');
SELECT es.create_projection('rt', 'app.h_rt(es.event)', tables => '{app.rt}');
SET search_path = evil, app, pg_catalog;
SELECT es.create_projection('path_evil', 'app.h_path_evil(es.event)');
SET search_path = app, pg_catalog;
SELECT es.create_projection('path_app', 'app.h_path_app(es.event)');
});
my @all = qw(who who_set a_leak b_seen temp_park up rt path_evil path_app);

# Batches: one transaction of several events, then another.
sub append_batch
{
	my ($tag) = @_;
	sql(
		'sec', qq{
BEGIN;
SELECT es.append_event('s-$tag-' || g, 'T', '{}') FROM generate_series(1, 3) g;
SELECT es.append_event('u-$tag', 'Up', jsonb_build_object('n', 0));
COMMIT;});
}

append_batch('a');
wait_all('sec', @all);
append_batch('b');
wait_all('sec', @all);

# ---------------------------------------------------------------------
# Handlers run as their owner
# ---------------------------------------------------------------------
my $nevents = sql('sec', q{SELECT count(*) FROM es.events});
is( sql(
		'sec',
		q{SELECT count(*) || ':' || count(*) FILTER (WHERE usr = 'alice' AND NOT super)
		    FROM app.who WHERE projection = 'who'}),
	"$nevents:$nevents",
	'a handler runs as its function owner (alice, not a superuser) for every event');
is( sql(
		'sec',
		q{SELECT count(*) || ':' || count(*) FILTER (WHERE usr = 'alice')
		    FROM app.who WHERE projection = 'who_set'}),
	"$nevents:$nevents",
	'a handler with its own SET search_path clause gets it, and runs as its owner');

# ---------------------------------------------------------------------
# Settings do not leak
# ---------------------------------------------------------------------
is( sql(
		'sec',
		q{SELECT count(*) FROM app.seen
		   WHERE work_mem = '77MB' OR app_name = 'leaky'
		      OR search_path IS DISTINCT FROM 'pg_catalog, public, pg_temp'}),
	'0',
	'SET work_mem, SET application_name, set_config(search_path) in a handler reach neither its next call, nor the next handler, nor the next batch'
);
is( sql(
		'sec',
		q{SELECT count(DISTINCT projection) || ':' || count(*) FROM app.seen}),
	'2:' . (2 * $nevents),
	'both recording handlers saw every event');

# A projection worker keeps the search_path of the handler it ran last as
# its session's between transactions (worker.c, rest_on): each handler
# still runs with the path captured when its projection was created, after
# whichever handler ran before it, and es's own statements do not run with
# it (check_trap below: with evil first, they would call its operators).
is( sql(
		'sec',
		q{SELECT string_agg(projection || '=' || search_path || ':' || n, ',' ORDER BY projection)
		    FROM (SELECT projection, search_path, count(*) AS n FROM app.paths
		           GROUP BY 1, 2) s}),
	"path_app=app, pg_catalog, pg_temp:$nevents,path_evil=evil, app, pg_catalog, pg_temp:$nevents",
	'two handlers created under different search_paths each run every event with their own');

# ---------------------------------------------------------------------
# Security-restricted: no temporary table, the event is parked
# ---------------------------------------------------------------------
is( sql(
		'sec',
		q{SELECT count(*) || ':' || count(*) FILTER (WHERE sqlstate = '42501'
		                     AND message LIKE '%cannot create temporary table within security-restricted operation%')
		    FROM es.projection_errors WHERE projection = 'temp_park'}),
	"$nevents:$nevents",
	'CREATE TEMP TABLE in a handler fails with 42501 (security-restricted), and the event is parked'
);
is(sql('sec', q{SELECT status FROM es.projection_status WHERE name = 'temp_park'}),
	'running', 'the parking projection keeps running');

# ---------------------------------------------------------------------
# Upcasters run as their owner in the projector
# ---------------------------------------------------------------------
is( sql(
		'sec',
		q{SELECT count(*) || ':' || count(*) FILTER (WHERE v = '2') FROM app.up_seen}),
	'2:2', 'the handler got the upcast events');
is( sql(
		'sec',
		q{SELECT count(*) > 0 AND bool_and(usr = 'alice') FROM app.up_who}),
	't',
	'the upcaster ran as its owner (alice) in the projector');

# ---------------------------------------------------------------------
# The database owner's settings and objects
# ---------------------------------------------------------------------
sub check_trap
{
	my ($when) = @_;
	is(sql('sec', q{SELECT count(*) FROM evil.log}),
		'0', "$when: no evil function, operator, aggregate or domain was called");
	is(sql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'dbowner'}),
		'f', "$when: the database owner is still not a superuser");
	is( sql(
			'sec',
			q{SELECT r.rolsuper FROM pg_publication p JOIN pg_roles r ON r.oid = p.pubowner
			   WHERE p.pubname = 'es_events'}),
		't',
		"$when: the projector, not the role of the database's settings, owns the publication");
}
check_trap('after projecting');

$node->restart;
append_batch('c');
wait_all('sec', @all);
check_trap('after a restart');
$nevents = sql('sec', q{SELECT count(*) FROM es.events});
is( sql(
		'sec',
		q{SELECT count(*) || ':' || count(*) FILTER (WHERE usr = 'alice' AND NOT super)
		    FROM app.who WHERE projection = 'who'}),
	"$nevents:$nevents",
	'after a restart: every event applied once, as the handler owner');
is( sql(
		'sec',
		q{SELECT count(*) FROM app.seen
		   WHERE work_mem = '77MB' OR app_name = 'leaky'
		      OR search_path IS DISTINCT FROM 'pg_catalog, public, pg_temp'}),
	'0', 'after a restart: still no setting leaks');

# =====================================================================
# A publication es_events of the database owner's
# =====================================================================
sql(
	'sec2', q{
CREATE EXTENSION es;
CREATE TABLE public.log2 (global_position bigint);
CREATE FUNCTION public.h_log2(e es.event) RETURNS void LANGUAGE sql AS $$
  INSERT INTO public.log2 VALUES (e.global_position) $$;
SELECT es.append_event('early-' || g, 'T', '{}') FROM generate_series(1, 3) g;
});
sql(
	'sec2', q{
CREATE TABLE public.fake (global_position bigint);
CREATE PUBLICATION es_events FOR TABLE public.fake;
}, 'dbowner');

my $offset = -s $node->logfile;
sql('sec2', q{SELECT es.create_projection('p2', 'public.h_log2(es.event)')});
sql('sec2', q{SELECT es.append_event('later-' || g, 'T', '{}') FROM generate_series(1, 2) g});
# Rows that would decode as the positions of events already there.
sql('sec2', q{INSERT INTO public.fake SELECT g FROM generate_series(1, 5) g},
	'dbowner');

ok( log_matches(
		qr/WARNING:  es projector: the publication "es_events" is not es's own; the async projections of database "sec2" wait until it is gone\n.*DETAIL:  Its owner is role "dbowner".*\n.*HINT:  Drop it \(DROP PUBLICATION es_events\)/,
		$offset, 30),
	'a publication es_events of the database owner is refused, with a message naming it in the server log'
);
ok( poll(
		'sec2',
		q{SELECT last_error LIKE 'waiting: the publication "es_events" is not es''s own.%' FROM es.projection_status WHERE name = 'p2'},
		't', 30),
	'the projection says why it waits in last_error');
is(sql('sec2', q{SELECT count(*) FROM public.log2}),
	'0', 'nothing is applied while the publication is not es\'s own');
is( sql(
		'sec2',
		q{SELECT pubowner::regrole || ':' || (SELECT count(*) FROM pg_publication_rel r WHERE r.prpubid = p.oid)
		    FROM pg_publication p WHERE pubname = 'es_events'}),
	'dbowner:1', 'the owner\'s publication is left as it was');

# A slot of es's name, made by a REPLICATION role with another plugin.
my $sec2_oid = sql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'sec2'});
sql('sec2',
	qq{SELECT pg_create_logical_replication_slot('es_projector_$sec2_oid', 'test_decoding')},
	'repl');

$offset = -s $node->logfile;
# (Renamed rather than dropped, the other way out the hint gives.)
sql('sec2', q{ALTER PUBLICATION es_events RENAME TO fake_events}, 'dbowner');
ok( log_matches(
		qr/WARNING:  es projector: the replication slot "es_projector_$sec2_oid" is not es's own.*\n.*DETAIL:  It decodes with the output plugin "test_decoding", not pgoutput/,
		$offset, 30),
	'a slot of es\'s name with another output plugin is refused, with a message in the server log'
);
is(sql('sec2', q{SELECT count(*) FROM public.log2}),
	'0', 'nothing is applied while the slot is not es\'s own');

sql('sec2', qq{SELECT pg_drop_replication_slot('es_projector_$sec2_oid')}, 'repl');
is(sql('sec2', q{SELECT es.wait_for_projection('p2', NULL, '60 seconds')}),
	't', 'once both are gone the projector goes on');
sql('sec2', q{INSERT INTO public.fake SELECT g FROM generate_series(1, 10) g},
	'dbowner');
sql('sec2', q{SELECT es.append_event('last', 'T', '{}')});
is(sql('sec2', q{SELECT es.wait_for_projection('p2', NULL, '60 seconds')}),
	't', 'and follows new appends');
is( sql(
		'sec2', q{
SELECT (SELECT count(*) FROM es.events e WHERE NOT EXISTS
          (SELECT FROM public.log2 l WHERE l.global_position = e.global_position))
  || ':' || (SELECT count(*) - count(DISTINCT global_position) FROM public.log2)
  || ':' || (SELECT count(*) FROM public.log2 l WHERE NOT EXISTS
               (SELECT FROM es.events e WHERE e.global_position = l.global_position))}),
	'0:0:0',
	'every event applied exactly once, nothing else (missing:duplicated:unknown)');
is( sql(
		'sec2',
		q{SELECT r.rolsuper || ':' || (SELECT string_agg(pr.prrelid::regclass::text, ',')
		                                 FROM pg_publication_rel pr WHERE pr.prpubid = p.oid)
		    FROM pg_publication p JOIN pg_roles r ON r.oid = p.pubowner
		   WHERE p.pubname = 'es_events'}),
	'true:es.events', 'the publication es_events is es\'s own now');
is(sql('sec2', q{SELECT last_error IS NULL FROM es.projection_status WHERE name = 'p2'}),
	't', 'and the waiting note is gone from last_error');

# =====================================================================
# The automatic rebuild after a lost slot truncates as the table's owner
# =====================================================================
# es's publication loses es.events (what a restore does): at its next
# start the projector replaces the slot and rebuilds the live projections.
my $rt_before = sql('sec', q{SELECT count(*) FROM app.rt});
cmp_ok($rt_before, '>', 0, 'the projection rt has rows');
my $n_live = sql('sec',
	q{SELECT count(*) FROM es.projections WHERE mode = 'async' AND applied_lsn IS NOT NULL});
cmp_ok($n_live, '>', 0, 'live async projections before the restart');
sql('sec', q{ALTER PUBLICATION es_events DROP TABLE es.events});
$offset = -s $node->logfile;
$node->restart;
ok(log_matches(qr/rebuilding $n_live of them/, $offset, 30),
	'after a restart without es.events in the publication the projector rebuilds every live one (the log counts them)');
ok(poll('sec', q{SELECT status FROM es.projection_status WHERE name = 'rt'}, 'running', 60),
	'the rebuilt projection runs again');
is(sql('sec', q{SELECT es.wait_for_projection('rt', NULL, '60 seconds')}),
	't', 'and catches up');
is( sql(
		'sec',
		q{SELECT count(*) || ':' || count(*) FILTER (WHERE usr = 'alice' AND NOT super) FROM app.trunc_log}
	),
	'1:1',
	'the projector truncated the table as its owner (its TRUNCATE trigger ran as alice, not as a superuser)'
);
is(sql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'}),
	'f', 'the table owner did not become a superuser');
is( sql(
		'sec',
		q{SELECT (SELECT count(*) FROM app.rt) = (SELECT count(*) FROM es.events)
		     AND (SELECT count(DISTINCT global_position) FROM app.rt) = (SELECT count(*) FROM es.events)}),
	't', 'the rebuilt table has every event exactly once');
check_trap('after the rebuild');

$node->stop;
done_testing();
