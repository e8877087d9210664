# What pg_stat_activity shows while the workers wait: named wait events on
# PostgreSQL 17 and later (WaitEventExtensionNew), "Extension" before.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 20000);
my $node = sync_node('wait_events');
my $named = $node->safe_psql('postgres', 'SHOW server_version_num') >= 170000;
my $ev = sub { $named ? $_[0] : 'Extension' };

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => JSON::PP::true }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 5 ]);
sql($node, 'CREATE TABLE items (id int PRIMARY KEY, title text)');
my $shape = $server->shape('items');
sql($node, "SELECT electric.sync_shape_to_table('$shape', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'synced');

sub worker_wait
{
	return sql($node, "SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'");
}

ok(wait_until($node, "SELECT wait_event = '" . $ev->('PgliteSyncLongPoll') . "' AND wait_event_type = 'Extension' FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'"),
	'a live worker waits on ' . $ev->('PgliteSyncLongPoll')) or diag(worker_wait());
ok(wait_until($node, "SELECT wait_event = '" . $ev->('PgliteSyncLauncher') . "' FROM pg_stat_activity WHERE backend_type = 'pglite_sync launcher'"),
	'the launcher waits on ' . $ev->('PgliteSyncLauncher'));

# a catch-up request held by the server, with wait_for_sync waiting for it
$server->fault(kind => 'delay', ms => 4000, table => 'items', when => 'nonlive', count => 1);
my $waiter = $node->background_psql('postgres');
$waiter->query_until(qr/started/, "\\echo started\nSELECT electric.wait_for_sync('items', '30 s');\n");
ok(wait_until($node, "SELECT wait_event = '" . $ev->('PgliteSyncFetch') . "' FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'", 10),
	'a catch-up request waits on ' . $ev->('PgliteSyncFetch')) or diag(worker_wait());
ok(wait_until($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = '" . $ev->('PgliteSyncWaitForSync') . "' AND query LIKE '%wait_for_sync%' AND backend_type = 'client backend'", 10),
	'a backend in wait_for_sync waits on ' . $ev->('PgliteSyncWaitForSync'));
$waiter->quit;

# a retry after a failure sleeps on the backoff event
$server->fault(kind => 'status', status => 503, retry_after => 10, table => 'items', count => -1);
$server->txn('items', { op => 'update', row => { id => '1', title => 'changed' } });
ok(wait_until($node, "SELECT wait_event = '" . $ev->('PgliteSyncBackoff') . "' FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'", 20),
	'a worker backing off waits on ' . $ev->('PgliteSyncBackoff')) or diag(worker_wait());
is(sub_status($node, 'items'), 'backoff', 'and the view says backoff');
$server->clear_faults;

$node->stop;
$server->stop;
done_testing();
