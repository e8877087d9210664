# Errors during the apply are classified by SQLSTATE: a deadlock with a
# local transaction and a lock timeout (lock_timeout set for the owner the
# worker connects as) are transient, state backoff, and the batch goes
# through once the local transaction ends; a CHECK violation and a \u0000
# in a text value cannot be fixed by retrying, state error.  Nothing of a
# failed batch is ever applied.
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
my $node = sync_node('apply_errors');
my $T = JSON::PP::true;
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 5 ]);
sql($node, q{
	CREATE ROLE applier LOGIN;
	GRANT pglite_sync_manager TO applier;
	CREATE TABLE items (id int PRIMARY KEY, title text);
	ALTER TABLE items OWNER TO applier;
});
$node->safe_psql('postgres', "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')",
	extra_params => [ '-U', 'applier' ]);
ok(wait_sync($node, 'items'), 'synced');
my $pid = sub_status($node, 'items', 'worker_pid');
is(sql($node, "SELECT usename FROM pg_stat_activity WHERE pid = $pid"), 'applier', 'the worker is connected as the owner');

sub worker_waits_for_lock
{
	my $p = sub_status($node, 'items', 'worker_pid');
	return wait_until($node, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $p", 20);
}

# ---- a deadlock with a local transaction: backoff, then through ----
my $local = $node->background_psql('postgres', on_error_stop => 0);
$local->query_safe("BEGIN; UPDATE items SET title = 'local 2' WHERE id = 2");
$server->txn('items',
	{ op => 'update', row => { id => '1', title => 'server 1' } },
	{ op => 'update', row => { id => '2', title => 'server 2' } });
ok(worker_waits_for_lock(), 'the worker updated row 1 and waits for row 2');
my $errors_before = sub_status($node, 'items', 'errors');
# the local transaction now wants row 1, which the worker holds: a deadlock
my $res = $local->query("UPDATE items SET title = 'local 1' WHERE id = 1");
ok(wait_until($node, "SELECT state = 'backoff' FROM electric.subscriptions WHERE name = 'items'", 20), 'deadlock: state backoff');
like(sub_status($node, 'items', 'last_error'), qr/deadlock detected/, 'last_error says deadlock detected');
cmp_ok(sub_status($node, 'items', 'errors'), '>', $errors_before, 'the errors counter grew');
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'item 1', 'the worker\'s half of the batch was rolled back');
$local->query_safe("COMMIT");
ok(wait_until($node, "SELECT title = 'server 2' FROM items WHERE id = 2", 20), 'once the local transaction committed, the batch goes through');
ok(wait_sync($node, 'items'), 'live again');
is_table_synced($node, $server, 'items', \@cols, 'the server\'s values won');
unlike(slurp_file($node->logfile), qr/subscription "items": batch failed, retrying it row by row: deadlock/, 'a transient error is not redone row by row');

# ---- a lock timeout: lock_timeout set for the owner ----
sql($node, "ALTER ROLE applier SET lock_timeout = '200ms'");
sql($node, "SELECT pg_terminate_backend($pid)");
ok(wait_until($node, "SELECT worker_pid IS NOT NULL AND worker_pid <> $pid AND state = 'live' FROM electric.subscriptions WHERE name = 'items'", 20),
	'the worker restarted (with the owner\'s lock_timeout)');
$pid = sub_status($node, 'items', 'worker_pid');
is(sql($node, "SELECT setting FROM pg_settings WHERE name = 'lock_timeout'"), '0', '(this session has none)');
$local->query_safe("BEGIN; SELECT * FROM items WHERE id = 3 FOR UPDATE");
$server->txn('items', { op => 'update', row => { id => '3', title => 'server 3' } });
ok(wait_until($node, "SELECT state = 'backoff' AND last_error LIKE '%lock timeout%' FROM electric.subscriptions WHERE name = 'items'", 20),
	'lock timeout: state backoff');
like(sub_status($node, 'items', 'last_error'), qr/canceling statement due to lock timeout/, 'last_error says lock timeout');
my $offset = -s $node->logfile;
# what the view says while the batch keeps failing
my %seen;
my $until = time + 2.5;
while (time < $until)
{
	$seen{ sub_status($node, 'items', "state || '/' || is_up_to_date") }++;
	usleep(50_000);
}
my $retries = () = substr(slurp_file($node->logfile), $offset) =~ /subscription "items": canceling statement due to lock timeout; retrying/g;
cmp_ok($retries, '>=', 2, "retried while the lock is held ($retries times in 2.5 s)");
ok(!grep({ /^error/ } keys %seen), 'never state error: ' . join(', ', map { "$_ x$seen{$_}" } sort keys %seen));
ok($seen{'backoff/false'}, 'state backoff, not up to date');
{
	ok(!grep({ /^live|\/true$/ } keys %seen), 'never live or up to date while the batch is not applied');
}
is(sql($node, "SELECT electric.wait_for_sync('items', '1 s')"), 'f', 'wait_for_sync is false while the batch cannot be applied');
is(sql($node, "SELECT title FROM items WHERE id = 3"), 'item 3', 'nothing applied');
$local->query_safe("COMMIT");
ok(wait_until($node, "SELECT title = 'server 3' FROM items WHERE id = 3", 20), 'the lock released: applied');
ok(wait_until($node, "SELECT state = 'live' FROM electric.subscriptions WHERE name = 'items'", 20), 'live');
is(sub_status($node, 'items', 'worker_pid'), $pid, 'the same worker: a transient error is not a reason to exit');
$local->quit;

# ---- a CHECK violation: error ----
sql($node, "ALTER TABLE items ADD CONSTRAINT no_bad CHECK (title <> 'bad')");
$server->txn('items',
	{ op => 'update', row => { id => '4', title => 'good before' } },
	{ op => 'update', row => { id => '5', title => 'bad' } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'", 20), 'a CHECK violation: state error');
like(sub_status($node, 'items', 'last_error'), qr/violates check constraint "no_bad".*"public"\."items"\/"5"/s, 'last_error names the constraint and the key');
is(sql($node, "SELECT title FROM items WHERE id = 4"), 'item 4', 'nothing of the batch applied');
sql($node, "ALTER TABLE items DROP CONSTRAINT no_bad");
ok(wait_until($node, "SELECT title = 'bad' FROM items WHERE id = 5", 20), 'fixed: the batch goes through');
ok(wait_sync($node, 'items'), 'live');

# ---- \u0000 in a text value: error ----
$server->txn('items',
	{ op => 'update', row => { id => '1', title => 'before nul' } },
	{ op => 'update', row => { id => '2', title => "nul \x{0} inside" } });
ok(wait_until($node, "SELECT state IN ('error', 'backoff') AND last_error IS NOT NULL AND NOT is_up_to_date FROM electric.subscriptions WHERE name = 'items'", 20),
	'a \\u0000 in text: the batch fails');
{
	ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'", 5), 'a \\u0000 in text: state error');
}
like(sub_status($node, 'items', 'last_error'), qr/\\u0000|null character|0x00/i, 'last_error says why: ' . sub_status($node, 'items', 'last_error'));
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'server 1', 'nothing of that batch applied');
is(sub_status($node, 'items', 'is_up_to_date'), 'f', 'not up to date');
# the server fixes its data: the next transaction replaces the value
$server->txn('items', { op => 'update', row => { id => '2', title => 'nul removed' } });
sleep 2;
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'server 1', 'retrying alone does not help: still not applied');
{
	is(sub_status($node, 'items', 'state'), 'error', 'still error');
}

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash');
$node->stop;
$server->stop;
done_testing();
