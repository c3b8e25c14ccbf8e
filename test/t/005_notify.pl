
# Copyright (c) 2026, es developers
#
# 005_notify.pl: with es.notify on, each append sends NOTIFY es_events with
# a JSON payload naming the stream, its new version and the last position;
# with it off (the default) nothing is sent; a rolled back append sends nothing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('notify');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'es'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION es');

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN es_events');

# Off by default: no notification.
$node->safe_psql('postgres', q{SELECT es.append_event('n-1', 'A', '{}')});
# On: one notification per append call, sent at commit.
$node->safe_psql('postgres', q{SET es.notify = on;
SELECT es.append('n-1', ARRAY[es.new_event('B', '{}'), es.new_event('C', '{}')]);});
# Rolled back: nothing.
$node->safe_psql('postgres', q{SET es.notify = on; BEGIN;
SELECT es.append_event('n-2', 'A', '{}'); ROLLBACK;});

my $last = $node->safe_psql('postgres',
	q{SELECT max(global_position) FROM es.events WHERE stream_id = 'n-1'});
# A stream id too long for a notification's payload (a NOTIFY payload is
# under 8000 bytes; this one compresses, so it is stored): the append
# succeeds, and the payload names the event by its position.
$node->safe_psql('postgres', q{SET es.notify = on;
SELECT es.append_event('long-' || repeat('x', 10000), 'A', '{}');});
my $long = $node->safe_psql('postgres',
	q{SELECT max(global_position) FROM es.events WHERE stream_id LIKE 'long-%'});

# A marker notification sent last: once it has arrived, so have the others.
$node->safe_psql('postgres', q{NOTIFY es_events, 'marker'});
# psql prints the notifications that arrived while it runs a command.
my $out = '';
for (my $i = 0; $i < 100 && $out !~ /payload "marker"/; $i++)
{
	$out .= $listener->query_safe('SELECT pg_sleep(0.05)');
}
my @notes = grep { $_ ne 'marker' }
  ($out =~ /Asynchronous notification "es_events" with payload "(.*?)" received/g);
is(scalar(@notes), 2, 'one notification per append with es.notify on, none for the others');
is($notes[0], qq({"stream_id": "n-1", "version": 3, "position": $last}),
	'payload names the stream, its new version and the last position');
is($notes[1], qq({"stream_id": null, "version": 1, "position": $long}),
	'a stream id longer than 1024 bytes is left out of the payload: the position names the event');

$listener->quit;
$node->stop;
done_testing();
