# ProjectIssues: two related test-server tables, project and issue (every
# issue belongs to a project), and random source transactions over both
# that keep the relation whole: a project with its issues, an issue moving
# to another project, a project deleted with its issues, and changes of one
# table only.  project.issue_count always equals the number of its issues,
# so a reader can tell a transaction applied in part.
package ProjectIssues;

use strict;
use warnings;

use JSON::PP;

# new(server, schema => 's', projects => n, per_project => k, page_rows => [p, i])
sub new
{
	my ($class, $server, %o) = @_;
	my $self = bless {
		server => $server,
		P => "$o{schema}.project",
		I => "$o{schema}.issue",
		pi => {},
		next_p => 100_000,
		next_i => 1_000_000,
	}, $class;
	my $T = JSON::PP::true;
	my ($np, $k) = ($o{projects}, $o{per_project});
	my (@projects, @issues);
	for my $p (1 .. $np)
	{
		my @mine = map { ($p - 1) * $k + $_ } 1 .. $k;
		$self->{pi}{$p} = [@mine];
		push @projects, { id => $p, name => "project $p", issue_count => $k };
		push @issues, map { { id => $_, project_id => $p, title => "issue $_" } } @mine;
	}
	$server->create_table(
		name => 'project', schema => $o{schema},
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'name', type => 'text' },
			{ name => 'issue_count', type => 'int4' } ],
		primary_key => ['id'], page_rows => $o{page_rows}[0], rows => \@projects);
	$server->create_table(
		name => 'issue', schema => $o{schema},
		columns => [ { name => 'id', type => 'int4', not_null => $T }, { name => 'project_id', type => 'int4' },
			{ name => 'title', type => 'text' } ],
		primary_key => ['id'], page_rows => $o{page_rows}[1], rows => \@issues);
	return $self;
}

sub project_table { $_[0]{P} }
sub issue_table { $_[0]{I} }

# a random project (with at least one issue when asked)
sub pick
{
	my ($self, $with_issues) = @_;
	my @k = sort { $a <=> $b } grep { !$with_issues || @{ $self->{pi}{$_} } } keys %{ $self->{pi} };
	return $k[ int(rand(@k)) ];
}

# Post one round of source transactions; returns how many.  With
# any_order, the ops of a transaction come in an order that only a
# deferred foreign key accepts (children before their parent on insert,
# the parent before its children on delete) every other time.
sub round
{
	my ($self, %o) = @_;
	my ($P, $I, $pi, $srv) = ($self->{P}, $self->{I}, $self->{pi}, $self->{server});
	my $flip = $o{any_order} && rand() < 0.5;
	my $n = 0;

	# a project with its issues
	my $p = $self->{next_p}++;
	my @new = map { $self->{next_i}++ } 1 .. 3;
	my @pop = ({ table => $P, op => 'insert', row => { id => $p, name => "project $p", issue_count => 3 } });
	my @iop = map { { table => $I, op => 'insert', row => { id => $_, project_id => $p, title => "issue $_" } } } @new;
	$srv->multi_txn($flip ? (@iop, @pop) : (@pop, @iop));
	$pi->{$p} = [@new];
	$n++;

	# an issue moves to another project
	my $a = $self->pick(1);
	my $b;
	do { $b = $self->pick(0) } while $b == $a;
	my $x = splice(@{ $pi->{$a} }, int(rand(@{ $pi->{$a} })), 1);
	push @{ $pi->{$b} }, $x;
	$srv->multi_txn(
		{ table => $I, op => 'update', row => { id => $x, project_id => $b } },
		{ table => $P, op => 'update', row => { id => $a, issue_count => scalar @{ $pi->{$a} } } },
		{ table => $P, op => 'update', row => { id => $b, issue_count => scalar @{ $pi->{$b} } } });
	$n++;

	# a project goes with its issues
	if (!$o{no_deletes})
	{
		my $d = $self->pick(0);
		my @dp = ({ table => $P, op => 'delete', row => { id => $d } });
		my @di = map { { table => $I, op => 'delete', row => { id => $_ } } } @{ $pi->{$d} };
		$srv->multi_txn($flip ? (@dp, @di) : (@di, @dp));
		delete $pi->{$d};
		$n++;
	}

	# one table only
	$srv->multi_txn({ table => $P, op => 'update', row => { id => $self->pick(0), name => "renamed " . $self->{next_p} } });
	my $q = $self->pick(1);
	$srv->multi_txn({ table => $I, op => 'update', row => { id => $pi->{$q}[0], title => "retitled " . $self->{next_p} } });
	$n += 2;
	return $n;
}

1;
