#!/usr/bin/perl
# Quotas that wait (delay=) with quotas shared by demand (SPEC 6 and 10):
# a node that alone receives a key's traffic holds grants of the whole
# limit, and books in the next second of Redis's clock all that its grant
# for it covers (not a fixed part of it).  Three nodes of two workers, one
# Redis, interval=100ms, mqttapi_quota delay=2s; an upstream nginx logs
# "key|action|marker|msec" per request, msec the node's when it sent the
# request on (how the test counts what reached it: the fleet's seconds are
# Redis's, the same machine's clock).
#
#   * warm-up: ApplyToken (100/s) for one key at 150/s on node A for
#     about two seconds, through a location of the same zone without
#     delay= (a waiting request would hold the client's one connection),
#     then a trickle of 10/s until late in the next second S (so that the
#     demand, 1.5 x the rate of the last two seconds + 2, stays above the
#     limit and does not lapse after 0.7 s of silence): node A alone wants
#     the key and holds grants of 100 for S, of which it spent about 9;
#   * at about S + 0.93 s, a burst of 150 ApplyToken for the key at once on
#     node A with delay=2s: the node has asked for its grant of S + 1 in
#     S's last 200 ms (it holds none for the next second before its
#     key's turn in the second, so a burst early in a second could not
#     book), 91 go at once and 59 wait for S + 1: none refused, at most
#     100 in any second at the upstream, and every waiting request reached
#     the upstream before the end of S + 1 (its wait ends with the next
#     second).  With the former carry of 31 slots, 28 were refused.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiLimit;
use MqttapiDelay;
use MqttapiRedis;
use MqttapiDemand;

my $redis = MqttapiRedis->start;
my $rport = $redis->port;

my ($up, $UP) = admitted_upstream();
my $uport = $up->port(0);

my $node_http = <<"EOF";
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=2s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=quota:4m sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        proxy_set_header X-Admitted \$msec;
        keepalive_requests 1000000;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Delay \$mqttapi_quota_delay always;
        location /q/ {
            mqttapi_quota zone=quota;
            proxy_pass http://127.0.0.1:$uport;
        }
        location / {
            mqttapi_quota zone=quota delay=2s;
            proxy_pass http://127.0.0.1:$uport;
        }
        location = /mqttapi/status {
            mqttapi_status;
        }
    }
EOF

my @nodes = map { start_node($node_http) } 1 .. 3;
for my $i (0 .. $#nodes) {
    ok(connected($nodes[$i], $redis, 3),
       "node $i connected to Redis and heard of the others");
}
my $A = $nodes[0];

sub passed { ($_[0]{status} // 0) == 200 && !h($_[0], 'X-MQTTAPI-Throttled') }
sub waited { defined h($_[0], 'X-Delay') }

my $k = 'AK-fleet-delay';

# the warm-up from about S - 1.9 to S - 0.05, the trickle until about
# S + 0.82, the burst at S + 0.93
my $t = time;
sleep(int($t) + 1.1 - $t);
my $burst = int(time) + 2;
finish(load($A, $k, 'ApplyToken', 150, $burst - 0.05 - time));
finish(load($A, $k, 'ApplyToken', 10, $burst + 0.82 - time));
$t = time;
sleep($burst + 0.93 - $t) if $t < $burst + 0.93;

my @r = read_in_order(open_requests($A->port(0),
            map { "/?Action=ApplyToken&AccessKeyId=$k&m=b" } 1 .. 150));

my @w = grep { passed($_) && waited($_) } @r;
is(scalar(grep { passed($_) } @r), 150,
   '150 at once on the node that holds the grants, delay=2s: all admitted');
is(scalar(grep { local_answer($_) } @r), 0, 'none refused');
cmp_ok(scalar(@w), '>=', 32,
       'more than 31 waited for the next second (' . scalar(@w) . ')');
is($UP->count_settled('b', 150, 2), 150, 'the upstream saw the 150')
    or diag explain [ $UP->lines ];

my %s;
$s{ int($_ / 1000) }++ for $UP->arrivals($k);
my ($max) = sort { $b <=> $a } values %s;
cmp_ok($max, '<=', 100, 'no second admits more than 100 at the upstream')
    or diag explain \%s;

my @late = grep { $_ >= ($burst + 2) * 1000 }
           map { int($_->[-1] * 1000 + 0.5) }
           grep { $_->[0] eq $k && $_->[2] eq 'b' } $UP->lines;
is(scalar(@late), 0, 'every wait ended with the second after the burst\'s')
    or diag explain [ $burst, \%s ];

diag "burst second $burst; per second at the upstream: "
     . join(' ', map { "$_:$s{$_}" } sort keys %s);

for my $n (@nodes) {
    unlike($n->error_log, qr/\[(?:alert|crit|emerg)\]|signal \d+/,
           'node: no crit/alert/emerg, no crash');
}

done_testing();
