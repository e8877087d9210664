# log = changes_only (Electric 1.1+): no snapshot, the shape's changes only.
# With "offset": "now" a subscription starts at the log's end and replaces
# nothing; updates and deletes of rows it never brought are skipped and
# counted in rows_skipped; with replica = full an update of an unseen row is
# applied whole.  From -1 the (empty) snapshot replaces the table's rows, as
# every start from -1 does.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('changes_only');
my $T = JSON::PP::true;

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' }, { name => 'n', type => 'int4' } ],
	primary_key => ['id'],
	rows => [ map { { id => $_, title => "item $_", n => $_ } } 1 .. 10 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text, n int);
	INSERT INTO items VALUES (1, 'loaded locally', 1), (2, 'loaded locally', 2), (500, 'local only', 0)");

sub shape_with
{
	my (%extra) = @_;
	my $offset = delete $extra{offset};
	my $shape = $server->shape_def('items', log => 'changes_only', %extra);
	$shape->{offset} = $offset if $offset;
	return sql_json($shape);
}

# ---- refusals ----
my ($ret, $out, $err) = $node->psql('postgres', "SELECT electric.sync_shape_to_table('"
	. sql_json({ %{ $server->shape_def('items') }, offset => 'now' }) . "', 'items', '{id}')");
like($err, qr/22023|offset.*"now" needs params.log = "changes_only"/, 'offset now without changes_only is refused');
($ret, $out, $err) = $node->psql('postgres', "SELECT electric.sync_shape_to_table('"
	. sql_json({ %{ $server->shape_def('items', log => 'changes_only') }, offset => '0_0' }) . "', 'items', '{id}')");
like($err, qr/"offset" must be "now"/, 'an offset other than now is refused');

# ---- from now: nothing replaced, changes only ----
$server->clear_requests;
sql($node, "SELECT electric.sync_shape_to_table('" . shape_with(offset => 'now') . "', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'a changes_only shape from now is up to date');
my ($first) = @{ $server->requests('items') };
is($first->{query}{offset}, 'now', 'its first request asks from now');
is($first->{query}{log}, 'changes_only', '... for changes only');
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM items"), '1:loaded locally,2:loaded locally,500:local only',
	'nothing was replaced: the local rows stay');
is(sql($node, "SELECT shape_options::text FROM electric.subscriptions WHERE name = 'items'"), '{"offset": "now"}', 'the view shows the option');

$server->txn('items', { op => 'insert', row => { id => 11, title => 'new', n => 11 } });
$server->txn('items', { op => 'update', row => { id => 1, title => 'changed at the source' } });
$server->txn('items', { op => 'update', row => { id => 3, title => 'never seen here' } });
$server->txn('items', { op => 'delete', row => { id => 4 } });
ok(wait_until($node, "SELECT count(*) = 1 FROM items WHERE id = 11") && wait_sync($node, 'items'), 'live changes arrive');
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM items"),
	'1:changed at the source,2:loaded locally,11:new,500:local only',
	'an insert and an update of a known row applied; the update and delete of unseen rows skipped');
is(sub_status($node, 'items', "rows_skipped || ' ' || state || ' ' || coalesce(last_error, 'none')"), '2 live none',
	'the two changes of unseen rows are counted in rows_skipped, no error');

# ---- replica = full: an update of an unseen row is applied whole ----
sql($node, "CREATE TABLE full_items (id int PRIMARY KEY, title text, n int)");
sql($node, "SELECT electric.sync_shape_to_table('" . shape_with(offset => 'now', replica => 'full') . "', 'full_items', '{id}', shape_key => 'full')");
ok(wait_sync($node, 'full'), 'replica full, from now');
$server->txn('items', { op => 'update', row => { id => 5, title => 'whole row' } });
ok(wait_until($node, "SELECT count(*) = 1 FROM full_items WHERE id = 5") && wait_sync($node, 'full'), 'the update of an unseen row arrives');
is(sql($node, "SELECT id || ':' || title || ':' || n FROM full_items"), '5:whole row:5', '... as the whole row (an upsert)');
$server->txn('items', { op => 'update', row => { id => 5, n => 50 } });
ok(wait_until($node, "SELECT n = 50 FROM full_items WHERE id = 5"), 'a later update of it is applied');

# ---- from -1: the empty snapshot replaces the table's rows ----
sql($node, "CREATE TABLE from_start (id int PRIMARY KEY, title text, n int); INSERT INTO from_start VALUES (1, 'stale', 1)");
sql($node, "SELECT electric.sync_shape_to_table('" . shape_with() . "', 'from_start', '{id}', shape_key => 'from_start')");
ok(wait_sync($node, 'from_start'), 'changes_only from -1');
# (the server made this shape for the first subscription: its log since then
# holds one insert, and changes of rows from_start never had)
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM from_start"), '11:new',
	'its empty snapshot replaced the table; of the log since, only the insert had a row to write');
$server->txn('items', { op => 'insert', row => { id => 12, title => 'after', n => 12 } });
ok(wait_until($node, "SELECT count(*) = 1 FROM from_start WHERE id = 12"), 'then changes arrive');

# ---- restart: resumes from the stored position, not from now ----
$node->restart;
$server->txn('items', { op => 'insert', row => { id => 13, title => 'while restarting', n => 13 } });
ok(wait_until($node, "SELECT count(*) = 1 FROM items WHERE id = 13") && wait_sync($node, 'items'), 'after a restart, from the stored position');
is(sql($node, "SELECT count(*) FROM items WHERE id = 12"), '1', 'nothing between the stop and now was missed');

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC|TRAP/, 'no crash');
$node->stop;
$server->stop;
done_testing();
