#!/usr/bin/perl
# Quotas shared by demand (SPEC 10): capacity follows the traffic.  Three
# nodes of two workers, one Redis, interval=100ms, ApplyToken (100/s);
# keep-alive clients pinned to a node; admitted requests counted from the
# nodes' access logs by the whole second they began in.
#
#   * a light node (20/s) beside a heavy one (300/s) on the same key: the
#     light one keeps at least 90% of its 20/s in every second after the
#     key's first two, and the pair admits at most 100;
#   * all of a key's traffic moves from node A to node B: B admits at
#     least 95 in every whole second that starts 1 s or more after the
#     move.

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

# --- a light node beside a heavy one ---------------------------------------

{
    my $k = 'AK-light';
    finish(load($A, $k, 'ApplyToken', 20, 7),
           load($B, $k, 'ApplyToken', 300, 7));
    my $la = per_second($A, $k);
    my $hb = per_second($B, $k);
    my $s0 = started($A, $k);
    my $s1 = started($B, $k);
    $s0 = $s1 if $s1 < $s0;
    my @s = grep { $_ >= $s0 + 2 && exists $la->{$_ + 1}
                   && exists $hb->{$_ + 1} } sort keys %$la;
    diag 'light A (admitted+refused) / heavy B (admitted) per second: '
         . join(' ', map { ($la->{$_}[0] // 0) . '+' . ($la->{$_}[1] // 0)
                           . '/' . ($hb->{$_}[0] // 0) } sort keys %$la);
    ok(@s >= 3, 'light: at least three whole seconds (' . scalar(@s) . ')');
    # what the client managed to send (a busy machine may send fewer than
    # 20 in a second): at least 90% of it admitted
    my @short = grep { $la->{$_}[0] < 0.9 * ($la->{$_}[0] + $la->{$_}[1])
                       || $la->{$_}[0] + $la->{$_}[1] < 10 } @s;
    is(scalar @short, 0, 'light: the light node keeps at least 90% of its '
                         . '20/s in every second');
    my @over = grep { $la->{$_}[0] + ($hb->{$_}[0] // 0) > 100 } @s;
    is(scalar @over, 0, 'light: the pair admits at most 100 a second');
    # the light node's demand has headroom over its rate (1.5 x 20 + 2 =
    # 32), more when its client catches up after a stall of the machine
    # (1.5 x 32 + 2 = 50): the heavy one gets at least the other half
    ok((grep { ($hb->{$_}[0] // 0) >= 50 } @s) == @s,
       'light: the heavy node gets the rest less the light one\'s '
       . 'headroom (at least 50 a second)');
}

# --- all the traffic moves from A to B ---------------------------------------

{
    my $k = 'AK-moves';
    finish(load($A, $k, 'ApplyToken', 300, 3));
    my $move = time;
    finish(load($B, $k, 'ApplyToken', 300, 5));
    my $pb = per_second($B, $k);
    my @s = grep { $_ >= $move + 1 && exists $pb->{$_ + 1} } sort keys %$pb;
    diag sprintf 'moved at %.3f; B admitted per second: %s', $move,
                 join(' ', map { "$_:$pb->{$_}[0]" } sort keys %$pb);
    ok(@s >= 2, 'moved: at least two whole seconds on B from 1 s after the '
                . 'move (' . scalar(@s) . ')');
    my @short = grep { $pb->{$_}[0] < 95 } @s;
    is(scalar @short, 0, 'moved: B admits at least 95 of 100 in every whole '
                         . 'second from 1 s after the move');
    my @over = grep { $pb->{$_}[0] > 100 } @s;
    is(scalar @over, 0, 'moved: and never over 100');
}

done_testing;
