# Copyright (c) 2026, es contributors
#
# EsNode: what the TAP tests share: a node set up for es (preloaded, with
# wal_level = logical and room for replication slots), and the process
# helpers of the crash tests.

package EsNode;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(es_node es_seen_sql children_of pg_alive es_poll es_log_matches);

# A started node named $name with es preloaded, wal_level = logical, and the
# lines of $extra added to postgresql.conf.
sub es_node
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
shared_preload_libraries = 'es'
log_statement = none
} . ($extra // ''));
	$node->start;
	return $node;
}

# SQL that makes a read table public.seen_$name and a handler
# public.h_$name that records there the position of each event it gets; a
# PL/pgSQL handler that first runs the statements of "before", when given,
# else an SQL one. Then an async projection of that handler and table,
# named "projection" (default $name; '' for none).
sub es_seen_sql
{
	my ($name, %opt) = @_;
	my $insert = "INSERT INTO public.seen_$name VALUES (e.global_position)";
	my $projection = $opt{projection} // $name;
	my $sql = "CREATE TABLE public.seen_$name (global_position bigint NOT NULL);\n";
	$sql .=
	  defined $opt{before}
	  ? "CREATE FUNCTION public.h_$name(e es.event) RETURNS void LANGUAGE plpgsql AS\n"
	  . "  \$\$ BEGIN $opt{before} $insert; END \$\$;\n"
	  : "CREATE FUNCTION public.h_$name(e es.event) RETURNS void LANGUAGE sql AS\n"
	  . "  \$\$ $insert \$\$;\n";
	$sql .=
	  "SELECT es.create_projection('$projection', 'public.h_$name(es.event)', mode => 'async',\n"
	  . "                            tables => ARRAY['public.seen_$name'::regclass]);\n"
	  if $projection ne '';
	return $sql;
}

# Returns the pids of the processes whose parent is $ppid.
sub children_of
{
	my ($ppid) = @_;
	my @kids;
	opendir(my $d, '/proc') or die "cannot read /proc: $!";
	foreach my $p (grep { /^\d+$/ } readdir $d)
	{
		open(my $fh, '<', "/proc/$p/stat") or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat;
		push @kids, $p if $stat =~ /\)\s+\S\s+(\d+)/ && $1 == $ppid;
	}
	closedir $d;
	return @kids;
}

# True if $pid is a live (not zombie) postgres process.
sub pg_alive
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return 0;
	my $stat = <$fh>;
	close $fh;
	return 0 unless defined $stat;
	return 0 unless $stat =~ /^\d+ \((.*)\)\s+(\S)/;
	return 0 if $2 eq 'Z' || $2 eq 'X';
	return $1 =~ /postgres|postmaster/ ? 1 : 0;
}

# Polls $sql in database $db of $node until it returns $expected, at most
# $timeout seconds; on failure, says what it last returned.
sub es_poll
{
	my ($node, $db, $sql, $expected, $timeout) = @_;
	my $deadline = time() + $timeout;
	my $out = '';
	while (time() < $deadline)
	{
		my $rc;
		($rc, $out) = $node->psql($db, $sql);
		return 1 if $rc == 0 && $out eq $expected;
		usleep(100_000);
	}
	diag("last result of [$sql]: $out");
	return 0;
}

# Waits until the log of $node, after $offset, matches $re (at most
# $timeout seconds).
sub es_log_matches
{
	my ($node, $re, $offset, $timeout) = @_;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		return 1 if substr(slurp_file($node->logfile), $offset) =~ $re;
		usleep(200_000);
	}
	return 0;
}

1;
