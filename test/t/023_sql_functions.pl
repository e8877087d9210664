# User functions in LANGUAGE sql: an on_must_refetch that RETURNS void
# (single-shape and as a group member's option) and a map_function (a group
# member's option).  A refetch calls the function instead of the default
# clearing, inside the transaction that loads the new snapshot; the mapping
# applies to snapshot rows, inserts, updates and deletes.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('sql_functions');
my $T = JSON::PP::true;

for my $t (qw(notes tags people))
{
	$server->create_table(
		name => $t,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		rows => [ map { { id => $_, title => "$t $_" } } 1 .. 5 ]);
}
sql($node, q{
	CREATE TABLE refetch_calls (fn text, sub text, xid xid8 DEFAULT pg_current_xact_id());
	CREATE TABLE notes_log (op text, id int, xid xid8);
	CREATE FUNCTION notes_log() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO notes_log VALUES (TG_OP, coalesce(NEW.id, OLD.id), pg_current_xact_id());
		RETURN NULL;
	END $$;

	-- single shape: clears only the synced rows, keeps the local one
	CREATE TABLE notes (id int PRIMARY KEY, title text, origin text DEFAULT 'synced');
	INSERT INTO notes VALUES (100, 'local note', 'local');
	CREATE TRIGGER log AFTER INSERT OR UPDATE OR DELETE ON notes FOR EACH ROW EXECUTE FUNCTION notes_log();
	CREATE FUNCTION clear_notes(sub text) RETURNS void LANGUAGE sql AS $$
		INSERT INTO refetch_calls (fn, sub) VALUES ('clear_notes', sub);
		DELETE FROM notes WHERE origin = 'synced';
	$$;

	-- a group: tags clears with a SQL function, people are mapped by one
	CREATE TABLE tags (id int PRIMARY KEY, title text, origin text DEFAULT 'synced');
	INSERT INTO tags VALUES (100, 'local tag', 'local');
	CREATE FUNCTION clear_tags(sub text) RETURNS void LANGUAGE sql AS $$
		INSERT INTO refetch_calls (fn, sub) VALUES ('clear_tags', sub);
		DELETE FROM tags WHERE origin = 'synced';
	$$;
	CREATE TABLE person (pid int PRIMARY KEY, label text, op text);
	CREATE FUNCTION map_person(m jsonb) RETURNS jsonb LANGUAGE sql AS $$
		SELECT jsonb_build_object('pid', (m->'value'->>'id')::int * 10,
		                          'label', upper(m->'value'->>'title'),
		                          'op', m->'headers'->>'operation')
	$$;
});

# ---- single shape, LANGUAGE sql on_must_refetch RETURNS void -------------------------
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('notes') . "', 'notes', '{id}', shape_key => 'notes', on_must_refetch => 'clear_notes(text)')");
ok(wait_sync($node, 'notes'), 'a subscription with a LANGUAGE sql on_must_refetch syncs');
is(sql($node, "SELECT string_agg(id || ':' || origin, ',' ORDER BY id) FROM notes"), '1:synced,2:synced,3:synced,4:synced,5:synced,100:local',
	'the first load called the function instead of DELETE FROM: the local row stays');
is(sql($node, "SELECT string_agg(fn || ':' || sub, ',') FROM refetch_calls"), 'clear_notes:notes', 'called once, with the subscription\'s name');

$server->txn('notes', { op => 'update', row => { id => 2, title => 'after the refetch' } });
ok(wait_sync($node, 'notes'), 'a live change');
sql($node, 'TRUNCATE refetch_calls, notes_log');
$server->rotate('notes');
ok(wait_until($node, "SELECT count(*) = 1 FROM refetch_calls"), 'a must-refetch calls the function');
ok(wait_sync($node, 'notes'), 'synced after the refetch');
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM notes"),
	'1:notes 1,2:after the refetch,3:notes 3,4:notes 4,5:notes 5,100:local note', 'the table has the new data and the local row');
is(sql($node, "SELECT count(DISTINCT xid) FROM (SELECT xid FROM notes_log UNION ALL SELECT xid FROM refetch_calls) x"), '1',
	'the function ran in the transaction that loaded the new snapshot');
is(sql($node, "SELECT string_agg(op || id, ',' ORDER BY op, id) FROM notes_log"), 'DELETE1,DELETE2,DELETE3,DELETE4,DELETE5,INSERT1,INSERT2,INSERT3,INSERT4,INSERT5',
	'... it deleted the five synced rows, not the local one, and the snapshot reloaded them');
is(sub_status($node, 'notes', "state || ' ' || coalesce(last_error, 'none')"), 'live none', 'no error');

# ---- a group: LANGUAGE sql on_must_refetch and map_function as member options ----------
sql($node, 'TRUNCATE refetch_calls');
my $group = sub {
	my ($schema) = @_;
	return sql_json({
		tags => { shape => $server->shape_def('tags'), table_name => 'tags', primary_key => ['id'], on_must_refetch => "${schema}clear_tags(text)" },
		people => { shape => $server->shape_def('people'), table_name => 'person', primary_key => ['pid'], map_function => "${schema}map_person(jsonb)" },
	});
};
# the functions named as the caller would name them (as design.md's example
# does), in a transaction rolled back
my ($ret, $out, $err) = $node->psql('postgres',
	"BEGIN; SELECT electric.sync_shapes_to_tables('" . $group->('') . "', shape_key => 'directory'); ROLLBACK;");
is($ret . ' ' . ($err =~ /ERROR:\s+(.*)/ ? $1 : 'no error'), '0 no error', 'member functions given unqualified are found in the caller\'s search_path');
# ... and only there
($ret, $out, $err) = $node->psql('postgres',
	"BEGIN; SET LOCAL search_path = pg_catalog; SELECT electric.sync_shapes_to_tables('" . $group->('') . "', shape_key => 'directory'); ROLLBACK;");
like($err, qr/function "clear_tags\(text\)" does not exist/, 'not found when the caller\'s search_path does not reach them');
sql($node, "SELECT electric.sync_shapes_to_tables('" . $group->('public.') . "', shape_key => 'directory')");
ok(wait_sync($node, 'directory'), 'a group with SQL member functions syncs');
is(sql($node, "SELECT string_agg(shape || ':' || coalesce(on_must_refetch::text, '-') || ':' || coalesce(map_function::text, '-'), ',' ORDER BY shape)
	FROM electric.subscription_shapes WHERE subscription = 'directory'"),
	'people:-:map_person(jsonb),tags:clear_tags(text):-', 'subscription_shapes shows each member\'s function');
is(sql($node, "SELECT string_agg(pid || ':' || label || ':' || op, ',' ORDER BY pid) FROM person"),
	'10:PEOPLE 1:insert,20:PEOPLE 2:insert,30:PEOPLE 3:insert,40:PEOPLE 4:insert,50:PEOPLE 5:insert', 'the map_function built the snapshot rows');
is(sql($node, "SELECT string_agg(id || ':' || origin, ',' ORDER BY id) FROM tags"), '1:synced,2:synced,3:synced,4:synced,5:synced,100:local',
	'the member\'s on_must_refetch replaced the default clearing on the first load');
is(sql($node, "SELECT string_agg(fn || ':' || sub, ',') FROM refetch_calls"), 'clear_tags:directory',
	'... called once, with the group\'s name');

$server->txn('people',
	{ op => 'insert', row => { id => 6, title => 'new' } },
	{ op => 'update', row => { id => 1, title => 'renamed' } },
	{ op => 'delete', row => { id => 2 } });
ok(wait_sync($node, 'directory'), 'group live changes');
is(sql($node, "SELECT string_agg(pid || ':' || label || ':' || op, ',' ORDER BY pid) FROM person"),
	'10:RENAMED:update,30:PEOPLE 3:insert,40:PEOPLE 4:insert,50:PEOPLE 5:insert,60:NEW:insert',
	'the map_function maps inserts, updates and deletes (by the mapped key)');

sql($node, 'TRUNCATE refetch_calls');
my $people_before = sql($node, "SELECT string_agg(pid || ':' || label, ',' ORDER BY pid) FROM person");
$server->rotate('tags');
$server->txn('tags', { op => 'insert', row => { id => 6, title => 'after the refetch' } });
ok(wait_until($node, "SELECT count(*) = 1 FROM refetch_calls"), 'a must-refetch of the tags member calls its function');
ok(wait_sync($node, 'directory'), 'synced after the refetch');
is(sql($node, "SELECT string_agg(id || ':' || origin, ',' ORDER BY id) FROM tags"), '1:synced,2:synced,3:synced,4:synced,5:synced,6:synced,100:local',
	'tags reloaded by the function\'s clearing, the local row kept');
is(sql($node, "SELECT string_agg(pid || ':' || label, ',' ORDER BY pid) FROM person"), $people_before, 'the other member is untouched');
is(sub_status($node, 'directory', "state || ' ' || coalesce(last_error, 'none')"), 'live none', 'no error');

$node->stop;
$server->stop;
done_testing();
