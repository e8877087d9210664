# CALL electric.sync_now() by a non-superuser member of pglite_sync_manager
# who owns the subscription: it syncs (applying as that owner), and the
# session stays the caller's afterwards, whether the sync succeeded, failed
# on the network, or failed in the apply: current_user, session_user and
# is_superuser are unchanged and superuser-only commands still fail.
# No background worker can start here (max_worker_processes leaves no slot
# for one), which is what sync_now is for.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('sync_now_role', conf => "max_worker_processes = 2\n");
my $T = JSON::PP::true;
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 4,
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 10 ]);
sql($node, q{
	CREATE ROLE alice LOGIN;
	CREATE ROLE bob LOGIN;
	GRANT pglite_sync_manager TO alice, bob;
	CREATE TABLE items (id int PRIMARY KEY, title text CHECK (title <> 'forbidden'));
	ALTER TABLE items OWNER TO alice;
	CREATE TABLE applied_as (id int, who text, syncing text);
	GRANT INSERT ON applied_as TO alice;
	CREATE FUNCTION note_user() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.applied_as VALUES (NEW.id, current_user, current_setting('electric.syncing', true));
		RETURN NEW;
	END $$;
	CREATE TRIGGER note_user AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION note_user();
});

sub as
{
	my ($role, $query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $query, on_error_stop => 0, extra_params => [ '-U', $role ]);
	return ($rc, $out, $err);
}
my $who = "SELECT current_user || ' ' || session_user || ' ' || current_setting('is_superuser')";

my ($rc, $out, $err) = as('alice', "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
is($rc, 0, 'alice, a non-superuser member of pglite_sync_manager, subscribes') or diag($err);
ok(wait_until($node, "SELECT state = 'error' AND last_error LIKE '%max_worker_processes%' FROM electric.subscriptions WHERE name = 'items'"),
	'no worker can start: state error naming max_worker_processes');
is(sub_status($node, 'items', 'owner'), 'alice', 'alice owns it');

# the sync, and who the session is afterwards (same session)
($rc, $out, $err) = as('alice', "CALL electric.sync_now('items', '30 s');\n$who;\nCREATE ROLE mallory SUPERUSER;\n$who");
unlike($err, qr/ERROR:.*(sync_now|subscription)/, 'CALL electric.sync_now by alice succeeds') or diag($err);
is($out, "alice alice off\nalice alice off", 'after sync_now the session is still alice, not a superuser');
like($err, qr/must be superuser to create superusers|permission denied to create role/, 'a superuser-only command still fails in that session');
is(sql($node, "SELECT count(*) FROM pg_roles WHERE rolname = 'mallory'"), '0', 'no role was created');
is_table_synced($node, $server, 'items', \@cols, 'the paged snapshot was synced');
is(sql($node, "SELECT string_agg(DISTINCT who || '/' || syncing, ',') FROM applied_as"), 'alice/true',
	'the apply ran as alice, with electric.syncing set');
is(sub_status($node, 'items', "rows_applied || ' ' || (handle IS NOT NULL)"), '10 true', 'rows_applied and the position are stored');

# a live change, synced by another call; SET ROLE from a superuser session
$server->txn('items', { op => 'update', row => { id => '1', title => 'changed' } });
is(sql($node, "SET ROLE alice; CALL electric.sync_now('items', '30 s'); SELECT current_user || ' ' || session_user"),
	"alice " . sql($node, 'SELECT session_user'), 'after SET ROLE alice, sync_now leaves current_user alice');
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'changed', 'the live change arrived');

# failures: the error is raised to the caller, and the session is still alice
$server->txn('items', { op => 'update', row => { id => '2', title => 'during outage' } });
$server->fault(kind => 'status', status => 503, table => 'items', count => -1);
($rc, $out, $err) = as('alice', "CALL electric.sync_now('items', '30 s');\n$who;\nSELECT count(*) FROM pg_authid");
like($err, qr/subscription "items": the server answered 503/, 'a 503 is raised to the caller');
is($out, 'alice alice off', 'after the failed sync the session is still alice');
like($err, qr/permission denied for table pg_authid/, 'and still cannot read pg_authid');
isnt(sql($node, "SELECT title FROM items WHERE id = 2"), 'during outage', 'nothing applied');
$server->clear_faults;

$server->txn('items', { op => 'update', row => { id => '3', title => 'forbidden' } });
($rc, $out, $err) = as('alice', "CALL electric.sync_now('items', '30 s');\n$who");
like($err, qr/violates check constraint "items_title_check"/, 'a batch the table rejects is raised to the caller');
is($out, 'alice alice off', 'after the failed apply the session is still alice');
is(sql($node, "SELECT count(*) FROM items WHERE title IN ('during outage', 'forbidden')"), '0', 'nothing of that batch applied');

# the owner's fix, then the sync goes through
sql($node, "ALTER TABLE items DROP CONSTRAINT items_title_check");
($rc, $out, $err) = as('alice', "CALL electric.sync_now('items', '30 s');\n$who");
is($rc, 0, 'after the fix sync_now succeeds') or diag($err);
is($out, 'alice alice off', 'and the session is alice');
is_table_synced($node, $server, 'items', \@cols, 'everything applied');

# another member of pglite_sync_manager is not the owner
($rc, $out, $err) = as('bob', "CALL electric.sync_now('items', '30 s')");
like($err, qr/must be owner of subscription "items"/, 'bob, who does not own it, may not sync it');
($rc, $out, $err) = as('bob', "BEGIN; CALL electric.sync_now('items', '30 s')");
like($err, qr/must be invoked with CALL outside a transaction block|must be owner/, 'inside a transaction block it is refused too');

unlike(slurp_file($node->logfile), qr/TRAP|terminated by signal|PANIC/, 'no assertion failure or crash');
$node->stop;
$server->stop;
done_testing();
