# Host-driven subscriptions survive their feeding process: the pages of an
# incomplete batch are spooled in electric.spool_block in the caller's
# transaction, so a feeder that stops between two calls, one killed in the
# middle of a request, and a server restart in between lose nothing: the
# next feeder continues the same batch, and the snapshot lands once, whole.
# The spool is unlogged: a crash empties it, and the engine notices that a
# stream counts blocks that are gone, drops the answer to a request handed
# out before the crash, and fetches the batch again from its committed
# position.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use HostFeed;
use SyncTest;
use Test::More;
use HTTP::Tiny;
use PostgreSQL::Test::Utils;
use JSON::PP;
use Time::HiRes qw(usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('host_restart');
my $T = JSON::PP::true;
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 5,
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 40 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");
sql($node, "INSERT INTO items VALUES (1000, 'local row, replaced by the snapshot')");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'h', worker => false)");

sub spooled
{
	return sql($node, "SELECT count(*) FROM electric.spool_block b JOIN electric.subscription s ON s.id = b.subid WHERE s.name = 'h'");
}

# feeder 1: three pages, then it stops between two calls
my $steps = feed($node, 'h', calls => 3);
is(scalar(grep { $_->{step} eq 'ingest' && $_->{status} == 200 } @$steps), 3, 'feeder 1 fed three pages');
is($steps->[-1]{reason}, 'calls', 'and stopped between two calls');
cmp_ok(spooled(), '>', 0, 'the pages are spooled in electric.spool_block');
is(sql($node, "SELECT string_agg(id::text, ',') FROM items"), '1000', 'nothing applied yet: the table is as before');
is(sub_status($node, 'h', "state || ' ' || is_up_to_date"), 'initial_sync false', 'state initial_sync');
my $req = sql($node, "SELECT electric.next_request('h')");
like($req, qr/offset=0_2/, 'the next request continues after the third page (offset 0_2)');

# the server restarts between two feeders: the spool is in a table
$node->restart;
cmp_ok(spooled(), '>', 0, 'the spool survived a server restart');

# feeder 2: two more pages
$steps = feed($node, 'h', calls => 2);
my @urls = map { $_->{url} } grep { $_->{step} eq 'request' } @$steps;
like($urls[0], qr/offset=0_2/, 'feeder 2 started where feeder 1 stopped');
is(sql($node, "SELECT count(*) FROM items"), '1', 'still nothing applied');

# feeder 3 is killed in the middle of a request
$server->fault(kind => 'delay', ms => 4000, table => 'items', when => 'nonlive', count => 1);
my $bg = start_feed($node, 'h');
my $end = time + 10;
usleep(100_000) until $bg->{out} =~ /"step":"request"/ || time > $end || !($bg->{handle}->pump_nb, 1);
usleep(500_000);
my $killed = finish_feed($bg, 'KILL');
is(scalar(grep { $_->{step} eq 'ingest' } @$killed), 0, 'feeder 3 was killed during its first request, before ingest_response');
like((grep { $_->{step} eq 'request' } @$killed)[0]{url} // '', qr/offset=0_4/, 'it had asked for the sixth page');
is(sql($node, "SELECT count(*) FROM items"), '1', 'nothing applied');
$server->clear_faults;

# feeder 4 finishes the batch
$steps = feed($node, 'h', until_up_to_date => 1);
@urls = map { $_->{url} } grep { $_->{step} eq 'request' } @$steps;
like($urls[0], qr/offset=0_4/, 'feeder 4 asks the page feeder 3 never delivered');
is($steps->[-1]{reason}, 'up-to-date', 'feeder 4 reached up-to-date');
my ($last) = grep { $_->{step} eq 'ingest' } reverse @$steps;
is($last->{result}{applied}, 40, 'the whole snapshot applied at once: 40 rows');
is_table_synced($node, $server, 'items', \@cols, 'the table equals the server: no page lost, none applied twice, the local row replaced');
is(sub_status($node, 'h', "state || ' ' || rows_applied"), 'live 40', 'live, 40 rows applied');
is(spooled(), '0', 'the spool is empty once the batch committed');

# the request log: every page was answered once to a feeder that ingested it
my @ok = map { $_->{query}{offset} } grep { ($_->{status} // 0) == 200 && !$_->{live} && !$_->{aborted} } @{ $server->requests('items') };
my %seen;
my @dups = grep { $seen{$_}++ } @ok;
# the killed feeder's page was answered after it died (the delay), to nobody
is(scalar(grep { $_ ne '0_4' } @dups), 0, 'no page but the killed one was fetched twice (offsets: ' . join(' ', @ok) . ')');

# live changes after all that
$server->txn('items', { op => 'insert', row => { id => '41', title => 'after the restarts' } }, { op => 'delete', row => { id => '1' } });
$steps = feed($node, 'h', until_up_to_date => 1);
is_table_synced($node, $server, 'items', \@cols, 'live changes arrive');

# ---- a crash empties the unlogged spool: the batch is fetched again, whole ----

# next_request for one shape, and the server's answer to it (HTTP::Tiny; none while it backs off)
sub ask
{
	my ($name, $shape) = @_;
	my $q = decode_json(sql($node, "SELECT electric.next_request('$name'" . ($shape ? ", '$shape'" : '') . ")"));
	return ($q, $q->{url} ? HTTP::Tiny->new->get($q->{url}, { headers => $q->{headers} }) : undef);
}

# ingest_response with that answer
sub answer
{
	my ($name, $shape, $res) = @_;
	my $hdrs = JSON::PP->new->canonical->encode({ map { $_ => $res->{headers}{$_} } grep { /^electric-/ } keys %{ $res->{headers} } });
	$hdrs =~ s/'/''/g;
	return decode_json(sql($node, "SELECT electric.ingest_response('$name', $res->{status}, '$hdrs'::jsonb, decode('"
		  . unpack('H*', $res->{content}) . "', 'hex')" . ($shape ? ", '$shape'" : '') . ")"));
}

sub counted
{
	my ($name, $shape) = @_;
	return sql($node, "SELECT (stream->>'spool_end')::bigint - (stream->>'spool_base')::bigint FROM electric.shape_state st "
		  . "JOIN electric.subscription s ON s.id = st.subid WHERE s.name = '$name' AND st.shape = '$shape'");
}

sub held
{
	my ($name) = @_;
	return sql($node, "SELECT count(*) FROM electric.spool_block b JOIN electric.subscription s ON s.id = b.subid WHERE s.name = '$name'");
}

sub crash
{
	$node->stop('immediate');
	$node->start;
}

$server->create_table(
	name => 'crashy',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 5,
	rows => [ map { { id => "$_", title => "crashy $_" } } 1 .. 30 ]);
sql($node, "CREATE TABLE crashy (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('crashy') . "', 'crashy', '{id}', shape_key => 'c', worker => false)");
$steps = feed($node, 'c', calls => 3);
is(scalar(grep { $_->{step} eq 'ingest' && $_->{status} == 200 } @$steps), 3, 'three pages of a second snapshot fed');
cmp_ok(held('c'), '>', 0, 'they are spooled');

# a request handed out, answered by the server, then the database crashes
my ($next, $res) = ask('c');
like($next->{url}, qr/offset=0_2/, 'the fourth page is asked for');
is($res->{status}, 200, 'and the server answers it');
$server->clear_requests;
crash();
is(held('c'), '0', 'the crash emptied the unlogged spool');
cmp_ok(counted('c', 'c'), '>', 0, 'while the stream (logged) still counts its blocks');

# the answer from before the crash is not ingested
my $log_at = -s $node->logfile;
my $r = answer('c', undef, $res);
is($r->{applied} . ' ' . ($r->{error} // 'no error'), '0 no error', 'ingest_response drops the answer to a request of the lost batch');
is($r->{state} . ' ' . ($r->{is_up_to_date} ? 'up to date' : 'not up to date'), 'starting not up to date', '... and says the subscription starts again');
is(sql($node, "SELECT count(*) FROM crashy"), '0', 'nothing applied');
is(counted('c', 'c'), '0', 'the stream counts no spooled blocks any more');
like(substr(slurp_file($node->logfile), $log_at), qr/subscription "c" lost the responses it had spooled/, 'the server log says so');
like(sql($node, "SELECT electric.next_request('c')"), qr/offset=-1/, 'the snapshot is asked for again from -1');

# a crash again, and this time next_request is the first to notice
$steps = feed($node, 'c', calls => 2);
cmp_ok(held('c'), '>', 0, 'two pages spooled again');
crash();
like(sql($node, "SELECT electric.next_request('c')"), qr/offset=-1/, 'after the second crash, next_request starts from -1');

$steps = feed($node, 'c', until_up_to_date => 1);
is($steps->[-1]{reason}, 'up-to-date', 'the feeder reaches up-to-date');
($last) = grep { $_->{step} eq 'ingest' } reverse @$steps;
is($last->{result}{applied}, 30, 'the whole snapshot applied at once: 30 rows');
is_table_synced($node, $server, 'crashy', \@cols, 'the table equals the server: no page lost, none applied twice');
is(held('c'), '0', 'the spool is empty once the batch committed');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' && ($_->{status} // 0) == 200 } @{ $server->requests('crashy') }), 2,
	'the server was asked for the snapshot from -1 once after each crash');
is_table_synced($node, $server, 'items', \@cols, 'the other subscription lost nothing');

# ---- a group: one loop per shape; the loss voids every shape's request ----
for my $t (qw(ga gb))
{
	$server->create_table(
		name => $t,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		page_rows => 5,
		rows => [ map { { id => "$_", title => "$t $_" } } 1 .. 20 ]);
	sql($node, "CREATE TABLE $t (id int PRIMARY KEY, title text)");
}
sql($node, "SELECT electric.sync_shapes_to_tables('{"
	  . join(', ', map { "\"$_\": {\"shape\": " . $server->shape($_) . ", \"table_name\": \"$_\", \"primary_key\": [\"id\"]}" } qw(ga gb))
	  . "}', shape_key => 'g', worker => false)");
for my $shape (qw(ga gb))
{
	for (1 .. 2)
	{
		my ($q, $a) = ask('g', $shape);
		answer('g', $shape, $a);
	}
	cmp_ok(counted('g', $shape), '>', 0, "group: two pages of $shape spooled");
}
my (undef, $res_a) = ask('g', 'ga');
my ($q_b, $res_b) = ask('g', 'gb');
like($q_b->{url}, qr/offset=0_1/, 'group: both loops have a request out (gb at its third page)');
$server->clear_requests;
crash();
$r = answer('g', 'ga', $res_a);
is($r->{applied}, 0, 'group: the first answer after the crash is dropped');
$r = answer('g', 'gb', $res_b);
is($r->{applied} . ' ' . counted('g', 'gb'), '0 0', 'group: so is the other shape\'s, though its call found the spool already reset');
for my $shape (qw(ga gb))
{
	like(sql($node, "SELECT electric.next_request('g', '$shape')"), qr/offset=-1/, "group: $shape starts again from -1");
}
# the two loops take turns in this one session, as the README asks of a group's loops
my $group_live = "SELECT state = 'live' AND is_up_to_date FROM electric.subscriptions WHERE name = 'g'";
for (1 .. 40)
{
	last if sql($node, $group_live) eq 't';
	for my $shape (qw(ga gb))
	{
		my ($q, $a) = ask('g', $shape);
		if ($q->{url}) { answer('g', $shape, $a) }
		else { usleep(1000 * ($q->{wait_ms} // 100)) }
	}
}
is(sql($node, $group_live), 't', 'group: up to date again');
is_table_synced($node, $server, $_, \@cols, "group: $_ equals the server") for qw(ga gb);
is(held('g'), '0', 'group: nothing left spooled');

# ---- unkeyed: after the loss it starts afresh from -1 and replaces its table ----
sub unk_table
{
	my ($prefix, @ids) = @_;
	$server->create_table(
		name => 'unk',
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		page_rows => 5,
		rows => [ map { { id => "$_", title => "$prefix $_" } } @ids ]);
}
unk_table('first', 1 .. 20);
sql($node, "CREATE TABLE unk (id int PRIMARY KEY, title text)");
my $unk = sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('unk') . "', 'unk', '{id}', worker => false)");
$steps = feed($node, $unk, until_up_to_date => 1);
is_table_synced($node, $server, 'unk', \@cols, 'unkeyed: synced');
unk_table('second', 11 .. 35);    # a new table of that name: the shape rotates
$steps = feed($node, $unk, calls => 4);
cmp_ok(held($unk), '>', 0, 'unkeyed: pages of the new snapshot spooled after the 409');
is(sql($node, "SELECT count(*) FILTER (WHERE title LIKE 'first %') FROM unk"), '20', 'unkeyed: the old rows still there');
$server->clear_requests;
crash();
$steps = feed($node, $unk, until_up_to_date => 1);
my ($first) = grep { ($_->{status} // 0) == 200 } @{ $server->requests('unk') };
is(($first->{query}{offset} // '') . ' ' . ($first->{query}{handle} // 'no handle'), '-1 no handle',
	'unkeyed: after the crash it starts afresh, from -1');
is_table_synced($node, $server, 'unk', \@cols, 'unkeyed: the table is replaced, old rows gone');
is(held($unk), '0', 'unkeyed: nothing left spooled');

$node->stop;
$server->stop;
done_testing();
