# Limits: an electric-handle longer than 255 bytes, or an electric-offset or
# electric-cursor longer than 127, is refused (state error, last_error names
# the header), never truncated and stored; the subscription heals when the
# server answers normally again.  The same holds for a host-driven one.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use JSON::PP;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('header_limits');
my $T = JSON::PP::true;
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 3 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");

my $up_to_date = '[{"headers":{"control":"up-to-date","global_last_seen_lsn":"1"}}]';
sub fake_200
{
	my (%headers) = @_;
	return (kind => 'status', status => 200, body => $up_to_date,
		headers => { 'electric-offset' => '0_0', 'electric-cursor' => '1', 'electric-up-to-date' => 'true',
			'electric-schema' => '{}', %headers });
}

# ---- a long handle on the first response ----
my $long_handle = '7' x 300;
$server->fault(fake_200('electric-handle' => $long_handle), table => 'items', when => 'initial', count => -1);
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), 'a 300-byte electric-handle: state error');
like(sub_status($node, 'items', 'last_error'), qr/electric-handle header is longer than this version accepts/, 'last_error names the header');
is(sub_status($node, 'items', "coalesce(handle, 'none') || ' ' || coalesce(\"offset\", 'none')"), 'none none', 'no position stored');
sleep 1;
my @long = grep { ($_->{query}{handle} // '') =~ /^7+$/ } @{ $server->requests('items') };
is(scalar(@long), 0, 'no request ever carried the long handle or a piece of it');

# exactly at the limit: 256 bytes is one too many
$server->clear_faults;
$server->fault(fake_200('electric-handle' => '7' x 256), table => 'items', when => 'initial', count => -1);
$server->clear_requests;
my $end = time + 10;
sleep 1 until time > $end || grep { $_->{fault} } @{ $server->requests('items') };
ok((grep { $_->{fault} } @{ $server->requests('items') }), 'retried, and answered with a 256-byte handle');
sleep 1;
is(sub_status($node, 'items', 'state'), 'error', 'a 256-byte handle is refused too');
@long = grep { ($_->{query}{handle} // '') =~ /^7+$/ } @{ $server->requests('items') };
is(scalar(@long), 0, 'and never sent back');
$server->clear_faults;
ok(wait_sync($node, 'items'), 'a normal answer: synced');
is_table_synced($node, $server, 'items', \@cols, 'the table equals the server');

# ---- a long offset and a long cursor (every answer has it) ----
my $handle = sub_status($node, 'items', 'handle');
my $offset = sub_status($node, 'items', '"offset"');
for my $case ([ 'electric-offset', '0_' . ('1' x 200) ], [ 'electric-cursor', '9' x 200 ])
{
	my ($name, $value) = @$case;
	$server->fault(fake_200('electric-handle' => $handle, 'electric-offset' => $offset, $name => $value),
		table => 'items', count => -1);
	# replace the long-poll in flight, so that every later answer has the header
	sql($node, "SELECT electric.wait_for_sync('items', '0.2 s')");
	ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), "a 200-byte $name: state error");
	like(sub_status($node, 'items', 'last_error'), qr/$name header is longer than this version accepts/, 'last_error names it');
	$offset = sub_status($node, 'items', '"offset"');
	$server->txn('items', { op => 'update', row => { id => '1', title => "after $name" } });
	sleep 2;    # retried at the cap meanwhile
	is(sub_status($node, 'items', "handle || ' ' || \"offset\" || ' ' || state"), "$handle $offset error", 'the stored position is unchanged');
	isnt(sql($node, "SELECT title FROM items WHERE id = 1"), "after $name", 'nothing applied');
	my @sent = grep { length($_->{query}{offset} // '') > 100 || length($_->{query}{cursor} // '') > 100 } @{ $server->requests('items') };
	is(scalar(@sent), 0, 'nothing truncated was sent back');
	$server->clear_faults;
	ok(wait_until($node, "SELECT title = 'after $name' FROM items WHERE id = 1", 20), 'healed: the change arrives');
	ok(wait_sync($node, 'items'), 'live');
}

# ---- host-driven: the same refusal from ingest_response ----
sql($node, "CREATE TABLE hitems (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'hitems', '{id}', shape_key => 'h', worker => false)");
(my $hdr = encode_json({ 'electric-handle' => 'x' x 300, 'electric-offset' => '0_0', 'electric-up-to-date' => 'true' })) =~ s/'/''/g;
my $res = decode_json(sql($node, "SELECT electric.ingest_response('h', 200, '$hdr', convert_to('$up_to_date', 'UTF8'))"));
is($res->{state}, 'error', 'host-driven: a 300-byte handle is refused, state error');
like($res->{error}, qr/electric-handle header is longer than this version accepts/, '... saying which header');
is(sub_status($node, 'h', "coalesce(handle, 'none')"), 'none', 'no handle stored');
like(sql($node, "SELECT electric.next_request('h')"), qr/"wait_ms"/, 'the host is asked to wait (at the backoff cap)');
sleep 2;
like(sql($node, "SELECT electric.next_request('h')"), qr/offset=-1/, 'then to ask again from -1');

$node->stop;
$server->stop;
done_testing();
