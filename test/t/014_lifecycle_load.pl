# Lifecycle under load: ALTER TABLE, pg_terminate_backend, DROP TABLE,
# DROP EXTENSION and DROP DATABASE while a worker is busy with a large,
# slowed initial sync: no hang, no crash, a clear state afterwards.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $T = JSON::PP::true;
my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('load');
my @cols = qw(id title);

$server->create_table(
	name => 'big',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 1000,
	rows => [ map { { id => "$_", title => "row $_" } } 1 .. 30000 ]);
# every catch-up page takes a while: the worker is busy for several seconds
$server->fault(kind => 'delay', table => 'big', when => 'nonlive', ms => 100, count => -1);

sub subscribe
{
	my ($db, $table, $key) = @_;
	$node->safe_psql($db, "SELECT electric.sync_shape_to_table('" . $server->shape('big') . "', '$table', '{id}', shape_key => '$key')");
}

sub timed
{
	my ($code) = @_;
	my $t0 = time;
	$code->();
	return time - $t0;
}

# ALTER TABLE while syncing: the batch applies to the new definition
sql($node, "CREATE TABLE a (id int PRIMARY KEY, title text)");
subscribe('postgres', 'a', 'a');
sleep 1;
my $t = timed(sub { sql($node, "ALTER TABLE a ADD COLUMN local_note text DEFAULT 'x'") });
cmp_ok($t, '<', 2, sprintf('ALTER TABLE during the sync does not wait for it (%.2f s)', $t));
ok(wait_sync($node, 'a', 60), 'the sync completes after ALTER TABLE');
is_table_synced($node, $server, 'a', \@cols, 'all rows, under the new definition', 'big');
is(sql($node, "SELECT count(*) FROM a WHERE local_note = 'x'"), '30000', 'the new column has its default');
sql($node, "SELECT electric.unsubscribe('a')");

# pg_terminate_backend while syncing: restarted, resumed, complete
sql($node, "CREATE TABLE b (id int PRIMARY KEY, title text)");
subscribe('postgres', 'b', 'b');
sleep 1;
my $pid = sub_status($node, 'b', 'worker_pid');
is(sql($node, "SELECT pg_terminate_backend($pid)"), 't', 'pg_terminate_backend of a busy worker');
ok(wait_until($node, "SELECT worker_pid IS NOT NULL AND worker_pid <> $pid FROM electric.subscriptions WHERE name = 'b'"), 'the launcher starts a new worker');
ok(wait_sync($node, 'b', 60), 'the sync completes');
is_table_synced($node, $server, 'b', \@cols, 'all rows, once', 'big');
sql($node, "SELECT electric.unsubscribe('b')");

# DROP TABLE while syncing: no hang; the subscription reports it
sql($node, "CREATE TABLE c (id int PRIMARY KEY, title text)");
subscribe('postgres', 'c', 'c');
sleep 1;
$t = timed(sub { sql($node, "DROP TABLE c") });
cmp_ok($t, '<', 2, sprintf('DROP TABLE during the sync does not hang (%.2f s)', $t));
ok(wait_until($node, "SELECT state = 'error' AND last_error LIKE '%no longer exists%' FROM electric.subscriptions WHERE name = 'c'", 60),
	'state error: the table no longer exists');
sql($node, "SELECT electric.delete_subscription('c')");

# DROP EXTENSION while syncing, in another database
sql($node, "CREATE DATABASE ext");
$node->safe_psql('ext', "CREATE EXTENSION pglite_sync; CREATE TABLE d (id int PRIMARY KEY, title text)");
subscribe('ext', 'd', 'd');
sleep 1;
$t = timed(sub { $node->safe_psql('ext', "DROP EXTENSION pglite_sync") });
cmp_ok($t, '<', 3, sprintf('DROP EXTENSION during the sync does not hang (%.2f s)', $t));
ok(wait_until($node, "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker' AND datname = 'ext'"),
	'the worker is gone');
is($node->safe_psql('ext', "SELECT count(*) FROM d"), '0', 'no half-applied batch');

# DROP DATABASE while syncing
$node->safe_psql('ext', "CREATE EXTENSION pglite_sync");
subscribe('ext', 'd', 'd');
sleep 1;
my ($ret, $out, $err);
$t = timed(sub { ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE ext') });
is($ret, 0, 'DROP DATABASE during the sync succeeds') or diag($err);
cmp_ok($t, '<', 3, sprintf('... at once (%.2f s)', $t));

# the cluster is healthy
$server->clear_faults;
sql($node, "CREATE TABLE e (id int PRIMARY KEY, title text)");
subscribe('postgres', 'e', 'e');
ok(wait_sync($node, 'e', 60), 'a new subscription still works');
unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash');
$node->stop;
$server->stop;
done_testing();
