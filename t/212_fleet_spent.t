#!/usr/bin/perl
# mqttapi_sync fail=local when Redis is lost in the middle of a second:
# what the node already spent of that second (of its grant or credit)
# stays counted in the window it falls back to, so the second does not
# admit its limit twice.
#
# One node (the limit over one node: 5/s for RevokeToken), one Redis of the
# test's own, frozen (SIGSTOP) right after the node spends tokens early in
# a second.  The node notices within interval + timeout (400 ms here); an
# attempt counts when that happens while the second still has time left.
# The first and the last request of a second are decided by the gateway's
# cached clock, so only requests sent and answered well inside the second
# are counted; an attempt that does not fit (a busy machine) is repeated,
# and at least one attempt must fit.
#
#   * the second of the loss admits no more than the limit in all (without
#     the carry it admits the limit again after the loss);
#   * the fallback window is not a lock-out: in the seconds after the loss
#     the node admits again, with Redis still frozen.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;

my $LIMIT = 5;          # RevokeToken's quota in the built-in catalog

my $redis = MqttapiRedis->start;
my $rport = $redis->port;

my $node = start_nginx(workers => 1, http => <<"EOF");
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=300ms
                 fail=local;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=quota:1m sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location / {
            mqttapi_quota zone=quota;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }
    server {
        listen 127.0.0.1:%%PORT1%%;
        access_log off;
        default_type application/json;
        location / { return 200 '{"RequestId":"UP"}'; }
    }
EOF
my $port = $node->port(0);

# one request: [sent, answered, status]
sub one {
    my ($key) = @_;
    my $t0 = time;
    my $r = get($port, "/?AccessKeyId=$key&Action=RevokeToken");
    return [$t0, time, $r->{status}];
}

my ($fitted, $other) = (0, 0);
my $since;      # the node lost Redis after this point of its error log
                # (undef: from the start)

for my $attempt (1 .. 5) {
    my $key = "AK-spent-$attempt";

    # connected, and in the heartbeat set (the node knows it is alone:
    # its grants are the whole limit)
    my $joined = poll_until(15, sub {
                     $node->error_log($since) =~ /sync: connected to/ })
                 && poll_until(10, sub {
                        my $n = $redis->cmd('ZCARD', 'mqttapi:nodes');
                        defined $n && $n == 1 });
    unless ($joined) {
        fail("attempt $attempt: the node connected to Redis");
        last;
    }
    sleep 2.5;

    # early in a second of the clock (the node's Redis clock is this one,
    # on the same machine, to within a roundtrip)
    poll_until(2, sub { my $f = time - int(time); $f >= 0.05 && $f < 0.15 });
    my $second = int(time);
    my $end = $second + 0.95;

    my @before = map { one($key) } 1 .. 3;

    my $mark = $node->error_log_mark;
    $redis->freeze;

    my ($lost, @after);
    while (time < $second + 2.5) {
        push @after, one($key);
        $lost //= time
            if $node->error_log($mark) =~ /did not answer/;
        sleep 0.02;
    }
    $redis->thaw;
    $since = defined $lost ? $mark : undef;

    $other += grep { $_->[2] != 200 && $_->[2] != 429 } @before, @after;

    my @early = grep { $_->[0] >= $second && $_->[1] < $end } @before;
    my $spent = grep { $_->[2] == 200 } @early;
    my @late = grep { defined $lost && $_->[0] > $lost && $_->[1] < $end }
                    @after;

    # fits: tokens spent before the freeze, and requests after the node
    # noticed, all inside the same second
    unless (@early == @before && $spent >= 1 && @late >= 3) {
        diag sprintf("attempt %d does not fit: %d of %d first requests in "
                     . "the second, %d admitted, loss noticed at %s, "
                     . "%d requests after it", $attempt, scalar @early,
                     scalar @before, $spent,
                     defined $lost ? sprintf('+%.3f s', $lost - $second)
                                   : 'never',
                     scalar @late);
        next;
    }

    $fitted++;

    my $admitted = grep { $_->[2] == 200 && $_->[0] >= $second
                          && $_->[1] < $end } @before, @after;
    my $again = grep { $_->[2] == 200 && $_->[0] > $second + 1 } @after;

    diag sprintf("attempt %d: %d admitted before the freeze, loss noticed at "
                 . "+%.3f s, %d admitted in that second in all, %d in the "
                 . "next one and a half", $attempt, $spent, $lost - $second,
                 $admitted, $again);

    ok($admitted <= $LIMIT,
       "the second of the loss admits at most $LIMIT ($admitted: $spent "
       . "before the loss, still counted after it)");
    ok($again >= 1,
       "in the seconds after the loss the node admits again ($again), "
       . "Redis still frozen");
    last;
}

ok($fitted, 'an attempt fitted in one second');
is($other, 0, 'passes and local rejects only');
unlike($node->error_log, qr/\[alert\]|exited on signal/, 'no crash');

done_testing();
