# More subscriptions than pglite_sync.max_subscriptions: the extra one waits
# calmly (no rescan storm) and starts as soon as a slot frees up.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('slots', conf => "pglite_sync.max_subscriptions = 2\n");
my $T = JSON::PP::true;

for my $t (qw(a b c))
{
	$server->create_table(name => $t, columns => [ { name => 'id', type => 'int4', not_null => $T } ],
		primary_key => ['id'], rows => [ { id => '1' } ]);
	sql($node, "CREATE TABLE $t (id int PRIMARY KEY)");
}
my ($ret, $out, $err) = $node->psql('postgres', join('; ', 'BEGIN',
	(map { "SELECT electric.sync_shape_to_table('" . $server->shape($_) . "', '$_', '{id}', shape_key => '$_')" } qw(a b c)), 'COMMIT'));
like($err, qr/no free subscription slot \(pglite_sync\.max_subscriptions = 2\)/, 'the third subscription of one transaction finds no slot: a warning at commit');
ok(wait_sync($node, 'a') && wait_sync($node, 'b'), 'two subscriptions run');
is(sub_status($node, 'c', 'state'), 'starting', 'the third waits in state starting');
my ($r2, $o2, $e2) = $node->psql('postgres', "CREATE TABLE d (id int PRIMARY KEY); SELECT electric.sync_shape_to_table('" . $server->shape('a') . "', 'd', '{id}', shape_key => 'd')");
like($e2, qr/too many running subscriptions/, 'a new subscription beyond the limit is refused');

my $before = () = slurp_file($node->logfile) =~ /pglite_sync scanner|no free subscription slot/g;
sleep 3;
my $after = () = slurp_file($node->logfile) =~ /pglite_sync scanner|no free subscription slot/g;
cmp_ok($after - $before, '<=', 2, 'no rescan storm while slots are exhausted');

sql($node, "SELECT electric.unsubscribe('a')");
ok(wait_sync($node, 'c'), 'the waiting subscription starts once a slot is free');
is(sql($node, "SELECT count(*) FROM c"), '1', 'and syncs');

$node->stop;
$server->stop;
done_testing();
