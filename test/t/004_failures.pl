# The failure policy: retryable faults give state backoff with jittered,
# bounded retries (at least Retry-After); faults that retrying alone will
# not fix give state error, retried at the cap; no partial batch is ever
# applied, and every subscription recovers by itself when the fault clears.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;
use Time::HiRes qw(time);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('failures');
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => JSON::PP::true }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 5,
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 10 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'initial sync');

my $n = 0;
my @cases = (
	[ { kind => 'status', status => 500 }, 'backoff', qr/server answered 500/ ],
	[ { kind => 'status', status => 502, body => 'bad gateway' }, 'backoff', qr/502: bad gateway/ ],
	[ { kind => 'status', status => 503, retry_after => 1 }, 'backoff', qr/503/, 1 ],
	[ { kind => 'status', status => 429 }, 'backoff', qr/429/ ],
	[ { kind => 'reset_mid_body' }, 'backoff', qr/request failed|truncated/ ],
	[ { kind => 'truncate_json' }, 'backoff', qr/truncated response body|malformed/ ],
	[ { kind => 'malformed_message' }, 'backoff', qr/malformed/ ],
	[ { kind => 'missing_headers' }, 'backoff', qr/lacks the electric-(handle|offset) header/ ],
	[ { kind => 'bad_utf8' }, 'backoff', qr/UTF-8/ ],
	[ { kind => 'wrong_content_type' }, 'backoff', qr/content type/ ],
	[ { kind => 'status', status => 400, body => { message => 'Invalid request', errors => { where => ['is bad'] } } }, 'error', qr/400: \{.*"message":"Invalid request"/ ],
	[ { kind => 'status', status => 401 }, 'error', qr/401/ ],
	[ { kind => 'status', status => 403 }, 'error', qr/403/ ],
	[ { kind => 'status', status => 404 }, 'error', qr/404/ ],
	[ { kind => 'status', status => 413 }, 'error', qr/413/ ],
);

for my $case (@cases)
{
	my ($fault, $state, $error_re, $retry_after) = @$case;
	my $name = $fault->{kind} . ($fault->{status} ? " $fault->{status}" : '');
	$n++;

	$server->clear_requests;
	my $before = sql($node, "SELECT clock_timestamp()");
	$server->fault(%$fault, table => 'items', count => -1);
	# replace the long-poll in flight, so every later response fails
	sql($node, "SELECT electric.wait_for_sync('items', '0.2 s')");
	# the change is on the server, but every response fails
	$server->txn('items', { op => 'update', row => { id => '1', title => "change $n" } });
	my $t0 = time;
	is(sql($node, "SELECT electric.wait_for_sync('items', '1.5 s')"), 'f', "$name: wait_for_sync times out while failing");
	my $elapsed = time - $t0;
	my $tries = count_requests($server, 'items', sub { $_[0]{fault} });
	cmp_ok($tries, '>=', 2, "$name: retried ($tries requests in ${\ sprintf('%.1f', $elapsed)} s)");
	my $max = $state eq 'error' ? 5 : $retry_after ? 4 : 20;
	cmp_ok($tries, '<=', $max, "$name: retries are throttled (at most $max)");
	is(sub_status($node, 'items', 'state'), $state, "$name: state is $state");
	like(sub_status($node, 'items', 'last_error'), $error_re, "$name: last_error says why");
	is(sub_status($node, 'items', "last_error_at >= '$before' AND last_error_at <= clock_timestamp()"), 't',
		"$name: last_error_at is when it failed");
	is(sub_status($node, 'items', 'is_up_to_date'), 'f', "$name: not up to date");
	isnt(sql($node, "SELECT title FROM items WHERE id = 1"), "change $n", "$name: nothing applied from failed responses");

	$server->clear_faults;
	ok(wait_sync($node, 'items'), "$name: recovers when the fault clears");
	is(sub_status($node, 'items', 'state'), 'live', "$name: live again");
	is_table_synced($node, $server, 'items', \@cols, "$name: table matches the server");
}

# Retry-After is honoured: 503 with Retry-After: 1 never retries sooner
$server->clear_requests;
$server->fault(kind => 'status', status => 503, retry_after => 1, table => 'items', count => -1);
$server->txn('items', { op => 'update', row => { id => '2', title => 'retry-after' } });
sql($node, "SELECT electric.wait_for_sync('items', '3.5 s')");
my @t = map { $_->{t} } grep { $_->{fault} } @{ $server->requests('items') };
my @gaps = map { $t[$_] - $t[$_ - 1] } 1 .. $#t;
ok(@gaps >= 1 && !(grep { $_ < 950 } @gaps), 'Retry-After: 1 is honoured between retries (gaps: ' . join(',', @gaps) . ' ms)');
$server->clear_faults;
ok(wait_sync($node, 'items'), 'recovered');

# a request interrupted by an ERROR mid-response (pg_cancel_backend): its
# partial messages are discarded, not applied twice by the next response
$server->clear_requests;
$server->fault(kind => 'slow_drip', bytes => 64, interval_ms => 100, table => 'items', when => 'nonlive', count => 1);
$server->txns('items', map { { ops => [ { op => 'insert', row => { id => "$_", title => "dripped $_" } } ] } } 200 .. 260);
sql($node, "SELECT electric.wait_for_sync('items', '0.5 s')");
my $pid = sub_status($node, 'items', 'worker_pid');
is(sql($node, "SELECT pg_cancel_backend($pid)"), 't', 'cancelled the worker in the middle of a response');
ok(wait_sync($node, 'items'), 'synced after the cancellation');
is(sub_status($node, 'items', "state || ' ' || worker_pid"), "live $pid", 'same worker, live: the cancel became a recorded error');
is_table_synced($node, $server, 'items', \@cols, 'every change applied exactly once');

# a server that is not there: connection refused
sql($node, "CREATE TABLE nowhere (id int PRIMARY KEY)");
sql($node, q{SELECT electric.sync_shape_to_table('{"url": "http://127.0.0.1:9/v1/shape", "params": {"table": "nowhere"}}', 'nowhere', '{id}', shape_key => 'nowhere')});
ok(wait_until($node, "SELECT state = 'backoff' AND last_error LIKE 'request failed: %' FROM electric.subscriptions WHERE name = 'nowhere'"),
	'connection refused: backoff with the network error');
like(sub_status($node, 'nowhere', 'last_error'), qr/connect/i, 'last_error names the connection failure');
is(sub_status($node, 'items', 'state'), 'live', 'other subscriptions are unaffected');

diag('faults tried: ' . (scalar(@cases) + 3));
$node->stop;
$server->stop;
done_testing();
