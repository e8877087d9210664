# A single-shape subscription into a table with a DEFERRABLE INITIALLY
# DEFERRED foreign key to a local parent table (not synced).  The deferred
# check runs inside the batch, as the subscription's owner: a batch that
# satisfies the key by its end applies; a change violating it rolls the
# whole batch back, the subscription goes to state error with last_error
# naming the constraint, and it heals once the parent row is added locally.
# While the batch is retried the state stays error and wait_for_sync is
# false.  Once with the bootstrap superuser as owner, once with a LOGIN role
# (the worker connects as it) and once with a NOLOGIN one (before
# PostgreSQL 17 a worker cannot connect as it).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;
use Time::HiRes qw(usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('deferred_fk');
my $T = JSON::PP::true;
my @cols = qw(id team_id name);

sql($node, q{
	CREATE ROLE app_login LOGIN;
	CREATE ROLE app_nologin NOLOGIN;
	GRANT pglite_sync_manager TO app_login, app_nologin;
	CREATE TABLE team (id int PRIMARY KEY, name text);
	INSERT INTO team VALUES (1, 'one'), (2, 'two');
	-- who runs the deferred checks
	CREATE TABLE checked_by (tbl text, who text);
	GRANT INSERT ON checked_by TO PUBLIC;
	CREATE FUNCTION checked_by() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO checked_by VALUES (TG_TABLE_NAME, current_user);
		RETURN NULL;
	END $$;
});

my %missing = (superuser => 3, app_login => 4, app_nologin => 5);	# a team only the source has
for my $owner (qw(superuser app_login app_nologin))
{
	my $t = "member_$owner";
	my $m = $missing{$owner};
	# Before PostgreSQL 17 a worker cannot connect as a NOLOGIN role: it
	# connects as the superuser and applies as the owner, deferred
	# constraints included.
	my $wait = 30;
	my $set_role = $owner eq 'superuser' ? '' : "SET ROLE $owner; ";
	$server->create_table(
		name => $t,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'team_id', type => 'int4' }, { name => 'name', type => 'text' } ],
		primary_key => ['id'],
		rows => [ map { { id => $_, team_id => 1 + $_ % 2, name => "member $_" } } 1 .. 4 ]);
	sql($node, qq{
		CREATE TABLE $t (id int PRIMARY KEY, team_id int REFERENCES team DEFERRABLE INITIALLY DEFERRED, name text);
		CREATE CONSTRAINT TRIGGER checked_by AFTER INSERT OR UPDATE ON $t DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW EXECUTE FUNCTION checked_by();
		GRANT SELECT, INSERT, UPDATE, DELETE ON $t TO app_login, app_nologin;
	});
	sql($node, "${set_role}SELECT electric.sync_shape_to_table('" . $server->shape($t) . "', '$t', '{id}', shape_key => '$t')");
	ok(wait_sync($node, $t, $wait), "$owner: synced into a table with a deferred foreign key");
	is_table_synced($node, $server, $t, \@cols, "$owner: the snapshot applied");
	my $who = $owner eq 'superuser' ? sql($node, 'SELECT current_user') : $owner;
	is(sql($node, "SELECT string_agg(DISTINCT who, ',') FROM checked_by WHERE tbl = '$t'"), $who,
		"$owner: deferred triggers ran as the owner");

	# a source transaction that breaks the key midway and mends it by its end
	$server->txn($t,
		{ op => 'insert', row => { id => 10, team_id => $m, name => "team $m does not exist here" } },
		{ op => 'update', row => { id => 10, team_id => 1 } });
	ok(wait_sync($node, $t, $wait), "$owner: a batch that satisfies the deferred key at its end");
	is(sql($node, "SELECT team_id FROM $t WHERE id = 10"), '1', "$owner: ... is applied");
	is(sub_status($node, $t, "state || ' ' || errors || ' ' || coalesce(last_error, 'none')"), 'live 0 none',
		"$owner: ... without an error: the key was checked at the end of the batch");

	# a change violating it: the whole batch rolls back
	$server->txn($t,
		{ op => 'insert', row => { id => 11, team_id => 2, name => 'fine' } },
		{ op => 'update', row => { id => 1, name => 'renamed' } },
		{ op => 'insert', row => { id => 12, team_id => $m, name => "team $m still missing" } });
	ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = '$t'", $wait),
		"$owner: a batch violating the deferred key: state error");
	like(sub_status($node, $t, 'last_error'), qr/violates foreign key constraint "${t}_team_id_fkey"/,
		"$owner: last_error names the constraint");
	is(sql($node, "SELECT count(*) FILTER (WHERE id IN (11, 12)) || ' ' || min(name) FILTER (WHERE id = 1) FROM $t"), '0 member 1',
		"$owner: nothing of the batch was applied");
	# the batch is retried (at the cap, 1 s here) while long-polls go on
	my %seen;
	for (1 .. 30)
	{
		$seen{ sub_status($node, $t, "state || ' ' || is_up_to_date") }++;
		usleep(100_000);
	}
	is(sql($node, "SELECT electric.wait_for_sync('$t', '2 s')"), 'f', "$owner: wait_for_sync is false while the batch cannot apply");
	is(sql($node, "SELECT count(*) FROM $t WHERE id IN (11, 12)"), '0', "$owner: ... still not applied after 5 s of retries");
	is(join(',', sort keys %seen), 'error false', "$owner: the state stays error, not up to date, while the batch cannot apply");

	# the parent arrives locally: the retried batch applies
	sql($node, "INSERT INTO team VALUES ($m, 'team $m')");
	ok(wait_until($node, "SELECT count(*) = 2 FROM $t WHERE id IN (11, 12)", $wait), "$owner: heals once the parent row is added");
	ok(wait_sync($node, $t, $wait), "$owner: synced");
	is_table_synced($node, $server, $t, \@cols, "$owner: the batch applied in full");
	is(sub_status($node, $t, 'state'), 'live', "$owner: live again");
}

$node->stop;
$server->stop;
done_testing();
