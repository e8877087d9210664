# electric.alter_subscription: a new shape_url or new headers take effect
# within a second of the commit, even in the middle of a 20 s long-poll,
# with the same handle and offset (no resync); shape-defining changes are
# refused (22023, with a hint); only the owner may alter.  headers_function
# is called as the owner before every request, merged over the static
# headers; a 401 makes the worker call it again at once, once, before it
# backs off; an error in it is the subscription's error.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $sa = ElectricServer->new(long_poll_ms => 20000);
my $sb = ElectricServer->new(long_poll_ms => 20000);
my $node = sync_node('alter');
my $T = JSON::PP::true;
my @cols = qw(id title);

for my $srv ($sa, $sb)
{
	$srv->create_table(
		name => 'items',
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
		primary_key => ['id'],
		page_rows => 3,
		rows => [ map { { id => "$_", title => "item $_" } } 1 .. 8 ]);
}
sql($node, q{
	CREATE ROLE owner1 LOGIN;
	CREATE ROLE other1 LOGIN;
	GRANT pglite_sync_manager TO owner1, other1;
	CREATE TABLE items (id int PRIMARY KEY, title text);
	GRANT ALL ON items TO owner1;
});
sub as_owner { $node->safe_psql('postgres', $_[0], extra_params => [ '-U', 'owner1' ]) }
sub psql_as
{
	my ($role, $query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$query", extra_params => [ '-U', $role ]);
	return $err;
}

as_owner("SELECT electric.sync_shape_to_table('" . $sa->shape('items', headers => { 'X-Token' => 'old' }) . "', 'items', '{id}', shape_key => 'items')");
ok(wait_sync($node, 'items'), 'synced from server A');

# wait until the worker sits in a long-poll (of 20 s)
sub in_long_poll
{
	ok(wait_until($node, "SELECT coalesce(bool_or(query LIKE 'long-polling%'), false) FROM pg_stat_activity WHERE backend_type = 'pglite_sync worker'"),
		$_[0] // 'the worker is in a long-poll');
	usleep(300_000);
}
sub position { sub_status($node, 'items', "handle || ' ' || \"offset\"") }
# the server logs a request when it is answered: in the order they were made
sub requests { return sort { $a->{t} <=> $b->{t} } @{ $_[0]->requests('items') } }

# ---- a new URL (the same service under another name) mid long-poll ----
in_long_poll();
my ($handle, $offset) = split / /, position();
my $rows = sub_status($node, 'items', 'rows_applied');
$sa->clear_requests;
my $port = $sa->port;
my $t0 = time;
as_owner("SELECT electric.alter_subscription('items', shape_url => 'http://localhost:$port/v1/shape')");
# the new long-poll is in the server's log once it is answered
usleep(1_200_000);
$sa->txn('items', { op => 'update', row => { id => '1', title => 'via localhost' } });
ok(wait_sync($node, 'items'), 'synced');
my @reqs = grep { ($_->{headers}{host} // '') eq "localhost:$port" } requests($sa);
ok(@reqs, 'the next request used the new URL (Host: localhost)');
cmp_ok($reqs[0]{t} / 1000 - $t0, '<', 1, sprintf('within a second of the commit (%.3f s), not after the 20 s long-poll', $reqs[0]{t} / 1000 - $t0));
is($reqs[0]{query}{handle} . ' ' . $reqs[0]{query}{offset}, "$handle $offset", 'with the same handle and offset');
is($reqs[0]{headers}{'x-token'}, 'old', 'and the static header, unchanged');
my @aborted = grep { $_->{aborted} } @{ $sa->requests('items') };
cmp_ok(scalar(@aborted), '>=', 1, 'the long-poll in flight was abandoned');
is(sub_status($node, 'items', 'shape_url'), "http://localhost:$port/v1/shape", 'the view shows the new URL');
is(sql($node, "SELECT title FROM items WHERE id = 1"), 'via localhost', 'changes arrive through the new URL');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $sa->requests('items') }), 0, 'no resync: no request at offset -1');
is(sub_status($node, 'items', 'rows_applied'), $rows + 1, 'rows_applied went on counting: nothing loaded again');

# ---- new headers mid long-poll ----
in_long_poll();
($handle, $offset) = split / /, position();
$sa->clear_requests;
$t0 = time;
as_owner(q{SELECT electric.alter_subscription('items', headers => '{"X-Token": "new", "Authorization": "Bearer rotated"}')});
usleep(1_200_000);
$sa->txn('items', { op => 'update', row => { id => '1', title => 'new headers' } });
ok(wait_sync($node, 'items'), 'synced');
@reqs = grep { ($_->{headers}{'x-token'} // '') eq 'new' } requests($sa);
ok(@reqs, 'the next request carried the new headers');
cmp_ok($reqs[0]{t} / 1000 - $t0, '<', 1, 'within a second of the commit');
is($reqs[0]{headers}{authorization}, 'Bearer rotated', 'both of them');
is($reqs[0]{query}{handle} . ' ' . $reqs[0]{query}{offset}, "$handle $offset", 'same handle and offset');
is(scalar(grep { ($_->{query}{offset} // '') eq '-1' } @{ $sa->requests('items') }), 0, 'no resync');
is(as_owner("SELECT shape_headers->>'X-Token' FROM electric.subscriptions WHERE name = 'items'"), 'new', 'the view shows the new headers to the owner');
as_owner(q{SELECT electric.alter_subscription('items', headers => '{}')});
in_long_poll('headers cleared, long-polling again');
$sa->txn('items', { op => 'update', row => { id => '1', title => 'no headers' } });
ok(wait_sync($node, 'items'), 'synced');
my ($last) = reverse requests($sa);
ok(!exists $last->{headers}{'x-token'} && !exists $last->{headers}{authorization}, "'{}' clears the headers");
is(sub_status($node, 'items', "coalesce(shape_headers::text, 'none')"), 'none', 'the view shows none');

# a rolled-back alter changes nothing
$sa->clear_requests;
sql($node, "BEGIN; SELECT electric.alter_subscription('items', shape_url => 'http://127.0.0.1:9/v1/shape'); ROLLBACK");
sleep 1;
is(sub_status($node, 'items', 'shape_url'), "http://localhost:$port/v1/shape", 'a rolled-back alter changes nothing');
is(scalar(@{ $sa->requests('items') }), 0, 'and does not interrupt the long-poll');

# ---- refusals ----
for my $case ([ 'table=other', 'table' ], [ 'where=id%3E1', 'where' ], [ 'columns=id', 'columns' ],
	[ 'replica=full', 'replica' ], [ 'params%5B1%5D=x', 'params' ], [ 'x=1&log=changes_only', 'log' ],
	[ 'ta%62le=x', 'table' ], [ 'x=1&%63olumns=id', 'columns' ], [ 'wh%65re=id%3E100', 'where' ])
{
	my ($q, $what) = @$case;
	my $err = psql_as('owner1', "SELECT electric.alter_subscription('items', shape_url => 'http://127.0.0.1:$port/v1/shape?$q')");
	like($err, qr/ERROR:  22023: shape_url of subscription "items" may not set "$what/, "a URL setting $what is refused (22023)");
	like($err, qr/HINT:  Subscribe again/, '... with a hint');
}
like(psql_as('owner1', "SELECT electric.alter_subscription('items', shape_url => 'ftp://127.0.0.1/v1/shape')"), qr/22023/, 'a bad scheme is refused');
like(psql_as('owner1', "SELECT electric.alter_subscription('items')"), qr/22023: alter_subscription of "items" changes nothing/, 'altering nothing is refused');
like(psql_as('other1', "SELECT electric.alter_subscription('items', headers => '{}')"), qr/42501: must be owner of subscription "items"/,
	'another manager who is not the owner may not alter (42501)');
like(psql_as('owner1', "SELECT electric.alter_subscription('nope', headers => '{}')"), qr/42704/, 'an unknown subscription is 42704');
like(psql_as('owner1', q{SELECT electric.alter_subscription('items', headers => '["x"]')}), qr/22023/, 'headers that are not an object are refused');
is(sub_status($node, 'items', 'shape_url'), "http://localhost:$port/v1/shape", 'none of that changed anything');
sleep 2;
is(sql($node, "SELECT count(*) || ' ' || count(title) FROM items"), '8 8', 'the table keeps its rows');
# subscribe refuses protocol parameters in the URL however they are spelled
sql($node, "CREATE TABLE items_enc (id int PRIMARY KEY, title text); GRANT ALL ON items_enc TO owner1");
for my $case ([ 'offset=0', 'offset' ], [ '%6Fffset=0', 'offset' ], [ 'x=1&h%61ndle=h', 'handle' ], [ 'l%69ve=true', 'live' ])
{
	my ($q, $what) = @$case;
	my $err = psql_as('owner1', "SELECT electric.sync_shape_to_table('{\"url\": \"http://127.0.0.1:$port/v1/shape?$q\", \"params\": {\"table\": \"items\"}}', 'items_enc', '{id}')");
	like($err, qr/ERROR:  22023: .*url query parameter "$what" is reserved/, "subscribe refuses a URL setting $q (22023)");
}
is(sql($node, "SELECT count(*) FROM electric.subscriptions WHERE table_name = 'items_enc'"), '0', 'and subscribes nothing');

# ---- headers_function ----
sql($node, q{
	CREATE SEQUENCE hseq;
	GRANT USAGE ON SEQUENCE hseq TO owner1;
	CREATE TABLE hfail (fail boolean);
	INSERT INTO hfail VALUES (false);
	GRANT SELECT ON hfail TO owner1;
	CREATE FUNCTION hf(sub text) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT fail FROM public.hfail) THEN
			RAISE EXCEPTION 'token service unavailable for %', sub;
		END IF;
		RETURN jsonb_build_object('X-Seq', nextval('public.hseq')::text, 'X-User', current_user, 'X-Token', 'from-function');
	END $$;
});
as_owner(q{SELECT electric.alter_subscription('items', headers => '{"X-Static": "s", "X-Token": "static"}', headers_function => 'hf(text)')});
in_long_poll('with a headers function, long-polling');
is(sub_status($node, 'items', 'headers_function'), 'hf(text)', 'the view shows the headers function');
$sa->clear_requests;
$sa->txns('items', map { { ops => [ { op => 'update', row => { id => '2', title => "seq $_" } } ] } } 1 .. 3);
ok(wait_sync($node, 'items'), 'synced');
$sa->txn('items', { op => 'update', row => { id => '2', title => 'seq 4' } });
ok(wait_sync($node, 'items'), 'synced again');
@reqs = grep { defined $_->{headers}{'x-seq'} } requests($sa);
my @seq = map { $_->{headers}{'x-seq'} } @reqs;
cmp_ok(scalar(@seq), '>=', 3, 'requests carry the function\'s header: ' . join(',', @seq));
my @all = requests($sa);
is(scalar(@seq), scalar(@all), 'every request does');
is_deeply(\@seq, [ map { $seq[0] + $_ } 0 .. $#seq ], 'a fresh value for every request: the function is called before each');
is(scalar(grep { $_->{headers}{'x-user'} eq 'owner1' } @reqs), scalar(@reqs), 'called as the owner');
is(scalar(grep { $_->{headers}{'x-token'} eq 'from-function' && $_->{headers}{'x-static'} eq 's' } @reqs), scalar(@reqs),
	'merged over the static headers: the function wins on a shared name, the other static one stays');

# a 401: the function is called again at once, and the retry succeeds
in_long_poll();
$sa->clear_requests;
$sa->fault(kind => 'status', status => 401, table => 'items', count => 1);
# the long-poll in flight answers this; the next one gets the 401
$sa->txn('items', { op => 'update', row => { id => '3', title => 'before 401' } });
ok(wait_until($node, "SELECT title = 'before 401' FROM items WHERE id = 3", 10), 'a change arrives');
usleep(1_000_000);
$sa->txn('items', { op => 'update', row => { id => '3', title => 'after 401' } });
ok(wait_until($node, "SELECT title = 'after 401' FROM items WHERE id = 3", 10), 'after a 401 the next change arrives');
@reqs = requests($sa);
my ($i401) = grep { ($reqs[$_]{status} // 0) == 401 } 0 .. $#reqs;
ok(defined $i401, 'the server answered 401 once');
my $retry = $reqs[ $i401 + 1 ];
is($retry->{headers}{'x-seq'}, $reqs[$i401]{headers}{'x-seq'} + 1, 'the next request has a fresh value: the function was called again');
cmp_ok($retry->{t} - $reqs[$i401]{t}, '<', 500, sprintf('at once (%d ms later, not after a backoff)', $retry->{t} - $reqs[$i401]{t}));
is($retry->{status}, 200, 'and succeeded');
ok(wait_until($node, "SELECT state = 'live' FROM electric.subscriptions WHERE name = 'items'"), 'live, not error');

# a 401 that stays: one immediate retry, then error and backoff
$sa->clear_requests;
$sa->fault(kind => 'status', status => 401, table => 'items', count => -1);
sql($node, "SELECT electric.wait_for_sync('items', '0.1 s')");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), 'a lasting 401: state error');
like(sub_status($node, 'items', 'last_error'), qr/401/, 'last_error says 401');
sleep 3;
my @t = map { $_->{t} } grep { ($_->{status} // 0) == 401 } requests($sa);
my @gaps = map { $t[$_] - $t[ $_ - 1 ] } 1 .. $#t;
cmp_ok($gaps[0], '<', 500, "the first retry is immediate ($gaps[0] ms)");
ok(@gaps >= 2 && !(grep { $_ < 900 } @gaps[1 .. $#gaps]), 'later ones wait for the backoff (gaps: ' . join(',', @gaps) . ' ms)');
$sa->clear_faults;
ok(wait_sync($node, 'items'), 'healed');

# an error in the function is the subscription's error
sql($node, "UPDATE hfail SET fail = true");
sql($node, "SELECT electric.wait_for_sync('items', '0.1 s')");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'items'"), 'the headers function fails: state error');
like(sub_status($node, 'items', 'last_error'), qr/token service unavailable for items/, 'last_error is the function\'s message');
sql($node, "UPDATE hfail SET fail = false");
ok(wait_sync($node, 'items'), 'fixed: syncing again');

# removing the function (alter with NULL leaves it; a resubscribe would drop it)
is(sub_status($node, 'items', 'headers_function'), 'hf(text)', 'still set');

# ---- in error or backoff, new values are used at once, not after the wait ----
sql($node, "ALTER SYSTEM SET pglite_sync.backoff_max = '30s'");
sql($node, "SELECT pg_reload_conf()");
sql($node, q{
	CREATE FUNCTION hf2(sub text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"X-Fn": "hf2"}'::jsonb $$;
});
sub in_state
{
	my ($state, $what) = @_;
	sql($node, "SELECT electric.wait_for_sync('items', '0.1 s')");
	ok(wait_until($node, "SELECT state = '$state' FROM electric.subscriptions WHERE name = 'items'"), "$what: state $state");
}
# the alter commits at $t0: its request is logged once a change answers it
sub asked_with
{
	my ($header, $value, $t0, $what) = @_;
	usleep(1_200_000);
	$sa->txn('items', { op => 'update', row => { id => '4', title => "after $value" } });
	ok(wait_until($node, "SELECT title = 'after $value' FROM items WHERE id = 4", 10), "$what: synced");
	my @r = grep { ($_->{headers}{$header} // '') eq $value } requests($sa);
	ok(@r, "$what: a request carried $header: $value");
	cmp_ok(@r ? $r[0]{t} / 1000 - $t0 : 99, '<', 1,
		sprintf('%s: within a second of the commit (%.3f s), not after the 30 s wait', $what, @r ? $r[0]{t} / 1000 - $t0 : 99));
}
my $static = '"X-Static": "s", "X-Token": "static"';

# a lasting 401 waits 30 s (the cap): a reload that changes nothing keeps the wait
$sa->fault(kind => 'status', status => 401, table => 'items', count => -1);
in_state('error', 'a lasting 401');
$sa->clear_faults;
$sa->clear_requests;
sql($node, "SELECT pg_reload_conf()");
as_owner("SELECT electric.alter_subscription('items', headers => '{$static}')");
sleep 2;
is(scalar(@{ $sa->requests('items') }), 0, 'neither a configuration reload nor an alter to the same values ends the wait');
is(sub_status($node, 'items', 'state'), 'error', 'still error');
my $t1 = time;
as_owner(qq{SELECT electric.alter_subscription('items', headers => '{$static, "Authorization": "Bearer new"}')});
asked_with('authorization', 'Bearer new', $t1, 'new headers in error');

# 503s with Retry-After: 30
$sa->fault(kind => 'status', status => 503, retry_after => 30, table => 'items', count => -1);
in_state('backoff', 'lasting 503s');
$sa->clear_faults;
$t1 = time;
as_owner(qq{SELECT electric.alter_subscription('items', headers => '{$static, "Authorization": "Bearer newer"}')});
asked_with('authorization', 'Bearer newer', $t1, 'new headers in backoff');

# a failing headers function replaced by another
sql($node, "UPDATE hfail SET fail = true");
in_state('error', 'a failing headers function');
$t1 = time;
as_owner("SELECT electric.alter_subscription('items', headers_function => 'hf2(text)')");
asked_with('x-fn', 'hf2', $t1, 'a new headers function in error');
sql($node, "UPDATE hfail SET fail = false");
as_owner("SELECT electric.alter_subscription('items', headers_function => 'hf(text)')");

# a host-driven subscription too: next_request stops saying wait once a value changes
sql($node, "CREATE TABLE hd_items (id int PRIMARY KEY, title text); GRANT ALL ON hd_items TO owner1");
as_owner("SELECT electric.sync_shape_to_table('" . $sa->shape('items') . "', 'hd_items', '{id}', shape_key => 'hd', worker => false)");
as_owner("SELECT electric.next_request('hd')");
as_owner("SELECT electric.ingest_response('hd', 401, '{}', 'unauthorized'::bytea)");
is(sub_status($node, 'hd', 'state'), 'error', 'host-driven: a 401 is an error');
my $wait = "SELECT (electric.next_request('hd')->>'wait_ms')::int";
cmp_ok(as_owner($wait), '>', 20000, 'host-driven: next_request says wait (the 30 s cap)');
as_owner("SELECT electric.alter_subscription('hd', headers => '{}')");
cmp_ok(as_owner($wait), '>', 20000, 'host-driven: an alter to the same values keeps the wait');
as_owner(qq{SELECT electric.alter_subscription('hd', headers => '{"Authorization": "Bearer hd"}')});
my $next = JSON::PP::decode_json(as_owner("SELECT electric.next_request('hd')"));
ok(!exists $next->{wait_ms} && $next->{url}, 'host-driven: after new headers, next_request asks at once');
is($next->{headers}{Authorization}, 'Bearer hd', '... with them');
as_owner("SELECT electric.delete_subscription('hd')");
sql($node, "ALTER SYSTEM RESET pglite_sync.backoff_max");
sql($node, "SELECT pg_reload_conf()");
ok(wait_sync($node, 'items'), 'back to the first function');

# ---- another server altogether: the same position is offered to it ----
in_long_poll();
($handle, $offset) = split / /, position();
as_owner("SELECT electric.alter_subscription('items', shape_url => '" . $sb->shape_url . "')");
my $end = time + 5;
usleep(20_000) until @{ $sb->requests('items') } || time > $end;
@reqs = @{ $sb->requests('items') };
ok(@reqs, 'the next request goes to server B');
is($reqs[0]{query}{handle} . ' ' . $reqs[0]{query}{offset}, "$handle $offset", 'with the same handle and offset');
ok(defined $reqs[0]{headers}{'x-seq'}, 'and the function\'s headers');
# B does not know A's handle: it answers 409 and the shape is synced afresh from B
ok(wait_sync($node, 'items'), 'synced from B');
is_table_synced($node, $sb, 'items', \@cols, 'the table equals server B');

$node->stop;
$sa->stop;
$sb->stop;
done_testing();
