# Secrets stay secret.  Roles other than the owner see shape_url with its
# userinfo and credential-like query parameters masked, no headers, no
# secret parameters, and last_error without the server's answer or the
# DETAIL of a data error; the owner sees everything.  Redirects are followed
# by the extension: to the same scheme, host and port with the shape's
# headers; to another origin (another port counts) only when
# pglite_sync.allowed_hosts allows its host, and then without the headers.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use JSON::PP;
use SyncTest;
use Test::More;

my $T = JSON::PP::true;
my $node = sync_node('secrets');
my $sa = ElectricServer->new(long_poll_ms => 1000);
my $sb = ElectricServer->new(long_poll_ms => 1000);
my @cols = qw(id title);

for my $srv ($sa, $sb)
{
	for my $t (qw(items same other))
	{
		$srv->create_table(
			name => $t,
			columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
			primary_key => ['id'],
			rows => [ map { { id => "$_", title => "$t $_" } } 1 .. 3 ]);
	}
}
sql($node, q{
	CREATE ROLE carol LOGIN;
	CREATE ROLE dave LOGIN;
	GRANT pglite_sync_manager TO carol;
	CREATE TABLE items (id int PRIMARY KEY, title text CHECK (title NOT LIKE 'leak%'));
	CREATE TABLE same (id int PRIMARY KEY, title text);
	CREATE TABLE other (id int PRIMARY KEY, title text);
	GRANT ALL ON items, same, other TO carol;
});

sub as
{
	my ($role, $query) = @_;
	return $node->safe_psql('postgres', $query, extra_params => [ '-U', $role ]);
}

# ---- masking ----
my $port = $sa->port;
my $url = "http://syncuser:pa55word\@127.0.0.1:$port/v1/shape?token=tok-123&region=eu&api_key=k-456";
my $shape = encode_json({ url => $url, params => { table => 'items', secret => 'electric-secret' }, headers => { Authorization => 'Bearer hdr-789' } });
as('carol', "SELECT electric.sync_shape_to_table('$shape', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'a subscription whose URL carries credentials syncs');
my ($req) = grep { $_->{query}{offset} eq '-1' } @{ $sa->requests('items') };
is($req->{query}{token}, 'tok-123', 'the token query parameter reaches the server');
is($req->{headers}{authorization}, 'Bearer hdr-789', 'so does the header');

is(as('carol', "SELECT shape_url FROM electric.subscriptions WHERE name = 'items'"), $url, 'the owner sees the whole URL');
is(as('carol', "SELECT shape_headers->>'Authorization' FROM electric.subscriptions WHERE name = 'items'"), 'Bearer hdr-789', 'and the headers');
is(as('carol', "SELECT shape_params->>'secret' FROM electric.subscriptions WHERE name = 'items'"), 'electric-secret', 'and the secret');
my $masked = as('dave', "SELECT shape_url FROM electric.subscriptions WHERE name = 'items'");
is($masked, "http://***\@127.0.0.1:$port/v1/shape?token=***&region=eu&api_key=***", 'another role sees userinfo and credential parameters masked');
unlike($masked, qr/pa55word|syncuser|tok-123|k-456/, 'no credential in what it sees');
is(as('dave', "SELECT shape_url FROM electric.subscription_shapes WHERE subscription = 'items'"), $masked, 'masked in subscription_shapes as well');
is(as('dave', "SELECT coalesce(shape_headers::text, 'NULL') || ' ' || (shape_params ? 'secret')::text FROM electric.subscriptions WHERE name = 'items'"),
	'NULL false', 'no headers and no secret parameter for another role');
is(as('dave', "SELECT count(*) FROM electric.subscriptions WHERE shape_url LIKE '%pa55word%' OR shape_url LIKE '%tok-123%'"), '0',
	'nothing to find by searching either');
is(as('dave', "SELECT electric._masked_url('https://u:p\@h/x?a=1&access_token=t&Signature=s&jwt=j')"), 'https://***@h/x?a=1&access_token=***&Signature=***&jwt=***',
	'_masked_url: any case, several parameters');

# ---- last_error: the owner sees the server's answer, others only the status ----
$sa->fault(kind => 'status', status => 400, body => { message => 'Invalid request', errors => { where => ['server-side detail xyzzy'] } },
	table => 'items', count => -1);
$sa->txn('items', { op => 'update', row => { id => '1', title => 'changed' } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), '400: state error');
my $owner_err = as('carol', "SELECT last_error FROM electric.subscriptions WHERE name = 'items'");
like($owner_err, qr/the server answered 400.*server-side detail xyzzy/s, 'the owner sees the server\'s answer in last_error');
my $other_err = as('dave', "SELECT last_error FROM electric.subscriptions WHERE name = 'items'");
like($other_err, qr/^the server answered 400 Bad Request$/, 'another role sees the status only');
unlike($other_err, qr/xyzzy|Invalid request/, 'not the server\'s body');
like(sql($node, "SELECT last_error FROM electric.subscriptions WHERE name = 'items'"), qr/xyzzy/, 'a superuser sees it all');
$sa->clear_faults;
ok(wait_sync($node, 'items'), 'recovered');

# a data error: its DETAIL quotes the row, for the owner only
$sa->txn('items', { op => 'update', row => { id => '2', title => 'leaked value 4242' } });
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), 'a CHECK violation: state error');
$owner_err = as('carol', "SELECT last_error FROM electric.subscriptions WHERE name = 'items'");
like($owner_err, qr/violates check constraint "items_title_check".*DETAIL: .*leaked value 4242/s, 'the owner sees the DETAIL with the row');
$other_err = as('dave', "SELECT last_error FROM electric.subscriptions WHERE name = 'items'");
like($other_err, qr/violates check constraint "items_title_check"/, 'another role sees what failed');
unlike($other_err, qr/4242|DETAIL/, 'but not the data');
sql($node, "ALTER TABLE items DROP CONSTRAINT items_title_check");
ok(wait_sync($node, 'items'), 'recovered after the fix');

# ---- redirects: same origin, followed with the headers ----
my $headers = { 'X-Token' => 'sekrit-token' };
$sa->fault(kind => 'status', status => 302, headers => { Location => $sa->base . '/v1/shape?table=same&offset=-1' },
	table => 'same', when => 'initial', count => 1);
sql($node, "SELECT electric.sync_shape_to_table('" . $sa->shape('same', headers => $headers) . "', 'same', '{id}', shape_key => 'same')");
ok(wait_sync($node, 'same'), 'a redirect to the same origin is followed');
is_table_synced($node, $sa, 'same', \@cols, 'and the shape syncs');
my @reqs = @{ $sa->requests('same') };
is($reqs[0]{status}, 302, 'the first answer was the redirect');
is(scalar(grep { ($_->{headers}{'x-token'} // '') eq 'sekrit-token' } @reqs), scalar(@reqs), 'every request to the same origin carried the header, the redirected one too');
ok(!$reqs[1]{fault} && $reqs[1]{status} == 200 && $reqs[1]{query}{offset} eq '-1', 'the redirected request went where Location said');

# ---- another origin: the same host on another port ----
$sa->fault(kind => 'status', status => 302, headers => { Location => $sb->base . '/v1/shape?table=other&offset=-1' },
	table => 'other', count => -1);
sql($node, "SELECT electric.sync_shape_to_table('" . $sa->shape('other', headers => $headers) . "', 'other', '{id}', shape_key => 'other')");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'other'"), 'a redirect to another port: state error');
like(sub_status($node, 'other', 'last_error'), qr/redirected to another host \(127\.0\.0\.1\), which pglite_sync\.allowed_hosts does not allow/,
	'last_error says the redirect was refused and why');
is(scalar(@{ $sb->requests('other') }), 0, 'nothing was sent to the other origin');
is(sql($node, "SELECT count(*) FROM other"), '0', 'nothing synced');

# allowed: followed, without the custom headers
sql($node, "ALTER SYSTEM SET pglite_sync.allowed_hosts = '127.0.0.1'");
sql($node, "SELECT pg_reload_conf()");
$sa->clear_faults;
$sa->fault(kind => 'status', status => 302, headers => { Location => $sb->base . '/v1/shape?table=other&offset=-1' },
	table => 'other', count => 1);
ok(wait_until($node, "SELECT count(*) = 3 FROM other", 20), 'with the host allowed, the redirect is followed and rows arrive');
my @breqs = @{ $sb->requests('other') };
is(scalar(@breqs), 1, 'one request went to the other origin');
is($breqs[0]{status}, 200, 'it was answered');
ok(!exists $breqs[0]{headers}{'x-token'}, 'without the custom header') or diag(explain $breqs[0]{headers});
ok(wait_sync($node, 'other'), 'the subscription goes on syncing from its own URL');
my @areqs = grep { !$_->{fault} } @{ $sa->requests('other') };
cmp_ok(scalar(@areqs), '>=', 1, 'later requests went to the shape URL');
is(scalar(grep { ($_->{headers}{'x-token'} // '') eq 'sekrit-token' } @areqs), scalar(@areqs), 'with the header');
is_table_synced($node, $sa, 'other', \@cols, 'the table equals the server');

$node->stop;
$sa->stop;
$sb->stop;
done_testing();
