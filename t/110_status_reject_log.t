#!/usr/bin/perl
# Local answers under a flood, through a real nginx with two workers: a
# key's first local answer of a window is logged, the others are counted
# (in the key's zone node) and the count is logged when the window ends.
#
#   * 10,000 requests for one backed-off key from four keep-alive clients:
#     at most a handful of reject lines for it in the error log, and
#     local_rejects_total says 10,000; another key rejected meanwhile gets
#     its own first line;
#   * when a back-off ends, the probe's line says how many requests were
#     answered locally meanwhile (exactly what the client saw);
#   * a quota: one line per key and second, and the counts logged when
#     each second is over add up to the local answers the client saw.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiStatus;

my $http = <<'EOF';
    include %%REPO%%/conf/emulator_http.conf;

    server {
        listen 127.0.0.1:%%PORT1%%;
        include %%REPO%%/conf/emulator.conf;
    }

    mqttapi_throttle_zone $arg_AccessKeyId zone=fl:1m backoff=60s max_backoff=60s;
    mqttapi_throttle_zone $arg_AccessKeyId zone=pr:1m backoff=1s max_backoff=1s;
    mqttapi_throttle_zone $arg_AccessKeyId zone=q:1m;

    server {
        listen 127.0.0.1:%%PORT0%%;
        keepalive_requests 100000;

        location = /mqttapi/status {
            mqttapi_status;
        }
        location /fl/ {
            mqttapi on;
            mqttapi_throttle zone=fl;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /pr/ {
            mqttapi on;
            mqttapi_throttle zone=pr;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /q/ {
            mqttapi on;
            mqttapi_quota zone=q;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
    }
EOF

my $ng = start_nginx(http => $http, workers => 2);
my $port = $ng->port(0);

sub status_now { status_value(status_json($port), @_) }

# n requests on one keep-alive connection (a new one when it closes);
# returns how many were answered locally
sub hammer {
    my ($path, $n) = @_;
    my ($sock, $local) = (undef, 0);
    for (1 .. $n) {
        my $r = http_request(port => $port, path => $path, keepalive => 1,
                             sock => $sock);
        $local++ if local_answer($r);
        $sock = $r->{sock};
    }
    return $local;
}

# --- a flood of one backed-off key ------------------------------------------

my $r = get($port, '/fl/?Action=ApplyToken&AccessKeyId=flood'
                   . '&mqttemu_code=ApplyTokenOverFlow');
is(h($r, 'X-MQTTAPI-Error-Code'), 'ApplyTokenOverFlow', 'flood key backed off');
$r = get($port, '/fl/?Action=QueryToken&AccessKeyId=other'
                . '&mqttemu_code=QueryTokenOverFlow');
is(h($r, 'X-MQTTAPI-Error-Code'), 'QueryTokenOverFlow', 'other key backed off');

my $mark = $ng->error_log_mark;
my $dir = MqttapiTest::_tempdir('flood');
my ($CLIENTS, $PER) = (4, 2500);
my $t0 = time;
my @kids;
for my $c (1 .. $CLIENTS) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $n = hammer('/fl/?Action=ApplyToken&AccessKeyId=flood', $PER);
        open my $fh, '>', "$dir/$c" or POSIX::_exit(1);
        print $fh $n;
        close $fh;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

# meanwhile, the other key
my $other = 0;
for (1 .. 3) {
    $r = get($port, '/fl/?Action=QueryToken&AccessKeyId=other');
    $other++ if local_answer($r);
}
is($other, 3, 'the other key is answered locally during the flood');

waitpid($_, 0) for @kids;
my $flood = 0;
$flood += (MqttapiTest::_slurp("$dir/$_") // 0) for 1 .. $CLIENTS;
is($flood, $CLIENTS * $PER, "$flood requests of the flood answered locally");
note(sprintf '%d requests in %.1f s', $CLIENTS * $PER, time - $t0);

my $log = $ng->error_log($mark);
my @flood_lines = grep { /answering "ApplyTokenOverFlow" locally/
                         && /AccessKeyId=flood/ } split /\n/, $log;
cmp_ok(scalar @flood_lines, '>=', 1, 'the first local answer is logged');
cmp_ok(scalar @flood_lines, '<=', 3,
       'at most a handful of reject lines for the flooded key')
    or diag scalar(@flood_lines) . " lines";
like($flood_lines[0] // '', qr/\[warn\]/, 'at the default level (warn)');
my @other_lines = grep { /answering "QueryTokenOverFlow" locally/
                         && /AccessKeyId=other/ } split /\n/, $log;
is(scalar @other_lines, 1, 'the other key got its own first line');

is(status_now('local_rejects_total', zone => 'fl', action => 'ApplyToken',
                code => 'ApplyTokenOverFlow', reason => 'backoff'),
   $CLIENTS * $PER, 'local_rejects_total: every answer of the flood');
is(status_now('local_rejects_total', zone => 'fl', action => 'QueryToken',
                code => 'QueryTokenOverFlow', reason => 'backoff'),
   3, 'local_rejects_total: the other key');

# --- the end of a back-off: the probe says how many were answered -----------

$r = get($port, '/pr/?Action=QueryToken&AccessKeyId=p1'
                . '&mqttemu_code=QueryTokenOverFlow');
is(h($r, 'X-MQTTAPI-Error-Code'), 'QueryTokenOverFlow', 'probe zone: opened');
$mark = $ng->error_log_mark;
my ($local, $probed, $sock) = (0, 0, undef);
my $deadline = time + 15;
while (time < $deadline) {
    $r = http_request(port => $port, keepalive => 1, sock => $sock,
                      path => '/pr/?Action=QueryToken&AccessKeyId=p1'
                              . '&InstanceId=mqtt-cn-a&Token=t');
    $sock = $r->{sock};
    if (local_answer($r)) {
        $local++;
        sleep 0.01;
        next;
    }
    $probed = 1;
    last;
}
ok($probed, "the back-off ended, a probe went through after $local local answers");
cmp_ok($local, '>', 1, 'several local answers before it');
$log = $ng->error_log($mark);
my @lines = grep { /AccessKeyId=p1/ && /answering .* locally/ } split /\n/, $log;
is(scalar @lines, 1, 'one reject line for the back-off');
like($log, qr/back-off after "QueryTokenOverFlow" is over, probing; $local (?#
               )requests were answered locally meanwhile/,
     'the probe line counts the local answers of the back-off')
    or diag $log;
like($log, qr/the probe was answered, back-off closed/, 'closed as today');

# --- a quota: one line per key and second --------------------------------------

$mark = $ng->error_log_mark;
my ($q_local, $q_sent) = (0, 0);
$sock = undef;
my $q0 = time;
while (time < $q0 + 2.5) {
    $r = http_request(port => $port, keepalive => 1, sock => $sock,
                      path => '/q/?Action=RevokeToken&AccessKeyId=qk'
                              . '&InstanceId=mqtt-cn-a&Token=t');
    $sock = $r->{sock};
    $q_sent++;
    $q_local++ if local_answer($r);
}
my $secs = time - $q0;
cmp_ok($q_local, '>', 10, "quota: $q_local of $q_sent answered locally");
sleep 1.5;
$r = get($port, '/q/?Action=RevokeToken&AccessKeyId=qk'
                . '&InstanceId=mqtt-cn-a&Token=t');
ok(!local_answer($r), 'quota: a request after a quiet second passes');

$log = $ng->error_log($mark);
@lines = grep { /AccessKeyId=qk/ && /answering .* locally/ } split /\n/, $log;
cmp_ok(scalar @lines, '>=', 1, 'quota: the first local answer is logged');
cmp_ok(scalar @lines, '<=', int($secs) + 2,
       'quota: at most one reject line per second') or diag scalar @lines;
my $reported = 0;
$reported += $1 while $log =~ /(\d+) requests over the quota of "RevokeToken" (?#
                               )were answered locally in a second/g;
is($reported, $q_local,
   'quota: the counts logged add up to the local answers');
is(status_now('local_rejects_total', zone => 'q', action => 'RevokeToken',
                reason => 'quota'), $q_local,
   'quota: local_rejects_total agrees');

unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');

done_testing();
