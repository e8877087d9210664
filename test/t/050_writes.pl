# Local writes: INSERT, UPDATE and DELETE on a synced table reach the
# server's write API (the test server's POST /v1/writes), stay visible until
# the server's version comes back through the shape, and are never lost:
# rejection, retries with the same Idempotency-Key, crashes between commit
# and upload and between upload and answer.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('writes', conf => "restart_after_crash = on\n");
my $T = JSON::PP::true;
my @cols = qw(id title done);
my $write_url = $server->base . '/v1/writes';

$server->create_table(
	name => 'todo',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' }, { name => 'done', type => 'bool' } ],
	primary_key => ['id'],
	rows => [ map { { id => $_, title => "todo $_", done => 'false' } } 1 .. 5 ]);
sql($node, q{
	CREATE TABLE todo (id int PRIMARY KEY, title text, done boolean);
	CREATE ROLE app LOGIN; CREATE ROLE other LOGIN;
	GRANT pglite_sync_manager TO app;
	GRANT SELECT, INSERT, UPDATE, DELETE ON todo TO app, other;
	ALTER TABLE todo OWNER TO app;
});
sql($node, "SET ROLE app; SELECT electric.sync_shape_to_table('" . $server->shape('todo') . "', 'todo', '{id}', shape_key => 'todo')");
ok(wait_sync($node, 'todo'), 'synced');

sub writes { $server->call('GET', '/writes') }
sub server_rows { join(',', map { "$_->{id}:$_->{title}:$_->{done}" } sort { $a->{id} <=> $b->{id} } @{ $server->rows('todo') }) }
sub local_rows { sql($node, "SELECT string_agg(id || ':' || title || ':' || done, ',' ORDER BY id) FROM todo") }
sub view { sql($node, "SET ROLE app; SELECT string_agg(state, ',' ORDER BY created_at) FROM electric.writes") }

# ---- refusals ----
my ($ret, $out, $err) = $node->psql('postgres', "SET ROLE other; SELECT electric.enable_writes('todo', '$write_url')");
like($err, qr/permission denied|must be owner/, 'enable_writes is for the owner');
($ret, $out, $err) = $node->psql('postgres', "SET ROLE app; SELECT electric.enable_writes('todo', 'ftp://x/y')");
like($err, qr/write_url must be an http or https URL/, 'a bad URL');

sql($node, "SET ROLE app; SELECT electric.enable_writes('todo', '$write_url', '{\"X-Write\": \"w1\"}')");

# ---- a round trip: insert, update, delete in one transaction, one write ----
sql($node, "SET ROLE app; BEGIN;
	INSERT INTO todo VALUES (10, 'new locally', false);
	UPDATE todo SET done = true WHERE id = 1;
	DELETE FROM todo WHERE id = 2;
	COMMIT;");
is(local_rows(), '1:todo 1:true,3:todo 3:false,4:todo 4:false,5:todo 5:false,10:new locally:false', 'visible locally at once');
ok(wait_until($node, "SELECT count(*) = 0 FROM electric.write", 20), 'uploaded and synced back');
is(server_rows(), '1:todo 1:true,3:todo 3:false,4:todo 4:false,5:todo 5:false,10:new locally:false', 'the server has the changes');
is(local_rows(), server_rows(), 'local equals server');
my @w = grep { ($_->{path} // '') eq '/v1/writes' } @{ writes() };
is(scalar(@w), 1, 'one request for the transaction');
is_deeply([ map { $_->{operation} } @{ $w[0]{body}{mutations} } ], [qw(insert update delete)], 'its mutations in statement order');
is_deeply($w[0]{body}{mutations}[1], { operation => 'update', relation => ['public', 'todo'], key => { id => '1' }, value => { done => 't' }, old_value => { done => 'f' } },
	'an update carries the key, the changed columns and their previous values');
is($w[0]{headers}{'x-write'}, 'w1', 'the write headers are sent');
is($w[0]{idempotency_key}, $w[0]{body}{write_id}, 'Idempotency-Key is the write id');

# ---- a rolled-back transaction records nothing ----
sql($node, "SET ROLE app; BEGIN; UPDATE todo SET title = 'never' WHERE id = 3; ROLLBACK;");
is(sql($node, "SELECT count(*) FROM electric.write"), '0', 'a rollback records nothing');

# ---- a concurrent server change to another column: both visible, then the server's final state ----
$server->call('POST', '/write_faults', { kind => 'delay', ms => 1500 });
sql($node, "SET ROLE app; UPDATE todo SET title = 'local title' WHERE id = 4");
$server->txn('todo', { op => 'update', row => { id => 4, done => 'true' } });
ok(wait_until($node, "SELECT done FROM todo WHERE id = 4"), 'the server\'s change arrives while the write is pending');
is(sql($node, "SELECT title FROM todo WHERE id = 4"), 'local title', '... and the pending write stays on top of it');
ok(wait_until($node, "SELECT count(*) = 0 FROM electric.write", 20), 'then the write syncs');
is(local_rows(), server_rows(), 'local equals server: both changes');
$server->call('DELETE', '/write_faults');

# ---- a rejected write: rows back to the server's version, later writes kept ----
$server->call('POST', '/write_faults', { kind => 'status', status => 422, body => { message => 'no way' }, count => 1 });
sql($node, "SET ROLE app; UPDATE todo SET title = 'rejected' WHERE id = 5");
sql($node, "SET ROLE app; UPDATE todo SET done = true WHERE id = 3");
ok(wait_until($node, "SELECT count(*) = 1 FROM electric.write WHERE state = 'rejected'", 20), 'the first write is rejected');
ok(wait_until($node, "SELECT count(*) = 1 FROM electric.write", 20), 'the later one goes through and syncs');
is(sql($node, "SELECT title FROM todo WHERE id = 5"), 'todo 5', 'the rejected write\'s row is the server\'s again');
is(sql($node, "SELECT done FROM todo WHERE id = 3"), 't', 'the later write is kept');
is(sql($node, "SET ROLE app; SELECT state || ' ' || coalesce(last_error, '') FROM electric.writes"), 'rejected the write API answered 422: {"message":"no way"}',
	'the view shows the rejection and the answer');
is(sql($node, "SET ROLE other; SELECT count(*) FROM electric.writes"), '0', 'a role without the owner\'s rights sees none of them');
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '5 s')"), 'f', 'wait_for_writes is false with a rejected write');
my $rid = sql($node, "SET ROLE app; SELECT write_id FROM electric.writes WHERE state = 'rejected'");
sql($node, "SET ROLE app; SELECT electric.discard_write('$rid')");
is(sql($node, "SELECT count(*) FROM electric.write"), '0', 'discard_write forgets it');
sql($node, "SET ROLE app; UPDATE todo SET title = 'after discard' WHERE id = 5");
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '20 s')"), 't', 'wait_for_writes is true once synced');
is(local_rows(), server_rows(), 'local equals server');

# ---- 5xx and apply-then-drop: sent again with the same key, applied once ----
$server->call('DELETE', '/writes');
$server->call('POST', '/write_faults', [ { kind => 'status', status => 503, count => 1 }, { kind => 'apply_then_drop', count => 1 } ]);
sql($node, "SET ROLE app; INSERT INTO todo VALUES (20, 'once', false)");
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '30 s')"), 't', 'synced after a 503 and a dropped answer');
@w = grep { ($_->{path} // '') eq '/v1/writes' } @{ writes() };
cmp_ok(scalar(@w), '>=', 3, 'sent three times (' . scalar(@w) . ')');
is(scalar(keys %{ { map { $_->{idempotency_key} => 1 } @w } }), 1, 'always with the same key');
is(scalar(grep { $_->{applied} } @w), 1, 'applied once');
is(sql($node, "SELECT count(*) FROM todo WHERE id = 20"), '1', 'the row once, locally');
is(scalar(grep { $_->{id} == 20 } @{ $server->rows('todo') }), 1, 'and on the server');

# ---- a refetch while writes are pending: the new snapshot does not hide them ----
$server->call('DELETE', '/writes');
$server->call('POST', '/write_faults', { kind => 'delay', ms => 4000, count => 1 });
sql($node, "SET ROLE app; BEGIN; INSERT INTO todo VALUES (31, 'pending insert', false); UPDATE todo SET title = 'pending update' WHERE id = 5; COMMIT");
ok(wait_until($node, "SELECT state = 'sent' FROM electric.write", 10), 'the write is out, slowly');
$server->txn('todo', { op => 'update', row => { id => '3', title => 'server before the refetch' } });
$server->clear_requests;
$server->rotate('todo');
ok(wait_until($node, "SELECT title = 'server before the refetch' FROM todo WHERE id = 3", 10), 'refetched: the new snapshot is applied');
ok(scalar(grep { $_->{query}{offset} eq '-1' } @{ $server->requests('todo') }), '... from offset -1');
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM todo WHERE id IN (5, 31)"), '5:pending update,31:pending insert',
	'the pending insert and update are still visible');
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '20 s')"), 't', 'then the write syncs');
is(local_rows(), server_rows(), 'local equals server');

# ---- crashes: between commit and upload, and between upload and answer ----
$server->call('DELETE', '/writes');
$server->call('POST', '/write_faults', { kind => 'delay', ms => 3000, count => 1 });
sql($node, "SET ROLE app; UPDATE todo SET title = 'crash during the request' WHERE id = 10");
ok(wait_until($node, "SELECT state = 'sent' FROM electric.write", 10), 'the write is being sent');
$node->stop('immediate');
$node->start;
sql($node, "SET ROLE app; UPDATE todo SET title = 'crash before the upload' WHERE id = 3");
$node->stop('immediate');
$node->start;
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '30 s')"), 't', 'after two crashes everything is synced');
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM todo WHERE id IN (3, 10)"), '3:crash before the upload,10:crash during the request',
	'both writes made it');
is(local_rows(), server_rows(), 'local equals server');
@w = grep { ($_->{path} // '') eq '/v1/writes' } @{ writes() };
my %applied;
$applied{ $_->{idempotency_key} } += $_->{applied} ? 1 : 0 for @w;
ok(!grep({ $_ > 1 } values %applied), 'no write applied twice: ' . join(', ', map { "$_ x$applied{$_}" } sort keys %applied));

# ---- kill -9 of the worker alone while its request is out ----
$server->call('DELETE', '/writes');
$server->call('POST', '/write_faults', { kind => 'delay', ms => 3000, count => 1 });
sql($node, "SET ROLE app; UPDATE todo SET title = 'worker killed' WHERE id = 4");
ok(wait_until($node, "SELECT state = 'sent' FROM electric.write", 10), 'the write is out');
my $wpid = sub_status($node, 'todo', 'worker_pid');
ok($wpid && kill('KILL', $wpid), "worker $wpid killed with SIGKILL");
# the postmaster restarts every backend after a SIGKILL: wait for it
usleep(500_000);
my $back = 0;
for (1 .. 60) { $back = 1, last if ($node->psql('postgres', 'SELECT 1'))[0] == 0; usleep(500_000); }
ok($back, 'the cluster is back');
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '30 s')"), 't', 'synced after the kill');
@w = grep { ($_->{path} // '') eq '/v1/writes' } @{ writes() };
is(scalar(grep { $_->{applied} } @w), 1, 'applied once (' . scalar(@w) . ' requests)');
is(local_rows(), server_rows(), 'local equals server');

# ---- disable_writes: local changes are not recorded any more ----
sql($node, "SET ROLE app; SELECT electric.disable_writes('todo')");
sql($node, "SET ROLE app; UPDATE todo SET title = 'local only' WHERE id = 1");
is(sql($node, "SELECT count(*) FROM electric.write"), '0', 'nothing recorded after disable_writes');

is(sql($node, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pglite_sync_writes_%'"), '0', 'its capture trigger is gone');

# ---- delete_subscription takes the capture trigger along ----
sql($node, "SET ROLE app; SELECT electric.enable_writes('todo', '$write_url')");
is(sql($node, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pglite_sync_writes_%'"), '1', 'enabled again');
sql($node, "SET ROLE app; SELECT electric.delete_subscription('todo')");
is(sql($node, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pglite_sync_writes_%'"), '0', 'delete_subscription drops it');
sql($node, "UPDATE todo SET title = 'no subscription' WHERE id = 1");
is(sql($node, "SELECT count(*) FROM electric.write"), '0', 'and nothing is recorded');

unlike(slurp_file($node->logfile), qr/terminated by signal (?!9:)|PANIC|TRAP/, 'no crash but our SIGKILL');
$node->stop;
$server->stop;
done_testing();
