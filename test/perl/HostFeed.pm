# HostFeed: run test/host/feed.mjs, the feeding process of a host-driven
# subscription (next_request -> HTTP -> ingest_response), from TAP tests.
package HostFeed;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use JSON::PP;

our @EXPORT = qw(feed start_feed finish_feed feed_steps);

my $script = File::Spec->rel2abs(dirname(__FILE__) . '/../host/feed.mjs');

sub env_for
{
	my ($node) = @_;
	return (
		PGHOST => $node->host,
		PGPORT => $node->port,
		PGDATABASE => 'postgres',
		PGUSER => $ENV{PGUSER} // scalar(getpwuid($<)),
	);
}

sub command
{
	my ($name, %opts) = @_;
	my @cmd = ('node', $script, '--name', $name);
	push @cmd, '--shape', $opts{shape} if defined $opts{shape};
	push @cmd, '--calls', $opts{calls} if defined $opts{calls};
	push @cmd, '--until-up-to-date' if $opts{until_up_to_date};
	push @cmd, '--seconds', $opts{seconds} if defined $opts{seconds};
	push @cmd, '--max-wait-ms', $opts{max_wait_ms} if defined $opts{max_wait_ms};
	return @cmd;
}

# The decoded JSON lines of a feeder's output.
sub feed_steps
{
	my ($out) = @_;
	my @steps;
	for my $line (split /\n/, $out // '')
	{
		next unless $line =~ /^\{/;
		push @steps, eval { JSON::PP->new->decode($line) } // { step => 'garbage', line => $line };
	}
	return \@steps;
}

# Run a feeder to its end (options as feed.mjs takes them, plus timeout in
# seconds); returns the list of its steps.
sub feed
{
	my ($node, $name, %opts) = @_;
	my ($in, $out, $err) = ('', '', '');
	local %ENV = (%ENV, env_for($node));
	my $timeout = delete $opts{timeout} // 60;
	my @cmd = command($name, %opts);
	eval { IPC::Run::run(\@cmd, \$in, \$out, \$err, IPC::Run::timeout($timeout)); };
	my $steps = feed_steps($out);
	push @$steps, { step => 'stderr', text => $err } if length $err;
	push @$steps, { step => 'killed', reason => "$@" } if $@;
	return $steps;
}

# A feeder in the background: { handle, out, err }.
sub start_feed
{
	my ($node, $name, %opts) = @_;
	my $f = { in => '', out => '', err => '' };
	local %ENV = (%ENV, env_for($node));
	my @cmd = command($name, %opts);
	$f->{handle} = IPC::Run::start(\@cmd, \$f->{in}, \$f->{out}, \$f->{err});
	return $f;
}

# Stop a background feeder (signal: TERM by default, KILL to kill it at
# once) and return its steps.
sub finish_feed
{
	my ($f, $signal) = @_;
	if ($f->{handle})
	{
		$f->{handle}->pump_nb if $f->{handle}->pumpable;
		$f->{handle}->signal($signal // 'TERM') if $f->{handle}->pumpable;
		eval { $f->{handle}->finish; };
		delete $f->{handle};
	}
	my $steps = feed_steps($f->{out});
	push @$steps, { step => 'stderr', text => $f->{err} } if length $f->{err};
	return $steps;
}

1;
