#!/usr/bin/perl
# Quotas shared by demand (SPEC 10, "Exchange"): the demands of many keys
# go to Redis in one script call per synced zone and interval, never one
# call per key.  One node of two workers (interval=100ms), one Redis; 100
# keys at 1.5 requests a second each (ApplyToken, 100/s: never over; 150
# a second in all, under the gateway's per-API ceiling), for 4 s.  Redis's own count of EVALSHA calls (INFO commandstats) over
# the last two seconds, once every key has its grants:
#
#   * at most 21 a second (10 ticks + 1 heartbeat + 10 for the keys that
#     ask and a reconciliation), where one call per key would be over 100
#     (every key is sent at least once a second for its next second's
#     grant);
#   * and no request is refused.

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
my $f = fleet(redis => $redis, nodes => 1);
my ($A) = @{ $f->{nodes} };

sub evalsha_calls {
    my $info = $redis->cmd('INFO', 'commandstats') // '';
    my ($n) = $info =~ /cmdstat_evalsha:calls=(\d+)/;
    return $n // 0;
}

my $port = $A->port(0);
my ($sent, $refused, $i, $c0, $t0) = (0, 0, 0);
my $start = time;
my $sock;
while (time < $start + 4) {
    my $k = 'AK-calls-' . ($i++ % 100);
    my $r = http_request(port => $port, keepalive => 1, sock => $sock,
                         path => "/q/?AccessKeyId=$k&Action=ApplyToken");
    $sock = $r->{sock};
    $sent++;
    $refused++ unless ($r->{status} // 0) == 200;
    if (!defined $c0 && time > $start + 2) {
        ($c0, $t0) = (evalsha_calls(), time);
    }
    # 150 a second: under the per-API ceiling of the gateway (300/s)
    my $next = $start + $sent / 150;
    sleep($next - time) if $next > time;
}
my ($c1, $t1) = (evalsha_calls(), time);
my $rate = ($c1 - $c0) / ($t1 - $t0);

diag sprintf "%d requests over 100 keys, %d refused; EVALSHA %.1f/s",
             $sent, $refused, $rate;
ok($sent >= 400, "requests sent ($sent)");
is($refused, 0, 'no request refused (each key far under its limit)');
ok($rate <= 21, sprintf('EVALSHA calls: at most 21 a second, one per '
                        . 'interval and zone, not one per key (%.1f)',
                        $rate));

done_testing;
