#!/usr/bin/perl
# A reload that reorders the synced zones.  The outbox of the request path
# lives in shared memory that outlives the reload, and an old worker still
# answering a request writes to it after the new workers run the sync task:
# its events name their zone by name, not by its place in a configuration,
# so every back-off stays in its own zone, in Redis and on every node.
# Two nodes of one worker (the old worker's request is a slow one of the
# upstream, answered with a throttle 2 s after the reload began).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;

my $redis = MqttapiRedis->start;
my $rport = $redis->port;

# the upstream: "slow=1" answers a throttle after 2 s, "code=" a throttle
my $mock = mock_upstream(per_request => sub {
    my ($head) = @_;
    my $throttle = '{"RequestId":"UP","Code":"ApplyTokenOverFlow",'
                 . '"Message":"m"}';
    my $ok = '{"RequestId":"UP"}';
    my $resp = sub {
        my ($status, $body) = @_;
        return "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n"
             . "Content-Length: " . length($body) . "\r\n"
             . "Connection: close\r\n\r\n$body";
    };
    return [[sleep => 2], [send => $resp->(400, $throttle)], [close => 1]]
        if $head =~ /slow=1/;
    return [[sleep => 2], [send => $resp->(200, $ok)], [close => 1]]
        if $head =~ /slowok=1/;
    return [[send => $resp->(400, $throttle)], [close => 1]]
        if $head =~ /code=/;
    return [[send => $resp->(200, $ok)], [close => 1]];
});
my $uport = $mock->port;

# the zones z1 z2 (30 s back-offs) and y1 y2 (1 s) in the order given
sub node_http {
    my (@order) = @_;
    my $zones = join '', map {
        "    mqttapi_throttle_zone \$arg_AccessKeyId zone=$_:1m backoff=30s\n"
        . "                          max_backoff=30s sync;\n"
    } @order;
    $zones .= join '', map {
        (my $y = $_) =~ s/z/y/;
        "    mqttapi_throttle_zone \$arg_AccessKeyId zone=$y:1m backoff=1s\n"
        . "                          max_backoff=1s sync;\n"
    } @order;
    return <<"EOF";
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=1s;
$zones
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location /z1/ {
            mqttapi_throttle zone=z1;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location /z2/ {
            mqttapi_throttle zone=z2;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location /y1/ {
            mqttapi_throttle zone=y1;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location /y2/ {
            mqttapi_throttle zone=y2;
            proxy_pass http://127.0.0.1:$uport/;
        }
    }
EOF
}

my @nodes = map { start_nginx(workers => 1, http => node_http('z1', 'z2')) }
            1 .. 2;
my ($A, $B) = @nodes;

for my $i (0, 1) {
    ok(poll_until(10, sub {
           $nodes[$i]->error_log =~ /mqttapi sync: connected to/ }),
       "node $i: connected");
}

sub req { my ($n, $z, $k, $q) = @_; get($n->port(0), "/$z/?AccessKeyId=$k" . ($q // '')) }

sub in_redis { defined $redis->cmd('HGET', "mqttapi:{$_[0]}:b", "b:$_[1]") }

# before: each zone's back-off in its zone
req($A, 'z1', 'K1', '&code=1');
req($A, 'z2', 'K2', '&code=1');
ok(poll_until(5, sub { in_redis('z1', 'K1') && in_redis('z2', 'K2') }),
   'before the reload: z1 K1 and z2 K2 in Redis');

# a slow request of zone z2 on A's (only) worker, then a reload that
# swaps the zones: the old worker answers it after the new one took over
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $A->port(0), Proto => 'tcp')
    or die "connect: $!";
print $s "GET /z2/?AccessKeyId=K4&slow=1 HTTP/1.0\r\nHost: a\r\n\r\n";
sleep 0.3;
my $mark = $A->error_log_mark;
ok($A->reload(http => node_http('z2', 'z1')),
   'A reloaded with the synced zones swapped');
like($A->error_log($mark), qr/mqttapi sync: this worker runs the sync task/,
     'a worker of the new configuration runs the task');
my $resp = do { local $/; <$s> } // '';
like($resp, qr/\A\S+ 400 /, 'the old worker answered the slow request: '
                            . 'a throttle');

ok(poll_until(5, sub { in_redis('z2', 'K4') }),
   'its back-off reached Redis in zone z2');
ok(!in_redis('z1', 'K4'), 'and not in zone z1');
ok(poll_until(5, sub { local_answer(req($B, 'z2', 'K4')) }),
   'B answers K4 locally in zone z2');
is(req($B, 'z1', 'K4')->{status}, 200, 'B lets K4 through in zone z1');

# the new configuration's own events
ok($B->reload(http => node_http('z2', 'z1')), 'B reloaded alike');
req($A, 'z1', 'K5', '&code=1');
ok(poll_until(5, sub { in_redis('z1', 'K5') }), 'after: z1 K5 in Redis');
ok(!in_redis('z2', 'K5'), 'and not in zone z2');
for my $n ([A => $A], [B => $B]) {
    ok(poll_until(5, sub { local_answer(req($n->[1], 'z1', 'K1')) }),
       "$n->[0]: K1 still backed off in z1");
    is(req($n->[1], 'z2', 'K1')->{status}, 200, "$n->[0]: K1 free in z2");
    ok(local_answer(req($n->[1], 'z2', 'K2')),
       "$n->[0]: K2 still backed off in z2");
    is(req($n->[1], 'z1', 'K2')->{status}, 200, "$n->[0]: K2 free in z1");
    ok(poll_until(5, sub { local_answer(req($n->[1], 'z1', 'K5')) }),
       "$n->[0]: K5 backed off in z1");
}

# a probe answered by an old worker after a reload that swaps the zones
# back closes its own zone's back-off, not the same key's in the other
# zone.  A alone: the right to probe is its own.
{
    $B->stop;
    req($A, 'y1', 'KC', '&code=1');
    req($A, 'y2', 'KC', '&code=1');
    ok(poll_until(5, sub { in_redis('y1', 'KC') && in_redis('y2', 'KC') }),
       'y1 KC and y2 KC backed off, in Redis');
    sleep 1.5;     # over, and A holds the right to probe both
    my $p = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $A->port(0), Proto => 'tcp')
        or die "connect: $!";
    print $p "GET /y2/?AccessKeyId=KC&slowok=1 HTTP/1.0\r\nHost: a\r\n\r\n";
    sleep 0.3;
    ok($A->reload(http => node_http('z1', 'z2')),
       'A reloaded with the synced zones swapped back');
    my $pr = do { local $/; <$p> } // '';
    like($pr, qr/\A\S+ 200 /, 'the old worker\'s probe was answered cleanly');
    ok(poll_until(5, sub { !in_redis('y2', 'KC') }),
       'the probe closed y2 KC in Redis');
    ok(in_redis('y1', 'KC'), 'and left y1 KC alone');
}

# nginx -t: two synced zones whose names have the same hash are refused
# ("plumless" and "buckeroo" have the same CRC-32)
{
    my ($rc, $out) = nginx_test_config(
        "mqttapi_sync redis=127.0.0.1:1;"
        . ' mqttapi_throttle_zone $arg_k zone=plumless:1m sync;'
        . ' mqttapi_throttle_zone $arg_k zone=buckeroo:1m sync;'
        . ' server { listen 127.0.0.1:%%PORT0%%; }');
    isnt($rc, 0, 'nginx -t: two synced zones with the same name hash fail');
    like($out, qr/"buckeroo" cannot be synced.*same hash/,
         'nginx -t: the message names the zone');
}

done_testing();
