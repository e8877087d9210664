# Host-driven subscriptions survive their feeding process: the pages of an
# incomplete batch are spooled in electric.spool_block in the caller's
# transaction, so a feeder that stops between two calls, one killed in the
# middle of a request, and a server restart in between lose nothing: the
# next feeder continues the same batch, and the snapshot lands once, whole.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use ElectricServer;
use HostFeed;
use SyncTest;
use Test::More;
use Time::HiRes qw(usleep);

my $server = ElectricServer->new(long_poll_ms => 1000);
my $node = sync_node('host_restart');
my $T = JSON::PP::true;
my @cols = qw(id title);

$server->create_table(
	name => 'items',
	columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'title', type => 'text' } ],
	primary_key => ['id'],
	page_rows => 5,
	rows => [ map { { id => "$_", title => "item $_" } } 1 .. 40 ]);
sql($node, "CREATE TABLE items (id int PRIMARY KEY, title text)");
sql($node, "INSERT INTO items VALUES (1000, 'local row, replaced by the snapshot')");
sql($node, "SELECT electric.sync_shape_to_table('" . $server->shape('items') . "', 'items', '{id}', shape_key => 'h', worker => false)");

sub spooled
{
	return sql($node, "SELECT count(*) FROM electric.spool_block b JOIN electric.subscription s ON s.id = b.subid WHERE s.name = 'h'");
}

# feeder 1: three pages, then it stops between two calls
my $steps = feed($node, 'h', calls => 3);
is(scalar(grep { $_->{step} eq 'ingest' && $_->{status} == 200 } @$steps), 3, 'feeder 1 fed three pages');
is($steps->[-1]{reason}, 'calls', 'and stopped between two calls');
cmp_ok(spooled(), '>', 0, 'the pages are spooled in electric.spool_block');
is(sql($node, "SELECT string_agg(id::text, ',') FROM items"), '1000', 'nothing applied yet: the table is as before');
is(sub_status($node, 'h', "state || ' ' || is_up_to_date"), 'initial_sync false', 'state initial_sync');
my $req = sql($node, "SELECT electric.next_request('h')");
like($req, qr/offset=0_2/, 'the next request continues after the third page (offset 0_2)');

# the server restarts between two feeders: the spool is in a table
$node->restart;
cmp_ok(spooled(), '>', 0, 'the spool survived a server restart');

# feeder 2: two more pages
$steps = feed($node, 'h', calls => 2);
my @urls = map { $_->{url} } grep { $_->{step} eq 'request' } @$steps;
like($urls[0], qr/offset=0_2/, 'feeder 2 started where feeder 1 stopped');
is(sql($node, "SELECT count(*) FROM items"), '1', 'still nothing applied');

# feeder 3 is killed in the middle of a request
$server->fault(kind => 'delay', ms => 4000, table => 'items', when => 'nonlive', count => 1);
my $bg = start_feed($node, 'h');
my $end = time + 10;
usleep(100_000) until $bg->{out} =~ /"step":"request"/ || time > $end || !($bg->{handle}->pump_nb, 1);
usleep(500_000);
my $killed = finish_feed($bg, 'KILL');
is(scalar(grep { $_->{step} eq 'ingest' } @$killed), 0, 'feeder 3 was killed during its first request, before ingest_response');
like((grep { $_->{step} eq 'request' } @$killed)[0]{url} // '', qr/offset=0_4/, 'it had asked for the sixth page');
is(sql($node, "SELECT count(*) FROM items"), '1', 'nothing applied');
$server->clear_faults;

# feeder 4 finishes the batch
$steps = feed($node, 'h', until_up_to_date => 1);
@urls = map { $_->{url} } grep { $_->{step} eq 'request' } @$steps;
like($urls[0], qr/offset=0_4/, 'feeder 4 asks the page feeder 3 never delivered');
is($steps->[-1]{reason}, 'up-to-date', 'feeder 4 reached up-to-date');
my ($last) = grep { $_->{step} eq 'ingest' } reverse @$steps;
is($last->{result}{applied}, 40, 'the whole snapshot applied at once: 40 rows');
is_table_synced($node, $server, 'items', \@cols, 'the table equals the server: no page lost, none applied twice, the local row replaced');
is(sub_status($node, 'h', "state || ' ' || rows_applied"), 'live 40', 'live, 40 rows applied');
is(spooled(), '0', 'the spool is empty once the batch committed');

# the request log: every page was answered once to a feeder that ingested it
my @ok = map { $_->{query}{offset} } grep { ($_->{status} // 0) == 200 && !$_->{live} && !$_->{aborted} } @{ $server->requests('items') };
my %seen;
my @dups = grep { $seen{$_}++ } @ok;
# the killed feeder's page was answered after it died (the delay), to nobody
is(scalar(grep { $_ ne '0_4' } @dups), 0, 'no page but the killed one was fetched twice (offsets: ' . join(' ', @ok) . ')');

# live changes after all that
$server->txn('items', { op => 'insert', row => { id => '41', title => 'after the restarts' } }, { op => 'delete', row => { id => '1' } });
$steps = feed($node, 'h', until_up_to_date => 1);
is_table_synced($node, $server, 'items', \@cols, 'live changes arrive');

$node->stop;
$server->stop;
done_testing();
