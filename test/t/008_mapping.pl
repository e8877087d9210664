# Mapping and keys: map_columns (partial updates write only what they
# carry), map_function (every operation, deletes included), extra local
# columns, another column order, case-sensitive names, composite keys and
# primary-key changes.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('mapping');
my $T = JSON::PP::true;

$server->create_table(
	name => 'people',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'first', type => 'text' },
		{ name => 'last', type => 'text' }, { name => 'age', type => 'int4' } ],
	primary_key => ['id'],
	rows => [ { id => '1', first => 'Ada', last => 'Lovelace', age => '36' },
		{ id => '2', first => 'Alan', last => 'Turing', age => '41' },
		{ id => '3', first => 'Grace', last => 'Hopper', age => '85' } ]);

# map_columns: other local names, other order, an extra local column
sql($node, q{CREATE TABLE folks (note text DEFAULT 'local', years int, surname text, pid int PRIMARY KEY)});
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('people') . "', 'folks', '{pid}', shape_key => 'folks', "
	. q{map_columns => '{"pid": "id", "surname": "last", "years": "age"}', initial_insert_method => 'copy')});
ok(wait_sync($node, 'folks'), 'map_columns subscription synced');
is(sql($node, "SELECT string_agg(pid || ':' || surname || ':' || years || ':' || note, ',' ORDER BY pid) FROM folks"),
	'1:Lovelace:36:local,2:Turing:41:local,3:Hopper:85:local', 'mapped columns written, unmapped shape columns ignored, extra column defaulted');
sql($node, "UPDATE folks SET note = 'kept' WHERE pid = 1");
$server->txn('people',
	{ op => 'update', row => { id => '1', age => '37' } },		# a mapped column
	{ op => 'update', row => { id => '2', first => 'A.' } },	# only an unmapped column
	{ op => 'delete', row => { id => '3' } });
ok(wait_sync($node, 'folks'), 'synced after partial updates');
is(sql($node, "SELECT string_agg(pid || ':' || surname || ':' || years || ':' || note, ',' ORDER BY pid) FROM folks"),
	'1:Lovelace:37:kept,2:Turing:41:local', 'a partial update writes only the mapped columns it carries; local columns kept; delete by mapped key');
is(sub_status($node, 'folks', "coalesce(last_error, 'none')"), 'none', 'an update carrying no mapped column is not an error');

# map_function: the whole message in, the local row out, for every operation
sql($node, q{
	CREATE TABLE people_log (id int PRIMARY KEY, label text, op text, old_age text);
	CREATE FUNCTION map_person(m jsonb) RETURNS jsonb LANGUAGE sql AS $$
		SELECT CASE WHEN m->'value'->>'first' = 'skip me' THEN NULL
		ELSE jsonb_strip_nulls(jsonb_build_object(
			'id', (m->'value'->>'id')::int,
			'label', upper(coalesce(m->'value'->>'first', '') || ' ' || coalesce(m->'value'->>'last', '')),
			'op', m->'headers'->>'operation',
			'old_age', m->'old_value'->>'age')) END
	$$;
});
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('people', replica => 'full') . "', 'people_log', '{id}', shape_key => 'mapfn', map_function => 'map_person(jsonb)')");
ok(wait_sync($node, 'mapfn'), 'map_function subscription synced');
is(sql($node, "SELECT string_agg(id || ':' || label || ':' || op, ',' ORDER BY id) FROM people_log"),
	'1:ADA LOVELACE:insert,2:A. TURING:insert', 'map_function builds the local rows');
$server->txn('people',
	{ op => 'update', row => { id => '1', age => '38' } },
	{ op => 'insert', row => { id => '4', first => 'skip me', last => 'x', age => '1' } },
	{ op => 'insert', row => { id => '5', first => 'Edsger', last => 'Dijkstra', age => '72' } },
	{ op => 'delete', row => { id => '2' } });
ok(wait_sync($node, 'mapfn'), 'map_function live changes');
is(sql($node, "SELECT string_agg(id || ':' || label || ':' || op || ':' || coalesce(old_age, '-'), ',' ORDER BY id) FROM people_log"),
	'1:ADA LOVELACE:update:37,5:EDSGER DIJKSTRA:insert:-', 'update (with old_value), skipped message (SQL NULL), insert and delete all go through the function');

# case-sensitive table and column names
$server->create_table(
	name => 'Mixed Case',
	columns => [ { name => 'Id', type => 'int4', not_null => $T }, { name => 'Title Text', type => 'text' }, { name => 'a"b', type => 'text' } ],
	primary_key => ['Id'],
	rows => [ { 'Id' => '1', 'Title Text' => 'hello', 'a"b' => 'quote' } ]);
sql($node, q{CREATE SCHEMA "Other Schema"; CREATE TABLE "Other Schema"."Mixed Case" ("a""b" text, "Id" int PRIMARY KEY, "Title Text" text)});
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('"Mixed Case"') . q{', 'Mixed Case', '{Id}', schema_name => 'Other Schema', shape_key => 'mixed')});
ok(wait_sync($node, 'mixed'), 'case-sensitive names synced');
is(sql($node, q{SELECT "Id" || ':' || "Title Text" || ':' || "a""b" FROM "Other Schema"."Mixed Case"}), '1:hello:quote', 'quoted names everywhere');
$server->txn('Mixed Case', { op => 'update', row => { 'Id' => '1', 'Title Text' => 'world' } });
ok(wait_sync($node, 'mixed'), 'live change on case-sensitive names');
is(sql($node, q{SELECT "Title Text" FROM "Other Schema"."Mixed Case"}), 'world', 'updated');

# composite keys and primary-key changes (delete of the old key + insert of the new)
$server->create_table(
	name => 'pairs',
	columns => [ { name => 'a', type => 'int4', not_null => $T }, { name => 'b', type => 'text', not_null => $T }, { name => 'v', type => 'text' } ],
	primary_key => [ 'a', 'b' ],
	rows => [ { a => '1', b => 'x', v => 'one-x' }, { a => '1', b => 'y', v => 'one-y' }, { a => '2', b => 'x', v => 'two-x' } ]);
sql($node, "CREATE TABLE pairs (v text, b text, a int, PRIMARY KEY (a, b))");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('pairs') . "', 'pairs', '{b,a}', shape_key => 'pairs', initial_insert_method => 'json')");
ok(wait_sync($node, 'pairs'), 'composite key synced');
$server->txn('pairs',
	{ op => 'update', row => { a => '1', b => 'y', v => 'updated' } },
	{ op => 'delete', row => { a => '2', b => 'x' } },
	{ op => 'update', row => { a => '1', b => 'x' }, new_key => { a => '3', b => 'z' } });
ok(wait_sync($node, 'pairs'), 'composite key live changes');
is(sql($node, "SELECT string_agg(a || b || '=' || v, ',' ORDER BY a, b) FROM pairs"), '1y=updated,3z=one-x',
	'update and delete by composite key; a key change moves the row');
my $reqs = $server->requests('pairs');
is_table_synced($node, $server, 'pairs', [qw(a b v)], 'pairs table matches the server');

# an update that carries no mapped column still needs its row
sql($node, "DELETE FROM folks WHERE pid = 1");
$server->txn('people', { op => 'update', row => { id => '1', first => 'gone' } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'folks'"), 'key-only update of a missing row: error');
like(sub_status($node, 'folks', 'last_error'), qr/update for a row that does not exist in table public\.folks.*key "public"\."people"\/"1"/s,
	'last_error names the key');

$node->stop;
$server->stop;
done_testing();
