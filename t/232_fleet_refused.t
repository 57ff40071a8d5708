#!/usr/bin/perl
# A Redis that answers but refuses writes is unusable: maxmemory reached
# under noeviction (OOM), or Redis made a replica (READONLY, what clients
# see during and after a failover).  The nodes fall back to fail= exactly
# as when Redis is down (fail=local here: a 100/s quota at 2% of its limit
# is admitted in full), show it in the status endpoint (sync_up 0,
# sync_refused 1), log it once, and heal within 5 s of Redis accepting
# writes again; a Redis that refuses writes and then goes away is out of
# reach, not refusing (sync_refused 0).  Two nodes of two workers on one
# redis-server.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;
use MqttapiStatus;

my $redis = MqttapiRedis->start(args => ['--maxmemory-policy', 'noeviction']);
my $rport = $redis->port;

my $up = start_nginx(workers => 1, http => <<'EOF');
    server {
        listen 127.0.0.1:%%PORT0%%;
        default_type application/json;
        location / { return 200 '{"RequestId":"UP"}'; }
    }
EOF
my $uport = $up->port(0);

my $node_http = <<"EOF";
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=300ms;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=quota:1m sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location / {
            mqttapi_quota zone=quota;
            proxy_pass http://127.0.0.1:$uport;
        }
        location = /mqttapi/status { mqttapi_status; }
    }
EOF

my @nodes = map { start_nginx(workers => 2, http => $node_http) } 1 .. 2;

sub st {
    my ($n, $m) = @_;
    return status_value(status_json($n->port(0)), $m) // -1;
}

sub all { my ($m, $v) = @_; return !grep { st($_, $m) != $v } @nodes }

ok(poll_until(10, sub { all('sync_up', 1) }), 'both nodes up');
is(st($nodes[0], 'sync_refused'), 0, 'status: sync_refused 0');

# 40 requests of one key over about 4 s, both nodes: 2% of 100/s
sub admitted {
    my ($k) = @_;
    my ($ok, $other) = (0, 0);
    for my $i (1 .. 40) {
        my $r = get($nodes[$i % 2]->port(0),
                    "/?AccessKeyId=$k&Action=ApplyToken");
        $r->{status} == 200 ? $ok++ : $other++;
        sleep 0.1;
    }
    return $ok;
}

for my $case (
    [ 'maxmemory (OOM)', qr/refused a command[^\n]*OOM/,
      sub { $redis->cmd('CONFIG', 'SET', 'maxmemory', '1') },
      sub { $redis->cmd('CONFIG', 'SET', 'maxmemory', '0') } ],
    [ 'a replica (READONLY)', qr/refused a command[^\n]*READONLY/,
      sub { $redis->cmd('REPLICAOF', '127.0.0.1', MqttapiTest::dead_port()) },
      sub { $redis->cmd('REPLICAOF', 'NO', 'ONE') } ],
) {
    my ($name, $line, $break, $heal) = @$case;
    my @mark = map { $_->error_log_mark } @nodes;

    is($break->(), 'OK', "$name: Redis refuses writes");

    ok(poll_until(10, sub { all('sync_up', 0) && all('sync_refused', 1) }),
       "$name: both nodes fall back (sync_up 0, sync_refused 1)");

    (my $k = "AK-$name") =~ s/\W+/-/g;
    my $ok = admitted($k);
    is($ok, 40, "$name: fail=local admits every request at 2% of the "
                . "limit ($ok of 40)");

    for my $i (0, 1) {
        my $log = $nodes[$i]->error_log($mark[$i]);
        like($log, $line, "$name: node $i logs the refusal");
        my $n = () = $log =~ /refused a command/g;
        ok($n <= 2, "$name: node $i logs it once, not at every reconnect "
                    . "($n lines)");
    }

    is($heal->(), 'OK', "$name: Redis accepts writes again");
    my $t0 = time;
    ok(poll_until(5, sub { all('sync_up', 1) && all('sync_refused', 0) }),
       sprintf("$name: both nodes heal within 5 s (%.1f s)", time - $t0));
    for my $i (0, 1) {
        like($nodes[$i]->error_log($mark[$i]), qr/accepts writes again/,
             "$name: node $i logs that Redis accepts writes again");
    }
}

# refused, then out of reach: the nodes no longer say that Redis refuses
# writes, and come back when it is there again
{
    is($redis->cmd('CONFIG', 'SET', 'maxmemory', '1'), 'OK',
       'refused then down: Redis refuses writes');
    ok(poll_until(10, sub { all('sync_refused', 1) }),
       'refused then down: sync_refused 1');
    $redis->stop;
    ok(poll_until(10, sub { all('sync_up', 0) && all('sync_refused', 0) }),
       'refused then down: sync_refused 0 while Redis is out of reach');
    $redis->restart;
    ok(poll_until(15, sub { all('sync_up', 1) && all('sync_refused', 0) }),
       'refused then down: both nodes back on the restarted Redis');
}

for my $n (@nodes) {
    unlike($n->error_log, qr/exited on signal|open socket .* left/,
           'no crash, no socket left');
}

done_testing();
