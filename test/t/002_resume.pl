# Stream state: a keyed subscription resumes from its stored offset after a
# server restart and after unsubscribe/resubscribe; an unkeyed one, a
# deleted one and a changed target start again from -1, replacing the
# table's rows in one transaction.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('resume');
my @cols = qw(id title);

for my $t (qw(keyed unkeyed))
{
	$server->create_table(
		name => $t,
		columns => [ { name => 'id', type => 'int4', not_null => JSON::PP::true }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		page_rows => 4,
		rows => [ map { { id => "$_", title => "$t $_" } } 1 .. 10 ]);
	sql($node, qq{
		CREATE TABLE $t (id int PRIMARY KEY, title text);
		CREATE TABLE ${t}_log (op text, id int, xid xid8);
		CREATE FUNCTION ${t}_log() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN
			INSERT INTO ${t}_log VALUES (TG_OP, coalesce(NEW.id, OLD.id), pg_current_xact_id());
			RETURN NULL;
		END \$\$;
		CREATE TRIGGER log AFTER INSERT OR UPDATE OR DELETE ON $t FOR EACH ROW EXECUTE FUNCTION ${t}_log();
	});
}

sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('keyed') . "', 'keyed', '{id}', shape_key => 'keyed')");
my $unkeyed = sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('unkeyed') . "', 'unkeyed', '{id}')");
is($unkeyed, 'unkeyed_2', 'an unkeyed subscription gets a generated name');
ok(wait_sync($node, 'keyed') && wait_sync($node, $unkeyed), 'both synced');
is_table_synced($node, $server, 'keyed', \@cols, 'keyed table synced');
is_table_synced($node, $server, 'unkeyed', \@cols, 'unkeyed table synced');

my $stored = sub_status($node, 'keyed', "handle || ' ' || \"offset\"");
my ($handle, $offset) = split / /, $stored;

# restart the server; the sync service moves on meanwhile
sql($node, 'TRUNCATE keyed_log, unkeyed_log');
$node->stop('fast');
$server->clear_requests;
$server->txn('keyed', { op => 'insert', row => { id => '11', title => 'while down' } });
$server->txn('unkeyed', { op => 'insert', row => { id => '11', title => 'while down' } });
$node->start;
ok(wait_sync($node, 'keyed') && wait_sync($node, $unkeyed), 'both synced again after a server restart');

my @keyed_reqs = @{ $server->requests('keyed') };
is($keyed_reqs[0]{query}{offset}, $offset, 'the keyed subscription resumed at its stored offset');
is($keyed_reqs[0]{query}{handle}, $handle, '... with its stored handle');
is(scalar(grep { $_->{query}{offset} eq '-1' } @keyed_reqs), 0, '... and did not download the snapshot again');
is_table_synced($node, $server, 'keyed', \@cols, 'keyed table has the change made while down');
is(sql($node, "SELECT string_agg(op || id, ',') FROM keyed_log"), 'INSERT11', 'only the new change was applied');

my @unkeyed_reqs = @{ $server->requests('unkeyed') };
is($unkeyed_reqs[0]{query}{offset}, '-1', 'the unkeyed subscription started again from -1');
is_table_synced($node, $server, 'unkeyed', \@cols, 'unkeyed table replaced by the new snapshot');
is(sql($node, "SELECT count(DISTINCT xid) || ' ' || count(*) FILTER (WHERE op = 'DELETE') || ' ' || count(*) FILTER (WHERE op = 'INSERT') FROM unkeyed_log"),
	'1 10 11', 'old rows deleted and new snapshot loaded in one transaction');
is(sub_status($node, $unkeyed, 'coalesce(last_error, \'none\')'), 'none', 'no duplicate-key error on the reload');

# unsubscribe then resubscribe with the same key resumes
sql($node, "SELECT electric.unsubscribe('keyed')");
ok(wait_until($node, "SELECT state = 'stopped' AND worker_pid IS NULL FROM electric.subscriptions WHERE name = 'keyed'"),
	'unsubscribed subscription is stopped');
($handle, $offset) = split / /, sub_status($node, 'keyed', "handle || ' ' || \"offset\"");
$server->txn('keyed', { op => 'update', row => { id => '1', title => 'after unsubscribe' } });
$server->clear_requests;
sql($node, 'TRUNCATE keyed_log');
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('keyed') . "', 'keyed', '{id}', shape_key => 'keyed')");
ok(wait_sync($node, 'keyed'), 'resubscribed');
@keyed_reqs = @{ $server->requests('keyed') };
is($keyed_reqs[0]{query}{offset}, $offset, 'resubscribe with the same key resumes from the stored offset');
is(sql($node, "SELECT string_agg(op || id, ',') FROM keyed_log"), 'UPDATE1', 'only the missed change was applied');

# unsubscribe and resubscribe in one transaction, while the old worker exits
($handle, $offset) = split / /, sub_status($node, 'keyed', "handle || ' ' || \"offset\"");
$server->clear_requests;
sql($node, "BEGIN; SELECT electric.unsubscribe('keyed'); SELECT electric.sync_shape_to_table('" . $server->shape('keyed') . "', 'keyed', '{id}', shape_key => 'keyed'); COMMIT;");
ok(wait_sync($node, 'keyed'), 'unsubscribe + resubscribe in one transaction');
is($server->requests('keyed')->[0]{query}{offset}, $offset, '... resumes from the stored offset');

# delete_subscription forgets the stream state: resubscribing starts at -1
sql($node, "SELECT electric.delete_subscription('keyed')");
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE name = 'keyed'"), '0', 'deleted subscription is gone');
is(sql($node, "SELECT count(*) FROM keyed"), '11', 'synced rows stay after delete_subscription');
$server->clear_requests;
sql($node, 'TRUNCATE keyed_log');
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('keyed') . "', 'keyed', '{id}', shape_key => 'keyed')");
ok(wait_sync($node, 'keyed'), 'resubscribed after delete_subscription');
is($server->requests('keyed')->[0]{query}{offset}, '-1', 'resubscribe after delete_subscription starts from -1');
is_table_synced($node, $server, 'keyed', \@cols, 'table replaced, not duplicated');
is(sql($node, "SELECT count(DISTINCT xid) FROM keyed_log"), '1', 'replaced in one transaction');

# a changed local target (here: a column mapping) restarts the stream at -1
sql($node, "SELECT electric.unsubscribe('keyed')");
wait_until($node, "SELECT worker_pid IS NULL FROM electric.subscriptions WHERE name = 'keyed'");
$server->clear_requests;
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('keyed') . "', 'keyed', '{id}', shape_key => 'keyed', map_columns => '{\"id\": \"id\", \"title\": \"title\"}')");
ok(wait_sync($node, 'keyed'), 'resubscribed with a mapping');
is($server->requests('keyed')->[0]{query}{offset}, '-1', 'a changed mapping restarts the stream from -1');
is_table_synced($node, $server, 'keyed', \@cols, 'and the table matches');

# a subscription into a non-empty table replaces its rows
sql($node, "CREATE TABLE prefilled (id int PRIMARY KEY, title text); INSERT INTO prefilled SELECT g, 'old' FROM generate_series(5, 20) g");
$server->create_table(
	name => 'prefilled',
	columns => [ { name => 'id', type => 'int4', not_null => JSON::PP::true }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", title => "new $_" } } 1 .. 8 ]);
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('prefilled') . "', 'prefilled', '{id}', shape_key => 'prefilled')");
ok(wait_sync($node, 'prefilled'), 'subscribed into a non-empty table');
is_table_synced($node, $server, 'prefilled', \@cols, 'its rows were replaced by the shape');

$node->stop;
$server->stop;
done_testing();
