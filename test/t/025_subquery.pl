# Subquery shapes (Electric 1.7): a shape of issues whose project is in a
# subquery over another table.  Rows carry tags; when a project leaves the
# subquery the server sends a move-out event and its issues must go, exactly
# those; when it comes back they move in again (as upserts).  The tag state
# is kept in electric.row_tags, in the same transaction as the data, and
# found through its GIN index.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('subquery');
my $T = JSON::PP::true;
my @cols = qw(id project_id title);

$server->create_table(
	name => 'projects',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'org', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => $_, org => ($_ <= 3 ? 'acme' : 'other') } } 1 .. 5 ]);
$server->create_table(
	name => 'issues',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'project_id', type => 'int4' },
		{ name => 'title', type => 'text' }, { name => 'priority', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => $_, project_id => 1 + $_ % 5, title => "issue $_", priority => ($_ % 7 == 0 ? 'high' : 'low') } } 1 .. 3000 ]);

my $in_acme = "project_id IN (SELECT id FROM projects WHERE org = 'acme')";

# what the shape holds on the server: issues of projects in acme (and, for
# the mixed shape, high-priority ones)
sub expected
{
	my ($mixed) = @_;
	my %acme = map { $_->{id} => 1 } grep { $_->{org} eq 'acme' } @{ $server->rows('projects') };
	return [ sort map { "$_->{id}|$_->{project_id}|$_->{title}" }
		grep { $acme{ $_->{project_id} } || ($mixed && $_->{priority} eq 'high') } @{ $server->rows('issues') } ];
}

sub local_rows
{
	my ($table) = @_;
	return table_lines($node, $table, @cols);
}

sql($node, q{
	CREATE TABLE issues (id int PRIMARY KEY, project_id int, title text);
	CREATE TABLE mixed (id int PRIMARY KEY, project_id int, title text);
	CREATE TABLE deleted_log (id int);
	CREATE TABLE block_deletes (on_ boolean);
	INSERT INTO block_deletes VALUES (false);
	CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT on_ FROM public.block_deletes) THEN
			RAISE EXCEPTION 'deletes are blocked for now';
		END IF;
		INSERT INTO public.deleted_log VALUES (OLD.id);
		RETURN OLD;
	END $$;
	CREATE TRIGGER log_delete BEFORE DELETE ON issues FOR EACH ROW EXECUTE FUNCTION log_delete();
});

sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('issues', where => $in_acme, columns => 'id,project_id,title')
	. "', 'issues', '{id}', shape_key => 'issues')");
ok(wait_sync($node, 'issues'), 'a subquery shape syncs');
is_deeply(local_rows('issues'), expected(0), 'the initial snapshot: the issues of acme\'s projects');
is(sql($node, "SELECT count(*) FROM electric.row_tags"), scalar(@{ expected(0) }), 'every row has its tag state');

# ---- a project leaves the subquery: its issues move out ----
$server->txn('projects', { op => 'update', row => { id => 2, org => 'other' } });
ok(wait_until($node, "SELECT count(*) = 0 FROM issues WHERE project_id = 2"), 'project 2 left acme: its issues are gone');
ok(wait_sync($node, 'issues'), 'up to date');
is_deeply(local_rows('issues'), expected(0), 'exactly the issues the server\'s shape no longer holds went');
is(sql($node, "SELECT count(*) FROM deleted_log"), '600', 'one delete per issue of project 2');
is(sql($node, "SELECT count(*) FROM electric.row_tags"), scalar(@{ expected(0) }), 'their tag state went with them');
# the lookup a move-out makes, as the worker's prepared statement plans it,
# on a tag state of 200,000 rows: an index scan, not a scan of them all
my $subid = sql($node, "SELECT subid FROM electric.subscription_shape WHERE shape = 'issues'");
sql($node, "INSERT INTO electric.row_tags (subid, shape, key, entries, tags, pk)
	SELECT $subid, 'issues', 'synthetic/' || g, ARRAY['0:synthetic' || g], ARRAY['synthetic' || g], ARRAY[g::text]
	FROM generate_series(1, 200000) g; ANALYZE electric.row_tags");
like(sql($node, "SET plan_cache_mode = force_generic_plan;
	PREPARE lookup(integer, text, text[]) AS SELECT key, entries, active, tags, pk FROM electric.row_tags
	  WHERE entries OPERATOR(pg_catalog.&&) \$3 AND subid = \$1 AND shape = \$2;
	EXPLAIN EXECUTE lookup($subid, 'issues', ARRAY['0:synthetic7'])"),
	qr/Bitmap Index Scan on row_tags_entries/, 'a move-out\'s lookup uses the GIN index');
sql($node, "DELETE FROM electric.row_tags WHERE key LIKE 'synthetic/%'; ANALYZE electric.row_tags");
is(sub_status($node, 'issues', "state || ' ' || coalesce(last_error, 'none')"), 'live none', 'live, no error');

# ---- it comes back: its issues move in again ----
$server->txn('projects', { op => 'update', row => { id => 2, org => 'acme' } });
ok(wait_until($node, "SELECT count(*) = 600 FROM issues WHERE project_id = 2"), 'project 2 is back: its issues moved in');
ok(wait_sync($node, 'issues'), 'up to date');
is_deeply(local_rows('issues'), expected(0), 'the table equals the shape again');

# ---- changes of tagged rows: an issue moved to another project ----
$server->txn('issues', { op => 'update', row => { id => 1, project_id => 4 } });	# to "other": leaves
$server->txn('issues', { op => 'update', row => { id => 3, project_id => 5 } });	# to "other": leaves
$server->txn('issues', { op => 'update', row => { id => 4, project_id => 1 } });	# stays in acme
ok(wait_sync($node, 'issues'), 'issues moved between projects');
is_deeply(local_rows('issues'), expected(0), 'rows that left by their own change went, others were updated');
# and the tags follow the change: project 1 leaving takes issue 4 with it now
$server->txn('projects', { op => 'update', row => { id => 1, org => 'other' } });
ok(wait_until($node, "SELECT count(*) = 0 FROM issues WHERE project_id = 1"), 'project 1 left: its issues, issue 4 included, are gone');
ok(wait_sync($node, 'issues'), 'up to date');
is_deeply(local_rows('issues'), expected(0), 'the table equals the shape');

# ---- a move-out whose batch fails, across a restart: applied once fixed ----
sql($node, "UPDATE block_deletes SET on_ = true");
$server->txn('projects', { op => 'update', row => { id => 3, org => 'other' } });
ok(wait_until($node, "SELECT last_error LIKE '%deletes are blocked%' FROM electric.subscriptions WHERE name = 'issues'"),
	'the move-out\'s batch fails (the table refuses the deletes)');
is(sql($node, "SELECT count(*) FROM issues WHERE project_id = 3"), '600', '... nothing of it applied');
$node->stop('immediate');
$node->start;
sql($node, "UPDATE block_deletes SET on_ = false");
ok(wait_until($node, "SELECT count(*) = 0 FROM issues WHERE project_id = 3", 30), 'after a crash and the fix, the move-out is applied');
ok(wait_sync($node, 'issues'), 'up to date');
is_deeply(local_rows('issues'), expected(0), 'the table equals the shape');

# ---- a shape that mixes plain and tagged rows ----
sql($node, "SELECT electric.sync_shape_to_table('"
	. $server->shape('issues', where => "$in_acme OR priority = 'high'", columns => 'id,project_id,title')
	. "', 'mixed', '{id}', shape_key => 'mixed')");
ok(wait_sync($node, 'mixed'), 'a shape with a subquery OR a plain condition syncs');
is_deeply(local_rows('mixed'), expected(1), 'its snapshot');
$server->txn('projects', { op => 'update', row => { id => 1, org => 'acme' } }, { op => 'update', row => { id => 5, org => 'acme' } });
ok(wait_sync($node, 'mixed') && wait_sync($node, 'issues'), 'two projects joined acme');
is_deeply(local_rows('mixed'), expected(1), 'mixed: their issues moved in, high-priority ones kept');
is_deeply(local_rows('issues'), expected(0), 'issues: their issues moved in');
$server->txn('projects', { op => 'update', row => { id => 5, org => 'other' } });
ok(wait_until($node, "SELECT count(*) = 0 FROM issues WHERE project_id = 5")
	&& wait_sync($node, 'mixed') && wait_sync($node, 'issues'), 'project 5 left again');
is_deeply(local_rows('mixed'), expected(1), 'mixed: high-priority issues of project 5 stay, the others went');
is_deeply(local_rows('issues'), expected(0), 'issues: all of project 5\'s went');

# ---- a refetch forgets the old tag state ----
my $before = sql($node, "SELECT count(*) FROM electric.row_tags WHERE shape = 'issues'");
$server->rotate('issues');
ok(wait_until($node, "SELECT handle IS NOT NULL AND is_up_to_date FROM electric.subscriptions WHERE name = 'issues'", 30)
	&& wait_sync($node, 'issues'), 'a must-refetch reloads the shape');
is_deeply(local_rows('issues'), expected(0), 'the table equals the shape');
is(sql($node, "SELECT count(*) FROM electric.row_tags WHERE shape = 'issues'"), scalar(@{ expected(0) }),
	'one tag state per row, for the new handle');
$server->txn('projects', { op => 'update', row => { id => 1, org => 'other' } });
ok(wait_until($node, "SELECT count(*) = 0 FROM issues WHERE project_id = 1") && wait_sync($node, 'issues'),
	'a move-out after the refetch matches the new handle\'s tags');
is_deeply(local_rows('issues'), expected(0), 'the table equals the shape');

# ---- delete_subscription forgets the tag state ----
sql($node, "SELECT electric.delete_subscription('mixed')");
is(sql($node, "SELECT count(*) FROM electric.row_tags WHERE shape = 'mixed'"), '0', 'delete_subscription drops its tag state');

# ---- a shared table: a row that moves out of one shape but another holds stays ----
sql($node, "CREATE TABLE shared_issues (id int PRIMARY KEY, project_id int, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('issues', where => $in_acme, columns => 'id,project_id,title')
	. "', 'shared_issues', '{id}', shape_key => 'by_project')");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('issues', where => "priority = 'high'", columns => 'id,project_id,title')
	. "', 'shared_issues', '{id}', shape_key => 'by_priority')");
ok(wait_sync($node, 'by_project') && wait_sync($node, 'by_priority'), 'two shapes into one table, one with a subquery');
is_deeply(local_rows('shared_issues'), expected(1), 'the table is the union of both');
$server->txn('projects', { op => 'update', row => { id => 2, org => 'other' } });
ok(wait_until($node, "SELECT count(*) = (SELECT count(*) FROM shared_issues s WHERE project_id = 2 AND id % 7 = 0) FROM shared_issues WHERE project_id = 2")
	&& wait_sync($node, 'by_project') && wait_sync($node, 'by_priority'), 'project 2 left acme');
is_deeply(local_rows('shared_issues'), expected(1), 'its issues went, except the high-priority ones the other shape holds');

# ---- a group member with a subquery ----
# (deferred: the issues shape, made earlier by the server, starts from an
# older snapshot whose issues the move-outs after it remove within the batch)
sql($node, "CREATE TABLE g_projects (id int PRIMARY KEY, org text); CREATE TABLE g_issues (id int PRIMARY KEY, project_id int REFERENCES g_projects DEFERRABLE INITIALLY DEFERRED, title text)");
sql($node, "SELECT electric.sync_shapes_to_tables('" . sql_json({
	projects => { shape => $server->shape_def('projects', where => "org = 'acme'"), table_name => 'g_projects', primary_key => ['id'] },
	issues => { shape => $server->shape_def('issues', where => $in_acme, columns => 'id,project_id,title'), table_name => 'g_issues', primary_key => ['id'] },
}) . "', shape_key => 'group')");
ok(wait_sync($node, 'group'), 'a group with a subquery member syncs');
is_deeply(local_rows('g_issues'), expected(0), 'its issues');
$server->txn('projects', { op => 'update', row => { id => 3, org => 'acme' } });
ok(wait_until($node, "SELECT count(*) > 0 FROM g_issues WHERE project_id = 3") && wait_sync($node, 'group'), 'project 3 joined acme');
is_deeply(local_rows('g_issues'), expected(0), 'its issues moved in, with their project (the foreign key holds)');
$server->txn('projects', { op => 'update', row => { id => 3, org => 'other' } });
ok(wait_until($node, "SELECT count(*) = 0 FROM g_issues WHERE project_id = 3") && wait_sync($node, 'group'), 'project 3 left');
is_deeply(local_rows('g_issues'), expected(0), 'its issues moved out, and the project with them');
is(sql($node, "SELECT count(*) FROM g_projects WHERE id = 3"), '0', 'the project left the other member');

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC|TRAP/, 'no crash');
$node->stop;
$server->stop;
done_testing();
