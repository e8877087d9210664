# electric.request_snapshot(): a subset of a changes_only shape (Electric's
# POST /v1/shape subset snapshot) loaded into the table, merged with the live
# stream by the snapshot's xmin/xmax/xip_list: a change the snapshot already
# saw is not applied again, one it did not see is applied, and nothing is
# lost or doubled across a restart between the snapshot and the stream.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('subset');
my $T = JSON::PP::true;
my @cols = qw(id title n);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' }, { name => 'n', type => 'int4' } ],
	primary_key => ['id'],
	rows => [ map { { id => $_, title => "item $_", n => $_ } } 1 .. 30 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text, n int);
	CREATE TABLE applied (id int, title text, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS \$\$
	BEGIN INSERT INTO public.applied (id, title) VALUES (NEW.id, NEW.title); RETURN NEW; END \$\$;
	CREATE TRIGGER log_apply AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_apply();");

my $shape = $server->shape_def('items', log => 'changes_only');
$shape->{offset} = 'now';
sql($node, "SELECT electric.sync_shape_to_table('" . sql_json($shape) . "', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'a changes_only subscription from now');
is(sql($node, "SELECT count(*) FROM items"), '0', 'no rows yet');

# ---- refusals ----
my ($ret, $out, $err) = $node->psql('postgres', "SELECT electric.request_snapshot('nope')");
like($err, qr/subscription "nope" does not exist/, 'an unknown subscription');
($ret, $out, $err) = $node->psql('postgres', "SELECT electric.request_snapshot('items', 'n > 1', \"limit\" => 3)");
like($err, qr/limit needs order_by/, 'a limit without order_by');
($ret, $out, $err) = $node->psql('postgres', "SELECT electric.request_snapshot('items', 'no_such_column = 1')");
like($err, qr/answered 400/, 'a where the server refuses: the server\'s answer');
$server->fault(kind => 'truncate_json', table => 'items', when => 'nonlive', count => 1);
($ret, $out, $err) = $node->psql('postgres', "SELECT electric.request_snapshot('items', 'id <= 3')");
like($err, qr/the subset answer is not \{"metadata": \{\.\.\.\}, "data": \[\.\.\.\]\}.*DETAIL:  .* at byte \d+/s,
	'a truncated subset answer is refused, saying where it broke');
is(sql($node, "SELECT count(*) FROM items"), '0', '... and nothing of it is loaded');
$server->clear_faults;

# ---- a subset, with params, order_by and limit ----
is(sql($node, "SELECT electric.request_snapshot('items', 'n <= \$1', '{\"1\": \"10\"}', 'n DESC', 5)"), '5',
	'request_snapshot returns the rows it loaded');
is(sql($node, "SELECT string_agg(id::text, ',' ORDER BY id) FROM items"), '6,7,8,9,10', 'the five highest n up to 10');
my ($post) = grep { $_->{method} eq 'POST' && ($_->{body}{limit} // 0) == 5 } @{ $server->requests('items') };
ok($post, 'sent as a POST');
is_deeply($post->{body}, { where => 'n <= $1', params => { 1 => '10' }, order_by => 'n DESC', limit => 5 }, '... with the subset in its body');
is(sql($node, "SELECT count(*) FROM electric.subset_snapshot"), '1', 'the snapshot is remembered until the stream is past it');
is(sql($node, "SELECT s.rows_applied || ',' || h.rows_applied FROM electric.subscriptions s
	JOIN electric.subscription_shapes h ON h.subscription = s.name WHERE s.name = 'items'"), '5,5',
	'rows_applied counts the subset\'s rows');

# ---- a change the snapshot saw is not applied again, one it did not see is ----
# a transaction committed before the snapshot but published after it
$server->call('POST', '/tables/items/txn', { ops => [ { op => 'update', row => { id => 20, title => 'before the snapshot' } } ], publish_delay_ms => 1500 });
sql($node, "TRUNCATE applied");
is(sql($node, "SELECT electric.request_snapshot('items', 'id BETWEEN 18 AND 22')"), '5', 'a second subset');
is(sql($node, "SELECT title FROM items WHERE id = 20"), 'before the snapshot', 'the snapshot has the committed change');
$server->txn('items', { op => 'update', row => { id => 21, title => 'after the snapshot' } });
ok(wait_until($node, "SELECT title = 'after the snapshot' FROM items WHERE id = 21", 20), 'a change after the snapshot is applied');
sleep 2;	# the delayed transaction is published meanwhile
ok(wait_sync($node, 'items'), 'up to date');
is(sql($node, "SELECT count(*) FROM applied WHERE id = 20"), '1',
	'the change the snapshot already held was not applied a second time (the trigger saw it once)');
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM items WHERE id BETWEEN 18 AND 22"),
	'18:item 18,19:item 19,20:before the snapshot,21:after the snapshot,22:item 22', 'the subset rows are the server\'s');
ok(wait_until($node, "SELECT count(*) = 0 FROM electric.subset_snapshot", 10), 'both snapshots are retired once the stream is past them');

# ---- a restart between the snapshot and the stream catching up ----
$server->call('POST', '/tables/items/txn', { ops => [ { op => 'update', row => { id => 25, title => 'lagging' } } ], publish_delay_ms => 3000 });
sql($node, "TRUNCATE applied");
is(sql($node, "SELECT electric.request_snapshot('items', 'id >= 24')"), '7', 'a third subset');
$node->stop('immediate');
$node->start;
is(sql($node, "SELECT count(*) FROM electric.subset_snapshot"), '1', 'after a crash the snapshot is still remembered');
sleep 3;
ok(wait_sync($node, 'items'), 'up to date after the delayed transaction');
is(sql($node, "SELECT count(*) FROM applied WHERE id = 25"), '1', 'its change, already in the snapshot, was not applied again');
is(sql($node, "SELECT title FROM items WHERE id = 25"), 'lagging', 'and the row is right');

# ---- after a refetch the new stream retires them ----
sql($node, "SELECT electric.request_snapshot('items', 'id = 1')");
$server->rotate('items');
ok(wait_until($node, "SELECT handle IS NOT NULL AND is_up_to_date FROM electric.subscriptions WHERE name = 'items'", 20), 'refetched');
$server->txn('items', { op => 'update', row => { id => 2, title => 'after the refetch' } });
ok(wait_until($node, "SELECT count(*) = 0 FROM electric.subset_snapshot", 20), 'the new stream\'s first change retires the snapshot');

# ---- no filter at all: every row of the shape ----
ok(wait_sync($node, 'items'), 'up to date after the refetch');
is(sql($node, "SELECT electric.request_snapshot('items')"), '30', 'request_snapshot with no arguments loads the whole shape');
is(sql($node, "SELECT count(*) FROM items"), '30', '... into the table');
my @all = grep { $_->{method} eq 'POST' && ($_->{body}{where} // '') eq 'true' } @{ $server->requests('items') };
is(scalar(@all), 1, '... asked for as the subset whose where is true (an empty body is not a subset request)');

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC|TRAP/, 'no crash');
$node->stop;
$server->stop;
done_testing();
