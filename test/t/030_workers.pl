# A subscription that cannot get a background worker says why: with the
# default max_worker_processes = 8, the subscriptions beyond the free worker
# slots show state error and a last_error naming max_worker_processes with
# a hint, and each starts on its own as soon as a worker slot frees up.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('workers', conf => "max_worker_processes = 8\n");
my $T = JSON::PP::true;
my $N = 10;

is(sql($node, "SHOW max_worker_processes"), '8', 'max_worker_processes = 8 (the default)');
my @names = map { "t$_" } 1 .. $N;
for my $t (@names)
{
	$server->create_table(name => $t, columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'v', type => 'text' } ],
		primary_key => ['id'], rows => [ map { { id => "$_", v => "$t $_" } } 1 .. 3 ]);
	sql($node, "CREATE TABLE $t (id int PRIMARY KEY, v text)");
	is(sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape($t) . "', '$t', '{id}', shape_key => '$t')"), $t,
		"subscribing $t succeeds");
}

# every subscription either runs or says why it cannot
ok(wait_until($node, "SELECT count(*) = $N FROM electric.subscriptions WHERE (state = 'live' AND worker_pid IS NOT NULL) OR state = 'error'", 30),
	'every subscription is live or in error');
my $running = sql($node, "SELECT count(*) FROM electric.subscriptions WHERE state = 'live'");
cmp_ok($running, '>=', 1, "$running subscriptions got a worker");
cmp_ok($running, '<', $N, 'the others did not: the worker slots are exhausted');
is(sql($node, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'"), $running,
	'one worker process per live subscription');
my $waiting = $N - $running;
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE state = 'error' AND worker_pid IS NULL"), $waiting,
	"the $waiting without a worker are in state error, without a worker_pid");
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE state = 'error' AND last_error LIKE '%max_worker_processes = 8%'"), $waiting,
	'their last_error names max_worker_processes and its value');
like(sql($node, "SELECT last_error FROM electric.subscriptions WHERE state = 'error' LIMIT 1"),
	qr/all background worker slots are in use \(max_worker_processes = 8\)\nHINT: Raise max_worker_processes/,
	'with a hint');
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE state = 'error' AND NOT is_up_to_date"), $waiting, 'and are not up to date');
like(slurp_file($node->logfile), qr/could not start a worker for subscription \d+: all background worker slots are in use/,
	'the server log says so too');

# a slot frees up: a waiting subscription starts on its own, at once
my @live = split /\n/, sql($node, "SELECT name FROM electric.subscriptions WHERE state = 'live' ORDER BY name");
my @err = split /\n/, sql($node, "SELECT name FROM electric.subscriptions WHERE state = 'error' ORDER BY name");
my $t0 = time;
sql($node, "SELECT electric.unsubscribe('$live[0]')");
ok(wait_until($node, "SELECT count(*) = $running FROM electric.subscriptions WHERE state = 'live'", 20),
	'after one unsubscribe, a waiting subscription took the free slot');
my $took = time - $t0;
cmp_ok($took, '<', 6, sprintf('within %.1f s of the unsubscribe (at the latest at the 5 s rescan)', $took));
{
	# the launcher retries when the stopping worker says it exits, before the
	# postmaster has reaped it and freed its slot; then only the rescan helps
	cmp_ok($took, '<', 3, sprintf('as soon as the worker exited (%.1f s, not at the 5 s rescan)', $took));
}
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE state = 'error'"), $waiting - 1, 'one fewer waiting');

# free enough for all of them
for my $i (1 .. $waiting - 1)
{
	sql($node, "SELECT electric.unsubscribe('$live[$i]')");
}
ok(wait_until($node, "SELECT count(*) = 0 FROM electric.subscriptions WHERE state = 'error'", 30), 'once enough slots are free, none is left in error');
for my $t (@err)
{
	ok(wait_sync($node, $t), "$t syncs");
	is_table_synced($node, $server, $t, [qw(id v)], "$t equals the server");
	is(sub_status($node, $t, "coalesce(last_error, 'none')"), 'none', "$t: last_error is gone once it runs");
}

# a stopped subscription does not keep a waiting one out, and does not show the error
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE state = 'stopped' AND last_error IS NULL"), $waiting,
	'the unsubscribed ones are stopped, with no launch error');

$node->stop;
$server->stop;
done_testing();
