# A streamed initial snapshot (pglite_sync.stream_snapshot, on by default):
# a worker loads each page as it arrives, while the next one downloads, in
# one transaction that the up-to-date commits.  Readers see the old rows
# until then; a failed request or a row the table rejects rolls every page
# back and the snapshot is asked for again; unsubscribe, SIGTERM and DROP
# DATABASE do not wait for it; a live stream holds no transaction between
# requests; DDL on the table makes it give way; with the setting off the
# snapshot is loaded whole at its end.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $ROWS = 20_000;
my $PAGE = 2_000;
my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('stream_snapshot');
my @cols = qw(id title done amount);

$server->generate('big', rows => $ROWS, page_rows => $PAGE);
sql($node, q{
	CREATE TABLE big (id int8 PRIMARY KEY, title text, done bool, created_at timestamptz, amount numeric);
	INSERT INTO big SELECT g, 'before ' || g, false, now(), g FROM generate_series(1, 5) g;
});

my $worker = "FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker' AND application_name = 'pglite_sync big'";
my $loading = "SELECT EXISTS (SELECT 1 $worker AND state = 'idle in transaction' AND backend_xid IS NOT NULL"
  . " AND query ~ '^snapshot of subscription big: [1-9][0-9]* rows loaded\$')";
my $local = "SELECT count(*) || ' ' || count(*) FILTER (WHERE title LIKE 'before %' OR title = 'local') FROM big";

sub log_since { my ($pos) = @_; return substr(slurp_file($node->logfile), $pos) }
sub log_mark { return -s $node->logfile }
sub wait_log
{
	my ($pos, $re, $timeout) = @_;
	my $end = time + $timeout;
	while (time < $end)
	{
		return 1 if log_since($pos) =~ $re;
		usleep(50_000);
	}
	return 0;
}
sub slow_pages { $server->fault(kind => 'delay', ms => 300, when => 'nonlive', count => -1) }
sub offset_minus_one { count_requests($server, 'big', sub { ($_[0]{query}{offset} // '') eq '-1' }) }

# ---- pages load into one open transaction; readers see the old rows -------------
slow_pages();
my $mark = log_mark();
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('big') . "', 'big', '{id}', shape_key => 'big', initial_insert_method => 'copy')");
ok(wait_until($node, $loading, 60), 'the worker loads snapshot pages in an open transaction');
my $loaded = sql($node, "SELECT substring(query from ': ([0-9]+) rows') $worker");
is(sql($node, $local), '5 5', "a reader meanwhile sees the old rows only ($loaded rows loaded)");
is(sub_status($node, 'big', "state || ' ' || coalesce(handle, 'no handle')"), 'initial_sync no handle',
	'no position is stored before the up-to-date');
ok(wait_sync($node, 'big', 60), 'the snapshot commits at the up-to-date');
is(sql($node, "SELECT count(*) FROM big"), $ROWS, 'all rows, the old ones gone');
is_table_synced($node, $server, 'big', \@cols, 'the table equals the server');
is(sub_status($node, 'big', 'rows_applied'), $ROWS, 'rows_applied counts the rows of every page');
my $log = log_since($mark);
my @pages = $log =~ /subscription "big": snapshot page loaded: (\d+) rows \((\d+) so far, by (\w+)\)/g;
cmp_ok(scalar(@pages) / 3, '>=', 5, sprintf('loaded page by page (%d loads)', @pages / 3));
is($pages[2], 'copy', '... by the chosen method');
like($log, qr/snapshot page loaded: \d+ rows \(\d+ so far, by copy\), table rows replaced/,
	'the first page replaced the old rows');
like($log, qr/committed batch: \d+ changes, $ROWS rows written \($ROWS by copy/, 'the commit reports every row');
# overlap: the second page was asked for before the first one was loaded
my ($before_first_load) = $log =~ /^(.*?)snapshot page loaded/s;
my $gets = () = $before_first_load =~ /subscription "big": GET /g;
cmp_ok($gets, '>=', 2, 'the next page was requested before the first one was loaded');

# ---- the live stream holds no transaction between requests ------------------------
ok(wait_until($node, "SELECT EXISTS (SELECT 1 $worker AND query LIKE 'long-polling %')"), 'live: long-polling');
is(sql($node, "SELECT state || ' ' || (backend_xid IS NULL) || ' ' || (backend_xmin IS NULL) $worker"), 'active true true',
	'... with no transaction open');
$server->txn('big', { op => 'update', row => { id => '7', title => 'live 7' } });
ok(wait_until($node, "SELECT title = 'live 7' FROM big WHERE id = 7"), 'a live change arrives');

# ---- a failed request mid-snapshot rolls every page back ----------------------------
sql($node, "UPDATE big SET title = 'local' WHERE id <= 10");
$server->clear_faults;
slow_pages();
my $minus_one = offset_minus_one();
$mark = log_mark();
$server->rotate('big');
ok(wait_until($node, $loading, 60), 'must-refetch: the new snapshot streams');
$server->clear_faults;
$server->fault(kind => 'status', status => 503, when => 'nonlive', count => 1);
slow_pages();
ok(wait_log($mark, qr/subscription "big": snapshot rolled back after \d+ rows/, 60), 'a 503 rolls the snapshot back');
is(sql($node, "SELECT count(*) FILTER (WHERE title = 'local') FROM big"), '10', 'the rows before the refetch are all there');
ok(wait_sync($node, 'big', 60), 'then it syncs');
cmp_ok(offset_minus_one() - $minus_one, '>=', 2, 'the snapshot was asked for again from -1');
is_table_synced($node, $server, 'big', \@cols, 'the table equals the server');
is(sql($node, "SELECT count(*) FILTER (WHERE title = 'local') FROM big"), '0', 'the refetch replaced the local edits');

# ---- a row the table rejects rolls it back and is named --------------------------------
sql($node, "UPDATE big SET title = 'local' WHERE id <= 10");
sql($node, "ALTER TABLE big ADD CONSTRAINT no_15001 CHECK (id <> 15001) NOT VALID");
sql($node, "DELETE FROM big WHERE id = 15001");
$mark = log_mark();
$server->rotate('big');
ok(wait_until($node, "SELECT state = 'error' AND last_error LIKE '%no_15001%' FROM electric.subscriptions WHERE name = 'big'", 60),
	'a page that violates a constraint puts the subscription in error, naming it');
$log = log_since($mark);
like($log, qr/snapshot rolled back after \d+ rows/, 'the streamed snapshot was rolled back');
like($log, qr/batch failed, retrying it row by row/, 'and redone whole, row by row');
like(sub_status($node, 'big', 'last_error'), qr/no_15001.*"big"\/"15001"/s, 'the row-by-row redo names the key');
is(sql($node, $local), ($ROWS - 1) . ' 10', 'nothing of it was applied');
sql($node, "ALTER TABLE big DROP CONSTRAINT no_15001");
ok(wait_until($node, "SELECT state = 'live' FROM electric.subscriptions WHERE name = 'big'", 60), 'fixed: it syncs');
is_table_synced($node, $server, 'big', \@cols, 'the table equals the server');

# ---- unsubscribe and SIGTERM do not wait for a streamed snapshot -----------------------
sql($node, "UPDATE big SET title = 'local' WHERE id <= 10");
$server->clear_faults;
slow_pages();
$server->rotate('big');
ok(wait_until($node, $loading, 60), 'streaming again');
my $pid = sub_status($node, 'big', 'worker_pid');
my $t0 = time;
sql($node, "SELECT electric.unsubscribe('big')");
usleep(20_000) while kill(0, $pid) && time - $t0 < 10;
cmp_ok(time - $t0, '<', 1, 'unsubscribe stops the worker within a second');
is(sql($node, $local), "$ROWS 10", 'the snapshot rolled back');
like(log_since($mark), qr/subscription "big": worker exiting: stop requested/, 'the worker left at the stop');

sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('big') . "', 'big', '{id}', shape_key => 'big', initial_insert_method => 'copy')");
ok(wait_until($node, $loading, 60), 'resubscribed: streaming');
$pid = sub_status($node, 'big', 'worker_pid');
$t0 = time;
sql($node, "SELECT pg_terminate_backend($pid)");
usleep(20_000) while kill(0, $pid) && time - $t0 < 10;
cmp_ok(time - $t0, '<', 1, 'SIGTERM ends the worker within a second');
is(sql($node, "SELECT count(*) FILTER (WHERE title = 'local') FROM big"), '10', 'nothing of the snapshot stays');
$server->clear_faults;
ok(wait_sync($node, 'big', 60), 'the restarted worker syncs');
is_table_synced($node, $server, 'big', \@cols, 'the table equals the server');

# ---- DDL on the table does not wait for it: the snapshot gives way ------------------------
sql($node, "UPDATE big SET title = 'local' WHERE id <= 10");
slow_pages();
$mark = log_mark();
$server->rotate('big');
ok(wait_until($node, $loading, 60), 'streaming again');
$t0 = time;
sql($node, "ALTER TABLE big ADD COLUMN note text DEFAULT 'n'");
cmp_ok(time - $t0, '<', 1, sprintf('ALTER TABLE does not wait for the snapshot (%.2f s)', time - $t0));
ok(wait_log($mark, qr/subscription "big": the snapshot being loaded holds up a lock request of process \d+: rolled back/, 10),
	'the snapshot gave way to it, as autovacuum does');
$server->clear_faults;
ok(wait_until($node, "SELECT count(*) FILTER (WHERE title = 'local') = 0 AND count(*) FILTER (WHERE note = 'n') = $ROWS FROM big", 60),
	'then asked for again, it loads under the new definition');
is_table_synced($node, $server, 'big', \@cols, 'the table equals the server');

# ---- DROP DATABASE does not wait for it ----------------------------------------------------
sql($node, "CREATE DATABASE other");
$node->safe_psql('other', q{
	CREATE EXTENSION pglite_sync;
	CREATE TABLE big (id int8 PRIMARY KEY, title text, done bool, created_at timestamptz, amount numeric);
});
slow_pages();
$node->safe_psql('other', "SELECT electric.sync_shape_to_table('" . $server->shape('big') . "', 'big', '{id}', shape_key => 'other_big')");
ok(wait_until($node, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = 'other' AND backend_type = 'pglite_sync worker'"
	  . " AND state = 'idle in transaction' AND query LIKE 'snapshot of subscription other_big: %')", 60),
	'a worker streams a snapshot in another database');
$t0 = time;
sql($node, "DROP DATABASE other");
cmp_ok(time - $t0, '<', 2, sprintf('DROP DATABASE does not wait for it (%.2f s)', time - $t0));
$server->clear_faults;

# ---- off: the snapshot is spooled whole and loaded at its end -----------------------------
sql($node, "ALTER SYSTEM SET pglite_sync.stream_snapshot = off");
$node->reload;
sleep 1;
$mark = log_mark();
sql($node, "UPDATE big SET title = 'local' WHERE id <= 10");
$server->rotate('big');
ok(wait_until($node, "SELECT count(*) FILTER (WHERE title = 'local') = 0 FROM big", 60), 'off: the refetch syncs');
$log = log_since($mark);
unlike($log, qr/snapshot page loaded/, '... with no page loaded on its own');
like($log, qr/committed batch: $ROWS changes, $ROWS rows written \($ROWS by copy.*table rows replaced/, '... but all in one batch');
is_table_synced($node, $server, 'big', \@cols, 'the table equals the server');

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash');
$node->stop;
$server->stop;
done_testing();
