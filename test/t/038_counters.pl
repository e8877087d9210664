# The view's live counters: requests and bytes_received grow with every
# response, errors with every failed request and rolled-back batch,
# batch_rows and batch_bytes show the progress of a slow multi-page catch-up
# and return to 0 once it is committed, last_request_at and
# last_up_to_date_at move on with the long-polls.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('counters');
my $T = JSON::PP::true;
my $ROWS = 1200;

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 100,
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. $ROWS ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text CHECK (title <> 'rejected'))");

# a slow catch-up: every page takes 300 ms
$server->fault(kind => 'delay', ms => 300, table => 'items', when => 'nonlive', count => -1);
my $t_start = sql($node, "SELECT now()");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");

my $cols = "state, batch_rows, batch_bytes, requests, bytes_received, rows_applied";
my @samples;
my $end = time + 60;
while (time < $end)
{
	my $line = sub_status($node, 'items', "concat_ws(' ', $cols)");
	push @samples, [ split / /, $line ];
	last if $samples[-1][0] eq 'live';
	usleep(100_000);
}
$server->clear_faults;
is($samples[-1][0], 'live', 'the catch-up finished');
my @during = grep { $_->[0] eq 'initial_sync' } @samples;
my @progress = grep { $_->[1] > 0 && $_->[1] < $ROWS } @during;
cmp_ok(scalar(@progress), '>=', 3, 'during the catch-up batch_rows showed partial progress (' . join(',', map { $_->[1] } @during) . ')');
my @rows = map { $_->[1] } @during;
is_deeply(\@rows, [ sort { $a <=> $b } @rows ], 'batch_rows only grew');
is(scalar(grep { $_->[1] % 100 } @progress), 0, 'by whole pages of 100 rows');
is(scalar(grep { $_->[1] > 0 && $_->[2] <= 0 } @during), 0, 'batch_bytes is positive whenever batch_rows is');
my @bytes = map { $_->[2] } @during;
is_deeply(\@bytes, [ sort { $a <=> $b } @bytes ], 'batch_bytes only grew');
my @reqs = map { $_->[3] } @samples;
is_deeply(\@reqs, [ sort { $a <=> $b } @reqs ], 'requests only grew');
cmp_ok($reqs[-1] - $reqs[0], '>=', 5, 'requests counted the pages');
is(scalar(grep { $_->[5] != 0 } @during), 0, 'rows_applied stayed 0 until the commit');
ok(wait_sync($node, 'items'), 'synced');
is(sub_status($node, 'items', "batch_rows || ' ' || batch_bytes || ' ' || rows_applied"), "0 0 $ROWS",
	'after the commit batch_rows and batch_bytes are 0, rows_applied is the snapshot');
my ($requests, $bytes) = split / /, sub_status($node, 'items', "requests || ' ' || bytes_received");
my $pages = scalar(grep { $_->{status} == 200 } @{ $server->requests('items') });
cmp_ok($requests, '>=', $pages, "requests ($requests) counts every answered request ($pages)");
cmp_ok($bytes, '>', $ROWS * 40, "bytes_received ($bytes) counts the snapshot's bytes");
is(sub_status($node, 'items', 'errors'), '0', 'no errors so far');
is(sub_status($node, 'items', "last_request_at >= '$t_start' AND last_up_to_date_at >= '$t_start'"), 't',
	'last_request_at and last_up_to_date_at are set');

# long-polls keep the counters moving
my ($r0, $lr0, $lu0) = split /\|/, sub_status($node, 'items', "requests || '|' || last_request_at || '|' || last_up_to_date_at");
sleep 3;
my ($r1, $lr1, $lu1) = split /\|/, sub_status($node, 'items', "requests || '|' || last_request_at || '|' || last_up_to_date_at");
cmp_ok($r1 - $r0, '>=', 2, 'empty long-polls are counted as requests');
is(sql($node, "SELECT '$lr1'::timestamptz > '$lr0'::timestamptz AND '$lu1'::timestamptz > '$lu0'::timestamptz"), 't',
	'last_request_at and last_up_to_date_at move on');
is(sub_status($node, 'items', "batch_rows || ' ' || batch_bytes"), '0 0', 'no batch is open between long-polls');

# failed requests count as errors
$server->fault(kind => 'status', status => 500, table => 'items', count => 3);
# replace the long-poll in flight (it would answer normally): the next three fail
sql($node, "SELECT electric.wait_for_sync('items', '0.2 s')");
$server->txn('items', { op => 'update', row => { id => '1', title => 'after 500s' } });
ok(wait_until($node, "SELECT title = 'after 500s' FROM items WHERE id = 1", 30), 'recovered from three 500s');
is(sub_status($node, 'items', 'errors'), '3', 'errors counted the three failed requests');

# a rolled-back batch counts too
my $e0 = sub_status($node, 'items', 'errors');
$server->txn('items', { op => 'update', row => { id => '2', title => 'rejected' } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), 'a batch the table rejects');
cmp_ok(sub_status($node, 'items', 'errors'), '>', $e0, 'errors counted the rolled-back batch');
is(sub_status($node, 'items', 'rows_applied'), $ROWS + 1, 'rows_applied did not count it');
# rolled back, and retried from what was received: that change stays in the
# open batch (received, not committed) while it waits, counted once
sub batch_samples
{
	my ($name) = @_;
	my @s;
	for (1 .. 6)
	{
		push @s, sub_status($node, $name, "state || ' ' || batch_rows || ' ' || batch_bytes");
		usleep(400_000);
	}
	return join(', ', @s);
}
like(batch_samples('items'), qr/^(error 1 ([1-9]\d*))(, \1)*$/,
	'while the batch waits for its retry, batch_rows is its one change (and batch_bytes its bytes), unchanged');
sql($node, "ALTER TABLE items DROP CONSTRAINT items_title_check");
ok(wait_sync($node, 'items'), 'healed');
is(sub_status($node, 'items', "batch_rows || ' ' || batch_bytes || ' ' || rows_applied"), '0 0 ' . ($ROWS + 2), 'batch counters back to 0');

# a server table of n rows (id, title) in one page
sub server_table
{
	my ($name, $n) = @_;
	$server->create_table(name => $name, primary_key => ['id'], rows => [ map { { id => "$_", title => "item $_" } } 1 .. $n ],
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ]);
}

# a snapshot that the table rejects (row 3 of 3) is rolled back and read
# again: while it waits for its retry it is the open batch, counted once
server_table('three', 3);
sql($node, "CREATE TABLE three (id int PRIMARY KEY CONSTRAINT not_three CHECK (id <> 3), title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('three') . "', 'three', '{id}', shape_key => 'three')");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'three'"), 'the snapshot is rejected');
like(sub_status($node, 'three', 'last_error'), qr/not_three/, 'by the check constraint');
my $samples = batch_samples('three');
like($samples, qr/^(error 3 ([1-9]\d*))(, \1)*$/, "after the failure batch_rows is its three rows, not more ($samples)");
is(sql($node, "SELECT count(*) FROM three"), '0', 'nothing of it was applied');
sql($node, "ALTER TABLE three DROP CONSTRAINT not_three");
ok(wait_sync($node, 'three'), 'healed');
is(sub_status($node, 'three', "batch_rows || ' ' || batch_bytes || ' ' || rows_applied"), '0 0 3', 'committed: 0 0, three rows');

# a slow response: its changes count as they are parsed, not once it is whole
server_table('drip', 20);
sql($node, "CREATE TABLE drip (id int PRIMARY KEY, title text)");
$server->fault(kind => 'slow_drip', bytes => 64, interval_ms => 50, table => 'drip', when => 'initial', count => 1);
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('drip') . "', 'drip', '{id}', shape_key => 'drip')");
my @drip;
$end = time + 30;
while (time < $end)
{
	push @drip, [ split / /, sub_status($node, 'drip', "concat_ws(' ', state, batch_rows, batch_bytes, rows_applied)") ];
	last if $drip[-1][0] eq 'live';
	usleep(50_000);
}
is($drip[-1][0], 'live', 'the slow snapshot arrived');
my @arriving = grep { $_->[3] == 0 } @drip;
my %partial = map { $_->[1] => 1 } grep { $_->[1] > 0 && $_->[1] < 20 } @arriving;
cmp_ok(scalar(keys %partial), '>=', 3, 'batch_rows grew while the response arrived (' . join(',', map { $_->[1] } @arriving) . ')');
is(scalar(grep { $_->[1] > 0 && $_->[2] <= 0 } @arriving), 0, 'with batch_bytes');
is_deeply([ map { $_->[1] } @arriving ], [ sort { $a <=> $b } map { $_->[1] } @arriving ], 'batch_rows only grew');
is_deeply([ map { $_->[2] } @arriving ], [ sort { $a <=> $b } map { $_->[2] } @arriving ], 'batch_bytes only grew');
is(sub_status($node, 'drip', "batch_rows || ' ' || batch_bytes || ' ' || rows_applied"), '0 0 20', 'committed: 0 0, twenty rows');

# a restarted worker starts its counters afresh; stopped, they are 0
my $pid = sub_status($node, 'items', 'worker_pid');
sql($node, "SELECT pg_terminate_backend($pid)");
ok(wait_until($node, "SELECT worker_pid <> $pid AND state = 'live' FROM electric.subscriptions WHERE name = 'items'", 20), 'the worker restarted');
cmp_ok(sub_status($node, 'items', 'errors'), '<', $e0 + 1, 'errors is for the worker\'s life: counted afresh');
sql($node, "SELECT electric.unsubscribe('items')");
ok(wait_until($node, "SELECT worker_pid IS NULL FROM electric.subscriptions WHERE name = 'items'"), 'stopped');
is(sub_status($node, 'items', "requests || ' ' || batch_rows || ' ' || batch_bytes"), '0 0 0', 'a stopped subscription shows no live counters');

$node->stop;
$server->stop;
done_testing();
