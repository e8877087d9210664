# Dump and restore: pg_dump of a database with subscriptions, pg_restore into
# a fresh cluster where the owner roles were created in the other order (so
# each name has the other's OID): the subscriptions come back owned by the
# same role names, apply with those roles' rights, and sync afresh (the
# stream state is not dumped), replacing the restored rows atomically.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $T = JSON::PP::true;
my @cols = qw(id title);

for my $t (qw(ta tb))
{
	$server->create_table(
		name => $t,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		page_rows => 3,
		rows => [ map { { id => "$_", title => "$t $_" } } 1 .. 10 ]);
}

# ---- the source: roles first (owner_a, then owner_b), then the extension ----
my $src = sync_node('dump_src', no_extension => 1);
sql($src, "CREATE ROLE owner_a LOGIN; CREATE ROLE owner_b LOGIN");
sql($src, "CREATE EXTENSION pglite_sync");
sql($src, q{
	GRANT pglite_sync_manager TO owner_a, owner_b;
	CREATE TABLE ta (id int PRIMARY KEY, title text);
	CREATE TABLE tb (id int PRIMARY KEY, title text);
	GRANT ALL ON ta TO owner_a;
	GRANT ALL ON tb TO owner_b;
});
$src->safe_psql('postgres', "SELECT electric.sync_shape_to_table('" . $server->shape('ta') . "', 'ta', '{id}', shape_key => 'sub_a')", extra_params => [ '-U', 'owner_a' ]);
$src->safe_psql('postgres', "SELECT electric.sync_shape_to_table('" . $server->shape('tb', headers => { 'X-Who' => 'b' }) . "', 'tb', '{id}', shape_key => 'sub_b', initial_insert_method => 'copy')",
	extra_params => [ '-U', 'owner_b' ]);
ok(wait_sync($src, 'sub_a') && wait_sync($src, 'sub_b'), 'source: both subscriptions synced');
is(sql($src, "SELECT string_agg(name || '=' || owner, ',' ORDER BY name) FROM electric.subscriptions"), 'sub_a=owner_a,sub_b=owner_b', 'source owners');
my %src_oid = map { $_ => sql($src, "SELECT oid FROM pg_roles WHERE rolname = '$_'") } qw(owner_a owner_b);

my $dump = PostgreSQL::Test::Utils::tempdir() . '/db.dump';
$src->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ], 'pg_dump of the database');
$src->stop;

# the server moves on meanwhile: the restored subscriptions must see it all
$server->txn('ta', { op => 'delete', row => { id => '1' } }, { op => 'update', row => { id => '2', title => 'after the dump' } },
	{ op => 'insert', row => { id => '11', title => 'ta 11' } });
$server->txn('tb', { op => 'update', row => { id => '3', title => 'after the dump' } });

# ---- the target: the roles in the other order, so the OIDs are swapped ----
my $dst = sync_node('dump_dst', no_extension => 1);
sql($dst, "CREATE ROLE owner_b LOGIN; CREATE ROLE owner_a LOGIN");
my %dst_oid = map { $_ => sql($dst, "SELECT oid FROM pg_roles WHERE rolname = '$_'") } qw(owner_a owner_b);
is("$dst_oid{owner_a} $dst_oid{owner_b}", "$src_oid{owner_b} $src_oid{owner_a}", 'in the target each owner has the other\'s OID');

# a slow catch-up, to watch the restored rows being replaced
$server->fault(kind => 'delay', ms => 200, when => 'nonlive', count => -1);
$server->clear_requests;
$dst->command_ok([ 'pg_restore', '--exit-on-error', '-d', $dst->connstr('postgres'), $dump ], 'pg_restore into the fresh cluster');
sql($dst, "GRANT pglite_sync_manager TO owner_a, owner_b");
is(sql($dst, "SELECT string_agg(name || '=' || owner, ',' ORDER BY name) FROM electric.subscriptions"), 'sub_a=owner_a,sub_b=owner_b',
	'the subscriptions came back owned by the same role names');
is(sql($dst, "SELECT string_agg(s.name || '=' || s.owner::oid, ',' ORDER BY s.name) FROM electric.subscription s"),
	"sub_a=$dst_oid{owner_a},sub_b=$dst_oid{owner_b}", 'that is, by the target\'s OIDs of those names');
is(sql($dst, "SELECT count(*) || ' ' || count(*) FILTER (WHERE title = 'after the dump') FROM ta"), '10 0', 'the restored table holds the dumped rows');
is(sql($dst, "SELECT coalesce(handle, 'none') FROM electric.subscriptions WHERE name = 'sub_a'"), 'none', 'no stream state was restored');

# workers start by themselves: restoring the shapes makes the launcher scan
ok(wait_until($dst, "SELECT count(*) = 2 FROM electric.subscriptions WHERE worker_pid IS NOT NULL", 10),
	'the restored subscriptions started without a server restart');
# watch ta while it syncs: the old rows until the new snapshot is complete
my %seen;
my $end = time + 60;
while (time < $end)
{
	my $s = sql($dst, "SELECT count(*) || '/' || count(*) FILTER (WHERE title = 'after the dump') || '/' || count(*) FILTER (WHERE id = 1) FROM ta");
	$seen{$s}++;
	last if $s eq '10/1/0' && sql($dst, "SELECT is_up_to_date FROM electric.subscriptions WHERE name = 'sub_a'") eq 't';
	usleep(30_000);
}
$server->clear_faults;
ok(wait_sync($dst, 'sub_a') && wait_sync($dst, 'sub_b'), 'the restored subscriptions sync');
is_deeply([ sort keys %seen ], [ grep { $seen{$_} } '10/0/1', '10/1/0' ], 'a reader saw the restored rows, then the new snapshot, nothing between: ' . join(', ', sort keys %seen));
ok($seen{'10/0/1'} && $seen{'10/1/0'}, 'both states were seen');
is_table_synced($dst, $server, 'ta', \@cols, 'ta equals the server: synced afresh');
is_table_synced($dst, $server, 'tb', \@cols, 'tb equals the server');
my @first = grep { ($_->{query}{offset} // '') eq '-1' } @{ $server->requests('ta') };
cmp_ok(scalar(@first), '>=', 1, 'the restored subscription started at offset -1');
is(sql($dst, "SELECT string_agg(usename, ',' ORDER BY usename) FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'"), 'owner_a,owner_b',
	'the workers run as the owners by name');
my ($hb) = grep { $_->{headers}{'x-who'} } @{ $server->requests('tb') };
is($hb->{headers}{'x-who'}, 'b', 'the stored headers were restored');
is(sql($dst, "SELECT initial_insert_method FROM electric.subscriptions WHERE name = 'sub_b'"), 'copy', 'and the insert method');

# the owners' rights are what they are by name
$server->txn('ta', { op => 'update', row => { id => '4', title => 'live after restore' } });
ok(wait_sync($dst, 'sub_a'), 'live changes after the restore');
is(sql($dst, "SELECT title FROM ta WHERE id = 4"), 'live after restore', 'applied');
my ($rc, $out, $err) = $dst->psql("postgres", "SELECT electric.unsubscribe('sub_a')", extra_params => [ "-U", "owner_b" ]);
like($err, qr/must be owner of subscription "sub_a"/, 'owner_b (with owner_a\'s old OID) may not manage sub_a');
($rc, $out, $err) = $dst->psql('postgres', "SELECT electric.unsubscribe('sub_a')", extra_params => [ '-U', 'owner_a' ]);
is($rc, 0, 'owner_a may') or diag($err);

$dst->stop;
$server->stop;
done_testing();
