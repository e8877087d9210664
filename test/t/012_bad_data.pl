# Bad data: a batch the table rejects puts the subscription in state error
# with the offending key and column in last_error, applies nothing of the
# batch, leaves other subscriptions alone, and is retried until the cause is
# fixed.  Only a delete of a row that is already gone is skipped.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('baddata');
my $T = JSON::PP::true;
my @cols = qw(id title n);

for my $t (qw(items others))
{
	$server->create_table(
		name => $t,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' }, { name => 'n', type => 'int4' } ],
		primary_key => ['id'],
		rows => [ map { { id => "$_", title => "$t $_", n => $_ } } 1 .. 8 ]);
}
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text NOT NULL, n int2)");
sql($node, "CREATE TABLE others (id int PRIMARY KEY, title text, n int)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('others') . "', 'others', '{id}', shape_key => 'others')");
ok(wait_sync($node, 'items') && wait_sync($node, 'others'), 'both synced');

my $round = 0;
# one bad change between two good ones; the whole batch must wait
sub bad_batch
{
	my ($name, $bad, $error_re, $fix) = @_;
	$round++;
	$server->txn('items',
		{ op => 'update', row => { id => '1', title => "good before $round" } },
		$bad,
		{ op => 'update', row => { id => '2', title => "good after $round" } });
	$server->txn('others', { op => 'update', row => { id => '1', title => "others $round" } });
	ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), "$name: state error");
	like(sub_status($node, 'items', 'last_error'), $error_re, "$name: last_error names the cause, key and column");
	is(sql($node, "SELECT count(*) FROM items WHERE title LIKE 'good % $round'"), '0', "$name: nothing of the batch applied");
	ok(wait_until($node, "SELECT title = 'others $round' FROM others WHERE id = 1"), "$name: other subscriptions keep syncing");
	sql($node, $fix);
	ok(wait_until($node, "SELECT state = 'live' AND is_up_to_date FROM electric.subscriptions WHERE name = 'items'", 20), "$name: heals once fixed");
	is(sql($node, "SELECT count(*) FROM items WHERE title LIKE 'good % $round'"), '2', "$name: the whole batch applied after the fix");
}

bad_batch('value out of range', { op => 'update', row => { id => '3', n => '99999' } },
	qr/value "99999" is out of range for type smallint\nCONTEXT: .*applying update of key "public"\."items"\/"3" to table public\.items, column "n"/s,
	'ALTER TABLE items ALTER n TYPE int4');
bad_batch('NULL into NOT NULL', { op => 'update', row => { id => '4', title => undef } },
	qr/null value in column "title" of relation "items" violates not-null constraint.*key "public"\."items"\/"4"/s,
	'ALTER TABLE items ALTER title DROP NOT NULL');
sql($node, "DELETE FROM items WHERE id = 5");
bad_batch('update of a missing row', { op => 'update', row => { id => '5', title => 'ghost' } },
	qr/update for a row that does not exist in table public\.items.*key "public"\."items"\/"5"/s,
	"INSERT INTO items VALUES (5, 'restored', 5)");
sql($node, "ALTER TABLE items DROP COLUMN n");
bad_batch('unknown column', { op => 'update', row => { id => '6', n => '60' } },
	qr/column "n" sent by the server does not exist in table public\.items.*key "public"\."items"\/"6"/s,
	'ALTER TABLE items ADD COLUMN n int');

# a delete of a row that is already gone is the one thing skipped
sql($node, "DELETE FROM items WHERE id = 7");
$server->txn('items', { op => 'delete', row => { id => '7' } }, { op => 'update', row => { id => '8', title => 'after skip' } });
ok(wait_sync($node, 'items'), 'a delete of a missing row does not stop the sync');
is(sql($node, "SELECT title FROM items WHERE id = 8"), 'after skip', 'the rest of that batch applied');
is(sub_status($node, 'items', 'state'), 'live', 'still live');

# protocol-level bad data: a change without its key, an unknown operation
for my $case (
	[ 'change without a key', '[{"headers":{"operation":"insert","relation":["public","items"]},"value":{"id":"50","title":"x"}},{"headers":{"control":"up-to-date","global_last_seen_lsn":"1"}}]', qr/change message without a key/ ],
	[ 'unknown operation', '[{"key":"\"public\".\"items\"/\"51\"","headers":{"operation":"upsert"},"value":{"id":"51","title":"x"}},{"headers":{"control":"up-to-date","global_last_seen_lsn":"1"}}]', qr/unknown operation "upsert"/ ])
{
	my ($name, $body, $re) = @$case;
	$server->fault(kind => 'wrong_content_type', content_type => 'application/json', body => $body, table => 'items', when => 'nonlive', count => -1);
	is(sql($node, "SELECT electric.wait_for_sync('items', '1 s')"), 'f', "$name: not synced");
	ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), "$name: state error");
	like(sub_status($node, 'items', 'last_error'), $re, "$name: last_error says so");
	is(sql($node, "SELECT count(*) FROM items WHERE id >= 50"), '0', "$name: nothing applied");
	$server->clear_faults;
	ok(wait_sync($node, 'items'), "$name: recovers when the server behaves");
}

is_table_synced($node, $server, 'others', \@cols, 'the other subscription never missed a change');
$node->stop;
$server->stop;
done_testing();
