# Encodings: in a LATIN1 database, shape options with non-ASCII text
# (where, params) are converted to UTF-8 before they are URL-encoded, so the
# server gets them intact (its request log shows the UTF-8 text), and the
# rows sync with their non-ASCII values converted to LATIN1.  A value LATIN1
# cannot hold is a data error (state error), not a retry.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

# every string below is UTF-8 bytes; psql talks UTF-8 to the LATIN1 database
$ENV{PGCLIENTENCODING} = 'UTF8';
my $cafe = "caf\xc3\xa9";          # café
my $naive = "na\xc3\xafve";        # naïve
my $snow = "snow \xe2\x98\x83";    # snow ☃ (not in LATIN1)
my $rfffd = "\xef\xbf\xbd";        # what a server decodes from invalid UTF-8

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('latin1', no_extension => 1);
my $T = JSON::PP::true;

$node->safe_psql('postgres', "CREATE DATABASE latin ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
sub lsql { return $node->safe_psql('latin', $_[0]) }
is(lsql("SHOW server_encoding"), 'LATIN1', 'a LATIN1 database');
lsql("CREATE EXTENSION pglite_sync");

$server->create_table(
	name => 'words',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' }, { name => 'note', type => 'text' } ],
	primary_key => ['id'],
	rows => [
		{ id => '1', title => $cafe, note => "cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e" },
		{ id => '2', title => 'cafe', note => 'plain' },
		{ id => '3', title => $naive, note => "\xc3\x9cber" },
		{ id => '4', title => $cafe, note => "second $cafe" },
	]);
lsql("CREATE TABLE w1 (id int PRIMARY KEY, title text, note text); CREATE TABLE w2 (id int PRIMARY KEY, title text, note text)");

# The shape's JSON, written out as bytes (a JSON encoder would take the
# UTF-8 bytes for Latin-1 characters); values hold no '"' or '\\'.
sub shape_json
{
	my ($where, $params) = @_;
	my $json = '{"url": "' . $server->shape_url . '", "params": {"table": "words", "where": "' . $where . '"';
	$json .= ', "params": {' . join(', ', map { "\"$_\": \"$params->{$_}\"" } sort keys %$params) . '}' if $params;
	$json .= '}}';
	$json =~ s/'/''/g;
	return $json;
}

# where with a non-ASCII literal
lsql("SELECT electric.sync_shape_to_table('" . shape_json("title = '$cafe'") . "', 'w1', '{id}', shape_key => 'w1')");
{
	# the catalog gets the shape converted to UTF-8, stored as if it were
	# LATIN1 text: users (and dumps) see "cafÃ©"
	is(lsql("SELECT shape_params->>'where' FROM electric.subscriptions WHERE name = 'w1'"), "title = '$cafe'", 'the view shows the where clause as given');
	is(lsql("SELECT length(shape_params->>'where') FROM electric.subscriptions WHERE name = 'w1'"), '14', '(é is one character in the database)');
}
# params with non-ASCII text
lsql("SELECT electric.sync_shape_to_table('" . shape_json('title = $1', { 1 => $naive }) . "', 'w2', '{id}', shape_key => 'w2')");
is(lsql("SELECT electric.wait_for_sync('w1', '30 s') AND electric.wait_for_sync('w2', '30 s')"), 't', 'both subscriptions sync');

my @reqs = @{ $server->requests('words') };
my ($r1) = grep { ($_->{query}{where} // '') =~ /^title = '/ } @reqs;
my ($r2) = grep { ($_->{query}{where} // '') eq 'title = $1' } @reqs;
is($r1->{query}{where}, "title = '$cafe'", 'the server got the where clause in UTF-8, intact');
is($r2->{query}{params}{1}, $naive, 'the server got the parameter in UTF-8, intact');
unlike(join(' ', map { $_->{query}{where} // '' } @reqs), qr/$rfffd/, 'no replacement character anywhere: nothing was sent as LATIN1');

is(lsql("SELECT string_agg(id || '=' || title || '/' || note, ',' ORDER BY id) FROM w1"), "1=$cafe/cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e,4=$cafe/second $cafe",
	'the where shape synced its rows, non-ASCII values intact');
is(lsql("SELECT string_agg(id || '=' || title || '/' || note, ',' ORDER BY id) FROM w2"), "3=$naive/\xc3\x9cber", 'the params shape too');
is(lsql("SELECT octet_length(title) FROM w1 WHERE id = 1"), '4', 'stored as LATIN1 (é is one byte)');
# live changes with non-ASCII text
$server->txn('words', { op => 'update', row => { id => '1', note => "d\xc3\xa9j\xc3\xa0 vu" } }, { op => 'insert', row => { id => '5', title => $cafe, note => "\xc2\xbfqu\xc3\xa9?" } });
is(lsql("SELECT electric.wait_for_sync('w1', '30 s')"), 't', 'live changes synced');
is(lsql("SELECT string_agg(id || '=' || note, ',' ORDER BY id) FROM w1"), "1=d\xc3\xa9j\xc3\xa0 vu,4=second $cafe,5=\xc2\xbfqu\xc3\xa9?", 'with their non-ASCII text');

# a character LATIN1 does not have: a data error
$server->txn('words', { op => 'update', row => { id => '4', note => $snow } });
ok(wait_until_latin("SELECT state = 'error' FROM electric.subscriptions WHERE name = 'w1'"), 'a value LATIN1 cannot hold: state error');
like(lsql("SELECT last_error FROM electric.subscriptions WHERE name = 'w1'"), qr/has no equivalent in encoding "LATIN1"/, 'last_error says so');
is(lsql("SELECT note FROM w1 WHERE id = 4"), "second $cafe", 'nothing applied');
is(lsql("SELECT state FROM electric.subscriptions WHERE name = 'w2'"), 'live', 'the other subscription is unaffected');

sub wait_until_latin
{
	my ($q) = @_;
	for (1 .. 400)
	{
		return 1 if lsql($q) eq 't';
		select(undef, undef, undef, 0.05);
	}
	return 0;
}

$node->stop;
$server->stop;
done_testing();
