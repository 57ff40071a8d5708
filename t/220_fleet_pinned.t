#!/usr/bin/perl
# Quotas shared by demand (SPEC 10): a key whose traffic all reaches one
# node (a keep-alive connection the load balancer pins) gets its whole
# limit there, not a third of it.  Three nodes of two workers, one Redis,
# interval=100ms, the built-in limits; each client sends three times its
# limit, on one keep-alive connection, to one node; admitted requests are
# counted from the node's access log by the whole second they began in.
#
#   * ApplyToken (100/s) pinned to node A: every second after the key's
#     first two admits 95 to 100;
#   * RevokeToken (5/s) pinned to node B at the same time: 5 in each of
#     those seconds (never more);
#   * the key's first seconds on a node are on credit, and the status
#     endpoint counts it (sync_credit_total).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;
use MqttapiDemand;

my $redis = MqttapiRedis->start;
my $f = fleet(redis => $redis, nodes => 3);
my ($A, $B, $C) = @{ $f->{nodes} };

my $SECS = 7;
my @pids = (load($A, 'AK-pin-apply', 'ApplyToken', 300, $SECS),
            load($B, 'AK-pin-revoke', 'RevokeToken', 15, $SECS));
finish(@pids);

for my $case (['AK-pin-apply', $A, 100, 95], ['AK-pin-revoke', $B, 5, 5]) {
    my ($key, $node, $L, $min) = @$case;
    my $per = per_second($node, $key);
    my $s0 = started($node, $key);
    my @s = grep { $_ >= $s0 + 2 && exists $per->{$_ + 1} } sort keys %$per;
    diag "$key: admitted, answered locally per second: "
         . join(' ', map { "$per->{$_}[0]/$per->{$_}[1]" } sort keys %$per);
    ok(@s >= 3, "$key: at least three whole seconds after the first two ("
                . scalar(@s) . ')');
    my @low = grep { $per->{$_}[0] < $min } @s;
    my @high = grep { $per->{$_}[0] > $L } @s;
    is(scalar @low, 0, "$key: every second admits at least $min of $L "
                       . "(pinned to one node)");
    is(scalar @high, 0, "$key: no second admits over $L");
    ok((grep { $per->{$_}[1] > 0 } @s) >= @s - 1,
       "$key: the traffic saturates (requests answered locally)");
}

ok(credit_total($A) > 0, 'the first seconds were on credit, counted in '
                         . 'sync_credit_total (' . credit_total($A) . ')');
is(credit_total($C), 0, 'a node that saw no quota key admitted nothing on '
                        . 'credit');

done_testing;
