# SyncTest: shared set-up and assertions for the TAP tests of pglite_sync.
package SyncTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(sync_node sql wait_sync wait_until sub_status table_lines
  server_lines is_table_synced count_requests sql_json bg_sql bg_finish);

# A node with the extension preloaded and created in database postgres.
sub sync_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'pglite_sync'",
		"max_worker_processes = 32",
		"pglite_sync.backoff_base = 100ms",
		"pglite_sync.backoff_max = 1s",
		"pglite_sync.debug = on",
		"log_min_messages = info",
		$opts{conf} // '', ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pglite_sync') unless $opts{no_extension};
	return $node;
}

sub sql
{
	my ($node, $query) = @_;
	return $node->safe_psql('postgres', $query);
}

sub wait_sync
{
	my ($node, $name, $timeout) = @_;
	$timeout //= 30;
	return sql($node, "SELECT electric.wait_for_sync('$name', '$timeout s')") eq 't';
}

# Poll a SQL condition until it returns 't'.
sub wait_until
{
	my ($node, $query, $timeout) = @_;
	$timeout //= 30;
	my $end = time + $timeout;
	while (time < $end)
	{
		return 1 if sql($node, $query) eq 't';
		usleep(50_000);
	}
	diag("timed out waiting for: $query");
	return 0;
}

sub sub_status
{
	my ($node, $name, $cols) = @_;
	$cols //= 'state';
	return sql($node, "SELECT $cols FROM electric.subscriptions WHERE name = '$name'");
}

# The local table as sorted "col=value" lines; booleans normalised.
sub table_lines
{
	my ($node, $table, @cols) = @_;
	my $list = join(', ', map { "coalesce($_\::text, 'NULL')" } @cols);
	my $out = sql($node, "SELECT concat_ws('|', $list) FROM $table");
	return [ sort map { normalise($_) } grep { length } split /\n/, $out ];
}

sub server_lines
{
	my ($server, $table, @cols) = @_;
	my $rows = $server->rows($table);
	return [ sort map { my $r = $_; normalise(join('|', map { $r->{$_} // 'NULL' } @cols)) } @$rows ];
}

sub normalise
{
	my ($line) = @_;
	return join('|', map { $_ eq 't' ? 'true' : $_ eq 'f' ? 'false' : $_ } split(/\|/, $line, -1));
}

# the local table equals the server's (server_table defaults to the same name)
sub is_table_synced
{
	my ($node, $server, $table, $cols, $name, $server_table) = @_;
	my $local = table_lines($node, $table, @$cols);
	my $remote = server_lines($server, $server_table // $table, @$cols);
	is_deeply($local, $remote, $name) or diag(explain { local => $local, server => $remote });
}

sub count_requests
{
	my ($server, $table, $filter) = @_;
	my $reqs = $server->requests($table);
	return scalar grep { !$filter || $filter->($_) } @$reqs;
}

# JSON text of a Perl structure with single quotes doubled, to paste
# between '...' in SQL
sub sql_json
{
	(my $text = JSON::PP->new->canonical->encode($_[0])) =~ s/'/''/g;
	return $text;
}

# Run SQL through psql in the background (e.g. a reader that loops while
# changes stream); bg_finish waits for it and returns (exit code, stdout,
# stderr).
sub bg_sql
{
	my ($node, $query) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $query ],
		'<', \undef, '>', \$out, '2>', \$err);
	return { h => $h, out => \$out, err => \$err };
}

sub bg_finish
{
	my ($bg) = @_;
	$bg->{h}->finish;
	return ($bg->{h}->result(0), ${ $bg->{out} }, ${ $bg->{err} });
}

1;
