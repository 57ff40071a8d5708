#!/usr/bin/perl
# The fleet's back-offs in numbers, one node of two workers:
#
#   * one slow reply (DEBUG SLEEP 0.2, twice the node's timeout=100ms)
#     with 1,000 back-offs held costs one reconnection and a pull, not a
#     push of every back-off again (the commands Redis counts after it);
#   * a worker that takes the task over copies the zone's back-offs under
#     the zone's lock and tracks them after releasing it: with 3,000
#     back-offs the lock is held a few microseconds per back-off at most
#     (5, the debug log's line of the scan: about 0.1 us here, 33 us with
#     the former linear search under the lock);
#   * Redis restarted empty still gets every back-off back (the pull after
#     the reconnection tells what it lost).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use MqttapiTest;
use MqttapiRedis;
use MqttapiStatus;
use MqttapiFleet;

my $redis = MqttapiRedis->start(args => ['--enable-debug-command', 'local']);
my $rport = $redis->port;

my $A = start_nginx(workers => 2,
                    main => 'error_log %%PREFIX%%/debug.log debug;',
                    http => <<"EOF");
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=100ms;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=fleet:4m backoff=60s
                          max_backoff=60s sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location / {
            mqttapi_throttle zone=fleet;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
        location = /mqttapi/status { mqttapi_status; }
    }
@{[ code_upstream('%%PORT1%%') ]}
EOF

ok(poll_until(10, sub { $A->error_log =~ /mqttapi sync: connected to/ }),
   'A: connected');

sub st { status_value(status_json($A->port(0)), @_) // -1 }

# what the fleet holds: $n back-offs of 60 s in Redis, from $from on
sub hold {
    my ($from, $n) = @_;
    my $lua = <<'LUA';
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = tonumber(ARGV[1]), tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1 do
    local k = 'b:AK-' .. i
    redis.call('HSET', KEYS[2], k,
               '1 ' .. (now + 60000) .. ' 60000 ApplyTokenOverFlow')
    redis.call('ZADD', KEYS[1], now + 120000, k)
end
return tonumber(ARGV[2])
LUA
    return $redis->cmd('EVAL', $lua, 2, 'mqttapi:{fleet}:index',
                       'mqttapi:{fleet}:b', $from, $n);
}

# the scripts Redis ran for the node since the last CONFIG RESETSTAT (the
# commands the scripts call are counted apart: a pull GETs every back-off)
sub calls {
    my $info = $redis->cmd('INFO', 'commandstats');
    my ($n) = $info =~ /^cmdstat_evalsha:calls=(\d+)/m;
    return $n // 0;
}

is(hold(1, 1000), 1000, '1,000 back-offs in Redis');
ok(poll_until(10, sub {
       st('backoff_keys', zone => 'fleet', origin => 'peer') == 1000 }),
   'A holds them (reconciled)');

# --- one slow reply ----------------------------------------------------------

# the back-offs the hiccups opened on A (one a try, 60 s each)
my $hiccups = 0;

{
    # the quiet rate first: commands in 2 s without a hiccup
    $redis->cmd('CONFIG', 'RESETSTAT');
    sleep 2;
    my $quiet = calls();

    # a hiccup needs a command of the node under way: tried until one
    # made the node reconnect
    my ($e0, $after, $tries) = (st('sync_errors_total', op => 'connect'));
    for my $try (1 .. 8) {
        $tries = $try;
        $hiccups++;
        $redis->cmd('CONFIG', 'RESETSTAT');
        # a throttle seen by A while Redis sleeps: its push waits for it
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            sleep 0.02;
            get($A->port(0), "/?AccessKeyId=AK-hiccup-$try"
                            . "&code=ApplyTokenOverFlow");
            POSIX::_exit(0);
        }
        $redis->cmd('DEBUG', 'SLEEP', '0.2');
        waitpid $pid, 0;
        last if poll_until(2, sub {
            st('sync_errors_total', op => 'connect') > $e0 });
    }
    my $reconnects = st('sync_errors_total', op => 'connect') - $e0;
    ok($reconnects >= 1, "a slow reply made A reconnect ($tries tries)");
    ok(poll_until(5, sub { st('sync_up') == 1 }), 'A is up again');
    sleep 2;
    $after = calls();
    diag "scripts run in 2 s: $quiet quiet; $after in the 2 s after one slow "
         . "reply (DEBUG SLEEP 0.2, timeout=100ms), 1,000 back-offs held, "
         . "$reconnects reconnection(s)";
    ok($reconnects <= 2, "one slow reply, one reconnection ($reconnects)");
    ok($after < 100, "no storm: $after scripts run after it, not one per "
                     . "back-off (1,000)");
    is(st('backoff_keys', zone => 'fleet', origin => 'peer'), 1000,
       'A still holds the 1,000 back-offs');
}

# --- Redis restarted empty: the pull tells, the node pushes --------------------

{
    $redis->restart;
    ok(poll_until(10, sub {
           ($redis->cmd('ZCARD', 'mqttapi:{fleet}:index') // 0) >= 1000 }),
       'Redis restarted empty gets every back-off back');
}

# --- the zone's lock on a takeover -------------------------------------------

{
    is(hold(1001, 2000), 2000, '2,000 more back-offs in Redis');
    ok(poll_until(10, sub {
           st('backoff_keys', zone => 'fleet', origin => 'peer') == 3000 }),
       'A holds 3,000');
    my @o = $A->error_log =~ /\[notice\] (\d+)#\d+: mqttapi sync: this worker runs/g;
    my $owner = $o[-1];
    kill 'KILL', $owner;
    ok(poll_until(10, sub {
           my @n = $A->error_log =~ /\[notice\] (\d+)#\d+: mqttapi sync: this worker runs/g;
           $n[-1] != $owner }), 'the other worker took the task over');
    my ($n, $us);
    poll_until(10, sub {
        my $log = MqttapiTest::_slurp($A->prefix . '/debug.log') // '';
        ($n, $us) = ($log =~ /.*\b(\d+) back-offs of zone "fleet" copied in (\d+) us under its lock/s);
        defined $n && $n >= 3000 + $hiccups });
    diag "takeover: " . ($n // '-') . " back-offs copied in " . ($us // '-')
         . " us under the zone's lock";
    is($n, 3000 + $hiccups, "the new owner read the zone's back-offs: the "
                            . "3,000 and the hiccups' $hiccups");
    ok(defined $us && $us <= 5 * $n,
       'the lock was held at most a few microseconds per back-off ('
       . ($us // '-') . " us for " . ($n // '-') . ')');
}

unlike($A->error_log, qr/exited on signal (?!9)|open socket .* left/,
       'no crash, no socket left');

done_testing();
