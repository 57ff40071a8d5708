#!/usr/bin/perl
# The status endpoint (mqttapi_status), through a real nginx with two
# workers in front of the bundled emulator and a backend of canned
# answers:
#
#   * exact counts after a known mix: annotated errors of one code over
#     fresh connections, served by both workers, a patterned code, gateway-made envelopes,
#     pass-throughs by reason, back-off rejects, a probe, quota rejects,
#     dry runs, upstream throttles;
#   * 500 random unknown codes under made-up actions all count as
#     code="other", action="other": the label set does not grow;
#   * JSON by default, Prometheus text 0.0.4 with ?format=prometheus or an
#     Accept that prefers text/plain; the same figures in both; promtool
#     check metrics passes; Cache-Control: no-store; HEAD, 405, 400;
#   * counters kept across reload, started afresh by a restart;
#   * zone names with a quote, a backslash, a tab, a newline, a byte that
#     is not UTF-8: valid UTF-8 and escaped in both formats;
#   * allow/deny protect it like any location; nginx -t failures.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use JSON::PP ();
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiStatus;

my $PROMTOOL = '/usr/bin/promtool';

# ---------------------------------------------------------------------------
# nginx -t
# ---------------------------------------------------------------------------

{
    my ($rc, $out) = nginx_test_config(
        'server { listen 127.0.0.1:%%PORT0%%; mqttapi_status; }');
    isnt($rc, 0, 'nginx -t: mqttapi_status outside a location fails');
    like($out, qr/\[emerg\].*"mqttapi_status" directive is not allowed/,
         'nginx -t: the message names mqttapi_status') or diag $out;

    ($rc, $out) = nginx_test_config(
        'server { listen 127.0.0.1:%%PORT0%%; location /s '
        . '{ mqttapi_status on; } }');
    isnt($rc, 0, 'nginx -t: mqttapi_status takes no argument');
    like($out, qr/\[emerg\].*mqttapi_status/, 'nginx -t: its message')
        or diag $out;

    ($rc, $out) = nginx_test_config(
        'server { listen 127.0.0.1:%%PORT0%%; location /s '
        . '{ mqttapi_status; mqttapi_status; } }');
    isnt($rc, 0, 'nginx -t: a duplicate mqttapi_status fails');
    like($out, qr/\[emerg\].*"mqttapi_status" directive is duplicate/,
         'nginx -t: its message') or diag $out;

    ($rc, $out) = nginx_test_config(
        'server { listen 127.0.0.1:%%PORT0%%; '
        . 'location = /mqttapi/status { mqttapi_status; } '
        . 'location = /other/status { mqttapi_status; } }');
    is($rc, 0, 'nginx -t: two status locations') or diag $out;
}

# ---------------------------------------------------------------------------
# The gateway
# ---------------------------------------------------------------------------

my $dead = dead_port();
my $bigmsg = 'x' x 2000;

my $http = <<"EOF";
    include %%REPO%%/conf/emulator_http.conf;

    server {
        listen 127.0.0.1:%%PORT1%%;
        include %%REPO%%/conf/emulator.conf;
    }

    # canned answers
    server {
        listen 127.0.0.1:%%PORT2%%;
        default_type application/json;

        location /enc {
            add_header Content-Encoding gzip always;
            return 400 '{"Code":"InstanceNotFound","Message":"m"}';
        }
        location /big {
            return 400 '{"Code":"InstanceNotFound","Message":"$bigmsg"}';
        }
        location /bad {
            return 400 '{"Code":"InstanceNotFound",';
        }
        location /nocode {
            return 400 '{"Foo":1}';
        }
        location /html {
            default_type text/html;
            return 500 '<html>oops</html>';
        }
    }

    mqttapi_throttle_zone \$arg_AccessKeyId zone=bo:1m backoff=30s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=pr:1m backoff=1s max_backoff=1s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=dry:1m backoff=30s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=q:1m;

    # reuseport: each worker has a socket of its own, and the kernel
    # spreads fresh connections over both, so both workers count
    log_format worker '\$pid \$arg_mqttemu_code';

    server {
        listen 127.0.0.1:%%PORT0%% reuseport;

        location = /mqttapi/status {
            mqttapi_status;
            allow 127.0.0.1;
            deny all;
        }
        location = /denied/status {
            mqttapi_status;
            deny 127.0.0.1;
        }

        location / {
            mqttapi on;
            access_log %%PREFIX%%/worker.log worker;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
        location /be/ {
            mqttapi on;
            mqttapi_max_body_size 1k;
            proxy_pass http://127.0.0.1:%%PORT2%%/;
        }
        location /down/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:$dead/;
        }
        location /bo/ {
            mqttapi on;
            mqttapi_throttle zone=bo;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /pr/ {
            mqttapi on;
            mqttapi_throttle zone=pr;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /dry/ {
            mqttapi on;
            mqttapi_throttle zone=dry;
            mqttapi_throttle_dry_run on;
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

sub status_json_ok {
    my $r = get($port, '/mqttapi/status');
    is($r->{status}, 200, 'status: 200') or diag $r->{raw_body};
    ok(ref json_decode($r->{body}) eq 'HASH', 'status: the JSON parses')
        or diag $r->{body};
    return status_json($port);
}

my $before = status_json_ok();

is(status_rows($before, 'responses_total'), 0, 'fresh: no responses counted');
is(status_value($before, 'build_info'), 1, 'build_info is 1');
for my $z (qw(bo pr dry q)) {
    is(status_value($before, 'zone_keys', zone => $z), 0, "fresh: zone $z empty");
    is(status_value($before, 'zone_bytes', zone => $z, state => 'total'), 1048576,
       "zone $z: total bytes");
    cmp_ok(status_value($before, 'zone_bytes', zone => $z, state => 'used'), '>', 0,
           "zone $z: some bytes used (the slab's own)");
    cmp_ok(status_value($before, 'zone_bytes', zone => $z, state => 'used'), '<',
           1048576, "zone $z: used below total");
}

# --- annotated errors of one code, over fresh connections ----------------

my $N = 20;
for (1 .. $N) {
    my $r = get($port, '/?Action=QueryToken&mqttemu_code=InstanceNotFound');
    is($r->{status}, 400, 'annotated error: 400') if $_ == 1;
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound',
       'annotated error: the code') if $_ == 1;
}

# a patterned code counts under its pattern
my $r = get($port, '/?Action=ApplyToken&mqttemu_code=InvalidParameter.Foo');
is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'Foo', 'patterned code annotated');

# --- gateway-made envelopes ----------------------------------------------

my %gw;
for (1 .. 3) {
    $r = get($port, '/down/?Action=ListGroupId');
    is($r->{status}, 502, 'upstream down: 502') if $_ == 1;
    $gw{ h($r, 'X-MQTTAPI-Error-Code') // '' }{ListGroupId}++;
}
for (1 .. 2) {
    $r = get($port, '/be/html?Action=CreateGroupId');
    $gw{ h($r, 'X-MQTTAPI-Error-Code') // '' }{CreateGroupId}++;
}
ok(!exists $gw{''}, 'gateway-made envelopes carry a gateway code');

# --- pass-throughs by reason -------------------------------------------

my %pass = (head => 3, encoded => 2, too_large => 2, unparsable => 2,
            no_code => 2);
for (1 .. $pass{head}) {
    $r = http_request(port => $port, method => 'HEAD',
                      path => '/?Action=QueryToken&mqttemu_code=InstanceNotFound');
    is($r->{status}, 400, 'HEAD error: 400') if $_ == 1;
}
for my $p ([enc => 'encoded'], [big => 'too_large'], [bad => 'unparsable'],
           [nocode => 'no_code'])
{
    for (1 .. $pass{ $p->[1] }) {
        $r = get($port, "/be/$p->[0]?Action=QueryToken");
        is($r->{status}, 400, "pass-through $p->[1]: 400") if $_ == 1;
        ok(!defined h($r, 'X-MQTTAPI-Error-Code'),
           "pass-through $p->[1]: not annotated") if $_ == 1;
    }
}

# --- back-off rejects ------------------------------------------------------

$r = get($port, '/bo/?Action=ApplyToken&AccessKeyId=k1'
                . '&mqttemu_code=ApplyTokenOverFlow');
is(h($r, 'X-MQTTAPI-Error-Code'), 'ApplyTokenOverFlow', 'back-off opened');
my $BO = 25;
my $local = 0;
for (1 .. $BO) {
    $r = get($port, '/bo/?Action=ApplyToken&AccessKeyId=k1');
    $local++ if ($r->{status} // 0) == 429
                && (h($r, 'X-MQTTAPI-Throttled') // '') eq 'gateway';
}
is($local, $BO, "$BO requests answered locally while backed off");

# --- a probe: the back-off ends, one request reaches the upstream --------

$r = get($port, '/pr/?Action=QueryToken&AccessKeyId=p1'
                . '&mqttemu_code=QueryTokenOverFlow');
is(h($r, 'X-MQTTAPI-Error-Code'), 'QueryTokenOverFlow', 'probe zone: opened');
my ($pr_local, $probed) = (0, 0);
my $deadline = time + 15;
while (time < $deadline) {
    $r = get($port, '/pr/?Action=QueryToken&AccessKeyId=p1'
                    . '&InstanceId=mqtt-cn-a&Token=t');
    if (($r->{status} // 0) == 429
        && (h($r, 'X-MQTTAPI-Throttled') // '') eq 'gateway')
    {
        $pr_local++;
        sleep 0.05;
        next;
    }
    $probed = 1;
    last;
}
ok($probed, 'probe zone: the back-off ended and a probe went through');
is($r->{status}, 200, 'probe zone: the probe was answered cleanly');

# --- dry run ---------------------------------------------------------------

$r = get($port, '/dry/?Action=SendMessage&AccessKeyId=d1'
                . '&mqttemu_code=SystemOverFlow');
is(h($r, 'X-MQTTAPI-Error-Code'), 'SystemOverFlow', 'dry run: opened');
my $DRY = 7;
for (1 .. $DRY) {
    $r = get($port, '/dry/?Action=SendMessage&AccessKeyId=d1'
                    . '&mqttemu_code=InstanceNotFound');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound',
       'dry run: the request reached the upstream') if $_ == 1;
}

# --- quota rejects: RevokeToken, 5/s per key -------------------------------

my ($q_local, $q_sent) = (0, 0);
$deadline = time + 20;
while (time < $deadline && $q_local < 5) {
    $r = get($port, '/q/?Action=RevokeToken&AccessKeyId=qk'
                    . '&InstanceId=mqtt-cn-a&Token=t');
    $q_sent++;
    $q_local++ if ($r->{status} // 0) == 429
                  && (h($r, 'X-MQTTAPI-Throttled') // '') eq 'gateway';
}
cmp_ok($q_local, '>=', 5, "quota: rejects seen ($q_local of $q_sent)");

# --- the counts -------------------------------------------------------------

{
    # the annotated errors were served by both workers: their counts are
    # summed from both slots
    my %pids;
    for (split /\n/, MqttapiTest::_slurp($ng->prefix . '/worker.log') // '') {
        $pids{$1}++ if /^(\d+) InstanceNotFound$/;
    }
    is(scalar(keys %pids), 2, 'the annotated errors were served by both '
       . 'workers (' . join(', ', map { "$_: $pids{$_}" } sort keys %pids)
       . ')');
}

my $d = status_json_ok();

is(status_value($d, 'responses_total', action => 'QueryToken',
         code => 'InstanceNotFound', category => 'token',
         source => 'upstream'), $N + 0,
   "responses_total: $N annotated InstanceNotFound");
is(status_value($d, 'responses_total', action => 'ApplyToken',
         code => 'InvalidParameter.%s', source => 'upstream'), 1,
   'responses_total: the patterned code under its pattern');
for my $code (sort keys %gw) {
    for my $action (sort keys %{ $gw{$code} }) {
        is(status_value($d, 'responses_total', action => $action, code => $code,
                 category => 'gateway', source => 'gateway'),
           $gw{$code}{$action},
           "responses_total: gateway envelope $code for $action");
    }
}
is(status_value($d, 'responses_total', action => 'ApplyToken',
         code => 'ApplyTokenOverFlow', category => 'token',
         source => 'upstream'), 1,
   'responses_total: the throttle answer that opened the back-off');
is(status_value($d, 'responses_total', action => 'SendMessage',
         code => 'InstanceNotFound', source => 'upstream'), $DRY,
   'responses_total: the dry run requests reached the upstream');

for my $reason (sort keys %pass) {
    is(status_value($d, 'passthrough_total', reason => $reason), $pass{$reason},
       "passthrough_total{reason=$reason}");
}
is(status_value($d, 'passthrough_total'), 3 + 2 + 2 + 2 + 2,
   'passthrough_total: nothing else (successes are not counted)');

is(status_value($d, 'local_rejects_total', zone => 'bo', action => 'ApplyToken',
         code => 'ApplyTokenOverFlow', reason => 'backoff'), $BO,
   "local_rejects_total: $BO back-off rejects");
is(status_value($d, 'local_rejects_total', zone => 'pr', action => 'QueryToken',
         code => 'QueryTokenOverFlow', reason => 'backoff'), $pr_local,
   "local_rejects_total: the probe zone's $pr_local rejects");
is(status_value($d, 'local_rejects_total', zone => 'q', action => 'RevokeToken',
         reason => 'quota'), $q_local,
   "local_rejects_total: $q_local quota rejects");
is(status_value($d, 'local_rejects_total'), $BO + $pr_local + $q_local,
   'local_rejects_total: nothing else');

is(status_value($d, 'dry_run_total', zone => 'dry', reason => 'backoff'), $DRY,
   "dry_run_total: $DRY");
is(status_value($d, 'dry_run_total'), $DRY, 'dry_run_total: nothing else');

is(status_value($d, 'backoff_events_total', zone => 'bo', event => 'open'), 1,
   'backoff_events_total: bo opened once');
is(status_value($d, 'backoff_events_total', zone => 'pr', event => 'open'), 1,
   'backoff_events_total: pr opened once');
is(status_value($d, 'backoff_events_total', zone => 'pr', event => 'probe'), 1,
   'backoff_events_total: pr probed once');
is(status_value($d, 'backoff_events_total', zone => 'pr', event => 'close'), 1,
   'backoff_events_total: pr closed once');
is(status_value($d, 'backoff_events_total', zone => 'dry', event => 'open'), 1,
   'backoff_events_total: dry opened once');
is(status_value($d, 'backoff_events_total'), 5,
   'backoff_events_total: nothing else');

is(status_value($d, 'upstream_throttles_total', action => 'ApplyToken',
         code => 'ApplyTokenOverFlow'), 1, 'upstream_throttles_total: 1');
is(status_value($d, 'upstream_throttles_total', action => 'QueryToken',
         code => 'QueryTokenOverFlow'), 1, 'upstream_throttles_total: 1');
is(status_value($d, 'upstream_throttles_total', action => 'SendMessage',
         code => 'SystemOverFlow'), 1, 'upstream_throttles_total: 1');
is(status_value($d, 'upstream_throttles_total'), 3,
   'upstream_throttles_total: nothing else');

is(status_value($d, 'backoff_keys', zone => 'bo'), 1, 'backoff_keys: bo 1');
is(status_value($d, 'backoff_keys', zone => 'dry'), 1, 'backoff_keys: dry 1');
is(status_value($d, 'backoff_keys', zone => 'pr'), 0, 'backoff_keys: pr closed');
is(status_value($d, 'zone_keys', zone => 'bo'), 1, 'zone_keys: bo 1');
cmp_ok(status_value($d, 'zone_keys', zone => 'q'), '>=', 1,
       'zone_keys: q holds its windows');
is(status_value($d, 'zone_evictions_total', zone => 'bo'), 0,
   'zone_evictions_total: none');

# --- unknown codes and made-up actions grow nothing ------------------------

my %series = map { $_ => status_rows($d, $_) } status_metrics($d);
my $UNK = 500;
my @chars = ('A' .. 'Z', 'a' .. 'z', '0' .. '9');
for my $i (1 .. $UNK) {
    my $code = 'Made' . join('', map { $chars[rand @chars] } 1 .. 12);
    my $action = 'Act' . join('', map { $chars[rand @chars] } 1 .. 8);
    $r = get($port, "/?Action=$action&mqttemu_code=$code");
    if ($i == 1) {
        is(h($r, 'X-MQTTAPI-Error-Code'), $code,
           'an unknown code is still annotated');
    }
}
my $d2 = status_json_ok();
is(status_value($d2, 'responses_total', action => 'other', code => 'other',
         category => 'unknown', source => 'upstream'), $UNK,
   "$UNK unknown codes under made-up actions: action=other, code=other");
is(status_rows($d2, 'responses_total'), $series{responses_total} + 1,
   'responses_total: one series more, whatever the codes');
for my $m (sort grep { $_ ne 'responses_total' } keys %series) {
    is(status_rows($d2, $m), $series{$m}, "$m: no series more");
}
unlike(join(' ', map { values %$_ } map { @{ $d2->{$_} } }
                 status_metrics($d2)),
       qr/Made|Act[A-Za-z0-9]{8}/, 'no client-made label value anywhere');
unlike(get($port, '/mqttapi/status')->{body}, qr/Made|Act[A-Za-z0-9]{8}/,
       'nor in the members of the status page (quotas: catalog actions)');

# --- formats -----------------------------------------------------------------

$r = get($port, '/mqttapi/status');
is(h($r, 'Content-Type'), 'application/json', 'default: JSON');
is(h($r, 'Cache-Control'), 'no-store', 'JSON: Cache-Control: no-store');

my $p = get($port, '/mqttapi/status?format=prometheus');
is($p->{status}, 200, 'prometheus: 200');
is(h($p, 'Content-Type'), 'text/plain; version=0.0.4',
   'prometheus: Content-Type text/plain; version=0.0.4');
is(h($p, 'Cache-Control'), 'no-store', 'prometheus: Cache-Control');
like($p->{body}, qr/^\# [ ] HELP [ ] mqttapi_responses_total [ ] .+\n
                   \# [ ] TYPE [ ] mqttapi_responses_total [ ] counter\n/mx,
     'prometheus: HELP and TYPE');
for my $m (qw(responses_total passthrough_total local_rejects_total
              dry_run_total backoff_events_total upstream_throttles_total
              zone_evictions_total))
{
    like($p->{body}, qr/^# TYPE mqttapi_$m counter$/m, "TYPE $m counter");
}
for my $m (qw(backoff_keys zone_bytes zone_keys build_info)) {
    like($p->{body}, qr/^# TYPE mqttapi_$m gauge$/m, "TYPE $m gauge");
}
like($p->{body},
     qr/^mqttapi_responses_total\{action="QueryToken",code="InstanceNotFound",
        category="token",source="upstream"\}[ ]$N$/mx,
     'prometheus: a sample line');
# the nginx under test (the packaged 1.22.1, or another build)
my ($nginx_version) = (MqttapiTest::_run_cmd($MqttapiTest::NGINX, '-v'))[1]
                      =~ m{nginx/(\S+)};
like($p->{body},
     qr/^mqttapi_build_info\{version="[^"]+",nginx="\Q$nginx_version\E"\} 1$/m,
     'prometheus: build_info');

ok(-x $PROMTOOL, 'promtool is installed (Debian package prometheus)');
{
    my $tmp = File::Temp->new(SUFFIX => '.prom');
    print $tmp $p->{body};
    close $tmp;
    my $out = `$PROMTOOL check metrics < $tmp 2>&1`;
    is($?, 0, 'promtool check metrics passes') or diag $out;
}

# the same figures (the gauges do not move meanwhile: nothing is sent)
{
    my $pj = json_as_prometheus(json_decode(get($port, '/mqttapi/status')->{body}));
    my $pp = parse_prometheus($p->{body});
    ok($pp, 'prometheus: every sample line parses');
    is_deeply($pp, $pj, 'the same figures in JSON and Prometheus');
}

for my $a (['text/plain', 1],
           ['text/plain;version=0.0.4;q=0.3,*/*;q=0.2', 1],
           ['application/openmetrics-text;version=1.0.0;q=0.5,'
            . 'application/openmetrics-text;version=0.0.1;q=0.4,'
            . 'text/plain;version=0.0.4;q=0.3,*/*;q=0.2', 1],
           ['text/*', 1],
           ['application/json', 0],
           ['application/json, text/plain;q=0.9', 0],
           ['text/plain;q=0.5, application/json', 0],
           # a browser's: the status page (t/120_status_page.t)
           ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 2],
           ['*/*', 0])
{
    $r = get($port, '/mqttapi/status', Accept => $a->[0]);
    is(h($r, 'Content-Type'),
       ('application/json', 'text/plain; version=0.0.4',
        'text/html; charset=utf-8')[$a->[1]],
       "Accept: $a->[0]");
}
$r = get($port, '/mqttapi/status?format=json', Accept => 'text/plain');
is(h($r, 'Content-Type'), 'application/json', '?format=json wins');
$r = get($port, '/mqttapi/status?format=xml');
is($r->{status}, 400, '?format=xml: 400');
$r = http_request(port => $port, method => 'POST', path => '/mqttapi/status',
                  body => 'x');
is($r->{status}, 405, 'POST: 405');
$r = http_request(port => $port, method => 'HEAD', path => '/mqttapi/status');
is($r->{status}, 200, 'HEAD: 200');
is($r->{body}, '', 'HEAD: no body');

# --- allow / deny -------------------------------------------------------------

$r = get($port, '/denied/status');
is($r->{status}, 403, 'deny: 403');
unlike($r->{body}, qr/responses_total/, 'deny: no figures');

# --- reload keeps the counters, a restart resets them --------------------------

{
    my $c1 = json_decode(get($port, '/mqttapi/status')->{body});
    ok($ng->reload, 'reload');
    my $c2 = json_decode(get($port, '/mqttapi/status')->{body});
    for my $m (grep { /_total$/ } sort keys %$c1) {
        is_deeply($c2->{$m}, $c1->{$m}, "reload: $m kept");
    }
    get($port, '/?Action=QueryToken&mqttemu_code=InstanceNotFound');
    my $c3 = json_decode(get($port, '/mqttapi/status')->{body});
    is(status_value($c3, 'responses_total', action => 'QueryToken',
             code => 'InstanceNotFound', source => 'upstream'), $N + 1,
       'after the reload: counting goes on');

    # a reload that changes the label values: a user catalog (a new code,
    # a regex code), another zone; the counts so far are kept
    my $http2 = $http . <<'EOF2';
    mqttapi_throttle_zone $arg_AccessKeyId zone=extra:1m;
    server {
        listen 127.0.0.1:%%PORT3%%;
        location / {
            mqttapi on;
            mqttapi_catalog %%REPO%%/conf/example_user_catalog.json;
            mqttapi_throttle zone=extra;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }
EOF2
    ok($ng->reload(http => $http2), 'reload with a user catalog and a zone more');
    my $c5 = status_json_ok();
    for my $m (grep { /_total$/ && $_ ne 'zone_evictions_total' } sort keys %$c3) {
        is_deeply($c5->{$m}, $c3->{$m}, "reload with other labels: $m kept");
    }
    is(status_value($c5, 'zone_keys', zone => 'extra'), 0,
       'the new zone is listed');
    my $p3 = $ng->port(3);
    for my $code (qw(SignatureDoesNotMatch Throttling.User)) {
        $r = get($p3, "/?Action=QueryToken&mqttemu_code=$code");
        is(h($r, 'X-MQTTAPI-Error-Code'), $code, "user catalog: $code");
    }
    get($port, '/?Action=QueryToken&mqttemu_code=InstanceNotFound');
    my $c6 = status_json_ok();
    is(status_value($c6, 'responses_total', code => 'SignatureDoesNotMatch'),
       1, 'a code of the new catalog counts under its name');
    is(status_value($c6, 'responses_total', code => '^Throttling\.(\w+)$'),
       1, 'a regex code under its pattern');
    is(status_value($c6, 'responses_total', action => 'QueryToken',
                    code => 'InstanceNotFound', source => 'upstream'), $N + 2,
       'an old series goes on from where it was');
    my $p6 = get($port, '/mqttapi/status?format=prometheus');
    ok(index($p6->{body}, 'code="^Throttling\\\\.(\\\\w+)$"') >= 0,
       'prometheus: the backslashes of a label escaped') or diag $p6->{body};
    my $tmp = File::Temp->new(SUFFIX => '.prom');
    print $tmp $p6->{body};
    close $tmp;
    my $out = `$PROMTOOL check metrics < $tmp 2>&1`;
    is($?, 0, 'promtool check metrics passes after the reload') or diag $out;
    is_deeply(parse_prometheus($p6->{body}),
              json_as_prometheus(status_json($port)),
              'the same figures in JSON and Prometheus after the reload');

    $ng->stop;
    $ng = start_nginx(http => $http, workers => 2);
    $port = $ng->port(0);
    my $c4 = status_json_ok();
    is(status_rows($c4, 'responses_total'), 0, 'restart: counters start afresh');
}

# --- zone names from the configuration: escaped, valid UTF-8 in both -----

{
    # nginx unescapes \" \\ \t \n in quoted parameters; \xff is a raw byte
    my $names = <<"EOF2";
    mqttapi_throttle_zone \$arg_AccessKeyId "zone=\xc3\xa9\\"q\\\\b:1m";
    mqttapi_throttle_zone \$arg_AccessKeyId "zone=tab\\there:1m";
    mqttapi_throttle_zone \$arg_AccessKeyId "zone=nl\\nx:1m";
    mqttapi_throttle_zone \$arg_AccessKeyId zone=bad\xffname:1m;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location = /mqttapi/status { mqttapi_status; }
    }
EOF2
    my $zn = start_nginx(http => $names, workers => 1);
    my $zp = $zn->port(0);
    my $j = get($zp, '/mqttapi/status');
    my $d = eval { JSON::PP->new->utf8->decode($j->{body}) };
    ok($d, 'odd zone names: the JSON is valid UTF-8 and parses') or diag $@;
    my %zones = map { $_->{zone} => 1 } @{ $d->{zone_keys} || [] };
    for my $z ("\x{e9}\"q\\b", "tab\there", "nl\nx", "bad\x{ff}name") {
        (my $shown = $z) =~ s/([^\x20-\x7e])/sprintf '\\x{%x}', ord $1/ge;
        ok($zones{$z}, "JSON: zone \"$shown\" as configured (a byte that "
                       . "is not UTF-8 as U+00XX)");
    }
    my $pb = get($zp, '/mqttapi/status?format=prometheus')->{body};
    my $copy = $pb;
    ok(utf8::decode($copy), 'prometheus: valid UTF-8');
    ok(index($pb, "mqttapi_zone_keys{zone=\"\xc3\xa9\\\"q\\\\b\"} 0\n") >= 0,
       'prometheus: the quote and the backslash escaped') or diag $pb;
    ok(index($pb, "{zone=\"nl\\nx\"}") >= 0, 'prometheus: the newline escaped');
    ok(index($pb, "{zone=\"bad\xc3\xbfname\"}") >= 0,
       'prometheus: the byte that is not UTF-8 as U+00FF');
    my $tmp = File::Temp->new(SUFFIX => '.prom');
    print $tmp $pb;
    close $tmp;
    my $out = `$PROMTOOL check metrics < $tmp 2>&1`;
    is($?, 0, 'odd zone names: promtool check metrics passes') or diag $out;
    is_deeply(parse_prometheus($copy), json_as_prometheus($d),
              'odd zone names: the same figures in JSON and Prometheus');
    $zn->stop;
}

# --- a zone named "other", the label of what has none ---------------------

{
    my $zn = start_nginx(workers => 1, http => <<'EOF2');
    mqttapi_throttle_zone $arg_AccessKeyId zone=other:1m;
    mqttapi_throttle_zone $arg_AccessKeyId zone=main:1m;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location /o { mqttapi on; mqttapi_throttle zone=other;
                      return 200 '{}'; }
        location /m { mqttapi on; mqttapi_throttle zone=main;
                      return 200 '{}'; }
        location = /mqttapi/status { mqttapi_status; }
    }
EOF2
    my $zp = $zn->port(0);
    like($zn->error_log, qr/the zone "other" counts as "other"/,
         'zone "other": a warning at start');
    my $d = JSON::PP->new->utf8->decode(get($zp, '/mqttapi/status')->{body});
    is_deeply([ map { $_->{zone} } @{ $d->{zone_keys} } ], ['main'],
              'zone "other": JSON zone_keys has "main" alone, by its name');
    my $pb = get($zp, '/mqttapi/status?format=prometheus')->{body};
    unlike($pb, qr/zone=""/, 'zone "other": no zone without a name');
    like($pb, qr/^mqttapi_zone_bytes\{zone="main",state="total"\} 1048576$/m,
         'zone "other": "main" keeps its own figures');
}

unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');

done_testing();
