#!/usr/bin/perl
# The worker that runs a node's sync task stalls (SIGSTOP for 2.5 s, as
# CPU throttling or a swap storm does): another worker of the node takes
# the task over and connects; when the first resumes, it finds it lost the
# task, closes its own connections and touches nothing shared.  The node
# stays "up" (mqttapi_sync_up 1) and the fleet keeps sharing back-offs
# both ways.  Three nodes of two workers on one redis-server.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;
use MqttapiStatus;

my $redis = MqttapiRedis->start;
my $rport = $redis->port;

my $up = start_nginx(workers => 1, http => <<'EOF');
    server {
        listen 127.0.0.1:%%PORT0%%;
        default_type application/json;
        location / {
            if ($arg_code) {
                return 400 '{"RequestId":"UP","Code":"$arg_code","Message":"m"}';
            }
            return 200 '{"RequestId":"UP"}';
        }
    }
EOF
my $uport = $up->port(0);

my $node_http = <<"EOF";
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=1s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=fleet:1m backoff=30s
                          max_backoff=30s sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location / {
            mqttapi_throttle zone=fleet;
            proxy_pass http://127.0.0.1:$uport;
        }
        location = /mqttapi/status { mqttapi_status; }
    }
EOF

my @nodes = map { start_nginx(workers => 2, http => $node_http) } 1 .. 3;
my ($A, $B) = @nodes;

for my $i (0 .. 2) {
    ok(poll_until(10, sub {
           $nodes[$i]->error_log =~ /mqttapi sync: connected to/ }),
       "node $i: connected to Redis");
}

sub up { status_value(status_json($_[0]->port(0)), 'sync_up') }

sub owners {
    my ($n) = @_;
    return $n->error_log =~
        /\[notice\] (\d+)#\d+: mqttapi sync: this worker runs the sync task/g;
}

# a throttle on one node, answered locally by another
sub shared {
    my ($from, $to, $k) = @_;
    get($from->port(0), "/?AccessKeyId=$k&code=ApplyTokenOverFlow");
    return poll_until(8, sub {
        local_answer(get($to->port(0), "/?AccessKeyId=$k")) });
}

ok(poll_until(5, sub { up($A) == 1 }), 'A: sync_up 1');
ok(shared($B, $A, 'AK-before'), 'before: A applies B\'s back-off');

my $owner = (owners($A))[-1];
ok($owner && kill(0, $owner), "A's task runs in worker $owner");

# the owner stops; the other worker sees its heartbeat stop and takes over
# (after 3 intervals and a second); no request is sent to A meanwhile,
# the stopped worker could be the one to accept it
kill 'STOP', $owner;
my $t0 = time;
my $took = poll_until(10, sub { my @o = owners($A); $o[-1] != $owner });
my $left = 2.5 - (time - $t0);
sleep $left if $left > 0;
ok($took, 'the other worker of A took the task over');
ok(poll_until(10, sub { () = $A->error_log =~ /sync: connected to/g; }) >= 2,
   'the new owner connected');
kill 'CONT', $owner;

ok(poll_until(10, sub {
       $A->error_log =~ /\b$owner#\d+: mqttapi sync: another worker took over/
   }), 'the stalled worker resumed and found it lost the task');

# the node stays up: polled for two seconds after the old owner resumed
my @seen;
for (1 .. 10) {
    push @seen, up($A);
    sleep 0.2;
}
is(join('', @seen), '1' x 10, 'A: sync_up stays 1 after the old owner '
                              . 'resumed (' . join('', @seen) . ')');

ok(shared($B, $A, 'AK-after-1'), 'after: A applies B\'s back-off');
ok(shared($A, $B, 'AK-after-2'), 'after: B applies A\'s back-off');
is(up($A), 1, 'A: sync_up still 1');

unlike($A->error_log, qr/exited on signal|open socket .* left/,
       'A: no crash, no socket left');

kill 'CONT', $owner;
done_testing();
