# Security: TLS verification on by default (and a CA file setting), only
# http and https (a redirect to file:// is refused), the host allow-list,
# the response size limit, a slow drip past the timeout, and names sent by
# the server that can never inject SQL.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;

my $T = JSON::PP::true;
my $node = sync_node('security', conf => "pglite_sync.http_timeout = 2s\n");
my $server = ElectricServer->new(long_poll_ms => 1000);

sub reload
{
	my ($setting, $value) = @_;
	sql($node, defined $value ? "ALTER SYSTEM SET $setting = '$value'" : "ALTER SYSTEM RESET $setting");
	sql($node, "SELECT pg_reload_conf()");
	sleep 1;
}

sub table
{
	my ($srv, $name, %extra) = @_;
	$srv->create_table(
		name => $name,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' }, @{ $extra{columns} // [] } ],
		primary_key => ['id'],
		rows => $extra{rows} // [ map { { id => "$_", title => "$name $_" } } 1 .. 3 ]);
}

# ---- TLS: verification is on; a CA file makes a private CA work ----
my $dir = PostgreSQL::Test::Utils::tempdir();
system('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
	'-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', "$dir/key.pem", '-out', "$dir/cert.pem") == 0
  or die 'openssl failed';
chmod 0644, "$dir/key.pem", "$dir/cert.pem";
my $tls = ElectricServer->new(long_poll_ms => 1000, tls_cert => "$dir/cert.pem", tls_key => "$dir/key.pem");
table($tls, 'secure');
sql($node, "CREATE TABLE secure (id int PRIMARY KEY, title text)");
like($tls->shape_url, qr{^https://}, 'the test server speaks https');
sql($node, "SELECT electric.sync_shape_to_table('" . $tls->shape('secure') . "', 'secure', '{id}', shape_key => 'secure')");
ok(wait_until($node, "SELECT state = 'backoff' AND last_error LIKE '%SSL certificate%' FROM electric.subscriptions WHERE name = 'secure'"),
	'a self-signed certificate is refused: TLS verification is on by default');
is(sql($node, "SELECT count(*) FROM secure"), '0', 'nothing synced over an unverified connection');
reload('pglite_sync.tls_ca_file', "$dir/cert.pem");
ok(wait_sync($node, 'secure'), 'with pglite_sync.tls_ca_file trusting its CA, the https shape syncs');
is(sql($node, "SELECT count(*) FROM secure"), '3', 'rows arrived over https');
sql($node, "SELECT electric.unsubscribe('secure')");
$tls->stop;

# ---- only http and https: a redirect to file:// is refused ----
table($server, 'items');
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'plain subscription synced');
$server->fault(kind => 'status', status => 302, headers => { Location => 'file:///etc/passwd' }, table => 'items', count => -1);
is(sql($node, "SELECT electric.wait_for_sync('items', '1 s')"), 'f', 'redirect to file:// does not sync');
like(sub_status($node, 'items', 'last_error'), qr/[Pp]rotocol "?file"? not supported|disabled/, 'libcurl refuses the file:// redirect');
$server->clear_faults;
ok(wait_sync($node, 'items'), 'recovers');

# ---- the host allow-list ----
reload('pglite_sync.allowed_hosts', '*.example.com, sync.example.org');
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), 'a host outside the allow-list: state error');
like(sub_status($node, 'items', 'last_error'), qr/host "127\.0\.0\.1" is not in pglite_sync\.allowed_hosts/, 'last_error names the host');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'other')");
like($err, qr/host "127\.0\.0\.1" is not in pglite_sync\.allowed_hosts/, 'subscribing to a host outside the allow-list is refused');
reload('pglite_sync.allowed_hosts', 'localhost,127.0.0.1');
ok(wait_sync($node, 'items'), 'allowed again: syncs');
reload('pglite_sync.allowed_hosts', undef);

# ---- the response size limit ----
reload('pglite_sync.max_response_size', '1kB');
$server->txn('items', { op => 'update', row => { id => '1', title => 'x' x 5000 } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), 'a response over the size limit: state error');
like(sub_status($node, 'items', 'last_error'), qr/response exceeds pglite_sync\.max_response_size \(1 kB\)/, 'last_error names the limit');
isnt(sql($node, "SELECT length(title) FROM items WHERE id = 1"), '5000', 'nothing from the oversized response applied');
reload('pglite_sync.max_response_size', undef);
ok(wait_until($node, "SELECT length(title) = 5000 FROM items WHERE id = 1", 20), 'below the limit again: applied');

# ---- a slow drip past the timeout ----
ok(wait_sync($node, 'items'), 'live before the drip');
$server->fault(kind => 'slow_drip', bytes => 1, interval_ms => 200, table => 'items', when => 'live', count => -1);
$server->txn('items', { op => 'update', row => { id => '2', title => 'dripped' } });
ok(wait_until($node, "SELECT state = 'backoff' AND last_error ~* 'timeout|timed out' FROM electric.subscriptions WHERE name = 'items'", 20),
	'a live response dripping past pglite_sync.http_timeout times out and backs off');
$server->clear_faults;
ok(wait_until($node, "SELECT title = 'dripped' FROM items WHERE id = 2", 20), 'recovers when the drip stops');

# ---- names from the server never reach SQL text ----
sql($node, "CREATE TABLE victim (x int); INSERT INTO victim VALUES (1)");
my $evil = 'title"); DROP TABLE victim; --';
$server->create_table(
	name => 'evil',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => $evil, type => 'text' } ],
	primary_key => ['id'],
	rows => [ { id => '1', $evil => 'pwned?' } ]);
sql($node, "CREATE TABLE evil (id int PRIMARY KEY, title text)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('evil') . "', 'evil', '{id}', shape_key => 'evil')");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'evil'"), 'an unknown hostile column name is an error');
like(sub_status($node, 'evil', 'last_error'), qr/column "title"\); DROP TABLE victim; --" sent by the server does not exist/, '... reported, not executed');
is(sql($node, "SELECT count(*) FROM victim"), '1', 'the victim table is intact');
sql($node, "SELECT electric.delete_subscription('evil')");
(my $map = JSON::PP->new->encode({ id => 'id', title => $evil })) =~ s/'/''/g;
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('evil') . "', 'evil', '{id}', shape_key => 'evil2', map_columns => '$map', initial_insert_method => 'json')");
ok(wait_sync($node, 'evil2'), 'mapped from a hostile column name');
is(sql($node, "SELECT title FROM evil"), 'pwned?', 'the value is data, nothing more');
is(sql($node, "SELECT count(*) FROM victim"), '1', 'the victim table is still intact');

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC/, 'no crash');
$node->stop;
$server->stop;
done_testing();
