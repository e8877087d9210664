# Upgrades in place.  CREATE EXTENSION pglite_sync VERSION '0.1.0' with
# subscriptions stored the way 0.1.0 stored them (rows in its catalog
# layout, with its target fingerprint): after a restart on the new library
# they sync; the 0.1.0 SQL API refuses to manage them until the update;
# ALTER EXTENSION pglite_sync UPDATE while they are live keeps them running
# with their data and positions (no request at offset -1 again), later
# changes still arrive, and the 0.2.0 view and API take over.  0.3.0 adds
# local writes; 0.4.0 stores host-driven spools uncompressed, and a
# host-driven snapshot half spooled (compressed) across that update lands
# whole; 0.5.0 makes the spool unlogged, and a snapshot half spooled across
# that update lands whole too; 0.6.0 tells a group of one member from a
# single-shape subscription.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use HostFeed;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;
use Time::HiRes qw(usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('upgrade', no_extension => 1);
my $T = JSON::PP::true;
my @cols = qw(id title);

for my $t (qw(items labels))
{
	$server->create_table(
		name => $t,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		page_rows => 4,
		rows => [ map { { id => "$_", title => "$t $_" } } 1 .. 10 ]);
}
sql($node, "CREATE EXTENSION pglite_sync VERSION '0.1.0'");
is(sql($node, "SELECT extversion FROM pg_extension WHERE extname = 'pglite_sync'"), '0.1.0', 'version 0.1.0 installed');
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text); CREATE TABLE labels (id int PRIMARY KEY, label text)");

# the new library and the old SQL: the 0.1.0 API refuses, with a hint
my ($rc, $out, $err) = $node->psql('postgres', "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
like($err, qr/extension "pglite_sync" must be updated to version 0\.6\.0/, 'the 0.1.0 sync_shape_to_table refuses to manage subscriptions');
like($err, qr/HINT:  Run ALTER EXTENSION pglite_sync UPDATE/, '... with the hint to update');

# subscriptions as 0.1.0 stored them: the shape in the subscription row and
# md5(relid|primary_key|map_columns|map_function|owner) as the fingerprint
sub legacy_subscription
{
	my ($name, $table, $map) = @_;
	my $url = $server->shape_url;
	my $m = defined $map ? "'$map'::jsonb" : 'NULL::jsonb';
	sql($node, qq{
		INSERT INTO electric.subscription (name, shape_key, owner, relid, schema_name, table_name, primary_key,
		    shape_url, shape_params, shape_headers, map_columns, initial_insert_method, target_fingerprint)
		SELECT '$name', '$name', r.oid, '$table'::regclass, 'public', '$table', '{id}', '$url',
		       jsonb_build_object('table', '$table'), '{"X-Legacy": "yes"}', $m, 'insert',
		       md5(concat_ws('|', '$table'::regclass::oid::text, '{id}'::text[]::text, ($m)::text, NULL::text, r.oid::text))
		  FROM pg_roles r WHERE r.rolname = current_user});
}
legacy_subscription('items', 'items');
legacy_subscription('labels', 'labels', '{"id": "id", "label": "title"}');
$node->restart;
ok(wait_sync($node, 'items') && wait_sync($node, 'labels'), 'after a restart the new library runs the 0.1.0 subscriptions');
is_table_synced($node, $server, 'items', \@cols, 'items synced');
is(sql($node, "SELECT string_agg(id || '=' || label, ',' ORDER BY id) FROM labels"), join(',', map { "$_=labels $_" } 1 .. 10), 'labels synced through map_columns');
is(sql($node, "SELECT string_agg(name || ' ' || state || ' ' || rows_applied, ',' ORDER BY name) FROM electric.subscriptions"),
	'items live 10,labels live 10', 'the 0.1.0 view shows them live');
my ($req0) = grep { $_->{query}{offset} eq '-1' } @{ $server->requests('items') };
is($req0->{headers}{'x-legacy'}, 'yes', 'with their stored headers');
($rc, $out, $err) = $node->psql('postgres', "SELECT electric.unsubscribe('items')");
like($err, qr/must be updated to version 0\.6\.0.*HINT:  Run ALTER EXTENSION pglite_sync UPDATE/s, 'the 0.1.0 unsubscribe refuses too');
is(sub_status($node, 'items', 'state'), 'live', 'and changed nothing');

# a change while on 0.1.0: positions are stored in the 0.1.0 layout
$server->txn('items', { op => 'update', row => { id => '1', title => 'on 0.1.0' } });
ok(wait_sync($node, 'items'), 'a live change on the 0.1.0 layout');
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'on 0.1.0', 'applied');
my %before;
for my $s (qw(items labels))
{
	$before{$s} = sql($node, "SELECT handle || ' ' || \"offset\" || ' ' || rows_applied FROM electric.subscriptions WHERE name = '$s'");
	like($before{$s}, qr/^\d+-\d+ \d+_\d+ \d+$/, "$s: position stored ($before{$s})");
}
my %pids = map { $_ => sub_status($node, $_, 'worker_pid') } qw(items labels);

# ---- ALTER EXTENSION UPDATE while they are live ----
$server->clear_requests;
sql($node, "ALTER EXTENSION pglite_sync UPDATE TO '0.2.0'");
is(sql($node, "SELECT extversion FROM pg_extension WHERE extname = 'pglite_sync'"), '0.2.0', 'updated to 0.2.0');
is(sql($node, "SELECT string_agg(name || ' ' || shape_count || ' ' || handle || ' ' || \"offset\" || ' ' || rows_applied, ',' ORDER BY name) FROM electric.subscriptions"),
	"items 1 $before{items},labels 1 $before{labels}", 'the 0.2.0 view shows both, with their positions and counts');
is(sql($node, "SELECT string_agg(owner, ',') FROM electric.subscriptions"), join(',', (sql($node, 'SELECT current_user')) x 2), 'owners by name');
is(sql($node, "SELECT map_columns::text FROM electric.subscriptions WHERE name = 'labels'"), '{"id": "id", "label": "title"}', 'map_columns kept');

$server->txn('items', { op => 'update', row => { id => '2', title => 'on 0.2.0' } });
$server->txn('labels', { op => 'insert', row => { id => '11', title => 'labels 11' } });
ok(wait_sync($node, 'items') && wait_sync($node, 'labels'), 'both sync after the update');
is(sql($node, "SELECT title FROM items WHERE id = 2"), 'on 0.2.0', 'later changes arrive');
is(sql($node, "SELECT label FROM labels WHERE id = 11"), 'labels 11', 'on both');
is_table_synced($node, $server, 'items', \@cols, 'items equals the server');
for my $s (qw(items labels))
{
	my @resync = grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests($s) };
	is(scalar(@resync), 0, "$s: no request at offset -1 since the update: no resync");
	my $now = sub_status($node, $s, 'worker_pid');
	ok($now == $pids{$s} || $now > 0, "$s: running (worker $pids{$s} -> $now)");
	like(sub_status($node, $s, 'state'), qr/^live$/, "$s: live");
}
is(sub_status($node, 'items', 'rows_applied'), (split / /, $before{items})[2] + 1, 'rows_applied went on from where it was');
is(sql($node, "SELECT count(*) FROM electric.subscription_shapes"), '2', 'subscription_shapes has one shape each');
unlike(slurp_file($node->logfile), qr/catalog statement failed|terminated by signal|PANIC/, 'no catalog error in the workers during the update');

# ---- and on to 0.3.0 (local writes), still live ----
%pids = map { $_ => sub_status($node, $_, 'worker_pid') } qw(items labels);
my $positions = sql($node, "SELECT string_agg(name || ' ' || handle || ' ' || \"offset\", ',' ORDER BY name) FROM electric.subscriptions");
$server->clear_requests;
sql($node, "ALTER EXTENSION pglite_sync UPDATE TO '0.3.0'");
is(sql($node, "SELECT extversion FROM pg_extension WHERE extname = 'pglite_sync'"), '0.3.0', 'updated to 0.3.0');
is(sql($node, "SELECT string_agg(name || ' ' || handle || ' ' || \"offset\", ',' ORDER BY name) FROM electric.subscriptions"),
	$positions, 'positions unchanged by the update');
is(sql($node, "SELECT count(*) FROM electric.writes"), '0', 'the writes view is there');
$server->txn('items', { op => 'update', row => { id => '4', title => 'on 0.3.0' } });
ok(wait_until($node, "SELECT title = 'on 0.3.0' FROM items WHERE id = 4"), 'changes still arrive');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests('items') }), 0, 'no resync after the second update');
is(sub_status($node, 'items', 'worker_pid'), $pids{items}, 'the same worker');

# the 0.2.0 API manages them now
sql($node, q{SELECT electric.alter_subscription('items', headers => '{"X-Legacy": "updated"}')});
$server->txn('items', { op => 'update', row => { id => '3', title => 'after alter' } });
ok(wait_sync($node, 'items'), 'alter_subscription works on an upgraded subscription');
my ($last) = grep { $_->{headers}{'x-legacy'} } reverse @{ $server->requests('items') };
is($last->{headers}{'x-legacy'}, 'updated', 'with the new header');
sql($node, "SELECT electric.unsubscribe('labels')");
ok(wait_until($node, "SELECT state = 'stopped' AND worker_pid IS NULL FROM electric.subscriptions WHERE name = 'labels'"), 'unsubscribe works');
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('labels') . "', 'labels', '{id}', map_columns => '{\"id\": \"id\", \"label\": \"title\"}', shape_key => 'labels')");
ok(wait_sync($node, 'labels'), 'resubscribed with the same key and definition');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests('labels') }), 0, 'it resumed from its stored offset (same fingerprint)');

# ---- and on to 0.4.0 (uncompressed spools) with a host-driven snapshot half spooled ----
# rows long and alike, so that 0.3.0 compresses the spooled blocks
$server->create_table(
	name => 'notes',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 20,
	rows => [ map { { id => "$_", title => "note $_ " . ('lorem ipsum ' x 40) } } 1 .. 100 ]);
sql($node, "CREATE TABLE notes (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('notes') . "', 'notes', '{id}', shape_key => 'notes', worker => false)");
my $blocks = "SELECT string_agg(coalesce(pg_column_compression(b.data), 'none'), ',' ORDER BY b.seq) "
  . "FROM electric.spool_block b JOIN electric.subscription s ON s.id = b.subid WHERE s.name = 'notes'";
my $steps = feed($node, 'notes', calls => 2);
is(scalar(grep { $_->{step} eq 'ingest' && $_->{status} == 200 } @$steps), 2, 'two pages of the host-driven snapshot fed on 0.3.0');
like(sql($node, $blocks), qr/^(pglz,)*pglz$/, '0.3.0 spooled them compressed');
%pids = map { $_ => sub_status($node, $_, 'worker_pid') } qw(items);
$positions = sql($node, "SELECT string_agg(name || ' ' || handle || ' ' || \"offset\", ',' ORDER BY name) FROM electric.subscriptions WHERE name <> 'notes'");
$server->clear_requests;
sql($node, "ALTER EXTENSION pglite_sync UPDATE TO '0.4.0'");
is(sql($node, "SELECT extversion FROM pg_extension WHERE extname = 'pglite_sync'"), '0.4.0', 'updated to 0.4.0');
is(sql($node, "SELECT attstorage FROM pg_attribute WHERE attrelid = 'electric.spool_block'::regclass AND attname = 'data'"),
	'e', 'spool blocks are stored uncompressed from now on');
is(sql($node, "SELECT string_agg(name || ' ' || handle || ' ' || \"offset\", ',' ORDER BY name) FROM electric.subscriptions WHERE name <> 'notes'"),
	$positions, 'positions unchanged by the update');
$steps = feed($node, 'notes', calls => 1);
like(sql($node, $blocks), qr/^(pglz,)+none$/, 'the next page is spooled uncompressed after the compressed ones');
is(sql($node, "SELECT count(*) FROM notes"), '0', 'nothing applied before the up-to-date');
$steps = feed($node, 'notes', until_up_to_date => 1);
is(sub_status($node, 'notes', "state || ' ' || is_up_to_date"), 'live true', 'the host-driven snapshot completed');
is(sql($node, "SELECT count(*) || ' ' || count(*) FILTER (WHERE title = 'note ' || id || ' ' || repeat('lorem ipsum ', 40)) FROM notes"),
	'100 100', 'every row whole, from compressed and uncompressed blocks alike');
is(sql($node, "SELECT count(*) FROM electric.spool_block"), '0', 'and the spool is gone');
$server->txn('items', { op => 'update', row => { id => '5', title => 'on 0.4.0' } });
ok(wait_until($node, "SELECT title = 'on 0.4.0' FROM items WHERE id = 5"), 'worker-driven changes still arrive');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests('items') }), 0, 'no resync after the third update');
is(sub_status($node, 'items', 'worker_pid'), $pids{items}, 'the same worker');

# ---- and on to 0.5.0 (unlogged spools) with another host-driven snapshot half spooled ----
$server->create_table(
	name => 'memos',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 20,
	rows => [ map { { id => "$_", title => "memo $_" } } 1 .. 100 ]);
sql($node, "CREATE TABLE memos (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('memos') . "', 'memos', '{id}', shape_key => 'memos', worker => false)");
my $persistence = "SELECT relpersistence FROM pg_class WHERE oid = 'electric.spool_block'::regclass";
my $spooled = "SELECT count(*) || ' ' || sum(length(b.data)) FROM electric.spool_block b JOIN electric.subscription s ON s.id = b.subid WHERE s.name = 'memos'";
$steps = feed($node, 'memos', calls => 2);
is(scalar(grep { $_->{step} eq 'ingest' && $_->{status} == 200 } @$steps), 2, 'two pages of a host-driven snapshot fed on 0.4.0');
is(sql($node, $persistence), 'p', 'on 0.4.0 the spool is logged');
my $before = sql($node, $spooled);
like($before, qr/^[1-9]\d* [1-9]\d*$/, "they are spooled ($before: blocks, bytes)");
$positions = sql($node, "SELECT string_agg(name || ' ' || handle || ' ' || \"offset\", ',' ORDER BY name) FROM electric.subscriptions WHERE name <> 'memos'");
$server->clear_requests;
sql($node, "ALTER EXTENSION pglite_sync UPDATE TO '0.5.0'");
is(sql($node, "SELECT extversion FROM pg_extension WHERE extname = 'pglite_sync'"), '0.5.0', 'updated to 0.5.0');
is(sql($node, $persistence), 'u', 'the spool is unlogged from now on');
is(sql($node, $spooled), $before, 'the blocks already spooled were kept, byte for byte');
is(sql($node, "SELECT string_agg(name || ' ' || handle || ' ' || \"offset\", ',' ORDER BY name) FROM electric.subscriptions WHERE name <> 'memos'"),
	$positions, 'positions unchanged by the update');
$steps = feed($node, 'memos', until_up_to_date => 1);
my @memo_urls = map { $_->{url} } grep { $_->{step} eq 'request' } @$steps;
like($memo_urls[0] // '', qr/offset=0_1/, 'the feeder continues after the two pages spooled before the update');
is(sub_status($node, 'memos', "state || ' ' || is_up_to_date"), 'live true', 'the host-driven snapshot completed');
is_table_synced($node, $server, 'memos', \@cols, 'the table equals the server: pages from before and after the update');
is(sql($node, "SELECT count(*) FROM electric.spool_block"), '0', 'and the spool is gone');
$server->txn('items', { op => 'update', row => { id => '6', title => 'on 0.5.0' } });
ok(wait_until($node, "SELECT title = 'on 0.5.0' FROM items WHERE id = 6"), 'worker-driven changes still arrive');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests('items') }, @{ $server->requests('memos') }), 0,
	'no resync after the fourth update');
is(sub_status($node, 'items', 'worker_pid'), $pids{items}, 'the same worker');

# ---- and on to 0.6.0, with a group of one member made on 0.5.0 ----
$server->create_table(
	name => 'tags',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", title => "tag $_" } } 1 .. 3 ]);
sql($node, "CREATE TABLE tags (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shapes_to_tables('{\"tags\": {\"shape\": " . $server->shape('tags')
	. ", \"table_name\": \"tags\", \"primary_key\": [\"id\"]}}', 'solo')");
ok(wait_sync($node, 'solo'), 'a group of one member syncs on 0.5.0');
my $shape_cols = "SELECT num_nulls(schema_name, table_name, shape_url, shape_params, handle, \"offset\", primary_key) FROM electric.subscriptions WHERE name = 'solo'";
is(sql($node, $shape_cols), '0', 'on 0.5.0 the view shows it as a single shape');
$positions = sql($node, "SELECT string_agg(shape || ' ' || handle || ' ' || \"offset\", ',' ORDER BY shape) FROM electric.subscription_shapes");
%pids = map { $_ => sub_status($node, $_, 'worker_pid') } qw(items solo);
$server->clear_requests;
sql($node, "ALTER EXTENSION pglite_sync UPDATE");
is(sql($node, "SELECT extversion FROM pg_extension WHERE extname = 'pglite_sync'"), '0.6.0', 'updated to 0.6.0');
is(sql($node, $shape_cols), '7', 'the update recognises the group: its per-shape columns are NULL');
is(sql($node, "SELECT string_agg(shape || ' ' || handle || ' ' || \"offset\", ',' ORDER BY shape) FROM electric.subscription_shapes"),
	$positions, 'positions unchanged by the update');
$server->txn('tags', { op => 'update', row => { id => '2', title => 'on 0.6.0' } });
$server->txn('items', { op => 'update', row => { id => '7', title => 'on 0.6.0' } });
ok(wait_until($node, "SELECT (SELECT title FROM tags WHERE id = 2) = 'on 0.6.0' AND (SELECT title FROM items WHERE id = 7) = 'on 0.6.0'"),
	'changes still arrive, in the group and in a single shape');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests('items') }, @{ $server->requests('tags') }), 0,
	'no resync after the fifth update');
is(sub_status($node, $_, 'worker_pid'), $pids{$_}, "the same worker for $_") for qw(items solo);

# and it all survives another restart
$node->restart;
ok(wait_sync($node, 'items') && wait_sync($node, 'labels'), 'after a restart both sync');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests('items') }, @{ $server->requests('labels') }), 0, 'still without a resync');

$node->stop;
$server->stop;
done_testing();
