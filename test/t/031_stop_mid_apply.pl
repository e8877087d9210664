# Management is never blocked by a long batch: while a worker applies a
# large initial snapshot (600,000 rows through INSERT, several seconds),
# other subscriptions can be created and stopped at once, and unsubscribe of
# the applying one returns within a second; its worker stops between rows
# and the apply rolls back, leaving the table as it was.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $ROWS = 600_000;
my $server = ElectricServer->new(long_poll_ms => 1000);
# the whole-batch path (a streamed snapshot: 017)
my $node = sync_node('stop_mid_apply', conf => 'pglite_sync.stream_snapshot = off');
my $T = JSON::PP::true;

my $gen = $server->generate('big', rows => $ROWS);
diag("generated $ROWS rows: $gen->{pages} pages, $gen->{bytes} bytes");
for my $t (qw(small other))
{
	$server->create_table(name => $t, columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'v', type => 'text' } ],
		primary_key => ['id'], rows => [ map { { id => "$_", v => "$t $_" } } 1 .. 3 ]);
	sql($node, "CREATE TABLE $t (id int PRIMARY KEY, v text)");
}
sql($node, q{
	CREATE TABLE big (id int8 PRIMARY KEY, title text, done bool, created_at timestamptz, amount numeric);
	INSERT INTO big SELECT g, 'before ' || g, false, now(), g FROM generate_series(1, 5) g;
});
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('small') . "', 'small', '{id}', shape_key => 'small')");
ok(wait_sync($node, 'small'), 'another subscription is live');

sub timed
{
	my ($query) = @_;
	my $t0 = time;
	my ($rc, $out, $err) = $node->psql('postgres', $query);
	return ($rc, time - $t0, $err);
}

sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('big') . "', 'big', '{id}', shape_key => 'big', initial_insert_method => 'insert')");
my $applying = "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker' AND query LIKE 'applying % changes of subscription big')";
ok(wait_until($node, $applying, 120), 'pg_stat_activity shows the worker applying the snapshot');
like(sql($node, "SELECT query FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker' AND query LIKE 'applying%'"),
	qr/^applying $ROWS changes of subscription big$/, "... all $ROWS changes in one batch");
my $pid = sub_status($node, 'big', 'worker_pid');

# meanwhile: subscribe and stop other subscriptions
my ($rc, $secs, $err) = timed("SELECT electric.sync_shape_to_table('" . $server->shape('other') . "', 'other', '{id}', shape_key => 'other')");
is($rc, 0, 'a new subscription can be created during the apply') or diag($err);
cmp_ok($secs, '<', 1, sprintf('... at once (%.3f s)', $secs));
($rc, $secs, $err) = timed("SELECT electric.unsubscribe('small')");
is($rc, 0, 'another subscription can be stopped during the apply') or diag($err);
cmp_ok($secs, '<', 1, sprintf('... at once (%.3f s)', $secs));
ok(wait_sync($node, 'other'), 'the new subscription syncs while the big one applies');
is(sql($node, $applying), 't', 'the big snapshot is still being applied');

# now stop the applying one
($rc, $secs, $err) = timed("SELECT electric.unsubscribe('big')");
is($rc, 0, 'unsubscribe of the applying subscription succeeds') or diag($err);
cmp_ok($secs, '<', 1, sprintf('unsubscribe returns within a second (%.3f s)', $secs));
my $t0 = time;
usleep(20_000) while kill(0, $pid) && time - $t0 < 10;
my $gone = time - $t0;
ok(!kill(0, $pid), 'the worker exited');
cmp_ok($gone, '<', 1, sprintf('within a second of the commit (%.3f s)', $gone));
is(sql($node, "SELECT count(*) || ' ' || count(*) FILTER (WHERE title LIKE 'before %') FROM big"), '5 5',
	'the apply rolled back: the table is as it was');
is(sub_status($node, 'big', "state || ' ' || rows_applied || ' ' || coalesce(handle, 'no handle')"), 'stopped 0 no handle',
	'stopped, nothing applied, no stream position stored');
like(slurp_file($node->logfile), qr/subscription "big": worker exiting: stopped while a batch was applied/,
	'the worker says it stopped in the middle of the batch');
is(sub_status($node, 'small', 'state'), 'stopped', 'the other stopped subscription is stopped');
is(sub_status($node, 'other', 'state'), 'live', 'the new one is live');

# delete_subscription does not wait either
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('big') . "', 'big', '{id}', shape_key => 'big', initial_insert_method => 'insert')");
ok(wait_until($node, $applying, 120), 'resubscribed: applying again');
$pid = sub_status($node, 'big', 'worker_pid');
($rc, $secs, $err) = timed("SELECT electric.delete_subscription('big')");
is($rc, 0, 'delete_subscription during the apply succeeds') or diag($err);
cmp_ok($secs, '<', 1, sprintf('delete_subscription returns within a second (%.3f s)', $secs));
$t0 = time;
usleep(20_000) while kill(0, $pid) && time - $t0 < 10;
cmp_ok(time - $t0, '<', 1, 'the worker exited within a second');
is(sql($node, "SELECT count(*) FROM big"), '5', 'rolled back again');
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE name = 'big'"), '0', 'the subscription is gone');

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash');
$node->stop;
$server->stop;
done_testing();
