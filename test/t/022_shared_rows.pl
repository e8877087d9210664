# Shared tables: two single-shape subscriptions whose shapes overlap in one
# table ("low": n <= 6, "high": 4 <= n <= 10, over the same server table).
# Each row is held by the shapes that delivered it: a row that leaves one
# shape but stays in the other stays; a row deleted at the source goes once
# both shapes delivered the delete; a refetch of one shape keeps the rows the
# other holds; the table is the union of the two shapes; delete_subscription
# of one leaves its rows, unowned.  Four scenarios, each on its own table:
#   (a) both running, one worker frozen (SIGSTOP) while the other applies,
#       so that the order in which they deliver is known;
#   (b) one shape unsubscribed while the other moves on, then resubscribed;
#   (c) a new subscription to a shape the server made earlier: its snapshot
#       and log replay older versions of rows the other shape holds;
#   (d) both workers applying the same source transaction at the same time
#       (one held inside its transaction by an advisory lock).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;
use Time::HiRes qw(usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('shared_rows');
my $T = JSON::PP::true;
my %where = (low => 'n <= 6', high => 'n >= 4 AND n <= 10');
my %in = (low => sub { $_[0] <= 6 }, high => sub { $_[0] >= 4 && $_[0] <= 10 });
my $t;	# the table of the scenario

# Held by the test while a scenario wants the worker of $t's low shape to
# wait inside its apply transaction (see the trigger below).
my $gate = $node->background_psql('postgres');
sql($node, q{
	CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()) = 'pglite_sync ' || TG_ARGV[0] THEN
			PERFORM pg_advisory_xact_lock_shared(4242);
		END IF;
		RETURN NULL;
	END $$;
});

sub make_table
{
	($t) = @_;
	$server->create_table(
		name => $t,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'n', type => 'int4' }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		rows => [ map { { id => $_, n => $_, title => "item $_" } } 1 .. 12 ]);
	sql($node, qq{
		CREATE TABLE $t (id int PRIMARY KEY, n int, title text);
		CREATE TABLE ${t}_log (op text, id int, n int, xid xid8);
		CREATE FUNCTION ${t}_log() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN
			INSERT INTO ${t}_log VALUES (TG_OP, coalesce(NEW.id, OLD.id), coalesce(NEW.n, OLD.n), pg_current_xact_id());
			RETURN NULL;
		END \$\$;
		CREATE TRIGGER log AFTER INSERT OR UPDATE OR DELETE ON $t FOR EACH ROW EXECUTE FUNCTION ${t}_log();
		CREATE TRIGGER gate AFTER INSERT OR UPDATE OR DELETE ON $t FOR EACH ROW EXECUTE FUNCTION gate('${t}_low');
	});
}

# subscription "<table>_low" / "<table>_high"
sub subscribe
{
	my ($shape) = @_;
	sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape($t, where => $where{$shape}) . "', '$t', '{id}', shape_key => '${t}_$shape')");
}
sub synced { my $ok = 1; $ok &&= wait_sync($node, "${t}_$_") for @_; return $ok }

sub ids { my ($q) = @_; return sql($node, "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM ($q) x") }

# the local table as "id:n:title", and the rows of the server table that the
# given shapes select
sub local_rows { return sql($node, "SELECT coalesce(string_agg(id || ':' || n || ':' || title, ',' ORDER BY id), '') FROM $t") }
sub union_rows
{
	my @shapes = @_;
	my @rows = sort { $a->{id} <=> $b->{id} } grep { my $r = $_; grep { $in{$_}->($r->{n}) } @shapes } @{ $server->rows($t) };
	return join(',', map { "$_->{id}:$_->{n}:$_->{title}" } @rows);
}

# "high=<ids> low=<ids>": the rows of the table each shape holds
sub holds
{
	return sql($node, "SELECT coalesce(string_agg(regexp_replace(shape, '^${t}_', '') || '=' || ids, ' ' ORDER BY shape), 'none') FROM
		(SELECT h.shape, string_agg(i.id::text, ',' ORDER BY i.id) ids FROM electric.row_hold h
		   JOIN $t i ON h.relid = '$t'::regclass AND h.key = ARRAY[encode(int4send(i.id), 'hex')]
		  GROUP BY h.shape) x");
}

# Freeze the worker of one shape while it waits for the server (no
# transaction open), so that the other shape delivers first; thaw it.
my %frozen;
END { kill 'CONT', keys %frozen if %frozen }
sub freeze
{
	my ($shape) = @_;
	my $name = "${t}_$shape";
	wait_until($node, "SELECT count(*) = 1 FROM pg_stat_activity a JOIN electric.subscriptions s ON a.pid = s.worker_pid
		WHERE s.name = '$name' AND a.xact_start IS NULL");
	my $pid = sub_status($node, $name, 'worker_pid');
	kill 'STOP', $pid;
	$frozen{$pid} = 1;
	# it did not slip into a transaction meanwhile
	if (sql($node, "SELECT xact_start IS NULL FROM pg_stat_activity WHERE pid = $pid") ne 't')
	{
		kill 'CONT', $pid;
		usleep(100_000);
		return freeze($shape);
	}
	return $pid;
}
sub thaw { kill 'CONT', $_[0]; delete $frozen{ $_[0] } }

# ==== (a) both running, in a known order =============================================
make_table('items_a');
subscribe('low');
ok(synced('low'), 'a: low synced');
is(ids("SELECT id FROM $t"), '1,2,3,4,5,6', 'a: low alone: its six rows');
is(sql($node, "SELECT count(*) FROM electric.row_hold"), '0', 'a: a table with one subscription keeps no holds');

subscribe('high');
ok(synced('high'), 'a: high joins the same table');
is(local_rows(), union_rows(qw(low high)), 'a: the table is the union of both shapes');
is(holds(), 'high=4,5,6,7,8,9,10 low=1,2,3,4,5,6', 'a: each shape holds the rows it delivered (low\'s holds backfilled when high joined)');
is(sql($node, "SELECT count(*) FROM ${t}_log WHERE op = 'DELETE'"), '0', 'a: high\'s first load deleted none of low\'s rows');
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE name LIKE '${t}_%' AND state = 'live' AND last_error IS NULL"), '2',
	'a: both subscriptions live, no error');

# low delivers first: rows leave one shape, leave both, are deleted
my $pid = freeze('high');
$server->txn($t, { op => 'update', row => { id => 8, n => 2, title => 'moved to low only' } });
$server->txn($t, { op => 'update', row => { id => 6, n => 9, title => 'moved to high only' } });
$server->txn($t, { op => 'update', row => { id => 4, n => 11, title => 'moved out of both' } });
$server->txn($t, { op => 'update', row => { id => 1, n => 12, title => 'moved out of low' } });
$server->txn($t, { op => 'delete', row => { id => 7 } });
$server->txn($t, { op => 'delete', row => { id => 5 } });
ok(synced('low'), 'a: low synced while high is frozen');
is(local_rows(), '2:2:item 2,3:3:item 3,4:4:item 4,5:5:item 5,6:6:item 6,7:7:item 7,8:2:moved to low only,9:9:item 9,10:10:item 10',
	'a: rows that left low or were deleted stay while high holds them (4, 5, 6); a row only low held goes (1); low\'s new row is in (8)');
is(holds(), 'high=4,5,6,7,8,9,10 low=2,3,8', 'a: low released 1, 4, 5 and 6 and took 8');
thaw($pid);
ok(synced('high'), 'a: high synced');
is(local_rows(), union_rows(qw(low high)), 'a: once high delivered too, the table is the union of both shapes');
is(ids("SELECT id FROM $t WHERE id IN (1, 4, 5, 7)"), '', 'a: ... rows deleted by both (5) or that left both (4) are gone');
is(holds(), 'high=6,9,10 low=2,3,8', 'a: holds follow the shapes');

# high delivers first
$pid = freeze('low');
$server->txn($t, { op => 'update', row => { id => 9, n => 3, title => 'moved to low only' } });
$server->txn($t, { op => 'update', row => { id => 2, n => 5, title => 'now in both' } });
$server->txn($t, { op => 'delete', row => { id => 3 } });
$server->txn($t, { op => 'delete', row => { id => 6 } });
ok(synced('high'), 'a: high synced while low is frozen');
is(local_rows(), '2:5:now in both,3:3:item 3,8:2:moved to low only,10:10:item 10',
	'a: rows only high held go (6, and 9 until low delivers it); low\'s rows stay (3); a row entering high is updated (2)');
thaw($pid);
ok(synced('low'), 'a: low synced');
is(local_rows(), union_rows(qw(low high)), 'a: once low delivered too, the table is the union of both shapes');
is(holds(), 'high=2,10 low=2,8,9', 'a: holds follow the shapes');

# a refetch of one shape (a 409 with a new handle) keeps the rows the other holds
sql($node, "TRUNCATE ${t}_log");
my %handle = map { ($_ => sub_status($node, "${t}_$_", 'handle')) } qw(low high);
$server->fault(kind => 'repeat_409', table => $t, when => 'nonlive', count => 1);
ok(synced('low'), 'a: low synced through a 409');
isnt(sub_status($node, "${t}_low", 'handle'), $handle{low}, 'a: low has a new handle');
is(sub_status($node, "${t}_high", 'handle'), $handle{high}, 'a: high did not refetch');
is(ids("SELECT id FROM ${t}_log WHERE op = 'DELETE'"), '8,9', 'a: low\'s refetch deleted only the rows no other shape holds');
is(sql($node, "SELECT count(DISTINCT xid) FROM ${t}_log"), '1', 'a: ... in the transaction that loaded its new snapshot');
is(local_rows(), union_rows(qw(low high)), 'a: the table is still the union of both shapes');
is(holds(), 'high=2,10 low=2,8,9', 'a: holds as before');

# both shapes refetch at once (the table rotates); a change published
# meanwhile lands in both
%handle = map { ($_ => sub_status($node, "${t}_$_", 'handle')) } qw(low high);
$server->rotate($t);
$server->txn($t, { op => 'insert', row => { id => 13, n => 5, title => 'in both' } });
ok(wait_until($node, "SELECT count(*) = 2 FROM electric.subscriptions WHERE name IN ('${t}_low', '${t}_high')
	AND handle NOT IN ('$handle{low}', '$handle{high}')"), 'a: rotating the table gives both shapes new handles');
ok(synced(qw(low high)), 'a: both synced after the rotation');
is(local_rows(), union_rows(qw(low high)), 'a: the table is the union of both shapes after both refetched');
is(holds(), 'high=2,10,13 low=2,8,9,13', 'a: a row in both shapes is held by both');

# delete_subscription of one: its rows stay, unowned
sql($node, "SELECT electric.delete_subscription('${t}_low')");
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE name = '${t}_low'"), '0', 'a: low deleted');
is(holds(), 'high=2,10,13', 'a: its holds are forgotten');
is(ids("SELECT id FROM $t"), '2,8,9,10,13', 'a: its rows stay');
$server->txn($t, { op => 'update', row => { id => 8, title => 'not synced any more' } });
$server->txn($t, { op => 'delete', row => { id => 13 } });
$server->txn($t, { op => 'update', row => { id => 10, title => 'high still syncs' } });
ok(synced('high'), 'a: high synced');
is(sql($node, "SELECT title FROM $t WHERE id = 8"), 'moved to low only', 'a: an unowned row is not synced any more');
is(ids("SELECT id FROM $t WHERE id = 13"), '', 'a: a row that only high holds now goes with high\'s delete');
is(sql($node, "SELECT title FROM $t WHERE id = 10"), 'high still syncs', 'a: high goes on');
is(sub_status($node, "${t}_high", "state || ' ' || coalesce(last_error, 'none')"), 'live none', 'a: high live, no error');

# ==== (b) one shape unsubscribed while the other moves on ==============================
make_table('items_b');
subscribe('low');
subscribe('high');
ok(synced(qw(low high)), 'b: both synced');
is(holds(), 'high=4,5,6,7,8,9,10 low=1,2,3,4,5,6', 'b: holds');
sql($node, "SELECT electric.unsubscribe('${t}_high')");
ok(wait_until($node, "SELECT worker_pid IS NULL FROM electric.subscriptions WHERE name = '${t}_high'"), 'b: high stopped');
$server->txn($t, { op => 'update', row => { id => 5, n => 9, title => 'moved to high only' } });
$server->txn($t, { op => 'delete', row => { id => 6 } });
ok(synced('low'), 'b: low synced the move and the delete');
is(ids("SELECT id FROM $t WHERE id IN (5, 6)"), '5,6',
	'b: a row that left low (5) and a row deleted at the source (6) both stay while the stopped high holds them');
is(ids("SELECT id FROM ${t}_log WHERE op = 'DELETE'"), '', 'b: ... no delete reached the table');
is(holds(), 'high=4,5,6,7,8,9,10 low=1,2,3,4', 'b: low released its holds of 5 and 6');
my $stopped_at = sql($node, "SELECT handle || ' ' || \"offset\" FROM electric.subscription_shapes WHERE subscription = '${t}_high'");
$server->clear_requests;
subscribe('high');
ok(synced('high'), 'b: high resubscribed');
my ($first) = sort { $a->{t} <=> $b->{t} } grep { ($_->{query}{where} // '') eq $where{high} } @{ $server->requests($t) };
is("$first->{query}{handle} $first->{query}{offset}", $stopped_at, 'b: ... and resumed from its stored position');
is(sql($node, "SELECT n || ':' || title FROM $t WHERE id = 5"), '9:moved to high only', 'b: row 5 stays, with high\'s version');
{
	is(holds(), 'high=4,5,7,8,9,10 low=1,2,3,4', 'b: after high resumed, each shape holds only what it delivered');
	is(ids("SELECT id FROM $t WHERE id = 6"), '', 'b: row 6 went once both shapes delivered its delete');
	is(local_rows(), union_rows(qw(low high)), 'b: the table is the union of both shapes');
}
$server->txn($t, { op => 'delete', row => { id => 7 } });
ok(synced('high'), 'b: high synced a delete of a row only it delivered');
{
	is(ids("SELECT id FROM $t WHERE id = 7"), '', 'b: ... the row is gone');
}

# ==== (c) a new subscription to a shape the server made earlier ===========================
make_table('items_c');
is($server->create_shape($t, where => $where{low}), 200, 'c: a client asked for low\'s shape: the server has its snapshot from now');
subscribe('high');
ok(synced('high'), 'c: high synced');
$server->txn($t, { op => 'update', row => { id => 5, n => 9, title => 'moved to high only' } });
$server->txn($t, { op => 'update', row => { id => 4, title => 'changed in both' } });
ok(synced('high'), 'c: high synced two changes');
subscribe('low');
ok(synced('low'), 'c: low synced: the old snapshot, then the log since');
is(sql($node, "SELECT title FROM $t WHERE id = 4"), 'changed in both', 'c: a row in both has its latest version');
is(holds(), 'high=4,5,6,7,8,9,10 low=1,2,3,4,6', 'c: holds');
{
	is(sql($node, "SELECT n || ':' || title FROM $t WHERE id = 5"), '9:moved to high only',
		'c: a row that left low before low subscribed keeps high\'s (current) version');
	is(local_rows(), union_rows(qw(low high)), 'c: the table is the union of both shapes');
}

# ==== (d) both workers on the same source transaction at once ===========================
make_table('items_d');
subscribe('low');
subscribe('high');
ok(synced(qw(low high)), 'd: both synced');
my $high_waits = "SELECT count(*) = 1 FROM pg_stat_activity a JOIN electric.subscriptions s ON a.pid = s.worker_pid
	WHERE s.name = '${t}_high' AND a.wait_event_type = 'Lock'";
my $low_waits = "SELECT count(*) = 1 FROM pg_stat_activity a JOIN electric.subscriptions s ON a.pid = s.worker_pid
	WHERE s.name = '${t}_low' AND a.wait_event = 'advisory'";

# a row enters low as it leaves high: low's transaction takes it (and waits
# at the gate) while high's releases it
$gate->query_safe('SELECT pg_advisory_lock(4242)');
$pid = freeze('high');
$server->txn($t, { op => 'update', row => { id => 8, n => 2, title => 'moved to low only' } });
ok(wait_until($node, $low_waits), 'd: low waits inside its transaction, row 8 taken');
thaw($pid);
ok(wait_until($node, $high_waits, 10) || wait_sync($node, "${t}_high", 5), 'd: high applied its side meanwhile (or waits for low\'s row)');
$gate->query_safe('SELECT pg_advisory_unlock(4242)');
ok(synced(qw(low high)), 'd: both synced');
{
	is(sql($node, "SELECT n || ':' || title FROM $t WHERE id = 8"), '2:moved to low only', 'd: row 8 stays, low holds it');
}

# a row leaves both: each transaction releases it while the other's release
# is not committed
$gate->query_safe('SELECT pg_advisory_lock(4242)');
$pid = freeze('high');
$server->multi_txn(
	{ table => $t, op => 'update', row => { id => 5, n => 11, title => 'moved out of both' } },
	{ table => $t, op => 'update', row => { id => 2, title => 'low waits here' } });
ok(wait_until($node, $low_waits), 'd: low waits inside its transaction, row 5 released');
thaw($pid);
ok(wait_sync($node, "${t}_high", 10) || wait_until($node, $high_waits, 1), 'd: high applied its side meanwhile (or waits for low)');
$gate->query_safe('SELECT pg_advisory_unlock(4242)');
ok(synced(qw(low high)), 'd: both synced');
{
	is(ids("SELECT id FROM $t WHERE id = 5"), '', 'd: row 5 is gone');
	is(local_rows(), union_rows(qw(low high)), 'd: the table is the union of both shapes');
}

# ==== (e) both shapes refetch while a local transaction writes the table ================
# The refetch of a shared table locks it in SHARE ROW EXCLUSIVE mode.  A
# worker that held ROW EXCLUSIVE first and then asked for more would
# deadlock with the other worker doing the same (both refetching at once):
# each waits for the lock the other's ROW EXCLUSIVE blocks.  Staged with an
# open local write, a worker must wait for SHARE ROW EXCLUSIVE holding
# nothing on the table.
make_table('items_e');
subscribe('low');
subscribe('high');
ok(synced(qw(low high)), 'e: both synced');
%handle = map { ($_ => sub_status($node, "${t}_$_", 'handle')) } qw(low high);
$gate->query_safe("BEGIN; UPDATE $t SET title = 'local, uncommitted' WHERE id = 12");
$server->rotate($t);
my $waiting = "SELECT l.pid FROM pg_locks l JOIN electric.subscriptions s ON s.worker_pid = l.pid
	WHERE s.name IN ('${t}_low', '${t}_high') AND l.relation = '$t'::regclass AND NOT l.granted
	AND l.mode = 'ShareRowExclusiveLock' ORDER BY l.pid LIMIT 1";
ok(wait_until($node, "SELECT count(*) > 0 FROM ($waiting) w"), 'e: a refetching worker waits for SHARE ROW EXCLUSIVE');
is(sql($node, "SELECT coalesce(string_agg(mode, ','), 'nothing') FROM pg_locks WHERE relation = '$t'::regclass AND granted
	AND pid = ($waiting)"), 'nothing', 'e: holding no lock on the table while it waits (no upgrade)');
$gate->query_safe('COMMIT');
ok(wait_until($node, "SELECT count(*) = 2 FROM electric.subscriptions WHERE name IN ('${t}_low', '${t}_high')
	AND handle NOT IN ('$handle{low}', '$handle{high}')"), 'e: both refetched');
ok(synced(qw(low high)), 'e: both synced');
is(local_rows(), union_rows(qw(low high)), 'e: the table is the union of both shapes');
is(sql($node, "SELECT string_agg(state || ' ' || coalesce(last_error, 'none'), ',') FROM electric.subscriptions WHERE name IN ('${t}_low', '${t}_high')"),
	'live none,live none', 'e: both live, no deadlock');

$gate->quit;
$node->stop;
$server->stop;
done_testing();
