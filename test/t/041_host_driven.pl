# Host-driven subscriptions (worker => false), fed by test/host/feed.mjs:
# no worker runs them; a paged snapshot fed call by call equals the server's
# table, live changes arrive, a 409 (rotated shape) replaces the table
# atomically, the functions refuse what they must, and wait_for_sync is a
# barrier for a host-driven subscription while a feeder runs.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use HostFeed;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('host_driven');
my $T = JSON::PP::true;
my @cols = qw(id title);

sub make_items
{
	my ($prefix, $n) = @_;
	$server->create_table(
		name => 'items',
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		page_rows => 4,
		rows => [ map { { id => "$_", title => "$prefix $_" } } 1 .. $n ]);
}
make_items('item', 22);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");

is(sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'h', worker => false)"),
	'h', 'a host-driven subscription is created');
is(sub_status($node, 'h', "worker || ' ' || state || ' ' || coalesce(worker_pid::text, 'no pid')"), 'false starting no pid',
	'no worker runs it: state starting, no worker_pid');
sleep 1;
is(count_requests($server, 'items'), 0, 'nobody asked the server on its own');
is(sql($node, "SELECT electric.wait_for_sync('h', '1 s')"), 'f', 'wait_for_sync is false while no feeder runs');

# the functions' contract
my $req = sql($node, "SELECT electric.next_request('h')");
like($req, qr/"url": "http:\/\/127\.0\.0\.1:\d+\/v1\/shape\?[^"]*offset=-1/, 'next_request: the URL at offset -1');
like($req, qr/"live": false/, 'next_request: not live while catching up');
like($req, qr/"timeout_ms": \d+/, 'next_request: a timeout');
like($req, qr/"shape": "h"/, 'next_request: the shape (the subscription\'s own name)');
my ($rc, $out, $err) = $node->psql('postgres', "CREATE TABLE other (id int PRIMARY KEY); SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'other', '{id}', shape_key => 'w'); SELECT electric.next_request('w')");
like($err, qr/subscription "w" is run by a background worker/, 'next_request refuses a worker-run subscription');
($rc, $out, $err) = $node->psql('postgres', "SELECT electric.ingest_response('w', 200, '{}', ''::bytea)");
like($err, qr/subscription "w" is run by a background worker/, 'ingest_response refuses a worker-run subscription');
($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT electric.ingest_response('w', 200, '{}', ''::bytea)");
like($err, qr/55000/, '... with SQLSTATE 55000');
sql($node, "SELECT electric.delete_subscription('w')");
($rc, $out, $err) = $node->psql('postgres', "CALL electric.sync_now('h')");
like($err, qr/subscription "h" is host-driven/, 'sync_now refuses a host-driven subscription');

# ---- a paged snapshot, fed call by call ----
$server->clear_requests;
my $steps = feed($node, 'h', until_up_to_date => 1);
my @ingests = grep { $_->{step} eq 'ingest' } @$steps;
cmp_ok(scalar(@ingests), '>=', 6, 'the 22-row snapshot took several calls (pages of 4): ' . scalar(@ingests));
is($steps->[-1]{reason}, 'up-to-date', 'the feeder stopped at the first up-to-date');
is_deeply([ map { $_->{result}{applied} } @ingests[0 .. $#ingests - 1] ], [ (0) x $#ingests ],
	'nothing applied before the last page');
is($ingests[-1]{result}{applied}, 22, 'the last call applied the whole snapshot (22 rows)');
is($ingests[-1]{result}{state}, 'live', 'state live');
is_table_synced($node, $server, 'items', \@cols, 'the table equals the server\'s');
my @reqs = @{ $server->requests('items') };
is($reqs[0]{query}{offset}, '-1', 'the first request started at -1');
is(scalar(grep { $_->{status} == 200 && !$_->{live} } @reqs), scalar(@ingests), 'one server request per ingested response');
is(sub_status($node, 'h', "state || ' ' || is_up_to_date || ' ' || rows_applied"), 'live true 22', 'the view: live, up to date, 22 rows');
like(sub_status($node, 'h', 'handle'), qr/^\d+-\d+$/, 'the view shows the handle');
like(sql($node, "SELECT electric.next_request('h')"), qr/"live": true/, 'once up to date, the next request is a long-poll');

# ---- live changes ----
$server->txn('items',
	{ op => 'insert', row => { id => '100', title => 'live insert' } },
	{ op => 'update', row => { id => '1', title => 'live update' } },
	{ op => 'delete', row => { id => '2' } });
$steps = feed($node, 'h', until_up_to_date => 1);
@ingests = grep { $_->{step} eq 'ingest' } @$steps;
is($ingests[-1]{result}{applied}, 3, 'the live transaction applied in one call');
is_table_synced($node, $server, 'items', \@cols, 'live insert, update and delete applied');

# ---- 409: the shape is rotated with new content; the table is replaced atomically ----
make_items('rotated', 13);
$steps = feed($node, 'h', calls => 1);
is($steps->[-2]{status}, 409, 'the next request got 409');
is($steps->[-2]{result}{state}, 'initial_sync', 'state initial_sync after the 409');
is(sql($node, "SELECT count(*) FROM items WHERE title LIKE 'rotated%'"), '0', 'nothing replaced yet');
$steps = feed($node, 'h', calls => 2);
is(sql($node, "SELECT count(*) || ' ' || count(*) FILTER (WHERE title LIKE 'rotated%') FROM items"), '22 0',
	'after two pages of the new snapshot the old rows are all still there');
$steps = feed($node, 'h', until_up_to_date => 1);
is_table_synced($node, $server, 'items', \@cols, 'after the last page the table is the new snapshot, old rows gone');
@reqs = @{ $server->requests('items') };
my ($after409) = grep { ($_->{query}{offset} // '') eq '-1' } reverse @reqs;
ok($after409, 'the refetch restarted at offset -1');

# ---- wait_for_sync while a feeder runs ----
my $bg = start_feed($node, 'h', seconds => 25);
ok(wait_until($node, "SELECT state = 'live' FROM electric.subscriptions WHERE name = 'h'"), 'live with the feeder running');
$server->txn('items', { op => 'update', row => { id => '3', title => 'barrier' } });
is(sql($node, "SELECT electric.wait_for_sync('h', '20 s')"), 't', 'wait_for_sync returns true while a feeder runs');
is(sql($node, "SELECT title FROM items WHERE id = 3"), 'barrier', 'and what the server had at the call is in the table');
$server->txns('items', map { { ops => [ { op => 'insert', row => { id => "$_", title => "bulk $_" } } ] } } 200 .. 230);
is(sql($node, "SELECT electric.wait_for_sync('h', '20 s')"), 't', 'wait_for_sync again');
is_table_synced($node, $server, 'items', \@cols, 'every transaction applied');

# alter_subscription and headers_function reach the host through next_request
$bg->{handle}->signal('TERM') if $bg->{handle}->pumpable;
finish_feed($bg);
sql($node, q{
	CREATE SEQUENCE hseq;
	CREATE FUNCTION hf(sub text) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('X-Seq', nextval('public.hseq')::text, 'X-Sub', sub) $$;
});
sql($node, q{SELECT electric.alter_subscription('h', headers => '{"X-Static": "s"}', headers_function => 'hf(text)')});
my @hreq = map { JSON::PP->new->decode(sql($node, "SELECT electric.next_request('h')")) } 1 .. 2;
is($hreq[0]{headers}{'X-Static'}, 's', 'next_request hands out the altered headers');
is($hreq[0]{headers}{'X-Sub'}, 'h', 'and calls the headers function with the subscription name');
is($hreq[1]{headers}{'X-Seq'}, $hreq[0]{headers}{'X-Seq'} + 1, 'once per request');
$server->clear_requests;
$server->txn('items', { op => 'update', row => { id => '4', title => 'with headers' } });
$steps = feed($node, 'h', until_up_to_date => 1);
my ($hr) = grep { ($_->{headers}{'x-static'} // '') eq 's' } @{ $server->requests('items') };
ok($hr && $hr->{headers}{'x-seq'}, 'the feeder sent them to the server');
is(sql($node, "SELECT title FROM items WHERE id = 4"), 'with headers', 'and the change arrived');
$bg = start_feed($node, 'h', seconds => 25);
ok(wait_until($node, "SELECT state = 'live' FROM electric.subscriptions WHERE name = 'h'"), 'a feeder runs again');

# unsubscribe: next_request says NULL, the feeder stops on its own
sql($node, "SELECT electric.unsubscribe('h')");
my $fed = finish_feed_when_done($bg);
ok((grep { $_->{step} eq 'stopped' } @$fed), 'after unsubscribe the feeder got NULL from next_request and stopped');
is(sql($node, "SELECT electric.next_request('h') IS NULL"), 't', 'next_request is NULL once stopped');
is(sub_status($node, 'h', 'state'), 'stopped', 'the view says stopped');
($rc, $out, $err) = $node->psql('postgres', "SELECT electric.ingest_response('h', 200, '{}', ''::bytea)");
like($err, qr/subscription "h" is stopped/, 'ingest_response refuses a stopped subscription');

# ---- the spool is read back a block at a time, not held in memory ----
# Every SPI call returns in SPI's procedure context, which lasts for the
# whole ingest_response call; a spool block read back after one used to
# stay there, so the last call held the whole snapshot (twice over).  A
# statement trigger looks at that context after each statement that loads
# rows (the trigger also keeps the rows off the direct loader).
my $GEN = 160_000;
$server->generate('gen', rows => $GEN, page_rows => 10_000);
sql($node, q{
	CREATE TABLE gen (id int8 PRIMARY KEY, title text, done bool, created_at timestamptz, amount numeric);
	CREATE TABLE gen_probe (spi_proc int8);
	CREATE FUNCTION gen_probe() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO gen_probe SELECT max(total_bytes) FROM pg_catalog.pg_backend_memory_contexts WHERE name = 'SPI Proc';
		RETURN NULL;
	END $$;
	CREATE TRIGGER gen_probe AFTER INSERT ON gen FOR EACH STATEMENT EXECUTE FUNCTION gen_probe();
});
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('gen') . "', 'gen', '{id}', shape_key => 'gen', worker => false)");
$steps = feed($node, 'gen', calls => $GEN / 10_000 - 1);
is((grep { $_->{step} eq 'ingest' && $_->{result}{applied} } @$steps), 0, 'all but the last page of the 160,000 rows spooled');
my $spooled = sql($node, "SELECT sum(octet_length(data)) FROM electric.spool_block b JOIN electric.subscription s ON s.id = b.subid WHERE s.name = 'gen'");
cmp_ok($spooled, '>', 20 * 1024 * 1024, "the spool holds them: $spooled bytes");
$steps = feed($node, 'gen', until_up_to_date => 1, timeout => 120);
@ingests = grep { $_->{step} eq 'ingest' } @$steps;
is($ingests[-1]{result}{applied}, $GEN, 'the last call applied the snapshot');
is(sql($node, "SELECT count(*) || ' ' || sum(id) FROM gen"), "$GEN " . ($GEN * ($GEN + 1) / 2), 'every row is in the table');
my $proc = sql($node, "SELECT max(spi_proc) FROM gen_probe");
cmp_ok($proc, '<', $spooled / 4, "the ingest call's SPI context held at most $proc bytes during the load, for a spool of $spooled");
sql($node, "SELECT electric.delete_subscription('gen')");

sub finish_feed_when_done
{
	my ($f) = @_;
	my $end = time + 15;
	while (time < $end && $f->{handle}->pumpable)
	{
		$f->{handle}->pump_nb;
		last if $f->{out} =~ /"step":"stopped"/;
		select(undef, undef, undef, 0.1);
	}
	return finish_feed($f);
}

$node->stop;
$server->stop;
done_testing();
