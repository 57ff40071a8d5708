#!/usr/bin/perl
# mqttapi_sync when Redis fails: the three fail= modes of a 5/s quota
# (RevokeToken) with Redis frozen, and a Redis that answers garbage.
#
#   * fail=local: the node counts on its own at the limit divided by the
#     nodes last seen alive (3 here: 2/s);
#   * fail=open: the quota is not enforced;
#   * fail=closed: what is left of the leases, then everything is answered
#     locally;
#   * shared_egress=on: the per-API ceiling holds for the fleet;
#   * password= and db=: AUTH and SELECT; a wrong password is logged,
#     requests go on;
#   * a Redis without EVALSHA: unusable, its error is logged once, without
#     the arguments Redis quotes back (the keys, so the AccessKeyId);
#   * a hostile "Redis" (wrong types, invalid protocol, huge lengths): the
#     gateway keeps serving, the error is logged at most about once per
#     interval (1 s here), nothing crashes.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use File::Temp ();
use POSIX ();
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;

my $redis = MqttapiRedis->start;
my $rport = $redis->port;

my $up = start_nginx(workers => 1, http => <<'EOF');
    log_format up '$arg_AccessKeyId|$arg_m|$msec';
    server {
        listen 127.0.0.1:%%PORT0%%;
        access_log %%PREFIX%%/up.log up;
        default_type application/json;
        location / { return 200 '{"RequestId":"UP"}'; }
    }
EOF
my $uport = $up->port(0);

sub node_http {
    my ($fail, $port) = @_;
    return <<"EOF";
    mqttapi_sync redis=127.0.0.1:$port interval=100ms timeout=300ms
                 fail=$fail;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=quota:1m sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location / {
            mqttapi_quota zone=quota;
            proxy_pass http://127.0.0.1:$uport;
        }
    }
EOF
}

my %node;
for my $f (qw(local open closed)) {
    $node{$f} = start_nginx(workers => 2, http => node_http($f, $rport));
}

for my $f (sort keys %node) {
    ok(poll_until(10, sub { $node{$f}->error_log =~ /sync: connected to/ }),
       "fail=$f: connected");
}

# three nodes beat: each knows there are three
ok(poll_until(10, sub {
       my $n = $redis->cmd('ZCARD', 'mqttapi:nodes');
       defined $n && $n == 3 }), 'three nodes in the heartbeat set');
sleep 1.5;     # every node has read the count

sub admitted {
    my ($n, $k, $secs) = @_;
    my ($ok, $rej, $other) = (0, 0, 0);
    my $end = time + $secs;
    while (time < $end) {
        my $r = get($n->port(0), "/?AccessKeyId=$k&Action=RevokeToken");
        if ($r->{status} == 200) { $ok++ }
        elsif ($r->{status} == 429) { $rej++ }
        else { $other++ }
        sleep 0.02;
    }
    return ($ok, $rej, $other);
}

$redis->freeze;

# every node notices (timeout=300ms, a heartbeat a second)
ok(poll_until(10, sub {
       (() = join('', map { $_->error_log } values %node)
             =~ /did not answer/g) >= 3 }),
   'Redis frozen: every node noticed');

{
    my ($ok, $rej, $other) = admitted($node{local}, 'AK-local', 3);
    diag "fail=local: $ok admitted, $rej rejected in 3 s";
    is($other, 0, 'fail=local: passes and local rejects only');
    ok($ok >= 3 && $ok <= 2 * 4 + 1,
       "fail=local: about 2/s, the limit over 3 nodes ($ok in 3 s)");
}

{
    my ($ok, $rej, $other) = admitted($node{open}, 'AK-open', 2);
    diag "fail=open: $ok admitted, $rej rejected in 2 s";
    is($rej + $other, 0, 'fail=open: no quota');
    ok($ok > 15, "fail=open: more than 5/s ($ok in 2 s)");
}

{
    my ($ok, $rej, $other) = admitted($node{closed}, 'AK-closed', 2);
    diag "fail=closed: $ok admitted, $rej rejected in 2 s";
    is($other, 0, 'fail=closed: passes and local rejects only');
    is($ok, 0, 'fail=closed: nothing without a lease');
}

$redis->thaw;

ok(poll_until(10, sub {
       (() = $node{closed}->error_log =~ /sync: connected to/g) >= 2 }),
   'fail=closed: reconnected after SIGCONT');
{
    # for its first two seconds back the node has no share of its own
    # (the other nodes' shares leave a token a second to lease), then its
    # share and the leases: 4 s leave room for a busy machine
    my ($ok) = admitted($node{closed}, 'AK-closed2', 4);
    ok($ok >= 2, "fail=closed: leases again once Redis is back ($ok in 4 s)");
}

$_->stop for values %node;

# ---------------------------------------------------------------------------
# shared_egress=on: the per-API ceiling (4/s here) for the fleet
# ---------------------------------------------------------------------------

{
    my $dir = File::Temp::tempdir('mqttapi-egress-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    open my $fh, '>', "$dir/catalog.json" or die $!;
    print $fh '{"quota":{"api_ceiling":4}}';
    close $fh;

    my $http = node_http('local', $rport);
    $http =~ s/fail=local;/fail=local shared_egress=on;\n    mqttapi_catalog $dir\/catalog.json;/;
    my @eg = map { start_nginx(workers => 2, http => $http) } 1 .. 2;
    for my $i (0, 1) {
        ok(poll_until(10, sub { $eg[$i]->error_log =~ /sync: connected to/ }),
           "shared_egress node $i: connected");
    }

    # the nodes stopped above have left the heartbeat set, and both nodes
    # have read that they are two (a change of the count can let one
    # second admit a share more)
    ok(poll_until(10, sub {
           my $n = $redis->cmd('ZCARD', 'mqttapi:nodes');
           defined $n && $n == 2 }), 'shared_egress: two nodes beat');
    sleep 1.5;

    my ($ok, $rej, $other, $i) = (0, 0, 0, 0);
    my $t0 = time;
    while (time < $t0 + 3) {
        # a new key each time: only the ceiling limits
        my $r = get($eg[$i % 2]->port(0),
                    "/?AccessKeyId=AK-eg-$i&Action=ListGroupId");
        $i++;
        if ($r->{status} == 200) { $ok++ }
        elsif ($r->{status} == 429) { $rej++ }
        else { $other++ }
        sleep 0.02;
    }
    my $secs = time - $t0;
    diag sprintf "shared_egress: %d admitted, %d rejected in %.1f s",
                 $ok, $rej, $secs;
    is($other, 0, 'shared_egress: passes and local rejects only');
    my %per;
    open my $lf, '<', $up->prefix . '/up.log' or die $!;
    while (<$lf>) {
        my ($k, undef, $t) = split /\|/;
        $per{int $t}++ if $k =~ /^AK-eg-/;
    }
    my ($max) = sort { $b <=> $a } values %per;
    ok($ok <= 4 * (int($secs) + 2),
       "shared_egress: the ceiling of 4/s holds for both nodes ($ok)");
    ok(($max // 0) <= 5, 'shared_egress: no second of the upstream saw '
       . 'over 4 (+1 at its edge): ' . join(' ', map { $per{$_} }
                                             sort keys %per));
    ok($ok >= int($secs), "shared_egress: requests still admitted ($ok)");
    $_->stop for @eg;
}

# ---------------------------------------------------------------------------
# password=: AUTH, and a wrong one is refused and logged
# ---------------------------------------------------------------------------

{
    my $pr = MqttapiRedis->start(password => 'Secret-1');
    my $ok = start_nginx(workers => 1,
                         http => node_http('local', $pr->port)
                                 =~ s/fail=local;/fail=local password=Secret-1 db=3;/r);
    my $bad = start_nginx(workers => 1,
                          http => node_http('local', $pr->port)
                                  =~ s/fail=local;/fail=local password=wrong;/r);
    ok(poll_until(10, sub { $ok->error_log =~ /sync: connected to/ }),
       'password=: connected');
    ok(poll_until(10, sub { $pr->cmd('INFO', 'keyspace') =~ /^db3:keys=/m }),
       'db=3: the heartbeat is kept in database 3');
    unlike($pr->cmd('INFO', 'keyspace'), qr/^db0:/m, 'db=3: nothing in 0');
    ok(poll_until(10, sub {
           $bad->error_log =~ /\[error\].*refused the connection's setup/ }),
       'a wrong password: the refusal is logged');
    unlike($bad->error_log, qr/sync: connected to/,
           'a wrong password: not connected');
    is(get($bad->port(0), '/?AccessKeyId=AK-pw&Action=ListGroupId')->{status},
       200, 'a wrong password: requests are served');
    $_->stop for $ok, $bad;
    $pr->stop;
}

# ---------------------------------------------------------------------------
# a Redis without EVALSHA (renamed away): an error reply to the task's
# commands, so Redis is unusable and the node runs on its own state.  Its
# errors quote the arguments of the command, the keys among them, and so
# the back-off key (an AccessKeyId); the gateway logs the error without
# them, once, however often it reconnects
# ---------------------------------------------------------------------------

{
    my $nr = MqttapiRedis->start(args => ['--rename-command', 'EVALSHA',
                                          'EVALSHA-disabled-by-test']);
    my $rp = $nr->port;
    my $SECRET = 'LTAIsecretKeyForRedisLog';
    my $ng = start_nginx(workers => 1, http => emulator_http() . <<"EOF");
    mqttapi_sync redis=127.0.0.1:$rp interval=100ms timeout=300ms;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=bo:1m backoff=100ms
                          max_backoff=100ms sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        mqttapi_throttle_log_level info;
        location / {
            mqttapi_throttle zone=bo;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }
EOF
    # the key's back-off opens and reopens several times a second, each
    # pushed to Redis with the key on every reconnect, for 3 s
    my $deadline = time + 3;
    my $served = 0;
    while (time < $deadline) {
        my $r = get($ng->port(0), "/?AccessKeyId=$SECRET&Action=ApplyToken"
                                  . '&mqttemu_code=ApplyTokenOverFlow');
        $served++ if $r->{status} == 400 || local_answer($r);
        sleep 0.05;
    }
    ok($served > 10, "no EVALSHA: requests are served ($served)");
    my @err = grep { /\[error\]/ && /mqttapi sync/ } split /\n/, $ng->error_log;
    my $lines = grep { /unknown command/ } @err;
    is($lines, 1, 'no EVALSHA: Redis\'s refusal is logged once')
        or diag join "\n", @err;
    ok(!(grep { /\Q$SECRET\E/ } @err), 'no EVALSHA: no error line quotes the key')
        or diag join "\n", grep { /\Q$SECRET\E/ } @err;
    like($err[0] // '', qr/refused a command[^"]*"ERR unknown command 'evalsha',?"$/i,
         'no EVALSHA: what Redis said, without the arguments');
    unlike($ng->error_log, qr/sync: connected to/,
           'no EVALSHA: never "connected" (no write accepted)');
    $ng->stop;
    $nr->stop;
}

# ---------------------------------------------------------------------------
# a hostile Redis
# ---------------------------------------------------------------------------

my @garbage = (
    "+OK\r\n" x 20,                              # wrong types
    "*3\r\n:1\r\n:2\r\n\$-1\r\n" x 10,
    "*-5\r\n\$999999999999\r\n",                 # huge length
    "*2147483647\r\n:1\r\n",                    # a huge array
    "*1\r\n" x 200,                              # deep nesting
    "\x00\xff garbage \r\n\r\n",
    "-NOSCRIPT no\r\n" x 20,
    ":99999999999999999999999\r\n",
    "\$40\r\n" . ('x' x 40) . "\r\n" x 12,       # SCRIPT LOAD, then junk
);

my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                Listen => 64, Proto => 'tcp', ReuseAddr => 1)
    or die "listen: $!";
my $fport = $srv->sockport;
my $fake = fork // die "fork: $!";
if ($fake == 0) {
    my $i = 0;
    while (my $c = $srv->accept) {
        my $g = $garbage[$i++ % @garbage];
        sysread($c, my $buf, 65536);
        syswrite($c, $g);
        sleep 0.05;
        close $c;
    }
    POSIX::_exit(0);
}
close $srv;

my $ng = start_nginx(workers => 2, http => node_http('local', $fport));
my $mark = time;
my $bad = 0;
while (time < $mark + 4) {
    my $r = get($ng->port(0), "/?AccessKeyId=AK-h&Action=ListGroupId");
    $bad++ unless $r->{status} == 200 || $r->{status} == 429;
    sleep 0.05;
}
is($bad, 0, 'a hostile Redis: the gateway keeps answering');
my $log = $ng->error_log;
my $n = () = $log =~ /\[error\].*mqttapi sync:/g;
ok($n >= 1, "a hostile Redis: errors logged ($n)");
ok($n <= 2 * 6, "a hostile Redis: at most about once per second ($n in 4 s)");
unlike($log, qr/exited on signal|\[alert\]/, 'a hostile Redis: no crash')
    or diag $log;

kill 'KILL', $fake;
waitpid $fake, 0;

done_testing();
