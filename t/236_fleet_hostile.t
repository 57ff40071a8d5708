#!/usr/bin/perl
# A peer is trusted no further than SPEC 10 says.  Anyone who can PUBLISH
# on the Redis is a peer; the test publishes with its own RESP client:
#
#   * a back-off of 24 h is applied for the zone's max_backoff (3 s) at
#     most, then probed again, though the reconciliation finds it in Redis
#     every 2 s (shorter than max_backoff: a pull that renewed it would
#     keep it forever); a node whose own upstream asked for 30 s
#     (Retry-After) keeps them, another node caps them;
#   * a node's own back-off (2 s) and a hostile entry of the same count
#     for 24 h in Redis: the node holds the count for max_backoff from its
#     own throttle at most, the pulls do not renew it, and the key is
#     probed (the request reaches the upstream);
#   * a code of 10 kB, a code that is not UTF-8, an empty code: dropped,
#     counted (sync_errors_total{op="pubsub"}) and logged;
#   * such an entry in Redis: dropped alone, the pull applies the others;
#   * a well-formed back-off is applied, with its code in the local answer;
#   * a "Redis" whose reply to SUBSCRIBE is not ["subscribe", channel, n]
#     is refused: the node does not count as subscribed (sync_up 0).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use POSIX ();
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
        location /ra {
            add_header Retry-After 30 always;
            return 400 '{"RequestId":"UP","Code":"ApplyTokenOverFlow","Message":"m"}';
        }
        location /tr {
            add_header Retry-After 2 always;
            return 400 '{"RequestId":"UP","Code":"ApplyTokenOverFlow","Message":"m"}';
        }
        location / { return 200 '{"RequestId":"UP"}'; }
    }
EOF
my $uport = $up->port(0);

sub node_http {
    my ($port) = @_;
    return <<"EOF";
    mqttapi_sync redis=127.0.0.1:$port interval=100ms timeout=500ms;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=fleet:1m backoff=1s
                          max_backoff=3s sync;
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
}

my $A = start_nginx(workers => 2, http => node_http($rport));
ok(poll_until(10, sub { $A->error_log =~ /mqttapi sync: connected to/ }),
   'A: connected');
ok(poll_until(10, sub {
       ($redis->cmd('PUBSUB', 'NUMSUB', 'mqttapi:events')->[1] // 0) == 1 }),
   'A: subscribed');

sub req { get($A->port(0), "/?AccessKeyId=$_[0]") }

sub pubsub_errors {
    status_value(status_json($A->port(0)), 'sync_errors_total', op => 'pubsub')
}

sub publish { $redis->cmd('PUBLISH', 'mqttapi:events', $_[0]) }

# A back-off of $key in Redis, as the open script writes it: the zone's
# hash ("count until delay code", until on Redis's clock) and its index.
# What a node applied from a message is closed by the reconciliation (a
# pull every 2 s) unless Redis has the key: with it there, what the test
# sees is what the node made of the message, not the pull's repair.
sub store {
    my ($key, $count, $left, $code) = @_;
    return $redis->cmd('EVAL', <<'LUA', 2, 'mqttapi:{fleet}:b',
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1],
           ARGV[2] .. ' ' .. untl .. ' ' .. math.max(tonumber(ARGV[3]), 0) .. ' '
           .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), 0) + 60000)
return redis.call('ZADD', KEYS[2], untl + 60000, ARGV[1])
LUA
                       'mqttapi:{fleet}:index', $key, $count, $left, $code);
}

# --- a well-formed back-off: applied, with its code ------------------------

{
    is(publish('O fleet 1 1500 1500 ApplyTokenOverFlow b:AK-ok'), 1,
       'published a well-formed back-off');
    my $r;
    ok(poll_until(5, sub { $r = req('AK-ok'); local_answer($r) }),
       'a well-formed back-off is applied');
    like($r->{body} // '', qr/"Code":"ApplyTokenOverFlow"/,
         'the local answer has the back-off\'s code');
}

# --- 24 h: capped at max_backoff (3 s) --------------------------------------

{
    # in Redis too: the pull finds it every 2 s and must not renew it
    is(store('b:AK-long', 1, 86400000, 'ApplyTokenOverFlow'), 1,
       'a back-off of 24 h in Redis');
    publish('O fleet 1 86400000 86400000 ApplyTokenOverFlow b:AK-long');
    my $r;
    ok(poll_until(5, sub { $r = req('AK-long'); local_answer($r) }),
       'a 24 h back-off from Redis is applied');
    my $ra = h($r, 'Retry-After') // 0;
    ok($ra >= 1 && $ra <= 3, "for max_backoff at most (Retry-After $ra)");
    ok(poll_until(8, sub { req('AK-long')->{status} == 200 }),
       'the key is probed again after max_backoff, not 24 h');
    ok(poll_until(5, sub {
           !defined $redis->cmd('HGET', 'mqttapi:{fleet}:b', 'b:AK-long') }),
       'the probe closed it in Redis');
}

# --- a node's own upstream asked for 30 s: it keeps them, a peer caps them ---

{
    my $B = start_nginx(workers => 1, http => node_http($rport));
    ok(poll_until(10, sub { $B->error_log =~ /mqttapi sync: connected to/ }),
       'B: connected');
    my $r = get($A->port(0), '/ra?AccessKeyId=AK-own');
    is(h($r, 'Retry-After'), 30, 'A: the upstream asks for 30 s');
    ok(poll_until(5, sub {
           defined $redis->cmd('HGET', 'mqttapi:{fleet}:b', 'b:AK-own') }),
       'A pushed the back-off');
    my $rb;
    ok(poll_until(5, sub { $rb = get($B->port(0), '/?AccessKeyId=AK-own');
                           local_answer($rb) }),
       'B applies it');
    my $ra = h($rb, 'Retry-After') // 0;
    ok($ra >= 1 && $ra <= 3, "B: for its max_backoff at most ($ra s)");
    sleep 0.5;    # A's push answered: the fleet's back-off applied on A
    $r = req('AK-own');
    ok(local_answer($r), 'A answers locally');
    $ra = h($r, 'Retry-After') // 0;
    ok($ra >= 25, "A keeps its own upstream's 30 s ($ra s left)");
    $B->stop;
}

# --- its own back-off, and the same count for 24 h in Redis: not renewed ----

{
    my $r = get($A->port(0), '/tr?AccessKeyId=AK-renew');
    like($r->{body} // '', qr/"RequestId":"UP"/,
         'the upstream throttles AK-renew: its own back-off, count 1');
    ok(poll_until(5, sub {
           ($redis->cmd('HGET', 'mqttapi:{fleet}:b', 'b:AK-renew') // '')
               =~ /^1 / }),
       'A pushed it');
    # the same count for 24 h, in Redis (each pull finds it) and announced
    is(store('b:AK-renew', 1, 86400000, 'ApplyTokenOverFlow'), 0,
       'a hostile entry of count 1 for 24 h replaces it in Redis');
    publish('O fleet 1 86400000 86400000 ApplyTokenOverFlow b:AK-renew');
    ok(poll_until(5, sub { local_answer(req('AK-renew')) }),
       'A answers AK-renew locally');
    # max_backoff (3 s) from the throttle, and margin for a busy machine
    ok(poll_until(15, sub { $r = req('AK-renew');
                            $r->{status} == 200
                            && ($r->{body} // '') =~ /"RequestId":"UP"/ }),
       'the key is probed after max_backoff: the pulls do not renew it');
    ok(poll_until(5, sub {
           !defined $redis->cmd('HGET', 'mqttapi:{fleet}:b', 'b:AK-renew') }),
       'the probe closed it in Redis');
}

# --- hostile codes: dropped, counted, logged --------------------------------

for my $case (
    [ 'a code of 10 kB', 'A' x 10240, qr/unexpected message on the channel/ ],
    [ 'a code that is not UTF-8', "\xff\xfe\xc3", qr/invalid code was dropped/ ],
    [ 'an empty code', '', qr/unexpected message on the channel/ ],
    [ 'a code with a quote', 'Bad"Code', qr/invalid code was dropped/ ],
) {
    my ($name, $code, $line) = @$case;
    (my $k = "AK-$name") =~ s/\W+/-/g;
    my $e0 = pubsub_errors();
    my $mark = $A->error_log_mark;
    # Redis has an earlier back-off of the key (count 1, over, kept a
    # while as the open script keeps it): the pull finds the key there,
    # so it cannot close a count 2 the node would have applied from the
    # message, and it applies nothing itself (nor logs anything)
    store("b:$k", 1, -1000, 'ApplyTokenOverFlow');
    # a well-formed back-off announced after it (in Redis too, or the
    # pull could close it first): the channel is read in order, so once
    # it is applied the hostile message was read, and the key is asked
    # within the hostile back-off's 3 s, not after waiting for the count
    store("b:$k-next", 1, 5000, 'ApplyTokenOverFlow');
    sleep 1.1;     # the sync task logs one error line a second at most
    publish("O fleet 2 5000 5000 $code b:$k");
    publish("O fleet 1 5000 5000 ApplyTokenOverFlow b:$k-next");
    ok(poll_until(5, sub { local_answer(req("$k-next")) }),
       "$name: the back-off announced after it is applied");
    is(req($k)->{status}, 200, "$name: not applied, the key goes through");
    ok(poll_until(5, sub { pubsub_errors() > $e0 }),
       "$name: counted in sync_errors_total{op=\"pubsub\"}");
    like($A->error_log($mark), $line, "$name: logged");
}

# --- a bad entry in Redis is dropped alone, not the whole pull -------------

{
    my $e0 = status_value(status_json($A->port(0)), 'sync_errors_total',
                          op => 'reconcile');
    my $mark = $A->error_log_mark;
    sleep 1.1;     # the sync task logs one error line a second at most
    # the index is by end: the bad entry comes first in the pull's reply;
    # the good one is not announced, the pull alone can bring it
    store('b:AK-bad', 1, 1000, 'A' x 10240);
    store('b:AK-pulled', 1, 5000, 'ApplyTokenOverFlow');
    ok(poll_until(5, sub { local_answer(req('AK-pulled')) }),
       'a back-off after a bad entry in Redis is applied by the pull');
    ok(poll_until(5, sub {
           status_value(status_json($A->port(0)), 'sync_errors_total',
                        op => 'reconcile') > $e0 }),
       'the bad entry: counted in sync_errors_total{op="reconcile"}');
    like($A->error_log($mark), qr/an invalid back-off from Redis was dropped/,
         'the bad entry: logged');
    is(req('AK-bad')->{status}, 200, 'the bad entry: not applied');
    $redis->cmd('HDEL', 'mqttapi:{fleet}:b', 'b:AK-bad');
    $redis->cmd('ZREM', 'mqttapi:{fleet}:index', 'b:AK-bad');
}

unlike($A->error_log, qr/\xff\xfe|AAAAAAAAAA/,
       'no hostile byte is written to the log');

# --- a wrong reply to SUBSCRIBE ----------------------------------------------

# the name of the first command in $$buf (removed from it), or undef
sub command {
    my ($buf) = @_;
    my ($n, $pos) = $$buf =~ /\A\*(\d+)\r\n/ or return undef;
    $pos = length("*$n\r\n");
    my @args;
    for (1 .. $n) {
        substr($$buf, $pos) =~ /\A\$(\d+)\r\n/ or return undef;
        my $len = $1;
        $pos += length("\$$len\r\n");
        return undef if length($$buf) < $pos + $len + 2;
        push @args, substr($$buf, $pos, $len);
        $pos += $len + 2;
    }
    substr($$buf, 0, $pos) = '';
    return $args[0];
}

# a fake Redis: +OK to AUTH and SELECT, a master's reply to HELLO, a sha1
# to SCRIPT LOAD, $reply to
# SUBSCRIBE, and a heartbeat's reply to any script: a node that took the
# reply to SUBSCRIBE would count as up
sub fake_redis {
    my ($reply) = @_;
    my $hello = "*8\r\n" . join '', map { '$' . length($_) . "\r\n$_\r\n" }
                qw(server redis version 7.0.15 mode standalone role master);
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 16, ReuseAddr => 1)
        or die "listen: $!";
    my $port = $l->sockport;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        # the test's output is prove's pipe: not held by this child
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        my $sel = IO::Select->new($l);
        my %buf;
        while (1) {
            for my $s ($sel->can_read(1)) {
                if ($s == $l) { $sel->add($l->accept); next; }
                my $n = sysread($s, my $chunk, 65536);
                if (!$n) { $sel->remove($s); close $s; next; }
                $buf{$s} .= $chunk;
                while (defined(my $cmd = command(\$buf{$s}))) {
                    my $out = uc($cmd) eq 'SCRIPT' ? "\$40\r\n" . ('a' x 40) . "\r\n"
                            : uc($cmd) eq 'SUBSCRIBE' ? $reply
                            : uc($cmd) eq 'HELLO' ? $hello
                            : uc($cmd) eq 'EVALSHA'
                              ? "*2\r\n:1\r\n:" . int(time * 1000) . "\r\n"
                            : "+OK\r\n";
                    syswrite($s, $out);
                }
            }
        }
        POSIX::_exit(0);
    }
    close $l;
    return ($port, $pid);
}

for my $case (
    [ 'a status', "+OK\r\n" ],
    [ 'another channel', "*3\r\n\$9\r\nsubscribe\r\n\$5\r\nother\r\n:1\r\n" ],
    [ 'a count of 0', "*3\r\n\$9\r\nsubscribe\r\n\$14\r\nmqttapi:events\r\n:0\r\n" ],
) {
    my ($name, $reply) = @$case;
    my ($port, $pid) = fake_redis($reply);
    my $n = start_nginx(workers => 1, http => node_http($port));
    ok(poll_until(10, sub {
           $n->error_log =~ /unexpected reply to SUBSCRIBE/ }),
       "SUBSCRIBE answered with $name: refused and logged");
    is(status_value(status_json($n->port(0)), 'sync_up'), 0,
       "SUBSCRIBE answered with $name: sync_up 0");
    $n->stop;
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

unlike($A->error_log, qr/exited on signal|open socket .* left/,
       'A: no crash, no socket left');

done_testing();
