# Protocol details: request headers from the shape, where/params/columns,
# replica=full, legacy header names and 204, gzip, a NOLOGIN owner, and a
# dropped target table that does not take anything else down.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('protocol');

$server->create_table(
	name => 'items',
	columns => [
		{ name => 'id', type => 'int4', not_null => JSON::PP::true },
		{ name => 'title', type => 'text' },
		{ name => 'kind', type => 'text' },
		{ name => 'n', type => 'int4' },
	],
	primary_key => ['id'],
	page_rows => 4,
	rows => [ map { { id => "$_", title => "item $_", kind => ($_ % 2 ? 'odd' : 'even'), n => $_ * 10 } } 1 .. 10 ]);

# a NOLOGIN owner: the worker connects as the bootstrap superuser and applies as the owner
sql($node, q{
	CREATE ROLE syncer NOLOGIN;
	GRANT EXECUTE ON FUNCTION electric.sync_shape_to_table(jsonb, text, text[], text, jsonb, regprocedure, text, text, boolean, regprocedure, regprocedure, boolean),
		electric.unsubscribe(text) TO syncer;
	CREATE TABLE odd (id int PRIMARY KEY, title text, n int);
	ALTER TABLE odd OWNER TO syncer;
});
my $shape = $server->shape('items', where => 'kind = $1', params => { 1 => 'odd' }, columns => [qw(id title n)],
	replica => 'full', headers => { Authorization => 'Bearer s3cret', 'X-Tenant' => 'acme' });
is(sql($node, "SET ROLE syncer; SELECT electric.sync_shape_to_table('$shape', 'odd', '{id}', shape_key => 'odd')"),
	'odd', 'a NOLOGIN role subscribes');
ok(wait_sync($node, 'odd'), 'its subscription syncs');
is(sql($node, "SELECT string_agg(id || ':' || title || ':' || n, ',' ORDER BY id) FROM odd"),
	'1:item 1:10,3:item 3:30,5:item 5:50,7:item 7:70,9:item 9:90', 'where with a $1 parameter and columns');
is(sql($node, "SELECT owner FROM electric.subscriptions WHERE name = 'odd'"), 'syncer', 'owned by the NOLOGIN role');

my ($req) = @{ $server->requests('items') };
is($req->{headers}{authorization}, 'Bearer s3cret', 'shape headers are sent: Authorization');
is($req->{headers}{'x-tenant'}, 'acme', 'shape headers are sent: custom header');
like($req->{headers}{'user-agent'}, qr{^pglite_sync/}, 'the worker identifies itself');
like($req->{headers}{'accept-encoding'} // '', qr/gzip/, 'gzip is accepted');
is($req->{query}{where}, 'kind = $1', 'where is passed through');
is($req->{query}{params}{1}, 'odd', 'params[1] is passed through');
is($req->{query}{replica}, 'full', 'replica is passed through');

# replica=full: updates carry the full row; a row moving out of the where is deleted
$server->txn('items',
	{ op => 'update', row => { id => '1', title => 'one' } },
	{ op => 'update', row => { id => '3', kind => 'even' } },
	{ op => 'update', row => { id => '2', kind => 'odd' } });
ok(wait_sync($node, 'odd'), 'synced after updates');
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM odd"),
	'1:one,2:item 2,5:item 5,7:item 7,9:item 9', 'replica=full update, move-out as delete, move-in as insert');

# gzip-encoded responses
$server->fault(kind => 'gzip', table => 'items', count => -1);
$server->txn('items', { op => 'insert', row => { id => '11', title => 'gzipped', kind => 'odd', n => '110' } });
ok(wait_sync($node, 'odd'), 'synced through gzip responses');
is(sql($node, "SELECT title FROM odd WHERE id = 11"), 'gzipped', 'gzip body decoded');
ok((grep { ($_->{fault} // '') eq 'gzip' } @{ $server->requests('items') }), 'the server did send gzip');
$server->clear_faults;

# older servers: legacy header names, and 204 for a long-poll timeout
$server->clear_requests;
$server->fault(kind => 'legacy_headers', table => 'items', count => -1);
$server->fault(kind => 'legacy_204', table => 'items', count => -1);
$server->txn('items', { op => 'insert', row => { id => '13', title => 'legacy', kind => 'odd', n => '130' } });
ok(wait_sync($node, 'odd'), 'synced with legacy header names');
is(sql($node, "SELECT title FROM odd WHERE id = 13"), 'legacy', 'change applied from a legacy response');
sleep 3;
ok((grep { $_->{status} == 204 } @{ $server->requests('items') }), 'the server answered 204 to a long-poll');
is(sub_status($node, 'odd', "state || ' ' || coalesce(last_error, 'none')"), 'live none', 'a 204 is an empty up-to-date, not an error');
$server->txn('items', { op => 'insert', row => { id => '15', title => 'after 204', kind => 'odd', n => '150' } });
ok(wait_sync($node, 'odd'), 'synced after 204s');
is(sql($node, "SELECT title FROM odd WHERE id = 15"), 'after 204', 'changes keep flowing after 204s');
$server->clear_faults;

# a dropped target table: error state, no crash loop, others unaffected
sql($node, "CREATE TABLE doomed (id int PRIMARY KEY, title text, kind text, n int)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'doomed', '{id}', shape_key => 'doomed')");
ok(wait_sync($node, 'doomed'), 'second subscription synced');
sql($node, "DROP TABLE doomed");
$server->txn('items', { op => 'update', row => { id => '5', title => 'five' } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'doomed'"), 'dropped table: state error');
like(sub_status($node, 'doomed', 'last_error'), qr/table public\.doomed of subscription "doomed" no longer exists/,
	'last_error says the table is gone');
ok(wait_sync($node, 'odd'), 'the other subscription keeps syncing');
is(sql($node, "SELECT title FROM odd WHERE id = 5"), 'five', '... and applies changes');
my $pid = sub_status($node, 'doomed', 'worker_pid');
sleep 2;
is(sub_status($node, 'doomed', 'worker_pid'), $pid, 'the failing worker is not crash-looping (same pid)');
sql($node, "SELECT electric.unsubscribe('doomed')");
unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash');

$node->stop;
$server->stop;
done_testing();
