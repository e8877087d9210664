# A subscription writes with its owner's rights: row level security of the
# target table applies to the worker as it would to the owner (COPY cannot
# serve RLS tables, so the bulk load falls back to SQL), and a privilege
# revoked later stops the sync with a clear error until it is granted back.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('privileges');
my $T = JSON::PP::true;

$server->create_table(
	name => 'docs',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'tenant', type => 'text' }, { name => 'body', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", tenant => ($_ % 2 ? 't1' : 't2'), body => "doc $_" } } 1 .. 6 ]);

sql($node, q{
	CREATE ROLE tenant1 NOLOGIN;
	GRANT pglite_sync_manager TO tenant1;
	CREATE TABLE docs (id int PRIMARY KEY, tenant text, body text);
	ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
	CREATE POLICY own ON docs TO tenant1 USING (tenant = 't1') WITH CHECK (tenant = 't1');
	GRANT SELECT, INSERT, UPDATE, DELETE ON docs TO tenant1;
});

# the whole shape holds rows of another tenant: RLS refuses them, nothing is applied
sql($node, "SET ROLE tenant1; SELECT electric.sync_shape_to_table('" . $server->shape('docs') . "', 'docs', '{id}', shape_key => 'docs', initial_insert_method => 'copy')");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'docs'"), 'RLS violation: state error');
like(sub_status($node, 'docs', 'last_error'), qr/new row violates row-level security policy for table "docs".*key "public"\."docs"\/"2"/s,
	'last_error: the policy and the offending key');
is(sql($node, "SELECT count(*) FROM docs"), '0', 'nothing half-applied');
sql($node, "SET ROLE tenant1; SELECT electric.delete_subscription('docs')");

# the tenant's own shape syncs, with the copy method falling back to SQL
sql($node, "SET ROLE tenant1; SELECT electric.sync_shape_to_table('" . $server->shape('docs', where => "tenant = 't1'") . "', 'docs', '{id}', shape_key => 'docs', initial_insert_method => 'copy')");
ok(wait_sync($node, 'docs'), 'a shape within the policy syncs');
is(sql($node, "SELECT string_agg(id::text, ',' ORDER BY id) FROM docs"), '1,3,5', 'the tenant\'s rows');
like(PostgreSQL::Test::Utils::slurp_file($node->logfile), qr/subscription "docs": committed batch: 3 changes, 3 rows written \(3 by json/,
	'COPY cannot serve an RLS table: the snapshot was loaded through SQL');

# a privilege revoked later: error state naming it; granted back: recovery
sql($node, "REVOKE UPDATE ON docs FROM tenant1");
$server->txn('docs', { op => 'update', row => { id => '1', body => 'edited' } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'docs'"), 'revoked UPDATE: state error');
like(sub_status($node, 'docs', 'last_error'), qr/permission denied for table docs/, 'last_error: permission denied');
is(sql($node, "SELECT body FROM docs WHERE id = 1"), 'doc 1', 'the update was not applied');
sql($node, "GRANT UPDATE ON docs TO tenant1");
ok(wait_until($node, "SELECT body = 'edited' FROM docs WHERE id = 1", 20), 'granted back: the change is applied');
is(sub_status($node, 'docs', 'state'), 'live', 'live again');

# the worker cannot escalate: triggers run as the owner, in a restricted context
sql($node, q{
	CREATE TABLE secrets (s text);
	INSERT INTO secrets VALUES ('top');
	CREATE FUNCTION peek() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		NEW.body := NEW.body || ' by ' || current_user || (SELECT coalesce(max(' saw ' || s), '') FROM secrets);
		RETURN NEW;
	END $$;
	CREATE TRIGGER peek BEFORE UPDATE ON docs FOR EACH ROW EXECUTE FUNCTION peek();
});
$server->txn('docs', { op => 'update', row => { id => '3', body => 'again' } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'docs'"), 'a trigger reading a table the owner cannot read fails');
like(sub_status($node, 'docs', 'last_error'), qr/permission denied for table secrets/, 'the trigger ran as the owner, not as a superuser');
sql($node, "GRANT SELECT ON secrets TO tenant1");
ok(wait_until($node, "SELECT body LIKE 'again by tenant1 saw top' FROM docs WHERE id = 3", 20), 'with the grant, the trigger runs as the owner');

# the owner's code cannot make the worker's superuser run its objects:
# a trigger pins a search_path with a hostile operator for the catalog's types
sql($node, q{
	CREATE ROLE mallory NOLOGIN;
	GRANT pglite_sync_manager TO mallory;
	CREATE SCHEMA mal AUTHORIZATION mallory;
	CREATE TABLE mine (id int PRIMARY KEY, tenant text, body text);
	ALTER TABLE mine OWNER TO mallory;
	SET ROLE mallory;
	CREATE FUNCTION mal.plus(int8, int8) RETURNS int8 LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE mallory SUPERUSER;
		RETURN $1 OPERATOR(pg_catalog.+) $2;
	END $$;
	CREATE OPERATOR mal.+ (LEFTARG = int8, RIGHTARG = int8, FUNCTION = mal.plus);
	CREATE FUNCTION mal.eq(int4, int4) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE mallory SUPERUSER;
		RETURN $1 OPERATOR(pg_catalog.=) $2;
	END $$;
	CREATE OPERATOR mal.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = mal.eq);
	CREATE FUNCTION mal.hijack() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM set_config('search_path', 'mal, pg_catalog', true);
		RETURN NEW;
	END $$;
	CREATE TRIGGER hijack BEFORE INSERT OR UPDATE ON mine FOR EACH ROW EXECUTE FUNCTION mal.hijack();
});
sql($node, "SET ROLE mallory; SELECT electric.sync_shape_to_table('" . $server->shape('docs', where => "tenant = 't1'") . "', 'mine', '{id}', shape_key => 'mine')");
ok(wait_sync($node, 'mine'), 'the owner\'s subscription syncs');
$server->txn('docs', { op => 'update', row => { id => '5', body => 'second batch' } });
ok(wait_sync($node, 'mine'), 'and applies a second batch');
is(sql($node, "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"), 'f',
	'a search_path set by the owner\'s trigger does not reach the worker\'s catalog statements');

$node->stop;
$server->stop;
done_testing();
