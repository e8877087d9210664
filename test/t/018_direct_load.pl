# The 'copy' method's direct loader: tuples formed from the values and
# written by multi-insert with their index entries.  Constraints, indexes
# (unique, expression, partial), domains, defaults and column privileges
# act as for COPY FROM. The tables where COPY FROM does more are loaded by
# COPY FROM itself: a trigger fires once per row, partitions route, stored
# generated columns and nextval defaults are computed.  Every table equals
# the server's.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use PostgreSQL::Test::Utils;
use SyncTest;
use Test::More;

my $ROWS = 60;
my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('direct_load');
my $T = JSON::PP::true;
my @cols = qw(id code title amount);

sub rows_for { my ($bad) = @_; return [ map { { id => "$_", code => ($bad && $_ == 45 ? "c1" : "c$_"), title => ($_ % 7 ? "title $_" : undef), amount => sprintf('%d.%02d', $_, $_) } } 1 .. $ROWS ] }
sub server_table
{
	my ($name, %o) = @_;
	$server->create_table(name => $name, page_rows => 20,
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'code', type => 'text' },
			{ name => 'title', type => 'text' }, { name => 'amount', type => 'numeric' } ],
		primary_key => ['id'], rows => rows_for($o{bad}));
}
sub subscribe { my ($t) = @_; sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape($t) . "', '$t', '{id}', shape_key => '$t', initial_insert_method => 'copy')") }
sub path_of
{
	my ($t) = @_;
	my ($path) = slurp_file($node->logfile) =~ /subscription "$t": committed batch: \d+ changes, \d+ rows written \(\d+ by ([^,]+), /;
	return $path // 'none';
}

sql($node, q{
	CREATE DOMAIN positive AS numeric CHECK (VALUE > 0);
	CREATE SEQUENCE seq;
	CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN UPDATE fired SET n = n + 1; RETURN NEW; END $$;
	CREATE TABLE fired (n int);
	INSERT INTO fired VALUES (0);
});

# ---- a plain table: the direct loader, with what COPY FROM would enforce ----
server_table('plain');
sql($node, q{
	CREATE TABLE plain (id int PRIMARY KEY, code text NOT NULL UNIQUE, title text, amount positive CHECK (amount < 1000),
		note text DEFAULT 'local', at timestamptz DEFAULT now());
	CREATE INDEX plain_lower ON plain (lower(code));
	CREATE INDEX plain_partial ON plain (amount) WHERE title IS NULL;
	INSERT INTO plain (id, code, amount) VALUES (1000, 'old', 1);
});
subscribe('plain');
ok(wait_sync($node, 'plain'), 'a plain table syncs');
is(path_of('plain'), 'copy', 'through the direct loader');
is_table_synced($node, $server, 'plain', \@cols, 'it equals the server');
is(sql($node, "SELECT count(*) FILTER (WHERE note = 'local') || ' ' || count(*) FILTER (WHERE at IS NOT NULL) FROM plain"), "$ROWS $ROWS",
	'columns the shape lacks get their defaults');
sql($node, "SET enable_seqscan = off");
is($node->safe_psql('postgres', "SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM plain WHERE lower(code) = 'c17'"), '1',
	'the expression index has the rows');
is($node->safe_psql('postgres', "SET enable_seqscan = off; SELECT count(*) FROM plain WHERE title IS NULL AND amount > 0"), int($ROWS / 7),
	'the partial index has its rows');
like($node->safe_psql('postgres', "SET enable_seqscan = off; SET enable_bitmapscan = off; EXPLAIN SELECT * FROM plain WHERE lower(code) = 'c17'"),
	qr/Index Scan using plain_lower/, '... and is what the query used');
is(sql($node, "SELECT count(*) FROM plain WHERE id = 1000"), '0', 'the old rows are gone');
is(sql($node, "SELECT n_tup_ins >= $ROWS FROM pg_stat_user_tables WHERE relname = 'plain'"), 't', 'the inserts are counted');

# a unique index refusing a row, and a domain refusing one: error state naming them
server_table('dup', bad => 1);
sql($node, "CREATE TABLE dup (id int PRIMARY KEY, code text UNIQUE, title text, amount numeric)");
subscribe('dup');
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'dup'", 30), 'a duplicate in a unique index: state error');
like(sub_status($node, 'dup', 'last_error'), qr/duplicate key value violates unique constraint "dup_code_key".*"public"\."dup"\/"45"/s,
	'last_error names the index and the key');
is(sql($node, "SELECT count(*) FROM dup"), '0', 'nothing of it was applied');

server_table('dom');
$server->txn('dom', { op => 'update', row => { id => '30', amount => '-1' } });
sql($node, "CREATE TABLE dom (id int PRIMARY KEY, code text, title text, amount positive)");
subscribe('dom');
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'dom'", 30), 'a value the domain refuses: state error');
like(sub_status($node, 'dom', 'last_error'), qr/value for domain positive violates check constraint.*"public"\."dom"\/"30"/s,
	'last_error names the domain and the key');
is(sql($node, "SELECT count(*) FROM dom"), '0', 'nothing of it was applied');

# INSERT is checked on the columns written
server_table('priv');
sql($node, "BEGIN;
	CREATE ROLE loader LOGIN;
	GRANT pglite_sync_manager TO loader;
	CREATE TABLE priv (id int PRIMARY KEY, code text, title text, amount numeric, secret text);
	GRANT ALL ON priv TO loader;
	SET ROLE loader;
	SELECT electric.sync_shape_to_table('" . $server->shape('priv') . "', 'priv', '{id}', shape_key => 'priv', initial_insert_method => 'copy');
	RESET ROLE;
	REVOKE INSERT ON priv FROM loader;
	GRANT INSERT (id, code, title) ON priv TO loader;
	COMMIT");
ok(wait_until($node, "SELECT state = 'error' FROM electric.subscriptions WHERE name = 'priv'", 30), 'INSERT not granted on a column written: state error');
like(sub_status($node, 'priv', 'last_error'), qr/permission denied for table priv/, 'last_error: permission denied');
like(slurp_file($node->logfile), qr/subscription "priv": batch failed, retrying it row by row: permission denied for table priv/,
	'the direct loader refused it first');
sql($node, "GRANT INSERT (amount) ON priv TO loader");
ok(wait_until($node, "SELECT state = 'live' FROM electric.subscriptions WHERE name = 'priv'", 30), 'granted: it syncs');
is_table_synced($node, $server, 'priv', \@cols, 'it equals the server');

# ---- tables where COPY FROM does more: COPY FROM itself ----
server_table('trig');
sql($node, q{
	CREATE TABLE trig (id int PRIMARY KEY, code text, title text, amount numeric);
	CREATE TRIGGER counted BEFORE INSERT ON trig FOR EACH ROW EXECUTE FUNCTION count_row();
});
subscribe('trig');
ok(wait_sync($node, 'trig'), 'a table with an insert trigger syncs');
is(path_of('trig'), 'copy via COPY FROM', 'through COPY FROM');
is(sql($node, "SELECT n FROM fired"), $ROWS, 'the trigger fired once per row');
is_table_synced($node, $server, 'trig', \@cols, 'it equals the server');

server_table('parts');
sql($node, q{
	CREATE TABLE parts (id int PRIMARY KEY, code text, title text, amount numeric) PARTITION BY RANGE (id);
	CREATE TABLE parts_low PARTITION OF parts FOR VALUES FROM (MINVALUE) TO (31);
	CREATE TABLE parts_high PARTITION OF parts FOR VALUES FROM (31) TO (MAXVALUE);
});
subscribe('parts');
ok(wait_sync($node, 'parts'), 'a partitioned table syncs');
is(path_of('parts'), 'copy via COPY FROM', 'through COPY FROM');
is(sql($node, "SELECT (SELECT count(*) FROM parts_low) || ' ' || (SELECT count(*) FROM parts_high)"), '30 30', 'the rows were routed');
is_table_synced($node, $server, 'parts', \@cols, 'it equals the server');

server_table('gen');
sql($node, "CREATE TABLE gen (id int PRIMARY KEY, code text, title text, amount numeric, twice numeric GENERATED ALWAYS AS (amount * 2) STORED)");
subscribe('gen');
ok(wait_sync($node, 'gen'), 'a table with a generated column syncs');
is(path_of('gen'), 'copy via COPY FROM', 'through COPY FROM');
is(sql($node, "SELECT count(*) FROM gen WHERE twice = amount * 2"), $ROWS, 'the generated column is computed');

server_table('serial');
sql($node, "CREATE TABLE serial (id int PRIMARY KEY, code text, title text, amount numeric, local_no int DEFAULT nextval('seq'))");
subscribe('serial');
ok(wait_sync($node, 'serial'), 'a table with a nextval default syncs');
is(path_of('serial'), 'copy via COPY FROM', 'through COPY FROM (a volatile default)');
is(sql($node, "SELECT count(DISTINCT local_no) FROM serial"), $ROWS, 'each row drew its own number');
is_table_synced($node, $server, 'serial', \@cols, 'it equals the server');

unlike(slurp_file($node->logfile), qr/terminated by signal|PANIC|WARNING:  resource/, 'no crash, no leaked resource');
$node->stop;
$server->stop;
done_testing();
