# Crash matrix: kill -9 the sync worker at random instants during a
# multi-page initial sync and during a live stream (each kill makes the
# postmaster restart the whole cluster), and stop the server with
# -m immediate mid-batch.  After recovery the table equals the server's
# shape row for row, and the subscription resumes by itself.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;
use Time::HiRes qw(usleep time);

my $seed = $ENV{CRASH_SEED} // time;
srand($seed);
diag("random seed $seed (set CRASH_SEED to repeat)");

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('crash', conf => "restart_after_crash = on\n");
my @cols = qw(id title n);
my $T = JSON::PP::true;
my $kills = 0;

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' }, { name => 'n', type => 'int4' } ],
	primary_key => ['id'],
	page_rows => 500,
	rows => [ map { { id => "$_", title => "item $_", n => '0' } } 1 .. 20000 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text, n int)");

# wait for the cluster to accept connections again after a crash restart
sub reconnect
{
	my $end = time + 60;
	while (time < $end)
	{
		my ($ret) = $node->psql('postgres', 'SELECT 1');
		return 1 if $ret == 0;
		usleep(100_000);
	}
	die "cluster did not come back";
}

sub worker_pid
{
	my $pid = sql($node, "SELECT coalesce(worker_pid, 0) FROM electric.subscriptions WHERE name = 'items'");
	return $pid;
}

# kill -9 the worker after a random delay, once it is running
sub kill_worker
{
	my ($max_delay_ms) = @_;
	my $pid = 0;
	my $end = time + 30;
	while (!$pid && time < $end)
	{
		$pid = worker_pid();
		usleep(20_000) unless $pid;
	}
	return 0 unless $pid;
	usleep(int(rand($max_delay_ms)) * 1000);
	return 0 unless kill(0, $pid);
	kill 'KILL', $pid;
	$kills++;
	usleep(300_000);
	reconnect();
	return 1;
}

# pages are slow, so kills land during the catch-up and during the apply
$server->fault(kind => 'delay', table => 'items', when => 'nonlive', ms => 30, count => -1);
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
for my $i (1 .. 12)
{
	kill_worker(1500);
}
$server->clear_faults;
ok(wait_sync($node, 'items', 120), "initial sync completes after $kills kills during catch-up and apply");
is(sql($node, "SELECT count(*) || ' ' || count(DISTINCT id) FROM items"), '20000 20000', 'all rows, none twice');
is_table_synced($node, $server, 'items', \@cols, 'table equals the shape row for row after the initial-sync kills');

# live stream: batches of transactions keep arriving while the worker is killed
my $next_id = 20001;
my $live_kills_before = $kills;
my %gone;
my $pick = sub { my $k; do { $k = 1 + int(rand(20000)) } while $gone{$k}; $k };
for my $round (1 .. 10)
{
	my @txns;
	for (1 .. 150)
	{
		my $k = $pick->();
		push @txns, { ops => [ { op => 'update', row => { id => "$k", n => "$round", title => "r$round" } } ] };
		push @txns, { ops => [ { op => 'insert', row => { id => $next_id++, title => 'new', n => "$round" } } ] };
		if (rand() < 0.2)
		{
			my $d = $pick->();
			$gone{$d} = 1;
			push @txns, { ops => [ { op => 'delete', row => { id => "$d" } } ] };
		}
	}
	$server->txns('items', @txns);
	kill_worker(400);
}
ok(wait_sync($node, 'items', 120), 'live stream caught up after ' . ($kills - $live_kills_before) . ' kills');
is_table_synced($node, $server, 'items', \@cols, 'table equals the shape row for row after the live kills');

# immediate shutdown in the middle of a big batch, then a normal start
$server->txns('items', map { { ops => [ { op => 'update', row => { id => "$_", n => '999' } } ] } } grep { !$gone{$_} } 1 .. 3000);
usleep(int(rand(500)) * 1000);
$node->stop('immediate');
$node->start;
ok(wait_sync($node, 'items', 120), 'resumes by itself after an immediate shutdown mid-batch');
is_table_synced($node, $server, 'items', \@cols, 'table equals the shape row for row after the immediate shutdown');
is(sub_status($node, 'items', 'state'), 'live', 'live again');

cmp_ok($kills, '>=', 20, "at least 20 kills");
diag("kills survived: $kills");
$node->stop;
$server->stop;
done_testing();
