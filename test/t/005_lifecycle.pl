# Workers and signals: SIGTERM and SIGHUP are honoured at once even in the
# middle of a long-poll, unsubscribe stops a worker within a second, the
# launcher restarts a killed worker without losing a change, DROP DATABASE
# and DROP EXTENSION do not wait on workers, and without
# shared_preload_libraries the API says what to do.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;
use Time::HiRes qw(time usleep);

# long-polls of 20 s, as the real service
my $server = ElectricServer->new(long_poll_ms => 20000);
my $node = sync_node('lifecycle');
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => JSON::PP::true }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 5 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'initial sync');

sub worker_pid { sub_status($node, 'items', 'coalesce(worker_pid, 0)') }
sub wait_long_poll
{
	wait_until($node, "SELECT query LIKE 'long-polling%' FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker' UNION ALL SELECT false LIMIT 1");
	usleep(300_000);
}

# SIGHUP mid long-poll: the reload is processed at once
wait_long_poll();
my $offset = -s $node->logfile;
sql($node, "SELECT pg_reload_conf()");
my $t0 = time;
ok($node->wait_for_log(qr/subscription "items": configuration reloaded/, $offset), 'SIGHUP processed during a long-poll');
cmp_ok(time - $t0, '<', 2, 'within 2 seconds, not at the end of the 20 s long-poll');

# SIGTERM mid long-poll: the worker exits at once, the launcher restarts it
wait_long_poll();
my $pid = worker_pid();
ok($pid > 0, "worker running (pid $pid)");
$t0 = time;
kill 'TERM', $pid;
usleep(10_000) while kill(0, $pid) && time - $t0 < 10;
my $exit_time = time - $t0;
cmp_ok($exit_time, '<', 1, sprintf('SIGTERM ends the worker at once, mid long-poll (%.3f s)', $exit_time));
$server->txn('items', { op => 'insert', row => { id => '6', title => 'while restarting' } });
ok(wait_until($node, "SELECT worker_pid IS NOT NULL AND worker_pid <> $pid FROM electric.subscriptions WHERE name = 'items'"),
	'the launcher restarts the worker');
ok(wait_sync($node, 'items'), 'synced after the restart');
is_table_synced($node, $server, 'items', \@cols, 'no change lost across the restart');

# unsubscribe stops the worker within a second, even mid long-poll
wait_long_poll();
$pid = worker_pid();
my $log_before = -s $node->logfile;
$t0 = time;
sql($node, "SELECT electric.unsubscribe('items')");
usleep(10_000) while kill(0, $pid) && time - $t0 < 10;
my $stop_time = time - $t0;
cmp_ok($stop_time, '<', 1, sprintf('unsubscribe stops the worker within a second (%.3f s)', $stop_time));
is(sub_status($node, 'items', "state || ' ' || (worker_pid IS NULL)"), 'stopped true', 'state stopped, no worker');
my $log = substr(slurp_file($node->logfile), $log_before);
unlike($log, qr/FATAL:.*terminating background worker "pglite_sync worker/, 'unsubscribe stops the worker without a FATAL');

# the table is free: a change made while stopped arrives after resubscribing
$server->txn('items', { op => 'update', row => { id => '1', title => 'while stopped' } });
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'item 1', 'a stopped subscription applies nothing');
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'resubscribed');
is_table_synced($node, $server, 'items', \@cols, 'the missed change arrived');

# DROP DATABASE with running subscriptions does not wait 5 s and fail
sql($node, "CREATE DATABASE other");
$node->safe_psql('other', "CREATE EXTENSION pglite_sync; CREATE TABLE items (id int PRIMARY KEY, title text)");
$node->safe_psql('other', "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'other')");
is($node->safe_psql('other', "SELECT electric.wait_for_sync('other', '30 s')"), 't', 'a subscription runs in a second database');
$t0 = time;
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE other');
my $drop_time = time - $t0;
is($ret, 0, 'DROP DATABASE of a database with a running subscription succeeds') or diag($stderr);
cmp_ok($drop_time, '<', 3, sprintf('... without waiting for the workers (%.3f s)', $drop_time));
is(sub_status($node, 'items', 'state'), 'live', 'subscriptions of other databases keep running');

# a DROP DATABASE that fails for lack of ownership does not touch the workers
$node->safe_psql('postgres', "CREATE DATABASE victimdb");
$node->safe_psql('victimdb', "CREATE EXTENSION pglite_sync; CREATE TABLE items (id int PRIMARY KEY, title text)");
$node->safe_psql('victimdb', "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'v')");
is($node->safe_psql('victimdb', "SELECT electric.wait_for_sync('v', '30 s')"), 't', 'a subscription in victimdb');
my $vpid = $node->safe_psql('victimdb', "SELECT worker_pid FROM electric.subscriptions");
sql($node, "CREATE ROLE intruder LOGIN");
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE victimdb', extra_params => [ '-U', 'intruder' ]);
like($stderr, qr/must be owner of database victimdb/, 'a non-owner cannot drop it');
is($node->safe_psql('victimdb', "SELECT worker_pid FROM electric.subscriptions"), $vpid, '... and its worker was left alone');

# sync_now leaves a running worker alone
($ret, $stdout, $stderr) = $node->psql('victimdb', "CALL electric.sync_now('v')");
like($stderr, qr/subscription "v" is being synced by a background worker/, 'sync_now refuses a subscription a worker runs');
$node->safe_psql('postgres', "DROP DATABASE victimdb");

# DROP EXTENSION stops this database's workers
sql($node, "CREATE DATABASE third");
$node->safe_psql('third', "CREATE EXTENSION pglite_sync; CREATE TABLE items (id int PRIMARY KEY, title text)");
$node->safe_psql('third', "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'third')");
is($node->safe_psql('third', "SELECT electric.wait_for_sync('third', '30 s')"), 't', 'a subscription runs in a third database');
$node->safe_psql('third', "DROP EXTENSION pglite_sync");
ok(wait_until($node, "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker' AND datname = 'third'"),
	'DROP EXTENSION stops the workers of that database');
sleep 2;
is(sql($node, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker' AND datname = 'third'"),
	'0', '... and they are not restarted');
$node->safe_psql('postgres', "DROP DATABASE third");

# a cluster restart resumes everything; a subscription whose database was dropped is gone
$node->restart;
ok(wait_sync($node, 'items'), 'the subscription runs again after a restart');
$log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC/, 'no worker crashed during this test');

# without shared_preload_libraries: a clear error with a hint
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', "CREATE EXTENSION pglite_sync; CREATE TABLE items (id int PRIMARY KEY)");
($ret, $stdout, $stderr) = $plain->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}')");
like($stderr, qr/55000: pglite_sync is not loaded via shared_preload_libraries/, 'not preloaded: SQLSTATE 55000');
like($stderr, qr/HINT:  Add pglite_sync to shared_preload_libraries/, '... with a hint');
is($plain->safe_psql('postgres', "SELECT count(*) FROM electric.subscriptions"), '0', 'the view works without preloading');
$plain->stop;

$node->stop;
$server->stop;
done_testing();
