# Host-driven subscriptions and failures: a feeder reports each response as
# it got it (a transport failure as status 0), and ingest_response gives the
# contract's states (backoff for 5xx, resets, truncated or malformed bodies;
# error for 4xx), sets last_error, applies nothing from a failed response,
# asks the host to wait ({"wait_ms"}) while backing off, and recovers once
# the server behaves.  Bodies the host makes up (garbage, a response for
# another handle) get the same policy.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use HostFeed;
use JSON::PP;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('host_faults');
my $T = JSON::PP::true;
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 5,
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 12 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'h', worker => false)");
my $steps = feed($node, 'h', until_up_to_date => 1);
is_table_synced($node, $server, 'items', \@cols, 'initial sync by the feeder');

my @cases = (
	[ { kind => 'status', status => 500 }, 500, 'backoff', qr/server answered 500/ ],
	[ { kind => 'status', status => 503, retry_after => 2 }, 503, 'backoff', qr/server answered 503/, 1900 ],
	[ { kind => 'status', status => 429 }, 429, 'backoff', qr/429/ ],
	[ { kind => 'reset_mid_body' }, 0, 'backoff', qr/\S/ ],
	[ { kind => 'truncate_json' }, 200, 'backoff', qr/truncated response body|malformed/ ],
	[ { kind => 'malformed_message' }, 200, 'backoff', qr/malformed/ ],
	[ { kind => 'missing_headers' }, 200, 'backoff', qr/lacks the electric-(handle|offset|cursor) header/ ],
	[ { kind => 'bad_utf8' }, 200, 'backoff', qr/UTF-8/ ],
	[ { kind => 'wrong_content_type' }, 200, 'backoff', qr/content type/ ],
	[ { kind => 'status', status => 400, body => { message => 'Invalid request' } }, 400, 'error', qr/server answered 400/ ],
	[ { kind => 'status', status => 401 }, 401, 'error', qr/401/ ],
	[ { kind => 'status', status => 404 }, 404, 'error', qr/404/ ],
);

my $n = 0;
for my $case (@cases)
{
	my ($fault, $status, $state, $re, $min_wait) = @$case;
	my $name = $fault->{kind} . ($fault->{status} ? " $fault->{status}" : '');
	$n++;
	$server->txn('items', { op => 'update', row => { id => '1', title => "change $n" } });
	$server->fault(%$fault, table => 'items', count => 1);
	$steps = feed($node, 'h', calls => 1);
	my ($ing) = grep { $_->{step} eq 'ingest' } @$steps;
	is($ing->{status}, $status, "$name: the feeder reported status $status");
	is($ing->{result}{state}, $state, "$name: ingest_response says $state");
	like($ing->{result}{error} // '', $re, "$name: ingest_response says why");
	is($ing->{result}{applied}, 0, "$name: applied nothing");
	cmp_ok($ing->{result}{wait_ms}, '>=', $min_wait // 0, "$name: wait_ms $ing->{result}{wait_ms}" . ($min_wait ? ' honours Retry-After' : ''));
	is(sub_status($node, 'h', "state || ' ' || is_up_to_date"), "$state false", "$name: the view says $state, not up to date");
	like(sub_status($node, 'h', 'last_error'), $re, "$name: last_error says why");
	isnt(sql($node, "SELECT title FROM items WHERE id = 1"), "change $n", "$name: nothing applied from the failed response");
	my $next = decode_json(sql($node, "SELECT electric.next_request('h')"));
	# (the backoff may be over by the time of the next call when it is short)
	if ($ing->{result}{wait_ms} > 500)
	{
		ok(defined $next->{wait_ms} && !defined $next->{url}, "$name: next_request asks the host to wait ($next->{wait_ms} ms)");
	}
	else
	{
		pass("$name: backoff shorter than a call (wait_ms $ing->{result}{wait_ms})");
	}
	$steps = feed($node, 'h', until_up_to_date => 1, timeout => 60);
	is($steps->[-1]{reason}, 'up-to-date', "$name: the feeder reaches up-to-date once the fault is gone");
	is(sql($node, "SELECT title FROM items WHERE id = 1"), "change $n", "$name: the change applied after recovery");
	is(sub_status($node, 'h', 'state'), 'live', "$name: live again");
}
is_table_synced($node, $server, 'items', \@cols, 'the table matches the server after every fault');

# a fault in the middle of a paged catch-up: the pages before it stay
# spooled, the failed one is asked again, and the snapshot lands whole
$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 5,
	rows => [ map { { id => "$_", title => "second $_" } } 1 .. 23 ]);
$steps = feed($node, 'h', calls => 3);    # 409, page 1, page 2
$server->fault(kind => 'reset_mid_body', table => 'items', when => 'nonlive', count => 1);
$steps = feed($node, 'h', calls => 1);
my ($ing) = grep { $_->{step} eq 'ingest' } @$steps;
is($ing->{result}{state}, 'backoff', 'a reset in the middle of the catch-up: backoff');
is(sql($node, "SELECT count(*) FILTER (WHERE title LIKE 'second%') FROM items"), '0', 'nothing of the new snapshot applied yet');
$steps = feed($node, 'h', until_up_to_date => 1);
is_table_synced($node, $server, 'items', \@cols, 'the snapshot landed whole: no page lost or applied twice');
cmp_ok(sub_status($node, 'h', 'rows_applied'), '>=', 12 + 23, 'rows_applied counts both snapshots');

# bodies the host makes up
my $hdr = sub {
	my (%h) = @_;
	(my $j = encode_json(\%h)) =~ s/'/''/g;
	return $j;
};
my $req = decode_json(sql($node, "SELECT electric.next_request('h')"));
my ($handle) = $req->{url} =~ /handle=([^&]+)/;
my ($offset) = $req->{url} =~ /offset=([^&]+)/;
ok($handle && $offset, "a live request for handle $handle at $offset");
my $res = decode_json(sql($node, "SELECT electric.ingest_response('h', 200, '" . $hdr->('electric-handle' => $handle, 'electric-offset' => $offset, 'electric-cursor' => '1', 'content-type' => 'application/json') . "', convert_to('this is not json', 'UTF8'))"));
is($res->{state}, 'backoff', 'a body that is not JSON: backoff');
like($res->{error}, qr/malformed/, '... malformed');
is($res->{applied}, 0, '... nothing applied');

sleep 2;    # past the backoff
my $before = sql($node, "SELECT handle || ' ' || \"offset\" FROM electric.subscriptions WHERE name = 'h'");
my $body = '[{"key":"\"public\".\"items\"/\"1\"","value":{"id":"1","title":"forged"},"headers":{"operation":"update","relation":["public","items"],"lsn":"999999","op_position":0,"last":true,"txids":[1]}},{"headers":{"control":"up-to-date","global_last_seen_lsn":"999999"}}]';
(my $b = $body) =~ s/'/''/g;
$req = decode_json(sql($node, "SELECT electric.next_request('h')"));
$res = decode_json(sql($node, "SELECT electric.ingest_response('h', 200, '" . $hdr->('electric-handle' => '12345-999', 'electric-offset' => '999999_0', 'electric-cursor' => '1', 'electric-up-to-date' => '', 'content-type' => 'application/json') . "', convert_to('$b', 'UTF8'))"));
{
	isnt($res->{state}, 'live', 'a response for another handle is refused (not live)');
	isnt(sql($node, "SELECT title FROM items WHERE id = 1"), 'forged', 'nothing from a response for another handle applied');
	is(sql($node, "SELECT handle || ' ' || \"offset\" FROM electric.subscriptions WHERE name = 'h'"), $before, 'the stored position stays');
}

$node->stop;
$server->stop;
done_testing();
