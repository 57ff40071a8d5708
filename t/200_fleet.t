#!/usr/bin/perl
# Several gateway nodes sharing their rate limiting state through Redis
# (mqttapi_sync), all on loopback: one redis-server of the test's own, an
# upstream nginx that logs "key|code|marker|msec" per request (how the
# tests count what reached it), and three gateway nodes of two workers
# each, synced (interval=100ms; the waits allow seconds, for a busy
# machine):
#
#   * nginx -t: the directive's parameters and the zone's "sync" flag;
#   * a throttle seen by node A makes B and C answer locally, with nothing
#     sent upstream;
#   * every node applies A's back-off with A's end; the doubling count is
#     the fleet's (a throttle on C after one on B backs off for 4 s);
#   * one probe per back-off window for the whole fleet, and a clean probe
#     opens every node;
#   * a 5/s quota (RevokeToken) holds at about 5/s over the three nodes;
#     no second admits more than 5, counted at the nodes, while a fourth
#     node joins and leaves, but for the seconds of a node's credit (a
#     key's first two seconds on a node: up to ceil(5 / N) more each);
#     the first request of a new key is not refused;
#   * Redis frozen (SIGSTOP): requests do not wait (each answered in a
#     quarter of the Redis timeout), the nodes fall back to their own
#     state, and reconcile after SIGCONT;
#   * a killed Pub/Sub connection heals; scripts flushed from Redis are
#     loaded again (NOSCRIPT); Redis restarted empty gets back
#     what the nodes hold; a killed task worker is replaced;
#   * reload and quit are prompt with sync on, and with Redis frozen;
#   * the status endpoint: sync_up, sync_nodes, sync_errors_total{op},
#     sync_roundtrip_seconds, backoff_keys{origin="local|peer"}.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use File::Temp ();
use Time::HiRes qw(time sleep);
use POSIX ();
use MqttapiTest;
use MqttapiRedis;
use MqttapiStatus;

# ---------------------------------------------------------------------------
# nginx -t
# ---------------------------------------------------------------------------

{
    my $srv = "server { listen 127.0.0.1:%%PORT0%%; location / { mqttapi on;"
            . " mqttapi_throttle zone=f; mqttapi_quota zone=f;"
            . " proxy_pass http://127.0.0.1:%%PORT1%%; } }";
    my $zone = 'mqttapi_throttle_zone $arg_AccessKeyId zone=f:1m sync;';

    for my $b (
        [ 'sync zone without mqttapi_sync', "$zone $srv",
          qr/"f".*sync.*mqttapi_sync/ ],
        [ 'no redis=', "mqttapi_sync interval=100ms; $zone $srv",
          qr/mqttapi_sync.*redis/ ],
        [ 'bad address', "mqttapi_sync redis=127.0.0.1:notaport; $zone $srv",
          qr/mqttapi_sync/ ],
        [ 'bad fail=', "mqttapi_sync redis=127.0.0.1:1 fail=maybe; $zone $srv",
          qr/fail=maybe.*mqttapi_sync/ ],
        [ 'bad interval=', "mqttapi_sync redis=127.0.0.1:1 interval=0; "
          . "$zone $srv", qr/interval=0.*mqttapi_sync/ ],
        [ 'bad timeout=', "mqttapi_sync redis=127.0.0.1:1 timeout=61s; "
          . "$zone $srv", qr/timeout=61s.*mqttapi_sync/ ],
        [ 'timeout over 20 intervals', "mqttapi_sync redis=127.0.0.1:1 "
          . "interval=10ms timeout=201ms; $zone $srv",
          qr/"timeout" must not be more than 20 times "interval"/ ],
        [ 'bad db=', "mqttapi_sync redis=127.0.0.1:1 db=65536; $zone $srv",
          qr/invalid parameter "db=65536" in "mqttapi_sync"/ ],
        [ 'bad prefix=', "mqttapi_sync redis=127.0.0.1:1 prefix=" . 'p' x 65
          . "; $zone $srv",
          qr/invalid parameter "prefix=p+" in "mqttapi_sync"/ ],
        [ 'bad shared_egress=', "mqttapi_sync redis=127.0.0.1:1 "
          . "shared_egress=yes; $zone $srv", qr/shared_egress=yes/ ],
        [ 'unknown parameter', "mqttapi_sync redis=127.0.0.1:1 nodes=3; "
          . "$zone $srv", qr/nodes=3.*mqttapi_sync/ ],
        [ 'duplicate', "mqttapi_sync redis=127.0.0.1:1; "
          . "mqttapi_sync redis=127.0.0.1:2; $zone $srv",
          qr/mqttapi_sync.*duplicate/ ],
        [ 'outside http', "$zone server { listen 127.0.0.1:%%PORT0%%;"
          . " mqttapi_sync redis=127.0.0.1:1; }",
          qr/mqttapi_sync.*not allowed/ ],
    ) {
        my ($name, $http, $re) = @$b;
        my ($rc, $out) = nginx_test_config($http);
        isnt($rc, 0, "nginx -t fails: $name");
        like($out, $re, "nginx -t: $name: message") or diag $out;
    }

    my ($rc, $out) = nginx_test_config(
        'mqttapi_sync redis=127.0.0.1:6399 password=secret db=2 prefix=gw: '
        . 'interval=200ms timeout=100ms fail=closed shared_egress=on;'
        . " $zone $srv");
    is($rc, 0, 'nginx -t: every parameter, valid') or diag $out;
}

# ---------------------------------------------------------------------------
# the fleet
# ---------------------------------------------------------------------------

my $redis = MqttapiRedis->start;
my $rport = $redis->port;

my $up = start_nginx(workers => 1, http => <<'EOF');
    log_format up '$arg_AccessKeyId|$arg_code|$arg_m|$msec';

    server {
        listen 127.0.0.1:%%PORT0%%;
        access_log %%PREFIX%%/up.log up;
        keepalive_requests 100000;
        default_type application/json;

        location / {
            if ($arg_code) {
                return 400 '{"RequestId":"UP-$request_id","HostId":"up","Code":"$arg_code","Message":"from the upstream"}';
            }
            return 200 '{"RequestId":"UP-$request_id"}';
        }
    }
EOF
my $UPLOG = $up->prefix . '/up.log';
my $uport = $up->port(0);

my $node_http = <<"EOF";
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=2s;

    log_format q '\$arg_AccessKeyId|\$status|\$msec|\$request_time';

    mqttapi_throttle_zone \$arg_AccessKeyId zone=fleet:1m backoff=1s
                          max_backoff=1s sync;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=long:1m backoff=30s
                          max_backoff=30s sync;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=slow:1m backoff=4s
                          max_backoff=4s sync;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=quota:1m sync;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=dbl:1m backoff=1s
                          max_backoff=16s sync;

    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /f/ {
            mqttapi_throttle zone=fleet;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location /long/ {
            mqttapi_throttle zone=long;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location /s/ {
            mqttapi_throttle zone=slow;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location /dbl/ {
            mqttapi_throttle zone=dbl;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location /q/ {
            access_log %%PREFIX%%/q.log q;
            mqttapi_quota zone=quota;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location = /mqttapi/status {
            mqttapi_status;
        }
    }
EOF

my @nodes = map { start_nginx(workers => 2, http => $node_http) } 1 .. 3;
my ($A, $B, $C) = @nodes;

sub wait_for {
    my ($what, $timeout, $cond) = @_;
    my $v = poll_until($timeout, $cond);
    diag "gave up waiting ${timeout}s for: $what" unless $v;
    return $v;
}

for my $i (0 .. 2) {
    ok(wait_for("node $i connects", 10,
                sub { $nodes[$i]->error_log =~ /mqttapi sync: connected to/ }),
       "node $i: connected to Redis");
}

sub up_lines {
    open my $fh, '<', $UPLOG or return ();
    my @l = <$fh>;
    chomp @l;
    return map { [split /\|/, $_, -1] } @l;
}

sub up_hits { my ($k) = @_; return grep { $_->[0] eq $k } up_lines(); }

sub path {
    my ($loc, $key, %a) = @_;
    my $p = "/$loc/?AccessKeyId=$key";
    $p .= "&$_=$a{$_}" for sort keys %a;
    return $p;
}

sub req {
    my ($node, $loc, $key, %a) = @_;
    return get($node->port(0), path($loc, $key, %a));
}

sub local_reject { local_answer(@_) }

my $THROTTLE = 'ApplyTokenOverFlow';

# a metric of a node's status endpoint (JSON), summed over matching rows
sub status {
    my ($node, $metric, %l) = @_;
    return status_value(status_json($node->port(0)), $metric, %l);
}

# A's push is in Redis; the other nodes hear it within an interval (100ms),
# given 0.5 s here: no request is sent to them before, so that none could
# reach the upstream in the meantime
sub published {
    my ($zone, $k) = @_;
    my $ok = wait_for("the back-off of $k in Redis", 5,
                      sub { defined $redis->cmd('HGET', "mqttapi:{$zone}:b", "b:$k") });
    sleep 0.5;
    return $ok;
}

# --- a throttle on A: B and C answer locally, nothing sent upstream --------

{
    my $k = 'AK-spread';
    my $r = req($A, 'f', $k, code => $THROTTLE);
    is($r->{status}, 400, 'A: the throttle from the upstream is relayed');
    ok(published('fleet', $k), 'A published the back-off');

    for my $n ([B => $B], [C => $C]) {
        ok(local_reject(req($n->[1], 'f', $k)),
           "$n->[0] answers the key locally after A's throttle");
    }
    is(scalar(up_hits($k)), 1, 'only A\'s request reached the upstream');

    is(status($B, 'sync_up'), 1, 'status B: sync_up 1');
    ok(wait_for('3 nodes', 5, sub { status($C, 'sync_nodes') == 3 }),
       'status C: sync_nodes 3');

    my $p = get($C->port(0), '/mqttapi/status?format=prometheus')->{body};
    like($p, qr/^# TYPE mqttapi_sync_roundtrip_seconds histogram$/m,
         'prometheus: sync_roundtrip_seconds is a histogram');
    my ($inf) = $p =~ /^mqttapi_sync_roundtrip_seconds_bucket\{le="\+Inf"\} (\d+)$/m;
    my ($cnt) = $p =~ /^mqttapi_sync_roundtrip_seconds_count (\d+)$/m;
    ok($inf && $inf == $cnt, "prometheus: roundtrips counted ($cnt)");
    like($p, qr/^mqttapi_sync_roundtrip_seconds_sum \d+\.\d{6}$/m,
         'prometheus: the sum in seconds');
    like($p, qr/^mqttapi_sync_errors_total\{op="connect"\} 0$/m,
         'prometheus: sync_errors_total{op="connect"} 0');
    SKIP: {
        skip 'no promtool', 1 unless -x '/usr/bin/promtool';
        my $tmp = File::Temp->new(SUFFIX => '.prom');
        print $tmp $p;
        close $tmp;
        my $out = `/usr/bin/promtool check metrics < $tmp 2>&1`;
        is($?, 0, 'promtool check metrics passes') or diag $out;
    }
}

# --- the same end everywhere ------------------------------------------------

{
    # a 30 s back-off (the delay has up to 10% of jitter, drawn by A): B
    # and C apply A's end, not one of their own, so every node tells the
    # same seconds left, within the second that passes between the asks
    my $k = 'AK-until';
    req($A, 'long', $k, code => $THROTTLE);
    ok(published('long', $k), 'A published a 30 s back-off');
    my %left;
    for my $n ([A => $A], [B => $B], [C => $C]) {
        my $r = req($n->[1], 'long', $k);
        ok(local_reject($r), "$n->[0] answers the key locally");
        $left{ $n->[0] } = h($r, 'Retry-After') // -100;
    }
    my ($lo, $hi) = (sort { $a <=> $b } values %left)[0, -1];
    ok($hi - $lo <= 1 && $hi <= 30 && $lo >= 25,
       "the same end on every node (Retry-After A $left{A}, B $left{B}, "
       . "C $left{C})");
    my ($count) = ($redis->cmd('HGET', "mqttapi:{long}:b", "b:$k") // '') =~ /^(\d+) /;
    is($count, 1, 'Redis holds the back-off with its count');

    # the back-offs by origin, on the 30 s one (a 1 s back-off of "fleet"
    # could end while a loaded machine gets here)
    is(status($A, 'backoff_keys', zone => 'long', origin => 'local'), 1,
       'status A: backoff_keys{origin="local"} 1');
    is(status($A, 'backoff_keys', zone => 'long', origin => 'peer'), 0,
       'status A: backoff_keys{origin="peer"} 0');
    is(status($B, 'backoff_keys', zone => 'long', origin => 'peer'), 1,
       'status B: backoff_keys{origin="peer"} 1');
    like(get($C->port(0), '/mqttapi/status?format=prometheus')->{body},
         qr/^mqttapi_backoff_keys\{zone="long",origin="peer"\} 1$/m,
         'prometheus: backoff_keys with origin');
}

# --- one probe per window for the fleet ------------------------------------

{
    my $k = 'AK-probe';
    is(req($A, 'f', $k, code => $THROTTLE)->{status}, 400,
       'probe test: the back-off opens on A');
    published('fleet', $k);

    # every node, round robin, all the time; each probe is throttled again
    my $end = time + 4.5;
    my $i = 0;
    my %st;
    while (time < $end) {
        my $r = req($nodes[$i++ % 3], 'f', $k, code => $THROTTLE);
        $st{$r->{status}}++;
        sleep 0.03;
    }
    my @t = map { $_->[3] } up_hits($k);
    my @gaps = map { $t[$_] - $t[$_ - 1] } 1 .. $#t;
    my ($min) = sort { $a <=> $b } @gaps;
    ok(@t >= 3, 'probes reached the upstream window after window ('
                . scalar(@t) . ' in all)') or diag explain \%st;
    ok(defined $min && $min >= 0.8,
       'never two requests of the fleet in one back-off window (min gap '
       . ($min // 'none') . ' s)') or diag "@t";
    ok(@t <= 7, 'at most one probe per window over 4.5 s (' . scalar(@t)
                . ')');
}

# --- a clean probe opens every node ----------------------------------------

{
    my $k = 'AK-open';
    req($A, 'f', $k, code => $THROTTLE);
    published('fleet', $k);
    ok(local_reject(req($C, 'f', $k)), 'C answers the key locally');
    sleep 1;

    my $opened = wait_for('the probe', 5, sub {
        for my $n (@nodes) {
            return 1 if req($n, 'f', $k)->{status} == 200;
        }
        return 0;
    });
    ok($opened, 'a clean probe went through');
    for my $n ([A => $A], [B => $B], [C => $C]) {
        ok(wait_for("$n->[0] opens", 5,
                    sub { req($n->[1], 'f', $k)->{status} == 200 }),
           "$n->[0] lets the key through after the clean probe");
    }
}

# --- a right to probe that is not used passes to another node -------------

{
    # all three nodes see the back-off; then only C gets requests: if
    # another node took the right, C gets it once that right expires
    my $k = 'AK-right';
    req($A, 'f', $k, code => $THROTTLE);
    published('fleet', $k);
    sleep 1.2;
    my $n0 = scalar(up_hits($k));
    my $passed = wait_for('C probes', 10,
                          sub { req($C, 'f', $k)->{status} == 200 });
    ok($passed, 'only C has traffic: C probes in the end');
    # the upstream writes its log line after the answer: wait for it
    wait_for('the upstream logs the probe', 5,
             sub { scalar(up_hits($k)) > $n0 });
    is(scalar(up_hits($k)) - $n0, 1, 'one request of C reached the upstream');
}

# --- a window another node ended: this node's line of its local answers --

{
    # B answers the key locally; A alone sends afterwards: A's probe is
    # throttled again (B's window ends with A's new count), then A's next
    # probe is answered cleanly (the back-off is closed everywhere).  B's
    # sync task writes, each time, how many requests B answered meanwhile.
    # A 4 s back-off leaves B's requests seconds of room.
    my $k = 'AK-meanwhile';
    my $line = sub {
        my ($why, $n) = @_;
        my $t = qq{a back-off of zone "slow" was $why; $n requests were }
                . 'answered locally meanwhile';
        return qr/\Q$t\E/;
    };
    my $mark = $B->error_log_mark;
    is(req($A, 's', $k, code => $THROTTLE)->{status}, 400,
       'meanwhile: the back-off opens on A');
    published('slow', $k);
    is(scalar(grep { local_reject(req($B, 's', $k)) } 1 .. 2), 2,
       'meanwhile: B answers the key locally twice');
    ok(wait_for('A probes', 20,
                sub { !local_reject(req($A, 's', $k, code => $THROTTLE)) }),
       'meanwhile: A probes and is throttled again');
    ok(wait_for("B's line", 5, sub {
           $B->error_log($mark)
               =~ $line->('throttled again on another node', 2) }),
       'meanwhile: B logs its 2 local answers when A reopens the back-off');

    $mark = $B->error_log_mark;
    is(scalar(grep { local_reject(req($B, 's', $k)) } 1 .. 3), 3,
       'meanwhile: B answers the key locally three times');
    ok(wait_for('A probes', 20, sub { req($A, 's', $k)->{status} == 200 }),
       'meanwhile: A probes, answered cleanly');
    ok(wait_for("B's line", 5, sub {
           $B->error_log($mark) =~ $line->('closed by another node', 3) }),
       'meanwhile: B logs its 3 local answers when A closes the back-off');
    unlike($B->error_log($mark), qr/another node;[^\n]*AK-meanwhile/,
           'meanwhile: the line does not name the key');
}

# --- the doubling count is the fleet's ---------------------------------------

{
    # backoff=1s max_backoff=16s: the n-th throttle in a row backs off for
    # 2^(n-1) s (less up to 10%). A opens it (1), B's probe is throttled
    # (2), then C's (3): C doubles from the count B published, so the fleet
    # backs off for about 4 s, not 2
    my $k = 'AK-double';
    my $count = sub {
        (($redis->cmd('HGET', "mqttapi:{dbl}:b", "b:$k") // '') =~ /^(\d+) /)[0] // 0
    };
    # requests to one node only, each throttled by the upstream if it gets
    # there: true once one got there (the node's probe)
    my $probe = sub {
        my ($node) = @_;
        return wait_for('a probe', 15, sub {
            my $r = req($node, 'dbl', $k, code => $THROTTLE);
            sleep 0.05;
            return $r->{status} == 400 && !local_reject($r);
        });
    };
    req($A, 'dbl', $k, code => $THROTTLE);
    ok(wait_for('count 1', 5, sub { $count->() == 1 }), 'doubling: A opens');
    ok($probe->($B), 'doubling: B probes, throttled again');
    ok(wait_for('count 2', 5, sub { $count->() == 2 }),
       'doubling: B published the second throttle');
    sleep 0.5;
    ok($probe->($C), 'doubling: C probes, throttled again');
    ok(wait_for('count 3', 5, sub { $count->() == 3 }),
       'doubling: C counted on from B\'s count');
    my ($delay) = ($redis->cmd('HGET', "mqttapi:{dbl}:b", "b:$k") // '')
                  =~ /^\d+ \d+ (\d+) /;
    ok(($delay // 0) >= 3600 && $delay <= 4000,
       'doubling: the third throttle backs off for 4 s less jitter ('
       . ($delay // '-') . ' ms; 2 s had C counted on its own)');
    ok(local_reject(req($A, 'dbl', $k)), 'doubling: A answers locally');
}

# --- a 5/s quota over three nodes ------------------------------------------

{
    my $k = 'AK-quota';
    my ($ok, $rej, $other) = (0, 0, 0);
    my $start = time;
    my $i = 0;
    while (time < $start + 4) {
        my $r = req($nodes[$i++ % 3], 'q', $k, Action => 'RevokeToken');
        if ($r->{status} == 200) { $ok++ }
        elsif (local_reject($r)) { $rej++ }
        else { $other++ }
        sleep 0.02;
    }
    my $secs = time - $start;
    my %per;
    $per{int $_->[3]}++ for up_hits($k);
    my ($first) = sort { $a <=> $b } keys %per;
    my ($max) = sort { $b <=> $a }
                map { $per{$_} } grep { $_ > $first + 1 } keys %per;
    my ($cmax) = sort { $b <=> $a }
                 map { $per{$_} } grep { $_ <= $first + 1 } keys %per;
    diag sprintf "quota: %d admitted, %d rejected in %.1f s, per second %s",
                 $ok, $rej, $secs, join(' ', map { $per{$_} } sort keys %per);
    is($other, 0, 'quota: every answer is a pass or a local reject');
    ok($rej > $ok, 'quota: most requests over 5/s are answered locally');
    ok($ok <= 5 * (int($secs) + 2) + 2 * 2 * 3,
       "quota: at most 5/s for the fleet, and the credit of the key's "
       . "first two seconds on each node ($ok)");
    ok($ok >= 2 * int($secs), "quota: about 5/s still admitted ($ok)");
    # the key's first two seconds: L + (N - 1) c, c = ceil(5 / 3)
    ok(($cmax // 0) <= 5 + 2 * 2, "quota: the first two seconds admit at "
                                  . "most 5 and the credit of two nodes: max "
                                  . ($cmax // 0));
    ok(($max // 0) <= 6, "quota: no later second of the upstream saw over 5 "
                         . "(+1 at a second's edge): max " . ($max // 0));
}

# The bound, second by second, while a fourth node joins and then leaves
# (the grants move): requests of the three nodes come from a child
# process, those of the fourth from here. Requests are sent only in the
# middle of a second (Redis runs on this host: its seconds are the
# clock's), and each admitted request is counted in the second it began
# at its node: no second may see more than 5, but for the key's first two
# seconds on a node, which may add that node's credit, ceil(5 / N) (N the
# nodes it has heard of, 2 before it hears any: 3 at the most).
{
    my $k = 'AK-bound';
    my $end = time + 10;
    my $mid = sub { my $f = time - int(time); $f > 0.15 && $f < 0.85 };
    my $child = fork;
    die "fork: $!" unless defined $child;
    if (!$child) {
        my $i = 0;
        while (time < $end) {
            if ($mid->()) {
                req($nodes[$i++ % 3], 'q', $k, Action => 'RevokeToken');
            }
            sleep 0.02;
        }
        POSIX::_exit(0);
    }
    sleep 2;
    my $D = start_nginx(workers => 2, http => $node_http);
    ok(wait_for('D connects', 10,
                sub { $D->error_log =~ /mqttapi sync: connected to/ }),
       'quota bound: a fourth node joins');
    while (time < $end - 3) {
        req($D, 'q', $k, Action => 'RevokeToken') if $mid->();
        sleep 0.02;
    }
    $D->stop;
    waitpid $child, 0;

    my (%per, $n, %credit);
    for my $node (@nodes, $D) {
        open my $fh, '<', $node->prefix . '/q.log' or next;
        my $first;
        while (<$fh>) {
            chomp;
            my ($key, $status, $msec, $rt) = split /\|/;
            next unless $key eq $k;
            my $s = int($msec - $rt);
            $first //= $s;
            next unless $status == 200;
            $per{$s}++;
            $n++;
        }
        # the node's credit: the key's first second on it and the next
        $credit{$_} += 3 for grep { defined $first } $first, ($first // 0) + 1;
    }
    my @s = sort keys %per;
    my @over = grep { $per{$_} > 5 + ($credit{$_} // 0) } @s;
    my @plain = grep { !$credit{$_} } @s;
    my ($max) = sort { $b <=> $a } map { $per{$_} } @plain;
    diag "quota bound: admitted per second: "
         . join(' ', map { $per{$_} . ($credit{$_} ? '*' : '') } @s)
         . ' (*: a node\'s credit)';
    ok(($n // 0) >= 20, "quota bound: requests admitted (" . ($n // 0) . ")");
    is(scalar @over, 0, 'quota bound: no second admitted over 5 and the '
                        . 'credit of the nodes that first saw the key in it '
                        . 'or the second before');
    ok(($max // 0) <= 5, 'quota bound: no other second admitted over 5 across '
                         . 'the nodes, joining and leaving included');
    my $full = grep { $_ >= 4 } values %per;
    ok($full >= @s / 2, "quota bound: still about 5/s ($full of "
                        . scalar(@s) . ' seconds admitted 4 or 5)');
}

# a key seen for the first time is not refused while its grant is asked
# for: each node spends its credit without asking
{
    my $refused = 0;
    for my $i (1 .. 9) {
        my $r = req($nodes[$i % 3], 'q', "AK-new-$i", Action => 'RevokeToken');
        $refused++ unless $r->{status} == 200;
        sleep 0.05;
    }
    is($refused, 0, 'quota: the first request of a new key passes');
}

# --- Redis frozen: no waiting, local fallback, reconciled after CONT -------

{
    # Every request is answered well within the nodes' Redis timeout (2s):
    # one that waited on Redis would take that long, or forever. Each
    # usually takes milliseconds; the bound is a quarter of the timeout.
    $redis->freeze;
    my ($slow, $worst) = (0, 0);
    for my $i (1 .. 30) {
        my $t0 = time;
        my $r = $i % 2 ? req($nodes[$i % 3], 'f', "AK-frozen-$i")
                       : req($nodes[$i % 3], 'q', 'AK-frozen-q',
                             Action => 'RevokeToken');
        my $dt = time - $t0;
        $worst = $dt if $dt > $worst;
        $slow++ if $dt > 0.5
                   || !($r->{status} == 200 || local_reject($r));
        sleep 0.05;
    }
    is($slow, 0, sprintf('Redis frozen: every request answered in under '
                         . '0.5 s, a quarter of the Redis timeout (worst '
                         . '%.3f s)', $worst));

    # the nodes notice (timeout=2s) and use their own state
    for my $n ([A => $A], [B => $B], [C => $C]) {
        ok(wait_for("$n->[0] notices", 15,
                    sub { status($n->[1], 'sync_up') == 0 }),
           "Redis frozen: $n->[0] falls back to its own state");
    }
    my $k = 'AK-frozen';
    is(req($A, 'f', $k, code => $THROTTLE)->{status}, 400,
       'Redis frozen: a throttle on A');
    ok(local_reject(req($A, 'f', $k)), 'Redis frozen: A answers locally');
    is(req($B, 'f', $k)->{status}, 200,
       'Redis frozen: B does not know (its own state)');

    ok(status($B, 'sync_errors_total', op => 'connect') > 0,
       'status B: sync_errors_total{op="connect"} counts the timeouts');

    $redis->thaw;
    ok(wait_for('B learns it after CONT', 8,
                sub { local_reject(req($B, 'f', $k)) }),
       'after SIGCONT: A pushes what it learnt, B answers locally');
}

# --- a killed Pub/Sub connection heals -------------------------------------

{
    ok(wait_for('three subscribers', 10, sub {
           $redis->cmd('PUBSUB', 'NUMSUB', 'mqttapi:events')->[1] == 3 }),
       'the three nodes are subscribed');
    my $killed = $redis->cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
    ok($killed >= 3, "CLIENT KILL TYPE pubsub killed $killed connections");
    my $k = 'AK-pubsub';
    req($A, 'f', $k, code => $THROTTLE);
    ok(wait_for('C learns it', 8, sub { local_reject(req($C, 'f', $k)) }),
       'after the Pub/Sub connections were killed: C answers locally');
}

# --- the scripts flushed (SCRIPT FLUSH): NOSCRIPT loads them again ---------

{
    is($redis->cmd('SCRIPT', 'FLUSH'), 'OK', 'SCRIPT FLUSH');
    my $k = 'AK-noscript';
    req($A, 'f', $k, code => $THROTTLE);
    ok(wait_for('B learns it', 8, sub { local_reject(req($B, 'f', $k)) }),
       'after SCRIPT FLUSH: the scripts are loaded again, B answers locally');
}

# --- Redis restarted empty -------------------------------------------------

{
    my $k = 'AK-restart';
    req($A, 'long', $k, code => $THROTTLE);
    wait_for('B applies it', 5, sub { local_reject(req($B, 'long', $k)) });

    my ($id0) = $redis->cmd('INFO', 'server') =~ /run_id:(\w+)/;
    $redis->restart;
    my ($id1) = $redis->cmd('INFO', 'server') =~ /run_id:(\w+)/;
    isnt($id1, $id0, 'Redis restarted (no persistence: empty)');

    ok(wait_for('the back-off is back in Redis', 10,
                sub { defined $redis->cmd('HGET', "mqttapi:{long}:b", "b:$k") }),
       'the nodes push what they hold to the new Redis');
    ok(local_reject(req($C, 'long', $k)), 'C still answers locally');
}

# --- the task's worker killed: another one takes over ----------------------

{
    my $log = $B->error_log;
    my @owners = $log =~ /\[notice\] (\d+)#\d+: mqttapi sync: this worker runs/g;
    my $pid = $owners[-1];
    ok($pid && kill(0, $pid), "B's task runs in worker $pid");
    kill 'KILL', $pid if $pid;
    ok(wait_for('another worker takes over', 10, sub {
           my @o = $B->error_log =~
               /\[notice\] (\d+)#\d+: mqttapi sync: this worker runs/g;
           return @o && $o[-1] != $pid;
       }), 'another worker of B runs the task');
    my $k = 'AK-takeover';
    req($A, 'f', $k, code => $THROTTLE);
    ok(wait_for('B learns it', 8, sub { local_reject(req($B, 'f', $k)) }),
       'B follows the fleet again');
}

# --- reload and quit are prompt --------------------------------------------

{
    ok($A->reload, 'reload with sync on');
    ok(wait_for('A reconnects', 10, sub {
           () = $A->error_log =~ /mqttapi sync: connected to/g;
       }), 'A syncs after the reload');

    $redis->freeze;
    sleep 0.5;
    my $t1 = time;
    ok($B->reload, 'reload with Redis frozen: the old workers exit');
    ok(time - $t1 < 5, sprintf('reload with Redis frozen is prompt (%.1f s)',
                               time - $t1));
    my $pid = $C->pid;
    my $t0 = time;
    kill 'QUIT', $pid;
    # gone, or a zombie that this machine's init has yet to reap
    my $gone = wait_for('C quits', 10, sub {
        !kill(0, $pid)
        || (MqttapiTest::_slurp("/proc/$pid/stat") // '') =~ /^\d+ \(.*\) Z/
    });
    ok($gone, sprintf('quit with Redis frozen: gone in %.1f s', time - $t0));
    ok(time - $t0 < 5, 'quit is prompt');
    $redis->thaw;
}

for my $n ([A => $A], [B => $B], [C => $C]) {
    my $log = $n->[1]->error_log;
    unlike($log, qr/open socket .* left|exited on signal (?!9)/,
           "$n->[0]: no socket left open, no crash") or diag $log;
}

done_testing();
