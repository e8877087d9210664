# Groups (electric.sync_shapes_to_tables): {projects, issues} with a foreign
# key from issue to project, once DEFERRABLE INITIALLY DEFERRED and once
# immediate.  A reader polling while the group syncs never sees the initial
# snapshot half loaded, nor a source transaction half applied: no issue
# without its project, no project whose issue_count disagrees with its
# issues.  A must-refetch of one member reloads that member's table only, in
# one transaction.  The views, wait_for_sync, unsubscribe and
# delete_subscription treat the group as one subscription.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use ProjectIssues;
use SyncTest;
use Test::More;
use Time::HiRes qw(usleep time);

my $seed = $ENV{GROUP_SEED} // int(time);
srand($seed);
diag("random seed $seed (set GROUP_SEED to repeat)");

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('groups');
my $T = JSON::PP::true;
my @pcols = qw(id name issue_count);
my @icols = qw(id project_id title);

# SQL with __S__ standing for the schema
sub in_schema { my ($s, $text) = @_; $text =~ s/__S__/$s/g; return $text }

# Server tables s.project (300 rows) and s.issue (4 per project), paged;
# the same local tables with the foreign key, a trigger log, rows from
# before that the first snapshot replaces, and a reader.
sub setup
{
	my ($s, $fk) = @_;
	my $model = ProjectIssues->new($server, schema => $s, projects => 300, per_project => 4, page_rows => [ 50, 100 ]);
	sql($node, in_schema($s, qq{
		CREATE SCHEMA __S__;
		CREATE TABLE __S__.project (id int PRIMARY KEY, name text, issue_count int);
		CREATE TABLE __S__.issue (id int PRIMARY KEY, project_id int NOT NULL REFERENCES __S__.project $fk, title text);
		CREATE INDEX ON __S__.issue (project_id);
		-- rows from before the subscription: the first snapshot replaces them
		INSERT INTO __S__.project VALUES (9001, 'old 1', 2), (9002, 'old 2', 2), (9003, 'old 3', 2);
		INSERT INTO __S__.issue SELECT 90000 + g, 9001 + (g - 1) / 2, 'old' FROM generate_series(1, 6) g;
	} . q{
		CREATE TABLE __S__.log (tbl text, op text, id int, xid xid8);
		CREATE FUNCTION __S__.log_change() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO __S__.log VALUES (TG_TABLE_NAME, TG_OP, coalesce(NEW.id, OLD.id), pg_current_xact_id());
			RETURN NULL;
		END $$;
		CREATE TRIGGER log AFTER INSERT OR UPDATE OR DELETE ON __S__.project FOR EACH ROW EXECUTE FUNCTION __S__.log_change();
		CREATE TRIGGER log AFTER INSERT OR UPDATE OR DELETE ON __S__.issue FOR EACH ROW EXECUTE FUNCTION __S__.log_change();

		-- The reader: one snapshot per read (a statement), a commit after
		-- each; counts reads that find an orphan issue or a project whose
		-- issue_count is not its number of issues, and (track_counts) the
		-- distinct "projects/issues" row counts in the order first seen.
		CREATE TABLE __S__.watch_ctl (stop boolean NOT NULL);
		INSERT INTO __S__.watch_ctl VALUES (false);
		CREATE PROCEDURE __S__.watch(track_counts boolean) LANGUAGE plpgsql AS $$
		DECLARE
			reads int := 0;
			orphan_reads int := 0;
			miscount_reads int := 0;
			seen text[] := '{}';
			pair text;
			r record;
		BEGIN
			LOOP
				SELECT (SELECT count(*) FROM __S__.project) AS np,
				       (SELECT count(*) FROM __S__.issue) AS ni,
				       (SELECT count(*) FROM __S__.issue i
				         WHERE NOT EXISTS (SELECT 1 FROM __S__.project p WHERE p.id = i.project_id)) AS orphans,
				       (SELECT count(*) FROM __S__.project p
				         WHERE p.issue_count IS DISTINCT FROM
				               (SELECT count(*) FROM __S__.issue i WHERE i.project_id = p.id)) AS miscounted
				  INTO r;
				reads := reads + 1;
				IF r.orphans > 0 THEN orphan_reads := orphan_reads + 1; END IF;
				IF r.miscounted > 0 THEN miscount_reads := miscount_reads + 1; END IF;
				pair := r.np || '/' || r.ni;
				IF track_counts AND NOT pair = ANY (seen) THEN seen := seen || pair; END IF;
				COMMIT;
				EXIT WHEN (SELECT stop FROM __S__.watch_ctl) OR reads >= 1000000;
				PERFORM pg_sleep(0.002);
			END LOOP;
			RAISE NOTICE 'watch: reads=% orphans=% miscounted=% seen=%', reads, orphan_reads, miscount_reads,
				array_to_string(seen, ',');
		END $$;
	}));
	return $model;
}

sub start_watch
{
	my ($s, $track) = @_;
	sql($node, "UPDATE $s.watch_ctl SET stop = false");
	my $bg = bg_sql($node, "CALL $s.watch(" . ($track ? 'true' : 'false') . ")");
	# the reader is running once it holds a connection
	wait_until($node, "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'CALL $s.watch(%'");
	return $bg;
}

sub stop_watch
{
	my ($s, $bg) = @_;
	sql($node, "UPDATE $s.watch_ctl SET stop = true");
	my ($rc, $out, $err) = bg_finish($bg);
	return { reads => $1, orphans => $2, miscounted => $3, seen => $4 }
	  if $rc == 0 && $err =~ /watch: reads=(\d+) orphans=(\d+) miscounted=(\d+) seen=(\S*)/;
	diag("reader failed ($rc): $err");
	return { reads => 0, orphans => -1, miscounted => -1, seen => '' };
}

# The group's definition (issues first: the JSON order is not the load order)
sub group_def
{
	my ($s) = @_;
	return {
		issues => { shape => $server->shape_def("$s.issue"), schema_name => $s, table_name => 'issue', primary_key => ['id'] },
		projects => { shape => $server->shape_def("$s.project"), schema_name => $s, table_name => 'project', primary_key => ['id'] },
	};
}

sub subscribe_group
{
	my ($s, $name) = @_;
	return sql($node, "SELECT electric.sync_shapes_to_tables('" . sql_json(group_def($s)) . "', shape_key => '$name')");
}

# "handle offset" of each member
sub positions
{
	my ($name) = @_;
	my %p = map { split /\|/, $_, 2 } split /\n/,
	  sql($node, "SELECT shape || '|' || coalesce(handle, '') || ' ' || coalesce(\"offset\", '') FROM electric.subscription_shapes WHERE subscription = '$name'");
	return \%p;
}

sub log_summary
{
	my ($s) = @_;
	return sql($node, "SELECT coalesce(string_agg(tbl || ' ' || op || ' ' || n, ', ' ORDER BY tbl DESC, op), 'nothing') FROM
		(SELECT tbl, op, count(*) n FROM $s.log GROUP BY tbl, op) x");
}

sub tables_synced
{
	my ($s, $what) = @_;
	is_table_synced($node, $server, "$s.project", \@pcols, "$what: projects equal the server's");
	is_table_synced($node, $server, "$s.issue", \@icols, "$what: issues equal the server's");
}

for my $mode (qw(deferred immediate))
{
	my $s = $mode;
	my $name = "tracker_$mode";
	my $deferred = $mode eq 'deferred';
	my $model = setup($s, $deferred ? 'DEFERRABLE INITIALLY DEFERRED' : '');
	my $P = "$s.project";
	my $I = "$s.issue";

	# ---- the initial snapshot: both members land in one transaction ----------
	# (pages are slow: a reader has every chance to see one table or half of one)
	for my $t ('project', 'issue')
	{
		$server->fault(kind => 'delay', table => "$s.$t", when => 'nonlive', ms => 150, count => -1);
	}
	my $watch = start_watch($s, 1);
	usleep(200_000);
	is(subscribe_group($s, $name), $name, "$mode: sync_shapes_to_tables returns the shape_key");
	ok(wait_sync($node, $name, 90), "$mode: the group's initial sync completes");
	my $w = stop_watch($s, $watch);
	$server->clear_faults;
	is($w->{seen}, '3/6,300/1200',
		"$mode: a reader polling during the initial sync saw the old rows, then all of both snapshots, nothing in between");
	cmp_ok($w->{reads}, '>=', 20, "$mode: ... in $w->{reads} reads");
	is("$w->{orphans} $w->{miscounted}", '0 0', "$mode: ... and never an orphan issue or a wrong issue_count");
	my @preq = grep { !$_->{live} && ($_->{status} // 0) == 200 } @{ $server->requests("$s.project") };
	my @ireq = grep { !$_->{live} && ($_->{status} // 0) == 200 } @{ $server->requests("$s.issue") };
	ok(@preq >= 6 && @ireq >= 12, "$mode: both snapshots came in many pages (" . scalar(@preq) . ' and ' . scalar(@ireq) . ')');
	is(sql($node, "SELECT count(DISTINCT xid) FROM $s.log"), '1', "$mode: the old rows went and both snapshots loaded in one transaction");
	is(log_summary($s), 'project DELETE 3, project INSERT 300, issue DELETE 6, issue INSERT 1200',
		"$mode: ... that deleted the old rows of both tables and loaded both snapshots");
	tables_synced($s, "$mode: initial sync");
	is(sql($node, "SELECT string_agg(shape || ':' || position, ',' ORDER BY position) FROM electric.subscription_shapes WHERE subscription = '$name'"),
		'projects:0,issues:1', "$mode: members ordered parents first by the foreign key");

	# ---- live: source transactions over both tables, a reader polling --------
	sql($node, "TRUNCATE $s.log");
	# members out of phase: the issues' long-polls answer later than the projects'
	$server->fault(kind => 'delay', table => "$s.project", when => 'live', ms => 100, count => -1);
	$server->fault(kind => 'delay', table => "$s.issue", when => 'live', ms => 350, count => -1);
	$watch = start_watch($s, 0);
	my $txns = 0;
	for my $round (1 .. 50)
	{
		$txns += $model->round(any_order => $deferred);
		usleep(int(rand(100_000)));
	}
	$server->clear_faults;
	ok(wait_sync($node, $name, 60), "$mode: $txns source transactions synced");
	$w = stop_watch($s, $watch);
	is("$w->{orphans} $w->{miscounted}", '0 0',
		"$mode: a reader polling while they streamed never found an orphan issue or a project with a wrong issue_count");
	cmp_ok($w->{reads}, '>=', 50, "$mode: ... in $w->{reads} reads");
	my $commits = sql($node, "SELECT count(DISTINCT xid) FROM $s.log");
	cmp_ok($commits, '>=', 5, "$mode: ... over $commits local transactions");
	tables_synced($s, "$mode: live");
	is(sub_status($node, $name, "state || ' ' || errors || ' ' || coalesce(last_error, 'none')"), 'live 0 none',
		"$mode: no batch failed on the foreign key");

	# ---- a must-refetch of one member reloads its table only ----------------------
	# (the parents' under an immediate key only: deleting the old parents
	# before their children are replaced is not possible there)
	my @rotations = ('issue');
	push @rotations, 'project' if $deferred;
	for my $t (@rotations)
	{
		my ($member, $other, $ot) = $t eq 'issue' ? ('issues', 'projects', 'project') : ('projects', 'issues', 'issue');
		sql($node, "TRUNCATE $s.log");
		my $before = positions($name);
		my $rows = sql($node, "SELECT count(*) FROM $s.$t");
		my $counts = sql($node, "SELECT (SELECT count(*) FROM $P) || '/' || (SELECT count(*) FROM $I)");
		$server->clear_requests;
		# slow pages again, a reader polling
		$server->fault(kind => 'delay', table => "$s.$t", when => 'nonlive', ms => 150, count => -1);
		$watch = start_watch($s, 1);
		$server->rotate("$s.$t");
		ok(wait_until($node, "SELECT handle <> '" . (split / /, $before->{$member})[0] . "' FROM electric.subscription_shapes WHERE subscription = '$name' AND shape = '$member'"),
			"$mode: rotating $t gives member $member a new handle");
		ok(wait_sync($node, $name), "$mode: synced after the refetch of $member");
		$w = stop_watch($s, $watch);
		$server->clear_faults;
		is("$w->{seen} $w->{orphans} $w->{miscounted}", "$counts 0 0",
			"$mode: a reader polling during the refetch of $member never saw a row count change, an orphan or a wrong issue_count ($w->{reads} reads)");
		ok((grep { ($_->{status} // 0) == 409 } @{ $server->requests("$s.$t") }), "$mode: the server answered 409 for $t");
		is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests("$s.$ot") }), 0,
			"$mode: ... and $other did not restart");
		is(log_summary($s), "$t DELETE $rows, $t INSERT $rows", "$mode: only the $t table was replaced");
		is(sql($node, "SELECT count(DISTINCT xid) FROM $s.log"), '1', "$mode: ... in one transaction");
		is(positions($name)->{$other}, $before->{$other}, "$mode: the position of $other is untouched");
		tables_synced($s, "$mode: after the refetch of $member");
	}

	next if $deferred;

	# ---- the group in the views, wait_for_sync, unsubscribe, delete ---------------
	is(sub_status($node, $name, "shape_count || ' ' || num_nulls(schema_name, table_name, shape_url, shape_params, shape_headers, handle, \"offset\", primary_key, map_columns, map_function, on_must_refetch)"),
		'2 11', 'electric.subscriptions: one row for the group, shape_count 2, the per-shape columns NULL');
	is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE name = '$name'"), '1', '... exactly one row');
	is(sql($node, "SELECT string_agg(concat_ws(' ', shape, position, schema_name || '.' || table_name, shape_url = '" . $server->shape_url . "',
			shape_params->>'table', handle ~ '^\\d+-\\d+\$', \"offset\" ~ '^\\d+_(\\d+|inf)\$', is_up_to_date, primary_key), ', ' ORDER BY position)
			FROM electric.subscription_shapes WHERE subscription = '$name'"),
		"projects 0 $s.project t $s.project t t t {id}, issues 1 $s.issue t $s.issue t t t {id}",
		'electric.subscription_shapes: one row per member with its table, URL, params, handle and offset');
	is(sql($node, "SELECT (SELECT rows_applied FROM electric.subscriptions WHERE name = '$name') =
		(SELECT sum(rows_applied) FROM electric.subscription_shapes WHERE subscription = '$name')"), 't',
		'the group\'s rows_applied is the sum of its members\'');

	# wait_for_sync is a barrier for every member
	$server->multi_txn(
		{ table => $P, op => 'insert', row => { id => 6000, name => 'barrier', issue_count => 1 } },
		{ table => $I, op => 'insert', row => { id => 60000, project_id => 6000, title => 'barrier' } });
	ok(wait_sync($node, $name), 'wait_for_sync on the group');
	is(sql($node, "SELECT (SELECT name FROM $P WHERE id = 6000) || ' ' || (SELECT title FROM $I WHERE id = 60000)"), 'barrier barrier',
		'... returns once everything the server had at the call is in both tables');

	# unsubscribe keeps the rows and every member's position
	sql($node, "SELECT electric.unsubscribe('$name')");
	ok(wait_until($node, "SELECT state = 'stopped' AND worker_pid IS NULL FROM electric.subscriptions WHERE name = '$name'"),
		'unsubscribe stops the group');
	is(sql($node, "SELECT electric.wait_for_sync('$name', '5 s')"), 'f', 'wait_for_sync on the stopped group is false');
	my $stopped = positions($name);
	sql($node, "TRUNCATE $s.log");
	$server->multi_txn(
		{ table => $P, op => 'insert', row => { id => 5000, name => 'while stopped', issue_count => 1 } },
		{ table => $I, op => 'insert', row => { id => 50000, project_id => 5000, title => 'while stopped' } });
	sleep 2;
	is(log_summary($s), 'nothing', 'a stopped group applies nothing');
	$server->clear_requests;
	is(subscribe_group($s, $name), $name, 'subscribing again with the same shape_key');
	ok(wait_sync($node, $name), '... syncs');
	for my $m (qw(projects issues))
	{
		my $t = $m eq 'projects' ? $P : $I;
		my ($first) = sort { $a->{t} <=> $b->{t} } @{ $server->requests($t) };
		is(($first->{query}{handle} // '') . ' ' . $first->{query}{offset}, $stopped->{$m},
			"... member $m resumed from its stored handle and offset");
	}
	is(log_summary($s), 'project INSERT 1, issue INSERT 1', '... and applied only what it missed');
	tables_synced($s, 'resumed group');

	# delete_subscription forgets the group, the rows stay
	sql($node, "SELECT electric.delete_subscription('$name')");
	is(sql($node, "SELECT (SELECT count(*) FROM electric.subscriptions WHERE name = '$name') || ' ' ||
		(SELECT count(*) FROM electric.subscription_shapes WHERE subscription = '$name')"), '0 0',
		'delete_subscription removes the group from both views');
	ok(wait_until($node, "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'pglite_sync $name'"),
		'... and its worker exits');
	tables_synced($s, 'after delete_subscription the rows stay');
	$server->multi_txn({ table => $P, op => 'update', row => { id => 5000, name => 'after delete' } });
	sleep 1;
	is(sql($node, "SELECT name FROM $P WHERE id = 5000"), 'while stopped', '... and nothing is synced any more');
	my ($ret, $stdout, $stderr) = $node->psql('postgres', "SELECT electric.wait_for_sync('$name', '1 s')");
	like($stderr, qr/subscription "$name" does not exist/, 'wait_for_sync on the deleted group: unknown subscription');
}

$node->stop;
$server->stop;
done_testing();
