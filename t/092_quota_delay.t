#!/usr/bin/perl
# Quotas that wait instead of refusing: "mqttapi_quota zone=NAME
# delay=TIME" (SPEC 6), through a real nginx with two workers.
#
#   * nginx -t refuses a delay over 60s (and other mistakes), naming the
#     directive;
#   * 150 ApplyToken requests for one key at once (100/s) with delay=2s:
#     all admitted, none refused, at most 100 in any second at the
#     upstream (counted there), the 50 that waited with
#     $mqttapi_quota_delay; the status endpoint counts them in
#     quota_delayed_total and quota_delay_seconds;
#   * the same with delay=0 refuses 50, as without delay;
#   * a burst larger than the delay can absorb: the excess is refused at
#     once, every refusal answered before the first waiting request is let
#     go (an order, not a timing threshold);
#   * the per-API ceiling waits the same way: its seconds within its limit;
#   * a key backed off while its request waits: that request is answered
#     locally when its slot comes, and never reaches the upstream.
#
# The upstream is a second server of the same nginx that logs
# "key|action|marker|msec" per request, which is how the tests count what
# reached it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiLimit;
use MqttapiDelay;
use MqttapiStatus;

my $one = one_per_second();
my $ceil5 = do {
    (my $f = $one) =~ s/one\.json$/ceil5.json/;
    open my $fh, '>', $f or die $!;
    print $fh '{"quota":{"api_ceiling":5}}';
    close $fh;
    $f;
};

# ---------------------------------------------------------------------------
# nginx -t
# ---------------------------------------------------------------------------

sub conf_t {
    my ($directive) = @_;
    return nginx_test_config(
        'mqttapi_throttle_zone $arg_AccessKeyId zone=q:1m;'
        . ' server { listen 127.0.0.1:%%PORT0%%; location / { mqttapi on;'
        . " $directive proxy_pass http://127.0.0.1:%%PORT1%%; } }");
}

for my $c (['mqttapi_quota zone=q delay=61s;', 'delay "61s"'],
           ['mqttapi_quota zone=q delay=2m;', 'delay "2m"'],
           ['mqttapi_quota zone=q delay=soon;', 'delay "soon"'],
           ['mqttapi_quota zone=q wait=1s;', 'parameter "wait=1s"'],
           ['mqttapi_quota off delay=1s;', 'parameter "delay=1s"']) {
    my ($d, $what) = @$c;
    my ($rc, $out) = conf_t($d);
    isnt($rc, 0, "nginx -t fails: $d");
    like($out, qr/\[emerg\] .*\Q$what\E.* in "mqttapi_quota" directive/,
         "nginx -t: $d: names the value and the directive") or diag $out;
}
for my $d ('mqttapi_quota zone=q delay=60s;', 'mqttapi_quota zone=q delay=0;',
           'mqttapi_quota zone=q delay=500ms;') {
    my ($rc, $out) = conf_t($d);
    is($rc, 0, "nginx -t accepts $d") or diag $out;
}

# ---------------------------------------------------------------------------
# the gateway
# ---------------------------------------------------------------------------

my $ng = start_nginx(workers => 2, http => <<"EOF");
    log_format up '\$arg_AccessKeyId|\$arg_Action|\$arg_m|\$msec';

    mqttapi_throttle_zone \$arg_AccessKeyId zone=dq:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=dz:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=db:1m backoff=30s;

    server {
        listen 127.0.0.1:%%PORT0%%;

        mqttapi on;

        add_header X-Throttle \$mqttapi_throttle always;
        add_header X-Delay \$mqttapi_quota_delay always;

        location /wait/ {
            mqttapi_quota zone=dq delay=2s;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /now/ {
            mqttapi_quota zone=dz delay=0;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /one/ {
            mqttapi_quota zone=dq delay=1500ms;
            mqttapi_catalog $one;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /ceiling/ {
            mqttapi_quota zone=dq delay=2s;
            mqttapi_catalog $ceil5;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /backoff/ {
            mqttapi_throttle zone=db;
            mqttapi_quota zone=db delay=3s;
            mqttapi_catalog $one;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location = /mqttapi/status {
            mqttapi_status;
        }
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        access_log %%PREFIX%%/up.log up;
        keepalive_requests 100000;
        default_type application/json;

        location / {
            if (\$arg_code) {
                return 400 '{"RequestId":"UP","HostId":"up","Code":"\$arg_code","Message":"m"}';
            }
            return 200 '{"RequestId":"UP-\$request_id"}';
        }
    }
EOF
my $port = $ng->port(0);
my $UP = upstream_log($ng->prefix . '/up.log');

sub path {
    my ($loc, $key, $action, %a) = @_;
    return "/$loc/?Action=$action&AccessKeyId=$key"
           . join('', map { "&$_=$a{$_}" } sort keys %a);
}

sub passed {
    my ($r) = @_;
    return ($r->{status} // 0) == 200
           && !defined h($r, 'X-MQTTAPI-Throttled');
}

sub refused {
    my ($r, $code) = @_;
    return local_answer($r)
           && (h($r, 'X-MQTTAPI-Error-Code') // '') eq $code;
}

sub waited { defined h($_[0], 'X-Delay') }

sub summary {
    my (@r) = @_;
    my %s;
    $s{ ($_->{status} // 'error') . ' '
        . (h($_, 'X-MQTTAPI-Error-Code') // '-')
        . (waited($_) ? ' waited' : '') }++ for @r;
    return explain \%s;
}

# ---------------------------------------------------------------------------
# 150 ApplyToken requests at once, 100/s: with delay=2s all admitted
# ---------------------------------------------------------------------------

{
    my $k = 'flood-wait';
    my @r = burst($port, map { path('wait', $k, 'ApplyToken') } 1 .. 150);
    my $p = grep { passed($_) } @r;
    is($p, 150, 'delay=2s: 150 ApplyToken at once, all admitted')
        or diag summary(@r);
    is(scalar(grep { local_answer($_) } @r), 0, 'delay=2s: none refused');
    is(scalar(grep { waited($_) } @r), 50,
       'delay=2s: 50 waited ($mqttapi_quota_delay set)') or diag summary(@r);
    is(scalar(grep { waited($_) && h($_, 'X-Delay') !~ /^\d+$/ } @r), 0,
       '$mqttapi_quota_delay: milliseconds');
    ok(!(grep { waited($_) && h($_, 'X-Delay') > 2500 } @r),
       '$mqttapi_quota_delay: none waited much over the delay');
    is($UP->count_settled($k, 150), 150, 'delay=2s: the upstream saw 150');
    my @t = $UP->arrivals($k);
    cmp_ok(max_per_second(@t), '<=', 100,
           'delay=2s: at most 100 in any second at the upstream')
        or diag 'arrivals (ms from the first): '
                . join ' ', map { $_ - $t[0] } @t;

    # the status endpoint: counted by zone and action, and the histogram
    my $st = status_json($port);
    is(status_value($st, 'quota_delayed_total', zone => 'dq',
                    action => 'ApplyToken'), 50,
       'status: quota_delayed_total{zone="dq",action="ApplyToken"} 50');
    my ($count) = map { $_->{count} }
                  grep { exists $_->{count} } @{ $st->{quota_delay_seconds} };
    is($count, 50, 'status: quota_delay_seconds count 50');
    my ($inf) = map { $_->{value} }
                grep { ($_->{le} // '') eq '+Inf' }
                @{ $st->{quota_delay_seconds} };
    is($inf, 50, 'status: quota_delay_seconds le="+Inf" 50');
    my $prom = get($port, '/mqttapi/status?format=prometheus')->{body};
    like($prom,
         qr/^mqttapi_quota_delayed_total\{zone="dq",action="ApplyToken"\} 50$/m,
         'prometheus: quota_delayed_total');
    like($prom, qr/^mqttapi_quota_delay_seconds_count 50$/m,
         'prometheus: quota_delay_seconds_count');
    like($prom, qr/^# TYPE mqttapi_quota_delay_seconds histogram$/m,
         'prometheus: quota_delay_seconds is a histogram');
}

# ---------------------------------------------------------------------------
# the same with delay=0: 50 refused, as without delay
# ---------------------------------------------------------------------------

{
    my $k = 'flood-now';
    my @r = burst($port, map { path('now', $k, 'ApplyToken') } 1 .. 150);
    is(scalar(grep { passed($_) } @r), 100, 'delay=0: 100 admitted')
        or diag summary(@r);
    is(scalar(grep { refused($_, 'ApplyTokenOverFlow') } @r), 50,
       'delay=0: 50 answered locally with ApplyTokenOverFlow');
    is(scalar(grep { waited($_) } @r), 0, 'delay=0: none waited');
    is($UP->count_settled($k, 100), 100, 'delay=0: the upstream saw 100');
}

# ---------------------------------------------------------------------------
# a burst larger than the delay can absorb: 1/s, delay=1500ms, 6 at once:
# one admitted, one waits (its slot about 1.1 s on), the others are
# refused at once, before the waiting one is let go
# ---------------------------------------------------------------------------

{
    my $k = 'excess';
    my @r = burst_ordered($port,
                          map { path('one', $k, 'RevokeToken', m => $_) }
                          1 .. 6);
    my @ok = grep { passed($_) && !waited($_) } @r;
    my @w = grep { passed($_) && waited($_) } @r;
    my @no = grep { refused($_, 'SystemOverFlow') } @r;
    is(scalar(@ok), 1, 'excess: one admitted at once') or diag summary(@r);
    cmp_ok(scalar(@w), '>=', 1, 'excess: one or more waited');
    is(@ok + @w + @no, 6, 'excess: the rest refused');
    cmp_ok(scalar(@no), '>=', 1, 'excess: some refused');
    my $last_no = (sort { $a <=> $b } map { $_->{seq} } @no)[-1] // -1;
    my $first_w = (sort { $a <=> $b } map { $_->{seq} } @w)[0] // -1;
    cmp_ok($last_no, '<', $first_w,
           'excess: every refusal answered before the first waiting '
           . 'request was let go');
    is($UP->count_settled($k, @ok + @w), @ok + @w,
       'excess: the upstream saw the admitted and the waited');
}

# ---------------------------------------------------------------------------
# the per-API ceiling waits too: 12 keys of ListGroupId (10/s each) at once
# under a ceiling of 5/s: 5 at once, the next ones at the ceiling's slots
# within 2 s, the rest refused (SystemOverFlow), never more than 5 in a
# second at the upstream
# ---------------------------------------------------------------------------

{
    my @r = burst_ordered($port, map { path('ceiling', "ck$_", 'ListGroupId',
                                            m => "ceil") } 1 .. 12);
    my @ok = grep { passed($_) && !waited($_) } @r;
    my @w = grep { passed($_) && waited($_) } @r;
    my @no = grep { refused($_, 'SystemOverFlow') } @r;
    is(scalar(@ok), 5, 'ceiling: 5 admitted at once') or diag summary(@r);
    cmp_ok(scalar(@w), '>=', 1, 'ceiling: some waited for its slots');
    cmp_ok(scalar(@no), '>=', 1, 'ceiling: the rest refused');
    is(@ok + @w + @no, 12, 'ceiling: each admitted, waited or refused');
    is($UP->count_settled('ceil', @ok + @w, 2), @ok + @w,
       'ceiling: the upstream saw the admitted and the waited');
    my @t = $UP->arrivals('ceil', 2);
    cmp_ok(max_per_second(@t), '<=', 5,
           'ceiling: at most 5 in any second at the upstream')
        or diag 'arrivals (ms from the first): '
                . join ' ', map { $_ - $t[0] } @t;
}

# ---------------------------------------------------------------------------
# back-off while waiting: the request is answered locally when its slot
# comes, and never reaches the upstream
# ---------------------------------------------------------------------------

{
    my $k = 'bo-wait';
    ok(passed(get($port, path('backoff', $k, 'RevokeToken', m => 'first'))),
       'back-off: the first RevokeToken passes');
    my ($s) = open_requests($port, path('backoff', $k, 'RevokeToken',
                                        m => 'waiting'));
    # the key backed off by another action's throttled answer
    my $t = get($port, path('backoff', $k, 'QueryToken',
                            code => 'QueryTokenOverFlow'));
    is($t->{status}, 400, 'back-off: opened by a throttled answer');
    my ($w) = read_in_order($s);
    ok(refused($w, 'QueryTokenOverFlow'),
       'back-off: the waiting request answered locally with the back-off '
       . 'code') or diag summary($w);
    is($UP->count('waiting', 2), 0,
       'back-off: the waiting request never reached the upstream');
}

unlike($ng->error_log, qr/\[(?:alert|crit|emerg)\]|signal \d+/,
       'error log: no crit/alert/emerg, no crash');

done_testing();
