# Local writes at their edges: savepoints and exception blocks in the
# writing transaction, answers without a txid, quoted table names, shapes
# with fewer columns than the table, header precedence, and what the sync's
# own changes are told apart by.  Every check is against what the test
# server's write endpoint received.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('writes_edges');
my $T = JSON::PP::true;
my $write_url = $server->base . '/v1/writes';

# a server table keyed by an int4 id; its other columns are text (done: bool)
sub server_table
{
	my ($name, $rows, @cols) = @_;
	$server->create_table(name => $name, primary_key => ['id'], rows => $rows,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, map { { name => $_, type => $_ eq 'done' ? 'bool' : 'text' } } @cols ]);
}

server_table('todo', [ map { { id => $_, title => "todo $_", done => 'false' } } 1 .. 5 ], 'title', 'done');
sql($node, q{
	CREATE ROLE app LOGIN;
	GRANT pglite_sync_manager TO app;
	CREATE TABLE todo (id int PRIMARY KEY, title text, done boolean);
	ALTER TABLE todo OWNER TO app;
});
sql($node, "SET ROLE app; SELECT electric.sync_shape_to_table('" . $server->shape('todo') . "', 'todo', '{id}', shape_key => 'todo')");
ok(wait_sync($node, 'todo'), 'synced');
sql($node, "SET ROLE app; SELECT electric.enable_writes('todo', '$write_url')");

sub sent { [ grep { ($_->{path} // '') eq '/v1/writes' } @{ $server->call('GET', '/writes') } ] }

# a request's mutations as "operation relation key value", sorted keys
sub mutations
{
	my ($w) = @_;
	my $j = JSON::PP->new->canonical;
	return [ map {
		join(' ', $_->{operation}, join('.', @{ $_->{relation} }), $j->encode($_->{key} // {}),
			$j->encode($_->{value} // {}), $j->encode($_->{old_value} // {}))
	} @{ $w->{body}{mutations} } ];
}

# psql's error text, or '' (the session goes on after a failed statement)
sub try_sql
{
	my ($q) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $q);
	return $ret == 0 ? '' : $err;
}

sub synced { sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '20 s')") }

# ---- savepoints and exception blocks: only what survived is a mutation ----
my @cases = (
	[ 'rolled-back savepoint, then a change',
		"BEGIN; SAVEPOINT s; UPDATE todo SET title = 'a' WHERE id = 1; ROLLBACK TO s;
		 UPDATE todo SET title = 'b' WHERE id = 3; COMMIT;",
		['update public.todo {"id":"3"} {"title":"b"} {"title":"todo 3"}'] ],
	[ 'a released savepoint inside a rolled-back one',
		"BEGIN; SAVEPOINT s1; SAVEPOINT s2; UPDATE todo SET title = 'c' WHERE id = 1; RELEASE s2; ROLLBACK TO s1;
		 UPDATE todo SET title = 'd' WHERE id = 4; COMMIT;",
		['update public.todo {"id":"4"} {"title":"d"} {"title":"todo 4"}'] ],
	[ 'nested savepoints, the inner one rolled back',
		"BEGIN; UPDATE todo SET title = 'e' WHERE id = 1; SAVEPOINT s1; UPDATE todo SET title = 'f' WHERE id = 2;
		 SAVEPOINT s2; UPDATE todo SET title = 'g' WHERE id = 3; ROLLBACK TO s2; RELEASE s1;
		 UPDATE todo SET title = 'h' WHERE id = 5; COMMIT;",
		[ 'update public.todo {"id":"1"} {"title":"e"} {"title":"todo 1"}',
		  'update public.todo {"id":"2"} {"title":"f"} {"title":"todo 2"}',
		  'update public.todo {"id":"5"} {"title":"h"} {"title":"todo 5"}' ] ],
	[ 'released savepoints keep their changes',
		"BEGIN; SAVEPOINT s; INSERT INTO todo VALUES (6, 'six', false); RELEASE s;
		 SAVEPOINT t; UPDATE todo SET done = true WHERE id = 6; RELEASE t; COMMIT;",
		[ 'insert public.todo {"id":"6"} {"done":"f","id":"6","title":"six"} {}',
		  'update public.todo {"id":"6"} {"done":"t"} {"done":"f"}' ] ],
	[ 'a PL/pgSQL exception block',
		"DO \$\$ BEGIN
		   BEGIN UPDATE todo SET title = 'lost' WHERE id = 2; RAISE EXCEPTION 'undo'; EXCEPTION WHEN others THEN NULL; END;
		   UPDATE todo SET title = 'kept' WHERE id = 2;
		 END \$\$;",
		['update public.todo {"id":"2"} {"title":"kept"} {"title":"f"}'] ],
);
for my $c (@cases)
{
	my ($name, $q, $want) = @$c;
	$server->call('DELETE', '/writes');
	is(try_sql("SET ROLE app; $q"), '', "$name: no error");
	is(synced(), 't', "$name: synced");
	my $w = sent();
	is(scalar(@$w), 1, "$name: one request");
	is_deeply(mutations($w->[0] // {}), $want, "$name: exactly the surviving changes");
}
is(sql($node, "SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM todo"), '1:e,2:kept,3:b,4:d,5:h,6:six', 'local rows');
is(join(',', map { "$_->{id}:$_->{title}" } sort { $a->{id} <=> $b->{id} } @{ $server->rows('todo') }), '1:e,2:kept,3:b,4:d,5:h,6:six',
	'the server has the same');

# ---- quoted table names: relation is the table itself, as Electric reads params.table ----
for my $t ([ 'MixedCase', '"MixedCase"', 'mixed' ], [ 'dot.ted', 'public."dot.ted"', 'dotted' ])
{
	my ($server_name, $param, $sub) = @$t;
	server_table($server_name, [ { id => 1, v => 'one' } ], 'v');
	sql($node, qq{CREATE TABLE "$server_name" (id int PRIMARY KEY, v text); ALTER TABLE "$server_name" OWNER TO app;});
	sql($node, "SET ROLE app; SELECT electric.sync_shape_to_table('" . $server->shape($param) . "', '$server_name', '{id}', shape_key => '$sub');
		SELECT electric.enable_writes('$sub', '$write_url')");
	ok(wait_sync($node, $sub), "$param: synced");
	$server->call('DELETE', '/writes');
	sql($node, qq{SET ROLE app; UPDATE "$server_name" SET v = 'changed' WHERE id = 1});
	is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('$sub', '20 s')"), 't', "$param: synced back");
	is_deeply(sent()->[0]{body}{mutations}[0]{relation}, [ 'public', $server_name ], "$param: relation [\"public\", \"$server_name\"]");
	is($server->rows($server_name)->[0]{v}, 'changed', "$param: the server has the change");
}

# ---- only the shape's columns are uploaded ----
server_table('note', [ { id => 1, title => 'first', body => 'server only' } ], 'title', 'body');
server_table('item', [ { id => 1, name => 'one' } ], 'name');
sql($node, q{
	CREATE TABLE note (id int PRIMARY KEY, title text, local_flag text);
	CREATE TABLE item_local (iid int PRIMARY KEY, label text, extra text);
	ALTER TABLE note OWNER TO app; ALTER TABLE item_local OWNER TO app;
});
sql($node, "SET ROLE app; SELECT electric.sync_shape_to_table('" . $server->shape('note', columns => [ 'id', 'title' ]) . "', 'note', '{id}', shape_key => 'note');
	SELECT electric.sync_shape_to_table('" . $server->shape('item') . "', 'item_local', '{iid}', shape_key => 'item',
		map_columns => '{\"iid\": \"id\", \"label\": \"name\"}');
	SELECT electric.enable_writes('note', '$write_url'); SELECT electric.enable_writes('item', '$write_url')");
ok(wait_sync($node, 'note') && wait_sync($node, 'item'), 'a shape with columns and one with map_columns synced');

for my $c (
	[ 'note', 'columns: an insert', "INSERT INTO note VALUES (2, 'second', 'mine')",
		['insert public.note {"id":"2"} {"id":"2","title":"second"} {}'] ],
	[ 'note', 'columns: an update of both kinds', "UPDATE note SET title = 'First', local_flag = 'x' WHERE id = 1",
		['update public.note {"id":"1"} {"title":"First"} {"title":"first"}'] ],
	[ 'note', 'columns: an update of a local-only column', "UPDATE note SET local_flag = 'y' WHERE id = 2", [] ],
	[ 'note', 'columns: a local-only update beside a shape one',
		"BEGIN; UPDATE note SET local_flag = 'z' WHERE id = 1; DELETE FROM note WHERE id = 2; COMMIT",
		['delete public.note {"id":"2"} {} {}'] ],
	[ 'item', 'map_columns: an update of an unmapped column', "UPDATE item_local SET extra = 'e' WHERE iid = 1", [] ],
	[ 'item', 'map_columns: an update of both kinds', "UPDATE item_local SET label = 'uno', extra = 'f' WHERE iid = 1",
		['update public.item {"id":"1"} {"name":"uno"} {"name":"one"}'] ])
{
	my ($sub, $name, $q, $want) = @$c;
	$server->call('DELETE', '/writes');
	sql($node, "SET ROLE app; $q");
	is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('$sub', '20 s')"), 't', "$name: synced");
	my $w = sent();
	if (@$want)
	{
		is(scalar(@$w), 1, "$name: one request");
		is_deeply(mutations($w->[0] // {}), $want, "$name: the shape's columns only");
		is($w->[0]{status}, 200, "$name: accepted");
	}
	else
	{
		is(scalar(@$w), 0, "$name: no request");
	}
	is(sql($node, "SELECT count(*) FROM electric.write"), '0', "$name: no write left");
}
is(join(',', map { "$_->{id}:$_->{title}:" . ($_->{body} // 'null') } sort { $a->{id} <=> $b->{id} } @{ $server->rows('note') }),
	'1:First:server only', 'the server\'s note rows');
is(sql($node, "SELECT string_agg(id || ':' || title || ':' || coalesce(local_flag, 'null'), ',' ORDER BY id) FROM note"), '1:First:z',
	'the local note rows keep their local column');
is(sql($node, "SELECT label || ':' || extra FROM item_local"), 'uno:f', 'the local item keeps its unmapped column');
is($server->rows('item')->[0]{name}, 'uno', 'the server\'s item');

# ---- a rejected write restores the shape's columns only: local-only changes stay ----
# A is acknowledged but not synced yet (the server publishes it 4 s later),
# B changes only a local column (nothing to send), C is rejected: the row
# goes back to the server's version with A on top, and keeps B's column.
$server->call('DELETE', '/writes');
$server->call('POST', '/write_faults', { kind => 'delay_sync', ms => 4000, count => 1 });
$server->call('POST', '/write_faults', { kind => 'status', status => 422, count => 1 });
sql($node, "SET ROLE app; UPDATE note SET title = 'acked' WHERE id = 1");
ok(wait_until($node, "SELECT count(*) = 1 FROM electric.write WHERE state = 'acknowledged'"), 'restore: A acknowledged');
sql($node, "SET ROLE app; UPDATE note SET local_flag = 'kept' WHERE id = 1");
sql($node, "SET ROLE app; UPDATE note SET title = 'refused' WHERE id = 1");
ok(wait_until($node, "SELECT count(*) = 1 FROM electric.write WHERE state = 'rejected'"), 'restore: C rejected');
is(sql($node, "SELECT title || ':' || local_flag FROM note WHERE id = 1"), 'acked:kept',
	'restore: the shape\'s columns go back (A on top), the local-only column keeps B\'s value');
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('note', '20 s')"), 'f', 'restore: wait_for_writes is false with C rejected');
sql($node, "SET ROLE app; SELECT electric.discard_write(write_id) FROM electric.writes WHERE state = 'rejected'");
ok(wait_until($node, "SELECT count(*) = 0 FROM electric.write", 20), 'restore: A synced once published');
is(sql($node, "SELECT title || ':' || local_flag FROM note WHERE id = 1"), 'acked:kept', 'restore: and the row stays so');

# ---- a write header replaces a subscription header of the same name ----
server_table('hdr', [ { id => 1, v => 'one' } ], 'v');
sql($node, q{CREATE TABLE hdr (id int PRIMARY KEY, v text); ALTER TABLE hdr OWNER TO app;});
sql($node, "SET ROLE app; SELECT electric.sync_shape_to_table('"
	. $server->shape('hdr', headers => { 'X-W' => 'from-sub', 'X-Sub-Only' => 'sub' }) . "', 'hdr', '{id}', shape_key => 'hdr');
	SELECT electric.enable_writes('hdr', '$write_url', '{\"x-w\": \"yes\", \"X-Write-Only\": \"w\", \"idempotency-key\": \"mine\", \"Content-Type\": \"text/plain\"}')");
ok(wait_sync($node, 'hdr'), 'hdr: synced');
$server->call('DELETE', '/writes');
sql($node, "SET ROLE app; UPDATE hdr SET v = 'changed' WHERE id = 1");
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('hdr', '20 s')"), 't', 'hdr: synced back');
my $h = sent()->[0]{headers};
is($h->{'x-w'}, 'yes', 'the write header replaced the subscription\'s of the same name');
is($h->{'x-sub-only'}, 'sub', 'the other subscription header is sent');
is($h->{'x-write-only'}, 'w', 'the other write header is sent');
is($h->{'idempotency-key'}, sent()->[0]{body}{write_id}, 'Idempotency-Key is the write\'s id, once, whatever is configured');
my @raw = @{ sent()->[0]{raw_headers} };
is(join(',', map { $raw[2 * $_ + 1] } grep { lc($raw[2 * $_]) eq 'content-type' } 0 .. $#raw / 2), 'application/json',
	'Content-Type is JSON, once, whatever is configured');

# ---- electric.syncing is for user triggers to read: setting it does not skip capture ----
$server->call('DELETE', '/writes');
sql($node, "SET ROLE app; SET electric.syncing = 'true'; UPDATE todo SET title = 'set syncing' WHERE id = 1");
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '20 s')"), 't', 'a session that set electric.syncing: synced');
is_deeply(mutations(sent()->[0] // {}), ['update public.todo {"id":"1"} {"title":"set syncing"} {"title":"e"}'],
	'... and its change was uploaded');
is($server->rows('todo')->[0]{title}, 'set syncing', '... and reached the server');

# the sync's own changes are still not captured: a plain apply, a re-application, a restore
$server->call('DELETE', '/writes');
$server->txn('todo', { op => 'update', row => { id => 2, title => 'from the server' } });
ok(wait_until($node, "SELECT title = 'from the server' FROM todo WHERE id = 2"), 'a server change is applied');
$server->call('POST', '/write_faults', { kind => 'delay', ms => 1500, count => 1 });
sql($node, "SET ROLE app; UPDATE todo SET title = 'pending' WHERE id = 3");
$server->txn('todo', { op => 'update', row => { id => 3, done => 'true' } });
ok(wait_until($node, "SELECT done AND title = 'pending' FROM todo WHERE id = 3"), 'a server change under a pending write: re-applied');
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '20 s')"), 't', '... then synced');
$server->call('POST', '/write_faults', { kind => 'status', status => 422, count => 1 });
sql($node, "SET ROLE app; UPDATE todo SET title = 'refused' WHERE id = 4");
ok(wait_until($node, "SELECT count(*) = 1 FROM electric.write WHERE state = 'rejected'"), 'a rejected write');
ok(wait_until($node, "SELECT title = 'd' FROM todo WHERE id = 4"), '... its row restored');
sleep(1);
is(scalar(@{ sent() }), 2, 'only the two local writes were sent');
is(sql($node, "SELECT count(*) FROM electric.write"), '1', 'and only the rejected one is left');

# ---- an answer without a txid: synced by the next up-to-date, even an empty one ----
my $n = 0;
for my $c ([ 'no_txid (applied, 200 {})', { kind => 'no_txid' }, 1 ],
	[ '204 with an empty body (nothing applied)', { kind => 'status', status => 204, body => '' }, 0 ],
	[ '200 {} (nothing applied)', { kind => 'status', status => 200, body => {} }, 0 ])
{
	my ($name, $fault, $applied) = @$c;
	my $before = (grep { $_->{id} == 5 } @{ $server->rows('todo') })[0]{title};
	$n++;
	sql($node, "SET ROLE app; SELECT electric.discard_write(write_id) FROM electric.writes WHERE state = 'rejected'");
	$server->call('DELETE', '/writes');
	$server->call('POST', '/write_faults', $fault);
	sql($node, "SET ROLE app; UPDATE todo SET title = 'no txid $n' WHERE id = 5");
	is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '15 s')"), 't', "$name: synced");
	is(sql($node, "SELECT count(*) FROM electric.write"), '0', "$name: no write left");
	my $w = sent();
	is(scalar(@$w) . ' ' . ($w->[0]{status} // ''), '1 ' . ($fault->{status} // 200), "$name: answered once");
	is((grep { $_->{id} == 5 } @{ $server->rows('todo') })[0]{title}, $applied ? "no txid $n" : $before, "$name: the server's row");
	$server->txn('todo', { op => 'update', row => { id => 5, title => "server $n" } });
	ok(wait_until($node, "SELECT title = 'server $n' FROM todo WHERE id = 5"), "$name: the server's version comes back");
}
# over SSE the stream was opened before the answer: an up-to-date that
# arrives after it syncs the write, without waiting for a reconnect
server_table('ssew', [ { id => 1, title => 'one' } ], 'title');
sql($node, q{CREATE TABLE ssew (id int PRIMARY KEY, title text); ALTER TABLE ssew OWNER TO app;});
my $sse_shape = $server->shape_def('ssew');
$sse_shape->{live_sse} = $T;
sql($node, "SET ROLE app; SELECT electric.sync_shape_to_table('" . sql_json($sse_shape) . "', 'ssew', '{id}', shape_key => 'ssew');
	SELECT electric.enable_writes('ssew', '$write_url')");
ok(wait_sync($node, 'ssew'), 'sse: synced');
sleep(1);	# the event stream is open
$server->call('POST', '/write_faults', { kind => 'no_txid' });
sql($node, "SET ROLE app; UPDATE ssew SET title = 'uno' WHERE id = 1");
# (if the write's own change came back on a request started before the
# answer, an up-to-date of the stream is needed: another change brings one)
sleep(1);
$server->txn('ssew', { op => 'insert', row => { id => 2, title => 'two' } });
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('ssew', '10 s')"), 't', 'sse: a write answered without a txid is synced by the stream\'s next up-to-date');

# idle long-polls commit nothing when there is nothing to sync
my $log_at = -s $node->logfile;
sleep(3);
my $idle = substr(slurp_file($node->logfile), $log_at);
is(scalar(() = $idle =~ /committed batch/g), 0, 'idle up-to-dates commit nothing');

# ---- an error inside the upload (here a write naming a shape the subscription
# no longer has) is retried with backoff, not at once in a loop ----
$server->call('DELETE', '/writes');
$log_at = -s $node->logfile;
sql($node, "BEGIN; UPDATE todo SET title = 'stuck' WHERE id = 6;
	UPDATE electric.write_mutation SET shape = 'gone' WHERE write = (SELECT max(id) FROM electric.write); COMMIT");
sleep(3);
my $fails = () = substr(slurp_file($node->logfile), $log_at) =~ /uploading a write failed: .*"gone"/g;
cmp_ok($fails, '>=', 1, "an upload error is logged ($fails times in 3 s)");
cmp_ok($fails, '<=', 30, '... and retried with backoff (at most 1 s apart here), not in a loop');
sql($node, "UPDATE electric.write_mutation SET shape = 'todo' WHERE shape = 'gone'");
is(sql($node, "SET ROLE app; SELECT electric.wait_for_writes('todo', '40 s')"), 't', 'once the cause is gone, the write goes');
is(scalar(@{ sent() }), 1, '... in one request');

$node->stop;
$server->stop;
done_testing();
