# ElectricServer: run the project's Electric-compatible test server from TAP
# tests and drive it through its control API.
package ElectricServer;

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep);

my $json = JSON::PP->new->canonical->allow_nonref;

sub new
{
	my ($class, %opts) = @_;
	my $script = File::Spec->rel2abs(dirname(__FILE__) . '/../server/server.js');
	my ($in, $out, $err) = ('', '', '');
	my @cmd = ('node', $script, '--port', '0', '--long-poll-ms', $opts{long_poll_ms} // 20000, '--exit-with-stdin');
	push @cmd, '--tls-cert', $opts{tls_cert}, '--tls-key', $opts{tls_key} if $opts{tls_cert};
	my $h = IPC::Run::start(\@cmd, \$in, \$out, \$err);
	my $deadline = time + 30;
	my $port;
	until (($port) = $out =~ /\{"port":(\d+)\}/)
	{
		die "test server did not start: $err" if time > $deadline || !$h->pumpable;
		$h->pump_nb;
		usleep(20_000);
	}
	my $self = bless {
		handle => $h,
		port => $port,
		out => \$out,
		err => \$err,
		http => HTTP::Tiny->new(timeout => 60, verify_SSL => 0),
		scheme => $opts{tls_cert} ? 'https' : 'http',
	}, $class;
	return $self;
}

sub port { $_[0]{port} }
sub base { "$_[0]{scheme}://127.0.0.1:$_[0]{port}" }
sub shape_url { $_[0]->base . '/v1/shape' }

# JSON text of a shape option for sync_shape_to_table, with single quotes
# doubled so that it can be pasted between '...' in SQL
sub shape
{
	my ($self, $table, %params) = @_;
	(my $text = $json->encode($self->shape_def($table, %params))) =~ s/'/''/g;
	return $text;
}

# the same shape option as a Perl structure (e.g. for the members of
# sync_shapes_to_tables)
sub shape_def
{
	my ($self, $table, %params) = @_;
	my $headers = delete $params{headers};
	my $shape = { url => $self->shape_url, params => { table => $table, %params } };
	$shape->{headers} = $headers if $headers;
	return $shape;
}

# GET offset=-1 of a shape, as a client would: the server creates the shape
# (taking its snapshot) now; returns the status
sub create_shape
{
	my ($self, $table, %params) = @_;
	my $res = $self->{http}->get($self->shape_url . '?table=' . esc($table) . '&offset=-1'
		. join('', map { '&' . esc($_) . '=' . esc($params{$_}) } sort keys %params));
	return $res->{status};
}

sub call
{
	my ($self, $method, $path, $body) = @_;
	my %req = (headers => { 'content-type' => 'application/json' });
	$req{content} = $json->encode($body) if defined $body;
	my $res = $self->{http}->request($method, $self->base . "/_control$path", \%req);
	die "control $method $path failed: $res->{status} $res->{content}" unless $res->{success};
	return $json->decode($res->{content});
}

sub esc { my ($s) = @_; utf8::encode($s) if utf8::is_utf8($s); $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge; return $s }

sub reset { $_[0]->call('POST', '/reset') }
sub config { my ($self, %c) = @_; $self->call('POST', '/config', \%c) }

# create_table(name => ..., columns => [...], primary_key => [...], rows => [...], page_rows => n)
sub create_table { my ($self, %spec) = @_; $self->call('POST', '/tables', \%spec) }
# load a server table from a real Postgres table, rendered as Electric renders values
sub from_pg
{
	my ($self, $node, $name, $source, %opts) = @_;
	my $conninfo = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres user=' . ($ENV{PGUSER} // getpwuid($<));
	return $self->call('POST', '/tables/from_pg', { name => $name, source => $source, conninfo => $conninfo, %opts });
}
sub generate { my ($self, $table, %spec) = @_; $self->call('POST', "/tables/" . esc($table) . "/generate", \%spec) }
sub txn { my ($self, $table, @ops) = @_; $self->call('POST', "/tables/" . esc($table) . "/txn", { ops => \@ops }) }
sub txns { my ($self, $table, @txns) = @_; $self->call('POST', "/tables/" . esc($table) . "/txns", { txns => \@txns }) }
# one source transaction over several tables: each op names its "table"
sub multi_txn { my ($self, @ops) = @_; $self->call('POST', '/txn', { ops => \@ops }) }
sub rotate { my ($self, $table) = @_; $self->call('POST', "/tables/" . esc($table) . "/rotate") }
sub rows { my ($self, $table) = @_; $self->call('GET', "/tables/" . esc($table) . "/rows") }
sub fault { my ($self, %f) = @_; $self->call('POST', '/faults', \%f) }
sub clear_faults { $_[0]->call('DELETE', '/faults') }
sub clear_requests { $_[0]->call('DELETE', '/requests') }

sub requests
{
	my ($self, $table) = @_;
	return $self->call('GET', '/requests' . ($table ? '?table=' . esc($table) : ''));
}

sub stop
{
	my ($self) = @_;
	return unless $self->{handle};
	$self->{handle}->signal('TERM');
	eval { $self->{handle}->finish; };
	delete $self->{handle};
}

sub DESTROY { $_[0]->stop }

1;
