#!/usr/bin/perl
# Quotas that wait (delay=) on two gateway nodes synced through Redis
# (mqttapi_sync), on loopback: one redis-server of the test's own, an
# upstream nginx that logs "key|action|marker|msec" per request (how the
# test counts what reached it), and two nodes of one worker each.
#
# With sync a node books only what its grant (or its credit) for the next
# second of Redis's clock covers (grants by demand, SPEC 10), so a request
# waits at most until that second.
#
#   * 150 ApplyToken requests (100/s) for one key at once, 75 on each
#     node, with delay=2s: all admitted, none refused, 50 of them waited,
#     and no second admits more than 100 in the fleet (counted at the
#     upstream, by the second of the node's clock when it sent each on:
#     the fleet's seconds are Redis's, the same machine's clock);
#   * a larger burst (125 on each node): the seconds stay within 100, and
#     what the nodes' grants of the next second cannot take is refused at
#     once, before any waiting request is let go;
#   * 60 on node A, then 65 more on A and 125 on B 150 ms later (A's
#     grants made meanwhile): the seconds stay within 100 (a node's grant
#     in its first second on a key grows to at most ceil(L / N)).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiLimit;
use MqttapiDelay;
use MqttapiRedis;
use MqttapiStatus;

my $redis = MqttapiRedis->start;
my $rport = $redis->port;

my ($up, $UP) = admitted_upstream();
my $uport = $up->port(0);

my $node_http = <<"EOF";
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=2s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=fleet:1m sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        proxy_set_header X-Admitted \$msec;
        add_header X-Delay \$mqttapi_quota_delay always;
        location / {
            mqttapi_quota zone=fleet delay=2s;
            proxy_pass http://127.0.0.1:$uport;
        }
        location = /mqttapi/status {
            mqttapi_status;
        }
    }
EOF

my @nodes = map { start_nginx(workers => 1, http => $node_http) } 1 .. 2;

# both nodes seen alive, then two seconds more: each counts the other
# (its credit is ceil(L / 2)) before the bursts
for my $n (@nodes) {
    ok(poll_until(15, sub {
           status_value(status_json($n->port(0)), 'sync_nodes') == 2 }),
       'a node sees both nodes through Redis');
}
sleep 2.5;

sub passed { ($_[0]{status} // 0) == 200 && !h($_[0], 'X-MQTTAPI-Throttled') }
sub waited { defined h($_[0], 'X-Delay') }

# requests per second of the nodes' clock (when they sent them on)
sub per_second {
    my ($k) = @_;
    my %s;
    $s{ int($_ / 1000) }++ for $UP->arrivals($k);
    return %s;
}

# early in a second of the clock, so that a burst's immediate part falls
# in one second
sub early_in_second {
    my $t = time;
    sleep(1.1 - ($t - int $t)) if $t - int $t > 0.3;
}

sub burst_two {
    my ($k, $each) = @_;
    early_in_second();
    my @s;
    for my $n (@nodes) {
        push @s, open_requests($n->port(0),
            map { "/?Action=ApplyToken&AccessKeyId=$k&m=$_" } 1 .. $each);
    }
    return read_in_order(@s);
}

{
    my $k = 'fleet-150';
    my @r = burst_two($k, 75);
    is(scalar(grep { passed($_) } @r), 150,
       '150 over two nodes, delay=2s: all admitted');
    is(scalar(grep { local_answer($_) } @r), 0, 'none refused');
    is(scalar(grep { waited($_) } @r), 50, '50 waited');
    is($UP->count_settled($k, 150), 150, 'the upstream saw 150');
    my %s = per_second($k);
    my ($max) = sort { $b <=> $a } values %s;
    cmp_ok($max, '<=', 100, 'no second admits more than 100 in the fleet')
        or diag explain \%s;
}

{
    my $k = 'fleet-250';
    my @r = burst_two($k, 125);
    my @p = grep { passed($_) } @r;
    my @w = grep { passed($_) && waited($_) } @r;
    my @no = grep { local_answer($_) } @r;
    is(@p + @no, 250, '250 over two nodes: each admitted or refused');
    cmp_ok(scalar(@no), '>=', 50, 'at least 50 refused');
    cmp_ok(scalar(@w), '>=', 1, 'some waited');
    my $last_no = (sort { $a <=> $b } map { $_->{seq} } @no)[-1] // -1;
    my $first_w = (sort { $a <=> $b } map { $_->{seq} } @w)[0] // -1;
    cmp_ok($last_no, '<', $first_w,
           'every refusal answered before the first waiting request');
    is($UP->count_settled($k, scalar @p), scalar @p,
       'the upstream saw the admitted');
    my %s = per_second($k);
    my ($max) = sort { $b <=> $a } values %s;
    cmp_ok($max, '<=', 100, 'no second admits more than 100 in the fleet')
        or diag explain \%s;
}

# 60 requests on node A alone: its task asks Redis at once for the key,
# new to the fleet, wanting all of L; 150 ms later, A's grants made, 65
# more on A and 125 on B, in the same second.  A node's grant in its
# first second on a key grows to at most c = ceil(L / N) = 50: were A
# given all of L for the next second, it would book its second wave
# there, and B's credit would come on top (125).
{
    my $k = 'fleet-first';
    early_in_second();
    my @s = open_requests($nodes[0]->port(0),
        map { "/?Action=ApplyToken&AccessKeyId=$k&m=a$_" } 1 .. 60);
    sleep 0.15;
    push @s, open_requests($nodes[0]->port(0),
        map { "/?Action=ApplyToken&AccessKeyId=$k&m=a$_" } 61 .. 125);
    push @s, open_requests($nodes[1]->port(0),
        map { "/?Action=ApplyToken&AccessKeyId=$k&m=b$_" } 1 .. 125);
    my @r = read_in_order(@s);
    my @p = grep { passed($_) } @r;
    is(scalar(grep { passed($_) || local_answer($_) } @r), 250,
       'A then B: each admitted or refused');
    is($UP->count_settled($k, scalar @p), scalar @p,
       'A then B: the upstream saw the admitted');
    my %s = per_second($k);
    my ($max) = sort { $b <=> $a } values %s;
    cmp_ok($max, '<=', 100,
           'A then B: no second admits more than 100 in the fleet')
        or diag explain \%s;
}

for my $n (@nodes) {
    unlike($n->error_log, qr/\[(?:alert|crit|emerg)\]|signal \d+/,
           'node: no crit/alert/emerg, no crash');
}

done_testing();
