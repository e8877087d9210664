# live_sse: once caught up, the worker keeps one text/event-stream response
# open and applies batch after batch from it (each up-to-date is a commit),
# instead of a long-poll per batch.  Keep-alives are ignored, a stream the
# server closes is opened again where the last batch ended, a stream cut in
# the middle of an event loses and repeats nothing, three streams in a row
# under a second fall back to long-polling, and unsubscribe and
# alter_subscription act within a second even in the middle of a stream.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $server = ElectricServer->new(long_poll_ms => 2000);
my $node = sync_node('sse');
my $T = JSON::PP::true;
my @cols = qw(id title);

$server->config(sse_keepalive_ms => 300, sse_timeout_ms => 4000);
$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => $_, title => "item $_" } } 1 .. 20 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");

my $shape = $server->shape_def('items');
$shape->{live_sse} = $T;
sql($node, "SELECT electric.sync_shape_to_table('" . sql_json($shape) . "', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'a live_sse shape syncs');
is_table_synced($node, $server, 'items', \@cols, 'the snapshot');

sub sse_requests { [ grep { $_->{sse} } @{ $server->requests('items') } ] }
ok(wait_until($node, "SELECT true", 1) && (sleep(1), scalar @{ sse_requests() }) >= 1, 'once caught up, the worker opens an event stream');
like(sql($node, "SELECT query FROM pg_stat_activity a JOIN electric.subscriptions s ON a.pid = s.worker_pid WHERE s.name = 'items'"),
	qr/^streaming .*live_sse=true/, 'pg_stat_activity says it is streaming');

# ---- batches on one stream ----
$server->clear_requests;
for my $i (1 .. 10)
{
	$server->txn('items', { op => 'update', row => { id => $i, title => "changed $i" } });
	usleep(100_000);
}
ok(wait_until($node, "SELECT count(*) = 10 FROM items WHERE title LIKE 'changed %'"), 'ten transactions, each applied');
is_table_synced($node, $server, 'items', \@cols, 'the table equals the server');
my $streams = scalar @{ sse_requests() };
cmp_ok($streams, '<=', 2, "... from at most two streams ($streams): batch after batch on one");
my $commits = () = substr(slurp_file($node->logfile), 0) =~ /subscription "items": committed batch/g;
cmp_ok($commits, '>=', 5, "each batch of the stream committed on its own ($commits commits so far)");
is(sub_status($node, 'items', "state || ' ' || is_up_to_date"), 'live true', 'live and up to date');

# ---- keep-alives, and the server closing the stream ----
$server->clear_requests;
sleep 9;	# 30 keep-alives; the server closes every stream after 4 s
my @reqs = @{ $server->requests('items') };
my @sse = grep { $_->{sse} } @reqs;
cmp_ok(scalar(@sse), '>=', 2, 'closed by the server, the stream is opened again (' . scalar(@sse) . ' streams in 9 s)');
cmp_ok(scalar(@sse), '<=', 5, '... and not more often than it closes');
is(scalar(grep { !$_->{sse} } @reqs), 0, 'no long-poll meanwhile');
is(sub_status($node, 'items', "state || ' ' || coalesce(last_error, 'none')"), 'live none', 'keep-alives are no error');
my %offsets = map { $_->{query}{offset} => 1 } @sse;
ok(!$offsets{'-1'}, 'every stream resumes at a log offset: ' . join(', ', sort keys %offsets));
$server->txn('items', { op => 'insert', row => { id => 100, title => 'after the quiet' } });
ok(wait_until($node, "SELECT count(*) = 1 FROM items WHERE id = 100"), 'a change after the quiet arrives');

# ---- a whole minute of keep-alives only, at Electric's default interval ----
# (21 s apart: a stream that needed data more often, or that timed out as a
# request does after pglite_sync.http_timeout, 60 s, would be reopened)
$server->config(sse_keepalive_ms => 21000, sse_timeout_ms => 120000);
sleep 5;	# the current stream ends at its 4 s; the next one has the new settings
$server->clear_requests;
sleep 65;
@reqs = @{ $server->requests('items') };
is(scalar(@reqs), 0, 'a minute with nothing but keep-alives: the same stream stays open (' . scalar(@reqs) . ' new requests)');
is(sub_status($node, 'items', "state || ' ' || coalesce(last_error, 'none')"), 'live none', '... live, no error');
$server->txn('items', { op => 'insert', row => { id => 102, title => 'after the quiet minute' } });
ok(wait_until($node, "SELECT count(*) = 1 FROM items WHERE id = 102", 5), 'a change after the quiet minute arrives on that stream');
is(scalar(@{ $server->requests('items') }), 0, '... without a new request');
$server->config(sse_keepalive_ms => 300, sse_timeout_ms => 4000);

# ---- a stream cut in the middle of an event ----
$server->fault(kind => 'sse_cut_mid_event', after_events => 1, count => 1);
$server->multi_txn(map { { table => 'items', op => 'update', row => { id => $_, title => "cut $_" } } } 11 .. 15);
$server->txn('items', { op => 'insert', row => { id => 101, title => 'after the cut' } });
ok(wait_until($node, "SELECT count(*) = 1 FROM items WHERE id = 101", 30), 'after a stream cut mid-event, the changes arrive');
ok(wait_sync($node, 'items'), 'up to date');
is_table_synced($node, $server, 'items', \@cols, 'nothing lost, nothing applied twice');
ok(scalar(grep { ($_->{fault} // '') eq 'sse_cut_mid_event' } @{ $server->requests('items') }), 'a stream was cut (the server\'s log says so)');

# ---- unsubscribe and alter_subscription in the middle of a stream ----
sleep 1;
my $t0 = time;
sql($node, "SELECT electric.alter_subscription('items', headers => '{\"X-Token\": \"second\"}')");
ok(wait_until($node, "SELECT true", 1) && do {
	my $deadline = time + 5;
	my $seen;
	while (time < $deadline) { $seen = grep { ($_->{headers}{'x-token'} // '') eq 'second' } @{ $server->requests('items') }; last if $seen; usleep(20_000) }
	$seen }, 'alter_subscription reaches the server mid-stream');
cmp_ok(time - $t0, '<', 2, sprintf('within a second or so (%.2f s)', time - $t0));
$t0 = time;
sql($node, "SELECT electric.unsubscribe('items')");
ok(wait_until($node, "SELECT worker_pid IS NULL FROM electric.subscriptions WHERE name = 'items'", 5), 'unsubscribe stops the worker mid-stream');
cmp_ok(time - $t0, '<', 1.5, sprintf('within a second (%.2f s)', time - $t0));

# ---- three short streams: long-polling from then on ----
$server->fault(kind => 'sse_short', count => 3);
sql($node, "SELECT electric.sync_shape_to_table('" . sql_json($shape) . "', 'items', '{id}', shape_key => 'items')");
ok(wait_until($node, "SELECT true", 1), 'resubscribed');
ok(wait_until($node, "SELECT true", 1) && do {
	my $deadline = time + 15;
	my $long;
	while (time < $deadline) { $long = grep { $_->{live} && !$_->{sse} } @{ $server->requests('items') }; last if $long; usleep(50_000) }
	$long }, 'after three short streams, a long-poll');
like(slurp_file($node->logfile), qr/three event streams in a row lasted under a second; long-polling from now on/, 'the fallback is logged');
$server->txn('items', { op => 'update', row => { id => 1, title => 'over long-polls' } });
ok(wait_until($node, "SELECT title = 'over long-polls' FROM items WHERE id = 1"), 'changes arrive over long-polls');

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC|TRAP/, 'no crash');
$node->stop;
$server->stop;
done_testing();
