# Type fidelity: a source table with every common type and edge value is
# rendered by the test server exactly as Electric renders it, synced with
# each initial_insert_method, and compared with the source value by value
# (EXCEPT both ways).  Live changes then go through the same comparison.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use SyncTest;
use Test::More;

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('types');

sql($node, q{
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE src (
	id int8 PRIMARY KEY,
	i2 int2, i4 int4, i8 int8,
	num numeric, num_p numeric(12, 4),
	f4 float4, f8 float8,
	b bool,
	t text, vc varchar(20), bp char(6),
	by bytea, u uuid,
	d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
	js json, jb jsonb,
	ia int4[], ta text[], ia2 int4[][], na numeric[],
	e mood, ea mood[],
	dom posint,
	ip inet, cidr cidr,
	bits bit varying(10)
);
INSERT INTO src VALUES
 (1, 32767, 2147483647, 9223372036854775807,
  123456789012345678901234567890.123456789012345678901234567890, 12345678.1234,
  3.4028235e38, 1.7976931348623157e308, true,
  'plain', 'short', 'ab',
  '\x00017f80fffe', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2024-02-29', '23:59:59.999999', '12:00:00+05:30', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.678+02', '1 year 2 months 3 days 04:05:06.789',
  '{"a": [1, 2.50, "x"], "b": null}', '{"nested": {"k": [true, false, null]}, "emoji": "😀"}',
  '{1,NULL,3}', '{"with space","comma,here","quote\"d","back\\\\slash",NULL,"NULL",""}', '{{1,2},{3,4}}', '{1.5,NaN,-0}',
  'happy', '{sad,"it''s \"complicated\""}',
  42, '192.168.0.1/24', '10.0.0.0/8', B'10101'),
 (2, -32768, -2147483648, -9223372036854775808,
  'NaN', -0.0001,
  'NaN', '-Infinity', false,
  E'tab\there, newline\nhere, cr\rhere, backslash \\ quote '' double " comma , ü 中文 😀', 'x', '',
  '\x', '00000000-0000-0000-0000-000000000000',
  'infinity', '00:00', '00:00:00-12', '-infinity', '1970-01-01 00:00:00+00', '-1 days -00:00:01',
  '[]', '"just a string"',
  '{}', '{}', '{{NULL,NULL}}', '{}',
  'it''s "complicated"', '{}',
  1, '::1', '2001:db8::/32', B''),
 (3, 0, 0, 9007199254740993,
  '0.000000000000000000000000000001', 0,
  '1.4e-45', '5e-324', NULL,
  '\N', NULL, NULL,
  NULL, NULL,
  '0001-01-01 BC', NULL, NULL, NULL, 'infinity', 'P1Y2M',
  'null', 'null',
  NULL, '{"\\N"}', NULL, NULL,
  NULL, NULL,
  NULL, NULL, NULL, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, 'Infinity', -0.0, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
-- more ordinary rows, so the snapshot spans pages
INSERT INTO src (id, i4, t, b, tstz, num, jb, ta, e)
SELECT g, g, 'row ' || g || E' \t \\ "x"', g % 2 = 0, '2024-01-01'::timestamptz + g * interval '1 minute',
       g * 1.25, jsonb_build_object('g', g), ARRAY['a' || g, NULL], (ARRAY['sad','ok','happy'])[1 + g % 3]::mood
FROM generate_series(10, 60) g;
});

$server->from_pg($node, 'alltypes', 'public.src', page_rows => 10);
my @methods = qw(insert copy json);
for my $m (@methods)
{
	sql($node, "CREATE TABLE t_$m (LIKE src INCLUDING ALL)");
	sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('alltypes') . "', 't_$m', '{id}', shape_key => 'types_$m', initial_insert_method => '$m')");
}

sub compare
{
	my ($label) = @_;
	for my $m (@methods)
	{
		my $missing = sql($node, "SELECT count(*) FROM (SELECT r::text FROM src r EXCEPT SELECT r::text FROM t_$m r) x");
		my $extra = sql($node, "SELECT count(*) FROM (SELECT r::text FROM t_$m r EXCEPT SELECT r::text FROM src r) x");
		is("$missing/$extra", '0/0', "$label: $m: source and target equal value by value (EXCEPT both ways)")
		  or diag(sql($node, "SELECT r::text FROM src r EXCEPT SELECT r::text FROM t_$m r LIMIT 3") . "\n---\n" .
			sql($node, "SELECT r::text FROM t_$m r EXCEPT SELECT r::text FROM src r LIMIT 3"));
	}
	is(sql($node, "SELECT count(*) FROM src"), sql($node, "SELECT count(*) FROM t_json"), "$label: same row count");
}

for my $m (@methods)
{
	ok(wait_sync($node, "types_$m"), "initial sync with $m");
}
compare('initial snapshot');

my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
like($log, qr/subscription "types_copy": committed batch: .* rows written \(\d+ by copy/, 'the copy method used COPY');
like($log, qr/subscription "types_json": committed batch: .* rows written \(\d+ by json/, 'the json method used json_to_recordset');
like($log, qr/subscription "types_insert": committed batch: .* rows written \(0 by insert/, 'the insert method used INSERTs');

# live changes: take new values from the source rendered by Electric's rules
sql($node, q{
	UPDATE src SET t = E'changed\n"live"', jb = '{"live": [1, {"x": "y"}]}', ta = '{"a,b",NULL}', iv = '2 hours',
	               e = 'sad', ea = '{happy,ok}', b = false, f8 = 'Infinity', by = '\xdeadbeef' WHERE id = 1;
	UPDATE src SET i8 = 1 WHERE id = 2;
	DELETE FROM src WHERE id = 3;
	INSERT INTO src (id, t, num, d) VALUES (100, 'new', 'NaN', '2000-01-01');
});
# what Electric would send: text output under its display settings
my $render = q{SET bytea_output = hex; SET DateStyle = 'ISO, DMY'; SET TimeZone = 'UTC'; SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 1;};
my ($upd1) = sql($node, "$render SELECT json_build_object('id', id::text, 't', t::text, 'jb', jb::text, 'ta', ta::text, 'iv', iv::text, 'e', e::text, 'ea', ea::text, 'b', CASE WHEN b THEN 't' ELSE 'f' END, 'f8', f8::text, 'by', by::text) FROM src WHERE id = 1");
my ($ins) = sql($node, "$render SELECT json_strip_nulls(json_build_object('id', id::text, 't', t::text, 'num', num::text, 'd', d::text)) FROM src WHERE id = 100");
my $j = JSON::PP->new;
$server->txn('alltypes',
	{ op => 'update', row => $j->decode($upd1) },
	{ op => 'update', row => { id => '2', i8 => '1' } },
	{ op => 'delete', row => { id => '3' } },
	{ op => 'insert', row => $j->decode($ins) });
for my $m (@methods)
{
	ok(wait_sync($node, "types_$m"), "live changes with $m");
}
compare('after live changes');

# a local column of another type: text <- int works, int <- text is a clear error
sql($node, "CREATE TABLE loose (id text PRIMARY KEY, i2 text, t text)");
$server->create_table(name => 'looser', columns => [ { name => 'id', type => 'int8', not_null => JSON::PP::true }, { name => 'i2', type => 'int2' }, { name => 't', type => 'text' } ],
	primary_key => ['id'], rows => [ { id => '1', i2 => '7', t => 'seven' } ]);
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('looser') . "', 'loose', '{id}', shape_key => 'loose')");
ok(wait_sync($node, 'loose'), 'text columns take int values');
is(sql($node, "SELECT id || ':' || i2 || ':' || t FROM loose"), '1:7:seven', 'values kept as text');
sql($node, "CREATE TABLE strict_t (id int8 PRIMARY KEY, i2 int2, t int4)");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('looser') . "', 'strict_t', '{id}', shape_key => 'strict')");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'strict'"), 'int <- text: state error');
like(sub_status($node, 'strict', 'last_error'), qr/invalid input syntax for type integer: "seven".*key "public"\."looser"\/"1".*column "t"/s,
	'last_error names the value, the key and the column');
is(sql($node, "SELECT count(*) FROM strict_t"), '0', 'nothing half-applied');

# a value too long for its column fails the same way with every method
$server->create_table(name => 'long', columns => [ { name => 'id', type => 'int4', not_null => JSON::PP::true }, { name => 'v', type => 'text' }, { name => 'b', type => 'text' } ],
	primary_key => ['id'], rows => [ { id => '1', v => 'abcdefgh', b => '10101' } ]);
for my $m (@methods)
{
	sql($node, "CREATE TABLE short_$m (id int PRIMARY KEY, v varchar(3), b bit(5))");
	sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('long') . "', 'short_$m', '{id}', shape_key => 'short_$m', initial_insert_method => '$m')");
}
for my $m (@methods)
{
	ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'short_$m'"), "$m: a too-long value is an error");
	like(sub_status($node, "short_$m", 'last_error'), qr/value too long for type character varying\(3\)/, "$m: ... the same error, never a silent truncation");
	is(sql($node, "SELECT count(*) FROM short_$m"), '0', "$m: nothing loaded");
}

$node->stop;
$server->stop;
done_testing();
