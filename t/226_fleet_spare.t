#!/usr/bin/perl
# Quotas shared by demand (SPEC 10): demands that add up to less than the
# limit L leave a spare, and Redis splits it over the nodes that want the
# key (a node alone gets all of L), so a rate that rises within a second
# is not refused while the key is far under L.  Three nodes of two
# workers, one Redis, interval=100ms, the built-in limits:
#
#   * ApplyToken (100/s) pinned to node A at 10/s for a few seconds (its
#     demand, about 17/s, is known and its credit is over);
#   * then, with that load going on, 80 more requests on one keep-alive
#     connection to A at the start of a second: none is refused, nor is
#     any request of the key in any second;
#   * no second admits over L.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;
use MqttapiDemand;

my $KEY = 'AK-spare-apply';
my $redis = MqttapiRedis->start;
my $f = fleet(redis => $redis, nodes => 3);
my ($A, $B, $C) = @{ $f->{nodes} };

my $pid = load($A, $KEY, 'ApplyToken', 10, 7);

# the steady rate for four whole seconds, then the step at the start of
# the next second, clear of its boundary
my $t0 = time;
sleep(int($t0) + 5 + 0.05 - time);

my ($sock, %status);
for (1 .. 80) {
    my $r = http_request(port => $A->port(0), keepalive => 1, sock => $sock,
                         timeout => 5,
                         path => "/q/?AccessKeyId=$KEY&Action=ApplyToken");
    $sock = $r->{sock};
    $status{ $r->{status} // 'none' }++;
}
finish($pid);

diag 'the step: ' . join(' ', map { "$_ x $status{$_}" } sort keys %status);
is($status{200} // 0, 80, 'the 80 requests of the step are all admitted '
                          . '(the key is far under L at one node)');

my $per = per_second($A, $KEY);
diag "$KEY: admitted, answered locally per second: "
     . join(' ', map { "$per->{$_}[0]/$per->{$_}[1]" } sort keys %$per);
ok(keys %$per >= 6, 'the key was sent over six seconds or more');
is(scalar(grep { $per->{$_}[1] > 0 } keys %$per), 0,
   'no second of the key refused a request');
is(scalar(grep { $per->{$_}[0] > 100 } keys %$per), 0,
   'no second admits over L');
is(credit_total($B) + credit_total($C), 0,
   'the other nodes saw no quota key');

done_testing;
