# Several shapes into one table (the seed's pattern): two subscriptions with
# different where clauses, each with an on_must_refetch that clears only its
# own rows.  A refetch of one leaves the other's rows alone, and an
# on_must_refetch that fails rolls its transaction back and is recorded.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('shared');
my $T = JSON::PP::true;

$server->create_table(
	name => 'tasks',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'team', type => 'text' }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", team => ($_ <= 5 ? 'red' : 'blue'), title => "task $_" } } 1 .. 10 ]);
$server->create_table(
	name => 'notes',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'team', type => 'text' }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", team => 'green', title => "note $_" } } 11 .. 13 ]);

sql($node, q{
	CREATE TABLE tasks (id int PRIMARY KEY, team text, title text);
	INSERT INTO tasks VALUES (100, 'local', 'not synced by anyone');
	CREATE TABLE refetch_calls (sub text, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION clear_team(sub text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO refetch_calls (sub) VALUES (sub);
		IF sub = 'green' AND EXISTS (SELECT 1 FROM tasks WHERE title = 'poison') THEN
			RAISE EXCEPTION 'refusing to clear team %', sub;
		END IF;
		DELETE FROM tasks WHERE team = sub;
	END $$;
});
for my $team (qw(red blue))
{
	sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('tasks', where => "team = '$team'") . "', 'tasks', '{id}', shape_key => '$team', on_must_refetch => 'clear_team(text)')");
}
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('notes') . "', 'tasks', '{id}', shape_key => 'green', on_must_refetch => 'clear_team(text)')");
ok(wait_sync($node, 'red') && wait_sync($node, 'blue') && wait_sync($node, 'green'), 'three shapes synced into one table');
is(sql($node, "SELECT string_agg(team || ':' || count, ',' ORDER BY team) FROM (SELECT team, count(*) FROM tasks GROUP BY team) c"),
	'blue:5,green:3,local:1,red:5', 'each shape loaded its rows; the local row is untouched');
is(sql($node, "SELECT string_agg(sub, ',' ORDER BY sub) FROM refetch_calls"), 'blue,green,red',
	'the first load of each called its on_must_refetch instead of DELETE FROM the table');

# refetch only the tasks shapes (rotating the tasks table): notes' rows stay
sql($node, "TRUNCATE refetch_calls");
$server->rotate('tasks');
$server->txn('tasks', { op => 'update', row => { id => '1', title => 'red after refetch' } });
ok(wait_until($node, "SELECT count(*) = 2 FROM refetch_calls"), 'both tasks subscriptions refetched');
ok(wait_sync($node, 'red') && wait_sync($node, 'blue'), 'synced again');
is(sql($node, "SELECT string_agg(team || ':' || count, ',' ORDER BY team) FROM (SELECT team, count(*) FROM tasks GROUP BY team) c"),
	'blue:5,green:3,local:1,red:5', 'a refetch of one shape leaves the other shapes\' rows and local rows alone');
is(sql($node, "SELECT title FROM tasks WHERE id = 1"), 'red after refetch', 'the refetched shape has its new data');

# a failing on_must_refetch: the refetch transaction rolls back, the error is recorded
sql($node, "UPDATE tasks SET title = 'poison' WHERE id = 100");
$server->rotate('notes');
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'green'"), 'failing on_must_refetch: state error');
like(sub_status($node, 'green', 'last_error'), qr/refusing to clear team green/, 'last_error carries the function\'s error');
is(sql($node, "SELECT count(*) FROM tasks WHERE team = 'green'"), '3', 'nothing was deleted: the transaction rolled back');
is(sql($node, "SELECT count(*) FROM refetch_calls WHERE sub = 'green'"), '0', 'not even the function\'s own writes survive');
is(sub_status($node, 'red', 'state'), 'live', 'the other subscriptions are unaffected');
sql($node, "UPDATE tasks SET title = 'fine' WHERE id = 100");
ok(wait_until($node, "SELECT state = 'live' FROM electric.subscriptions WHERE name = 'green'", 20), 'recovers once the cause is fixed');
is(sql($node, "SELECT count(*) FROM tasks WHERE team = 'green'"), '3', 'green rows reloaded');

# since 0.2 a subscription without on_must_refetch may join too: its start
# from -1 replaces only the rows no other shape holds
my $before = sql($node, "SELECT string_agg(team || ':' || n, ',' ORDER BY team) FROM (SELECT team, count(*) n FROM tasks WHERE team <> 'local' GROUP BY team) x");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('notes', where => "team = 'red'") . "', 'tasks', '{id}', shape_key => 'plain')");
ok(wait_sync($node, 'plain'), 'a subscription without on_must_refetch joins the shared table');
is(sql($node, "SELECT string_agg(team || ':' || n, ',' ORDER BY team) FROM (SELECT team, count(*) n FROM tasks GROUP BY team) x"),
	$before, 'the other shapes\' rows stay; the local row, held by no shape, was replaced');

$node->stop;
$server->stop;
done_testing();
