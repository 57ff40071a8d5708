#!/usr/bin/perl
# Quotas shared by demand (SPEC 10): one key hammered on all three nodes.
# Three nodes of two workers, one Redis, interval=100ms, the built-in
# limits; one saturating keep-alive client per node and key (three times
# the limit each); admitted requests counted from the nodes' access logs
# by the whole second they began in.
#
#   * ApplyToken (100/s): the fleet admits 95 to 100 in every second after
#     the key's first two; each node gets L/3 within 2% of L (its mean
#     over those seconds); the ten seconds after the first two admit at
#     most 1.02 x 10 x L + N;
#   * RevokeToken (5/s): no second admits over 5, and each node gets 2, 2,
#     1 in turn: 10 in every six seconds (within one).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use List::Util qw(sum max);
use MqttapiTest;
use MqttapiRedis;
use MqttapiDemand;

my $redis = MqttapiRedis->start;
my $f = fleet(redis => $redis, nodes => 3);
my @nodes = @{ $f->{nodes} };

my $SECS = 14;
my @pids = ((map { load($_, 'AK-hammer', 'ApplyToken', 300, $SECS) } @nodes),
            (map { load($_, 'AK-hammer5', 'RevokeToken', 15, $SECS) } @nodes));
finish(@pids);

# per second: the fleet's admitted, and each node's
sub tally {
    my ($key) = @_;
    my (%fleet, @per, $s0);
    for my $node (@nodes) {
        my $p = per_second($node, $key);
        push @per, $p;
        my $first = started($node, $key);
        $s0 = $first if defined $first && (!defined $s0 || $first < $s0);
        $fleet{$_} += $p->{$_}[0] for keys %$p;
    }
    # whole seconds after the first two, all nodes still sending
    my @s = grep { my $s = $_; $s >= $s0 + 2
                   && !grep { !exists $_->{$s + 1} } @per }
            sort keys %fleet;
    return (\%fleet, \@per, \@s);
}

{
    my $L = 100;
    my ($fleet, $per, $s) = tally('AK-hammer');
    diag 'ApplyToken, admitted per second (A+B+C): '
         . join(' ', map { my $t = $_; "$fleet->{$t}="
                           . join('+', map { $_->{$t}[0] // 0 } @$per) }
                     sort keys %$fleet);
    ok(@$s >= 10, 'ApplyToken: at least ten whole seconds after the first '
                  . 'two (' . scalar(@$s) . ')');
    my @out = grep { $fleet->{$_} < 95 || $fleet->{$_} > $L } @$s;
    is(scalar @out, 0, 'ApplyToken: every second admits 95 to 100 over the '
                       . 'three nodes');
    for my $i (0 .. 2) {
        my $mean = sum(map { $per->[$i]{$_}[0] // 0 } @$s) / @$s;
        ok(abs($mean - $L / 3) <= 0.02 * $L,
           sprintf('ApplyToken: node %d gets L/3 within 2%% of L (%.1f/s)',
                   $i, $mean));
    }
    my @ten = @$s[0 .. 9];
    my $total = sum(map { $fleet->{$_} } @ten);
    ok($total <= 1.02 * 10 * $L + 3,
       "ApplyToken: ten seconds of contention admit at most 1.02 x 10 x L "
       . "+ N ($total)");
}

{
    my $L = 5;
    my ($fleet, $per, $s) = tally('AK-hammer5');
    diag 'RevokeToken, admitted per second (A+B+C): '
         . join(' ', map { my $t = $_; "$fleet->{$t}="
                           . join('+', map { $_->{$t}[0] // 0 } @$per) }
                     sort keys %$fleet);
    my @over = grep { $fleet->{$_} > $L } @$s;
    is(scalar @over, 0, 'RevokeToken: no second admits over 5 over the '
                        . 'three nodes');
    ok((grep { $fleet->{$_} >= 4 } @$s) >= @$s - 1,
       'RevokeToken: about 5 in every second');
    my @six = @$s[0 .. 5];
    for my $i (0 .. 2) {
        my $n = sum(map { $per->[$i]{$_}[0] // 0 } @six);
        ok(abs($n - 10) <= 1, "RevokeToken: node $i gets 2, 2, 1 in turn: "
                              . "$n in six seconds");
    }
}

done_testing;
