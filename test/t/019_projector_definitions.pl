# Copyright (c) 2026, es contributors
#
# 019_projector_definitions.pl: a projection worker keeps, between its
# units, the names of the async projections and the definitions (handler,
# event types, owner's timeouts) of those it applied, so that its pick of
# the next projection is one indexed statement.  A change of a
# projection's definition is never applied with the old one.
#
# - A projection dropped and created again under the same name with
#   another handler, in two transactions or in one, then appended to at
#   once (well within the second after which a worker reads its cache
#   again anyway): every event after the change reaches the new handler's
#   table only, exactly once, and the old handler's table gets nothing
#   more.  Five rounds, the handler alternating.
# - A projection created while the workers run live units of another is
#   picked up and caught up (its name was not in their cache).
# - A handler replaced (CREATE OR REPLACE) by one in another language, then
#   appended to at once, six times: the new function runs (the kept
#   definition holds the function's call info, which named the old
#   language's handler).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsNode;

my $node = es_node('projector_definitions');
my $db = 'defs';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db,
	    "CREATE EXTENSION es;\n"
	  . es_seen_sql('two', projection => '')
	  . es_seen_sql('other')
	  . es_seen_sql('one', projection => 'p')
	  . q{SELECT es.append_event('s-0', 'Happened', '{}');});
is($node->safe_psql($db, q{SELECT es.wait_for_projection('p', NULL, '60 seconds')}),
	't', 'p is live with h_one');

my %table = (h_one => 'seen_one', h_two => 'seen_two');
my $handler = 'h_one';
foreach my $round (1 .. 5)
{
	my $old = $handler;
	$handler = $old eq 'h_one' ? 'h_two' : 'h_one';
	my $one_xact = $round % 2 == 0;
	# the new handler's table starts empty: its catch-up fills it again
	$node->safe_psql($db, "TRUNCATE public.$table{$handler}");
	my $old_before = $node->safe_psql($db, "SELECT count(*) FROM public.$table{$old}");
	my $change = qq{
SELECT es.drop_projection('p');
SELECT es.create_projection('p', 'public.$handler(es.event)', mode => 'async',
                            tables => ARRAY['public.$table{$handler}'::regclass]);
};
	$change = "BEGIN; $change COMMIT;" if $one_xact;
	# the projection is live again at once (little to catch up); then
	# events, as fast as they can come
	$node->safe_psql($db, $change . qq{
SELECT es.wait_for_projection('p', NULL, '60 seconds');
SELECT es.append_event('s-$round', 'Happened', '{}') FROM generate_series(1, 20);
});
	is($node->safe_psql($db, q{SELECT es.wait_for_projection('p', NULL, '60 seconds')}),
		't', "round $round: p applied everything");
	my $how = $one_xact ? 'in one transaction' : 'in two transactions';
	is( $node->safe_psql(
			$db, qq{SELECT (SELECT count(*) FROM public.$table{$handler}) = count(*)
                  AND (SELECT count(DISTINCT global_position) FROM public.$table{$handler}) = count(*)
                 FROM es.events}),
		't',
		"round $round ($how, $old to $handler): $handler got every event exactly once");
	is($node->safe_psql($db, "SELECT count(*) FROM public.$table{$old}"),
		$old_before, "round $round: $old got nothing after it was replaced");
}

# a projection created while the other two are live
my $append_late = q{SELECT es.append_event('s-late', 'Happened', '{}') FROM generate_series(1, 20);};
$node->safe_psql($db, $append_late . "\n" . es_seen_sql('late') . $append_late);
is($node->safe_psql($db, q{SELECT es.wait_for_projection('late', NULL, '60 seconds')}),
	't', 'a projection created while the workers run is caught up and live');
is( $node->safe_psql(
		$db, q{SELECT (SELECT count(DISTINCT global_position) FROM public.seen_late) = count(*)
                  AND (SELECT count(*) FROM public.seen_late) = count(*)
                  AND (SELECT count(*) FROM public.seen_other) = count(*)
                 FROM es.events}),
	't', 'it and the other projection hold every event exactly once');

# the live handler of 'other' is replaced, by a PL/pgSQL function, then
# by an SQL one again, and so on, each time appended to at once (well
# within the second after which a worker reads its cache anyway); from
# now on it stores minus the position
foreach my $round (1 .. 6)
{
	my $language = $round % 2 ? 'plpgsql' : 'sql';
	my $body = $round % 2
	  ? 'BEGIN INSERT INTO public.seen_other VALUES (- e.global_position); END'
	  : 'INSERT INTO public.seen_other VALUES (- e.global_position)';
	$node->safe_psql($db, qq{
CREATE OR REPLACE FUNCTION public.h_other(e es.event) RETURNS void LANGUAGE $language AS
  \$\$ $body \$\$;
SELECT es.append_event('s-replaced', 'Happened', '{}') FROM generate_series(1, 5);
});
	my ($rc, $out, $err) = $node->psql($db,
		q{SELECT es.wait_for_projection('other', NULL, '60 seconds')});
	is($out, 't', "round $round: after its handler was replaced by a $language one, other applied everything")
	  or diag($err);
}
my $events = $node->safe_psql($db, 'SELECT count(*) FROM es.events');
is( $node->safe_psql(
		$db, q{SELECT count(*) FILTER (WHERE global_position < 0) || ' ' || count(DISTINCT abs(global_position)) || ' ' || count(*)
                 || ' ' || (SELECT coalesce(last_error, 'none') FROM es.projections WHERE name = 'other')
                 FROM public.seen_other}),
	"30 $events $events none",
	'the new functions got the 30 events appended after the changes, every event once, no error');

$node->stop;
done_testing();
