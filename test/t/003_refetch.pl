# 409 / must-refetch: during catch-up, during live, inside a 200 body, and
# repeated without progress; the table is replaced atomically each time.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('refetch');
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => JSON::PP::true }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 3,
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 12 ]);
sql($node, q{
	CREATE TABLE items (id int PRIMARY KEY, title text);
	CREATE TABLE items_log (op text, id int, xid xid8);
	CREATE FUNCTION items_log() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO items_log VALUES (TG_OP, coalesce(NEW.id, OLD.id), pg_current_xact_id());
		RETURN NULL;
	END $$;
	CREATE TRIGGER log AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION items_log();
});

# 409 during catch-up: pages are slow; the handle rotates after the first
$server->fault(kind => 'delay', table => 'items', when => 'nonlive', ms => 300, count => -1);
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
for (1 .. 100) { last if @{ $server->requests('items') } >= 1; select(undef, undef, undef, 0.05); }
$server->rotate('items');
$server->clear_faults;
ok(wait_sync($node, 'items'), 'synced despite a 409 during the initial catch-up');
my @reqs = @{ $server->requests('items') };
ok((grep { $_->{status} == 409 } @reqs), 'the server did answer 409 during catch-up');
my ($after409) = grep { $reqs[$_ - 1]{status} == 409 } 1 .. $#reqs;
is($reqs[$after409]{query}{offset}, '-1', 'after a 409 the stream restarts at -1');
ok($reqs[$after409]{query}{'cache-buster'}, '... with a cache buster');
is_table_synced($node, $server, 'items', \@cols, 'table matches the shape after the refetch');
is(sql($node, "SELECT count(DISTINCT xid) FROM items_log"), '1',
	'nothing from the abandoned stream was applied: one transaction loaded the table');

# 409 during live: rotate handles, then change data; the table is replaced in one transaction
sql($node, 'TRUNCATE items_log');
my $old_handle = sub_status($node, 'items', 'handle');
$server->rotate('items');
$server->txn('items', { op => 'insert', row => { id => '13', title => 'after rotate' } });
ok(wait_until($node, "SELECT handle <> '$old_handle' AND state = 'live' FROM electric.subscriptions WHERE name = 'items'"),
	'a 409 in live mode moves the subscription to the new handle');
ok(wait_sync($node, 'items'), 'synced after the live 409');
is_table_synced($node, $server, 'items', \@cols, 'table matches after the live refetch');
# (the new snapshot has 12 or 13 rows: the insert may come before or after it)
like(sql($node, "SELECT count(DISTINCT xid) FILTER (WHERE op = 'DELETE') || ' ' || count(*) FILTER (WHERE op = 'DELETE') || ' ' ||
	count(*) FILTER (WHERE op = 'INSERT' AND xid = (SELECT xid FROM items_log WHERE op = 'DELETE' LIMIT 1)) FROM items_log"),
	qr/^1 12 1[23]$/, 'old rows deleted in the same transaction that loaded the new snapshot');

# must-refetch inside a 200 body is treated like a 409
sql($node, 'TRUNCATE items_log');
$old_handle = sub_status($node, 'items', 'handle');
$server->clear_requests;
# (wait_for_sync makes a fresh non-live request, which gets the fault)
$server->fault(kind => 'must_refetch_in_body', table => 'items', when => 'nonlive', count => 1);
$server->txn('items', { op => 'update', row => { id => '1', title => 'refetched' } });
ok(wait_sync($node, 'items'), 'synced after an in-body must-refetch');
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'refetched', 'the change arrived');
ok((grep { $_->{query}{offset} eq '-1' } @{ $server->requests('items') }), 'an in-body must-refetch restarts at -1');
is_table_synced($node, $server, 'items', \@cols, 'table matches');

# repeated 409s without progress back off instead of looping hot
$server->clear_requests;
$server->fault(kind => 'repeat_409', table => 'items', count => -1);
$server->txn('items', { op => 'update', row => { id => '3', title => 'wakes the long-poll' } });
sleep 3;
$server->txn('items', { op => 'update', row => { id => '2', title => 'after the loop' } });
my $n409 = count_requests($server, 'items', sub { $_[0]{status} == 409 });
cmp_ok($n409, '>=', 3, "409 loop observed ($n409 answers)");
cmp_ok($n409, '<=', 25, 'repeated 409s are throttled by backoff');
is(sub_status($node, 'items', 'state'), 'backoff', 'state is backoff during a 409 loop');
like(sub_status($node, 'items', 'last_error'), qr/409/, 'last_error names the 409 loop');
is(sub_status($node, 'items', 'is_up_to_date'), 'f', 'not up to date during a refetch');
is(sql($node, "SELECT title FROM items WHERE id = 2"), 'item 2', 'the table keeps its rows while the loop lasts');
$server->clear_faults;
ok(wait_sync($node, 'items'), 'recovers when the loop ends');
is_table_synced($node, $server, 'items', \@cols, 'table matches after recovery');

$node->stop;
$server->stop;
done_testing();
