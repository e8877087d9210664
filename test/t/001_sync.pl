# Initial multi-page sync, live changes, wait_for_sync, NOTIFY,
# electric.syncing and what pg_stat_activity shows.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 2000);
my $node = sync_node('sync');

my @cols = qw(id title done);
$server->create_table(
	name => 'items',
	columns => [
		{ name => 'id', type => 'int4', not_null => JSON::PP::true },
		{ name => 'title', type => 'text' },
		{ name => 'done', type => 'bool' },
	],
	primary_key => ['id'],
	page_rows => 3,
	rows => [ map { { id => "$_", title => "item $_", done => ($_ % 2 ? 'true' : 'false') } } 1 .. 10 ]);

sql($node, q{
	CREATE TABLE items (id int PRIMARY KEY, title text, done boolean);
	CREATE TABLE audit (id int, op text, syncing text);
	CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO audit VALUES (coalesce(NEW.id, OLD.id), TG_OP, current_setting('electric.syncing', true));
		RETURN NULL;
	END $$;
	CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION audit();
});

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN electric_sync');

my $shape = $server->shape('items');
is(sql($node, "SELECT electric.sync_shape_to_table('$shape', 'items', '{id}', shape_key => 'items')"),
	'items', 'subscribe returns the shape_key as name');
ok(wait_sync($node, 'items'), 'wait_for_sync returns true after the initial sync');
is_table_synced($node, $server, 'items', \@cols, 'multi-page snapshot applied row for row');

my @reqs = @{ $server->requests('items') };
is($reqs[0]{query}{offset}, '-1', 'first request starts at offset -1');
my @pages = grep { !$_->{live} && $_->{status} == 200 } @reqs;
cmp_ok(scalar(@pages), '>=', 4, 'the 10-row snapshot was fetched in several pages of 3');
is(scalar(grep { ($_->{query}{offset} // '') ne '-1' && !$_->{query}{handle} } @reqs), 0,
	'every request after the first carries the handle');

is(sub_status($node, 'items', "state || ' ' || is_up_to_date || ' ' || rows_applied || ' ' || (worker_pid IS NOT NULL) || ' ' || (last_commit_at IS NOT NULL) || ' ' || coalesce(last_error, 'none')"),
	'live true 10 true true none', 'status view: live, up to date, 10 rows applied, worker running, no error');
like(sub_status($node, 'items', 'handle'), qr/^\d+-\d+$/, 'status view shows the handle');
like(sub_status($node, 'items', '"offset"'), qr/^\d+_(\d+|inf)$/, 'status view shows the offset');

my $notes = $listener->query_safe('SELECT 1');
like($listener->{stderr} . $notes, qr/Asynchronous notification "electric_sync" with payload "items"/,
	'NOTIFY electric_sync with the subscription name after the initial sync');
$listener->{stderr} = '';

is(sql($node, "SELECT count(*) FILTER (WHERE syncing = 'true') || '/' || count(*) FROM audit"),
	'10/10', 'electric.syncing is true inside the apply transaction');
sql($node, "INSERT INTO items VALUES (100, 'local', false); DELETE FROM items WHERE id = 100");
is(sql($node, "SELECT count(*) FROM audit WHERE id = 100 AND syncing IS NOT DISTINCT FROM 'true'"),
	'0', 'local writes do not see electric.syncing');

# live changes: insert, a partial update (replica=default), delete
$server->txn('items',
	{ op => 'insert', row => { id => '11', title => 'eleven', done => 'f' } },
	{ op => 'update', row => { id => '1', done => 'f' } },
	{ op => 'delete', row => { id => '2' } });
ok(wait_sync($node, 'items'), 'wait_for_sync after a live transaction');
is_table_synced($node, $server, 'items', \@cols, 'live insert, update and delete applied');
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'item 1',
	'a partial update keeps the columns it does not carry');

# the barrier: a change on the server before the call is in the table when it returns
$server->txn('items', { op => 'update', row => { id => '3', title => 'barrier' } });
ok(wait_sync($node, 'items'), 'wait_for_sync returns true');
is(sql($node, "SELECT title FROM items WHERE id = 3"), 'barrier',
	'wait_for_sync is a barrier: everything the server had at the call is applied');

# several transactions in one response land in order
$server->txns('items', map { { ops => [ { op => 'update', row => { id => '5', title => "v$_" } } ] } } 1 .. 50);
ok(wait_sync($node, 'items'), 'wait_for_sync after 50 transactions');
is(sql($node, "SELECT title FROM items WHERE id = 5"), 'v50', 'transactions applied in order');

# a long-poll that times out changes nothing and sends no NOTIFY
$listener->query_safe('SELECT 1');
$listener->{stderr} = '';
my $before = count_requests($server, 'items', sub { $_[0]{live} });
sleep 3;
cmp_ok(count_requests($server, 'items', sub { $_[0]{live} }), '>', $before, 'long-polls continue in live mode');
my $quiet = $listener->query_safe('SELECT 1');
unlike($listener->{stderr} . $quiet, qr/Asynchronous notification/, 'empty long-poll timeouts send no NOTIFY');

# live requests echo the cursor
my ($live) = grep { $_->{live} } reverse @{ $server->requests('items') };
ok($live->{query}{cursor}, 'live requests carry the cursor');

# what pg_stat_activity shows
my $act = sql($node, "SELECT backend_type || '|' || application_name || '|' || query FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'");
like($act, qr/^pglite_sync worker\|pglite_sync items\|(long-polling|fetching) http/, 'pg_stat_activity names the worker, the subscription and what it does');
like(sql($node, "SELECT string_agg(backend_type, ',') FROM pg_stat_activity WHERE backend_type LIKE 'pglite_sync%'"),
	qr/pglite_sync launcher/, 'the launcher is visible');

# debug logging
my $log = slurp_file($node->logfile);
like($log, qr/subscription "items": GET http/, 'pglite_sync.debug logs requests');
like($log, qr/subscription "items": response: .*status 200/, 'pglite_sync.debug logs responses');
like($log, qr/subscription "items": committed batch: \d+ changes/, 'pglite_sync.debug logs committed batches');

$listener->quit;
$node->stop;
$server->stop;
done_testing();
