#!/usr/bin/perl
# Client-side rate limiting, the back-off part, through a real
# nginx with two workers:
#
#   * the three throttle codes open a back-off for the key, other codes and
#     successes do not; while it lasts the key is answered locally from the
#     preaccess phase (status, envelope, headers) and never reaches the
#     upstream; Retry-After counts down;
#   * the delay doubles per consecutive throttle up to max_backoff, with at
#     most 10% jitter, and is at least the upstream's Retry-After;
#   * exactly one probe after the back-off, the others still rejected; a
#     clean probe closes the back-off (the next throttle starts over), a
#     probe whose client goes away gives its turn back, a hanging one loses
#     it after 5 s;
#   * dry run, mqttapi_throttle_status, mqttapi_throttle_log_level,
#     mqttapi_throttle_codes, mqttapi_throttle off;
#   * state across reload, other keys and the empty key, long keys, a
#     minimum-size zone flooded with 10,000 keys;
#   * nginx -t failures of the directives.
#
# The upstream is a second nginx server whose answer the request controls
# (?code=<Code> answers that code with status 400, ?ra=<s> adds
# Retry-After); it logs "key|code|marker" per request, which is how the
# tests count what reached it.  The probe tests use a mock upstream that
# can be slow or hang.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiLimit;

my %THROTTLE = map { $_ => 1 } qw(ApplyTokenOverFlow QueryTokenOverFlow
                                   SystemOverFlow);

# ---------------------------------------------------------------------------
# nginx -t failures
# ---------------------------------------------------------------------------

{
    my $zone = 'mqttapi_throttle_zone $arg_AccessKeyId zone=t:1m;';
    my $srv = sub {
        my ($loc) = @_;
        return "server { listen 127.0.0.1:%%PORT0%%; location / { mqttapi on;"
             . " $loc proxy_pass http://127.0.0.1:%%PORT1%%; } }";
    };

    my @bad = (
        [ 'unknown zone in mqttapi_throttle',
          "$zone\n" . $srv->('mqttapi_throttle zone=nope;'),
          qr/mqttapi_throttle\S*.*"nope"|"nope".*mqttapi_throttle/ ],
        [ 'unknown zone in mqttapi_quota',
          "$zone\n" . $srv->('mqttapi_quota zone=nope;'),
          qr/"nope"/ ],
        [ 'mqttapi_throttle without zone=',
          "$zone\n" . $srv->('mqttapi_throttle t;'),
          qr/mqttapi_throttle/ ],
        [ 'missing zone= in mqttapi_throttle_zone',
          'mqttapi_throttle_zone $arg_AccessKeyId backoff=1s;' . "\n"
          . $srv->(''),
          qr/mqttapi_throttle_zone.*zone/ ],
        [ 'max_backoff < backoff',
          'mqttapi_throttle_zone $arg_AccessKeyId zone=t:1m backoff=10s '
          . 'max_backoff=5s;' . "\n" . $srv->('mqttapi_throttle zone=t;'),
          qr/max_backoff/ ],
        [ 'zone below the minimum size',
          'mqttapi_throttle_zone $arg_AccessKeyId zone=t:16k;' . "\n"
          . $srv->('mqttapi_throttle zone=t;'),
          qr/too small/ ],
        [ 'invalid backoff',
          'mqttapi_throttle_zone $arg_AccessKeyId zone=t:1m backoff=abc;'
          . "\n" . $srv->('mqttapi_throttle zone=t;'),
          qr/backoff/ ],
        [ 'unknown parameter of mqttapi_throttle_zone',
          'mqttapi_throttle_zone $arg_AccessKeyId zone=t:1m burst=5;'
          . "\n" . $srv->('mqttapi_throttle zone=t;'),
          qr/burst=5/ ],
        [ 'one zone bound to two keys',
          "$zone\n" . 'mqttapi_throttle_zone $arg_Other zone=t:1m;' . "\n"
          . $srv->('mqttapi_throttle zone=t;'),
          qr/mqttapi_throttle_zone/ ],
        [ 'mqttapi_throttle_status 200',
          "$zone\n" . $srv->('mqttapi_throttle zone=t; '
                             . 'mqttapi_throttle_status 200;'),
          qr/between 400 and 599/ ],
        [ 'mqttapi_throttle_status 600',
          "$zone\n" . $srv->('mqttapi_throttle zone=t; '
                             . 'mqttapi_throttle_status 600;'),
          qr/between 400 and 599/ ],
        [ 'mqttapi_throttle_log_level debug',
          "$zone\n" . $srv->('mqttapi_throttle zone=t; '
                             . 'mqttapi_throttle_log_level debug;'),
          qr/debug/ ],
        [ 'mqttapi_throttle_codes with an invalid code',
          "$zone\n" . $srv->('mqttapi_throttle zone=t; '
                             . 'mqttapi_throttle_codes "Bad Code";'),
          qr/Bad Code/ ],
        [ 'mqttapi_throttle_zone outside http',
          "$zone\n" . "server { listen 127.0.0.1:%%PORT0%%;"
          . ' mqttapi_throttle_zone $arg_X zone=u:1m; }',
          qr/mqttapi_throttle_zone.*not allowed/ ],
    );

    for my $b (@bad) {
        my ($name, $http, $re) = @$b;
        my ($rc, $out) = nginx_test_config($http);
        isnt($rc, 0, "nginx -t fails: $name");
        like($out, qr/\[emerg\]/, "nginx -t: $name: [emerg]");
        like($out, $re, "nginx -t: $name: message") or diag $out;
    }

    # ... and the message names the directive
    for my $b (
        [ 'max_backoff < backoff',
          'mqttapi_throttle_zone $arg_AccessKeyId zone=t:1m backoff=10s '
          . 'max_backoff=5s;' . "\n" . $srv->('mqttapi_throttle zone=t;'),
          qr/mqttapi_throttle_zone/ ],
        [ 'mqttapi_throttle_status 200',
          "$zone\n" . $srv->('mqttapi_throttle zone=t; '
                             . 'mqttapi_throttle_status 200;'),
          qr/mqttapi_throttle_status/ ],
        [ 'unknown zone in mqttapi_quota',
          "$zone\n" . $srv->('mqttapi_quota zone=nope;'),
          qr/mqttapi_quota/ ],
    ) {
        my ($name, $http, $re) = @$b;
        my ($rc, $out) = nginx_test_config($http);
        like($out, $re, "nginx -t: $name: message names the directive")
            or diag $out;
    }

    # every failure of a directive of the module names it, also
    # where the handler logs the message itself (nginx adds the name only
    # to a message the handler returns)
    my $loc = sub { "$zone\n" . $srv->($_[0]) };
    for my $b (
        [ 'mqttapi', $loc->('mqttapi maybe;') ],
        [ 'mqttapi_body', $loc->('mqttapi_body html;') ],
        [ 'mqttapi_host_id', $loc->('mqttapi_host_id "${a";') ],
        [ 'mqttapi_host_id', $loc->('mqttapi_host_id "$";') ],
        [ 'mqttapi_throttle_log_level',
          $loc->('mqttapi_throttle_log_level debug;') ],
        [ 'mqttapi_throttle_zone',
          'mqttapi_throttle_zone "${a" zone=t:1m;' . $srv->('') ],
        [ 'mqttapi_normalize_status', $loc->('mqttapi_normalize_status 1;') ],
        [ 'mqttapi_max_body_size', $loc->('mqttapi_max_body_size 0;') ],
        [ 'mqttapi_max_body_size', $loc->('mqttapi_max_body_size big;') ],
        [ 'mqttapi_problem_base_uri',
          $loc->('mqttapi_problem_base_uri "urn:a b";') ],
        [ 'mqttapi_catalog', $loc->('mqttapi_catalog /nonexistent.json;') ],
        [ 'mqttapi_throttle_zone',
          'mqttapi_throttle_zone $arg_AccessKeyId zone=t;' . $srv->('') ],
        [ 'mqttapi_throttle_zone',
          'mqttapi_throttle_zone $arg_AccessKeyId zone=t:1m backoff=0;'
          . $srv->('') ],
        [ 'mqttapi_throttle_zone',
          'mqttapi_throttle_zone $arg_AccessKeyId zone=t:1m max_backoff=2d;'
          . $srv->('') ],
        [ 'mqttapi_throttle_zone',
          "$zone\n" . 'mqttapi_throttle_zone $arg_AccessKeyId zone=t:2m;'
          . $srv->('') ],
        [ 'mqttapi_throttle_zone',
          'limit_req_zone $arg_AccessKeyId zone=t:1m rate=1r/s;'
          . "\n$zone\n" . $srv->('') ],
        [ 'mqttapi_throttle',
          'limit_req_zone $arg_AccessKeyId zone=lr:1m rate=1r/s;'
          . "\n$zone\n" . $srv->('mqttapi_throttle zone=lr;') ],
        [ 'mqttapi_throttle', $loc->('mqttapi_throttle zone=a:b;') ],
        [ 'mqttapi_throttle',
          $loc->('mqttapi_throttle zone=t; mqttapi_throttle zone=t;') ],
        [ 'mqttapi_quota', $loc->('mqttapi_quota zone=a:b;') ],
        [ 'mqttapi_quota', $loc->('mqttapi_quota t;') ],
        [ 'mqttapi_throttle_status', $loc->('mqttapi_throttle_status abc;') ],
        [ 'mqttapi_throttle_dry_run', $loc->('mqttapi_throttle_dry_run yes;') ],
        [ 'mqttapi_throttle_codes',
          $loc->('mqttapi_throttle_codes "Bad Code";') ],
        [ 'mqttapi_throttle_codes',
          $loc->('mqttapi_throttle_codes A; mqttapi_throttle_codes B;') ],
        [ 'mqttapi_throttle_codes',
          $loc->('mqttapi_throttle_codes ' . ('C' x 129) . ';') ],
    ) {
        my ($dir, $http) = @$b;
        my ($rc, $out) = nginx_test_config($http);
        isnt($rc, 0, "nginx -t fails: $http");
        like($out, qr/\[emerg\][^\n]*\b\Q$dir\E\b(?![_a-z])/,
             "nginx -t: the message names \"$dir\": $http")
            or diag $out;
    }

    my ($rc, $out) = nginx_test_config(
        'mqttapi_throttle_zone $arg_AccessKeyId zone=t:32k backoff=500ms '
        . 'max_backoff=1h;' . "\n"
        . $srv->('mqttapi_throttle zone=t; mqttapi_quota zone=t; '
                 . 'mqttapi_throttle_status 503; mqttapi_throttle_dry_run on; '
                 . 'mqttapi_throttle_log_level info; '
                 . 'mqttapi_throttle_codes MyCustomThrottle SystemOverFlow;'));
    is($rc, 0, 'nginx -t: every throttle directive, valid') or diag $out;
}

# ---------------------------------------------------------------------------
# The gateway
# ---------------------------------------------------------------------------

# slow / hanging upstream for the probe tests: ?sleep=<s>, ?hang=1, ?code=
my $mock = mock_upstream(per_request => sub {
    my ($head) = @_;
    my ($q) = $head =~ /^\S+ \S*?\?(\S*)/;
    my %a = map { /^([^=]*)=?(.*)$/ } split /&/, $q // '';
    return [[hang => 1]] if $a{hang};
    my @steps;
    push @steps, [sleep => $a{sleep}] if $a{sleep};
    my $body = $a{code}
        ? qq({"RequestId":"MOCK","HostId":"mock","Code":"$a{code}","Message":"m"})
        : '{"RequestId":"MOCK"}';
    my $st = $a{code} ? '400 Bad Request' : '200 OK';
    # ?ra=<s>: Retry-After delay-seconds; ?ra=date:<s>: an HTTP-date <s> on
    my $ra = '';
    if (defined $a{ra}) {
        $ra = $a{ra} =~ /^date:(\d+)$/
            ? POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time + $1))
            : $a{ra};
        $ra = "Retry-After: $ra\r\n";
    }
    push @steps, [send => "HTTP/1.1 $st\r\n$ra"
                        . "Content-Type: application/json\r\n"
                        . "Content-Length: " . length($body) . "\r\n"
                        . "Connection: close\r\n\r\n$body"],
                 [close => 1];
    return \@steps;
});
my $mport = $mock->port;
my $dead = dead_port();     # nothing listens here: the upstream is down

my $http = <<"EOF";
    include %%REPO%%/conf/emulator_http.conf;

    log_format up '\$arg_AccessKeyId|\$arg_code|\$arg_m';

    mqttapi_throttle_zone \$arg_AccessKeyId zone=b3:1m backoff=3s max_backoff=60s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=b1:1m backoff=1s max_backoff=2s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=long:1m backoff=30s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=dry:1m backoff=30s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=st:1m backoff=30s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=cust:1m backoff=30s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=custfloor:1m backoff=1s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=many:1m backoff=1s max_backoff=1s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=probe:1m backoff=1s max_backoff=1s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=gwp:1m backoff=1s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=small:32k backoff=60s max_backoff=60s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=big:1m backoff=60s max_backoff=60s;

    upstream up {
        server 127.0.0.1:%%PORT1%%;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%%PORT0%%;

        mqttapi on;
        mqttapi_host_id gw-test;
        mqttapi_throttle zone=b3;

        add_header X-Throttle \$mqttapi_throttle always;
        add_header X-Req-Id \$request_id always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /b3/ {
            proxy_pass http://up/;
        }
        location /b1/ {
            mqttapi_throttle zone=b1;
            proxy_pass http://up/;
        }
        location /emu/ {
            mqttapi_throttle zone=b1;
            proxy_pass http://127.0.0.1:%%PORT2%%/;
        }
        location /long/ {
            mqttapi_throttle zone=long;
            proxy_pass http://up/;
        }
        location /longm/ {
            mqttapi_throttle zone=long;
            proxy_pass http://127.0.0.1:$mport/;
        }
        location /dry/ {
            mqttapi_throttle zone=dry;
            mqttapi_throttle_dry_run on;
            proxy_pass http://up/;
        }
        location /st/ {
            mqttapi_throttle zone=st;
            mqttapi_throttle_status 503;
            mqttapi_throttle_log_level notice;
            proxy_pass http://up/;
        }
        location /cust/ {
            mqttapi_throttle zone=cust;
            mqttapi_throttle_codes MyCustomThrottle;
            proxy_pass http://up/;
        }
        location /custfloor/ {
            mqttapi_throttle zone=custfloor;
            mqttapi_throttle_codes MyCustomThrottle;
            proxy_pass http://up/;
        }
        location /custfloorm/ {
            mqttapi_throttle zone=custfloor;
            mqttapi_throttle_codes MyCustomThrottle;
            proxy_pass http://127.0.0.1:$mport/;
        }
        location /many/ {
            mqttapi_throttle zone=many;
            mqttapi_throttle_codes @{[ map { "Custom$_" } 1 .. 17 ]};
            proxy_pass http://up/;
        }
        location /off/ {
            mqttapi_throttle off;
            proxy_pass http://up/;
        }
        location /mqoff/ {
            mqttapi off;
            proxy_pass http://up/;
        }
        location /small/ {
            mqttapi_throttle zone=small;
            proxy_pass http://up/;
        }
        location /big/ {
            mqttapi_throttle zone=big;
            proxy_pass http://up/;
        }
        location /probe/ {
            mqttapi_throttle zone=probe;
            proxy_read_timeout 30s;
            proxy_pass http://127.0.0.1:$mport/;
        }
        # one back-off zone, an upstream that times out, one that is down
        location /gwm/ {
            mqttapi_throttle zone=gwp;
            proxy_read_timeout 2s;
            proxy_pass http://127.0.0.1:$mport/;
        }
        location /gwd/ {
            mqttapi_throttle zone=gwp;
            proxy_pass http://127.0.0.1:$dead/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        access_log %%PREFIX%%/up.log up;
        keepalive_requests 100000;
        default_type application/json;

        location / {
            add_header Retry-After \$arg_ra always;
            if (\$arg_code) {
                return 400 '{"RequestId":"UP-\$request_id","HostId":"up","Code":"\$arg_code","Message":"from the upstream"}';
            }
            return 200 '{"RequestId":"UP-\$request_id"}';
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log %%PREFIX%%/emu.log up;
        include %%REPO%%/conf/emulator.conf;
    }
EOF

my $ng = start_nginx(http => $http, workers => 2);
my $port = $ng->port(0);
my $UPLOG = $ng->prefix . '/up.log';

my $UP = upstream_log($UPLOG);

# requests with this key (or this marker) the upstream has seen
sub up_count { $UP->count(@_) }
sub up_count_settled { $UP->count_settled(@_) }

sub path {
    my ($loc, $key, %a) = @_;
    my $p = "/$loc/?Action=ListGroupId";
    $p .= "&AccessKeyId=$key" if defined $key;
    $p .= "&$_=$a{$_}" for sort keys %a;
    return $p;
}

sub req {
    my ($loc, $key, %a) = @_;
    return get($port, path($loc, $key, %a));
}

sub is_reject {
    my ($r, $code, $name, $status) = @_;
    $status //= 429;
    my $ok = is($r->{status}, $status, "$name: status $status");
    $ok &&= is(h($r, 'X-MQTTAPI-Throttled'), 'gateway',
               "$name: X-MQTTAPI-Throttled: gateway");
    $ok &&= is(h($r, 'X-MQTTAPI-Error-Code'), $code, "$name: code $code");
    $ok &&= is(h($r, 'X-Throttle'), 'rejected',
               "$name: \$mqttapi_throttle = rejected");
    diag explain $r unless $ok;
    return $ok;
}

sub is_pass {
    my ($r, $name, $state) = @_;
    $state //= 'pass';
    my $ok = is($r->{status}, 200, "$name: status 200");
    $ok &&= ok(!defined h($r, 'X-MQTTAPI-Throttled'),
               "$name: not answered locally");
    $ok &&= is(h($r, 'X-Throttle'), $state,
               "$name: \$mqttapi_throttle = $state");
    diag explain $r unless $ok;
    return $ok;
}

# ---------------------------------------------------------------------------
# Which codes open a back-off, and the local answer
# ---------------------------------------------------------------------------

for my $code (sort keys %THROTTLE) {
    my $k = "codes-$code";
    my $sent = time;        # the back-off opens after this
    my $r = req('b3', $k, code => $code);
    is($r->{status}, 400, "$code: the upstream answer is relayed");
    is(h($r, 'X-MQTTAPI-Error-Code'), $code, "$code: annotated");
    ok(!defined h($r, 'X-MQTTAPI-Throttled'), "$code: not a local answer");
    is(h($r, 'X-Throttle'), 'pass', "$code: \$mqttapi_throttle = pass");
    is(up_count_settled($k, 1), 1, "$code: reached the upstream");

    # it opened a back-off of 3 s (minus jitter): it says so, not the
    # catalog's 1 s
    my $rms = h($r, 'x-acs-retry-after') // -1;
    ok($rms >= 2700 && $rms <= 3000,
       "$code: the relayed answer's x-acs-retry-after is the back-off ($rms)");
    is(h($r, 'Retry-After'), 3, "$code: the relayed answer's Retry-After 3");
    is((json_decode($r->{body}) // {})->{RetryAfter}, 3,
       "$code: the relayed answer's RetryAfter 3");

    my $t0 = time;
    my $rj = req('b3', $k);
    my $took = time - $t0;
    is_reject($rj, $code, "$code: next request");
    # at once: not after waiting out the 3 s back-off
    cmp_ok($took, '<', 2.5, "$code: the local answer comes at once");
    # what is left of the 3 s (less the time since it opened): 3 s
    # rounded up, unless the machine was very slow
    my $ms = h($rj, 'x-acs-retry-after') // -1;
    ok($ms >= 2700 - 1000 * (time - $sent) - 50 && $ms <= 3000,
       "$code: x-acs-retry-after is the ms left ($ms)");
    my $ra = int(($ms + 999) / 1000);

    # the envelope
    my $d = json_decode($rj->{body});
    ok($d, "$code: reject body is JSON") or diag $rj->{body};
    $d //= {};
    is_deeply([json_top_keys($rj->{body})],
              [qw(RequestId HostId Code Message Cause Solution Category
                  Retryable RetryAfter)],
              "$code: envelope keys in order")
        or diag $rj->{body};
    like($d->{RequestId} // '', qr/^[0-9a-f]{32}$/,
         "$code: RequestId is a request id");
    is($d->{RequestId}, h($rj, 'X-Req-Id'), "$code: RequestId = \$request_id");
    is($d->{HostId}, 'gw-test', "$code: HostId from mqttapi_host_id");
    is($d->{Code}, $code, "$code: Code is the code that caused the back-off");
    ok(length($d->{Message} // ''), "$code: Message");
    ok(length($d->{Cause} // ''), "$code: Cause");
    ok(length($d->{Solution} // ''), "$code: Solution");
    is($d->{Category}, 'group', "$code: Category follows the Action");
    ok(JSON::PP::is_bool($d->{Retryable}) && $d->{Retryable},
       "$code: Retryable true");
    is($d->{RetryAfter}, $ra, "$code: RetryAfter $ra");
    like(h($rj, 'Content-Type') // '', qr{^application/json\b},
         "$code: Content-Type JSON");
    is(h($rj, 'Content-Length'), length $rj->{body}, "$code: Content-Length");
    is(h($rj, 'Retry-After'), $ra, "$code: Retry-After $ra");
    is(h($rj, 'X-MQTTAPI-Retryable'), 'true', "$code: X-MQTTAPI-Retryable");
    is(h($rj, 'X-MQTTAPI-Error-Category'), 'group',
       "$code: X-MQTTAPI-Error-Category");
    ok(length(h($rj, 'X-MQTTAPI-Error-Cause') // ''),
       "$code: X-MQTTAPI-Error-Cause");
    ok(length(h($rj, 'X-MQTTAPI-Error-Solution') // ''),
       "$code: X-MQTTAPI-Error-Solution");

    # a POST with a body is answered locally as well
    my $rp = http_request(port => $port, method => 'POST',
                          path => path('b3', $k), body => 'a=b&c=d');
    is_reject($rp, $code, "$code: POST with a body");

    is(up_count($k), 1, "$code: the rejects never reached the upstream");
}

# every local answer has its own RequestId, the request's $request_id,
# whichever of the two workers made it
{
    my $k = 'ids-long';
    req('long', $k, code => 'SystemOverFlow');
    my (%seen, $same, $n);
    $same = 0;
    for (1 .. 200) {
        my $r = req('long', $k);
        next unless ($r->{status} // 0) == 429;
        $n++;
        my $id = (json_decode($r->{body}) // {})->{RequestId} // '';
        $seen{$id}++;
        $same++ if $id eq (h($r, 'X-Req-Id') // '');
    }
    is($n, 200, 'RequestId: 200 local answers');
    is(scalar(grep { /^[0-9a-f]{32}\z/ } keys %seen), 200,
       'RequestId: 200 distinct ids of 32 hex digits');
    is($same, 200, 'RequestId: each one is the request\'s $request_id');
}

for my $code (qw(InternalError InvalidParameter.GroupId GroupIdAlreadyExsited
                 ApiNotSupport), '') {
    my $name = $code eq '' ? 'a 200' : $code;
    my $k = "nocodes-" . ($code || 'ok');
    my $r = req('b3', $k, $code eq '' ? () : (code => $code));
    is($r->{status}, $code eq '' ? 200 : 400, "$name: relayed");
    my $r2 = req('b3', $k);
    is_pass($r2, "$name: does not open a back-off");
    is(up_count_settled($k, 2), 2, "$name: both reached the upstream");
}

# the emulator as upstream: its QueryTokenOverFlow (status 400, catalog
# message) with Retry-After: 3 opens a back-off of at least 3 s although
# backoff=1s
{
    my $k = 'emu-floor';
    my $sent = time;        # the back-off opens after this
    my $r = get($port, "/emu/?Action=QueryToken&AccessKeyId=$k"
                     . '&mqttemu_code=QueryTokenOverFlow&mqttemu_retry_after=3');
    is($r->{status}, 400, 'emulator: QueryTokenOverFlow relayed');
    is(h($r, 'Retry-After'), 3, "emulator: upstream's Retry-After kept");
    my $rj = get($port, "/emu/?Action=QueryToken&AccessKeyId=$k");
    is_reject($rj, 'QueryTokenOverFlow', 'emulator: next request');
    is(h($rj, 'Retry-After'), 3,
       "upstream's Retry-After 3 is the floor of backoff=1s");
    my $ms = h($rj, 'x-acs-retry-after') // -1;
    ok($ms >= 3000 - 1000 * (time - $sent) - 50 && $ms <= 3000,
       "x-acs-retry-after is 3000 less the time since ($ms)");
    is(json_decode($rj->{body})->{Category}, 'token',
       'emulator: Category token for QueryToken');
}

# Retry-After from the upstream through the test upstream, too
{
    my $k = 'floor-b1';
    my $r = req('b1', $k, code => 'SystemOverFlow', ra => 5);
    is_deeply([headers_all($r, 'Retry-After')], [5],
              "relayed: the upstream's Retry-After 5 kept, alone");
    is(h($r, 'x-acs-retry-after'), 5000, 'relayed: x-acs-retry-after 5000');
    my $rj = req('b1', $k);
    is_reject($rj, 'SystemOverFlow', 'Retry-After 5 floor');
    is(h($rj, 'Retry-After'), 5, 'local Retry-After 5 (upstream floor)');

    # a smaller upstream Retry-After does not shorten the back-off (the
    # relayed answer keeps it all the same)
    $k = 'floor-b3';
    $r = req('b3', $k, code => 'SystemOverFlow', ra => 1);
    is_deeply([headers_all($r, 'Retry-After')], [1],
              "relayed: the upstream's Retry-After 1 kept, alone");
    $rj = req('b3', $k);
    is_reject($rj, 'SystemOverFlow', 'Retry-After 1 below backoff');
    is(h($rj, 'Retry-After'), 3, 'backoff=3s wins over Retry-After: 1');
}

# a response that opens a long back-off (backoff=30s) says so in
# Retry-After and x-acs-retry-after instead of the catalog's 1 s, and so
# does one that was under way when another opened it; a dry run says the
# catalog's delay, since nothing is answered locally
{
    my $k = 'advertise-long';
    my @r = burst($port, map { path('longm', $k, code => 'SystemOverFlow',
                                    sleep => '0.3') } 1 .. 2);
    is(scalar(grep { ($_->{status} // 0) == 400 } @r), 2,
       'long back-off: both throttled answers relayed');
    for my $i (0, 1) {
        my $r = $r[$i];
        my $ms = h($r, 'x-acs-retry-after') // -1;
        ok($ms > 26000 && $ms <= 30000,
           "long back-off, answer $i: x-acs-retry-after $ms");
        my $s = h($r, 'Retry-After') // -1;
        is($s, int(($ms + 999) / 1000),
           "long back-off, answer $i: Retry-After $s, rounded up");
        is((json_decode($r->{body}) // {})->{RetryAfter}, $s,
           "long back-off, answer $i: RetryAfter $s");
    }
    my $rj = req('longm', $k);
    is_reject($rj, 'SystemOverFlow', 'long back-off: next request');
    my $ra = h($rj, 'Retry-After') // -1;
    ok($ra >= 27 && $ra <= 30 && $ra <= (h($r[0], 'Retry-After') // 0),
       "long back-off: the local answer's Retry-After $ra as announced");
    is(mock_count($k), 2, 'long back-off: the upstream saw the first two');

    my $r = req('dry', 'advertise-dry', code => 'SystemOverFlow');
    is(h($r, 'Retry-After'), 1, "dry run: the catalog's Retry-After 1");
    is(h($r, 'x-acs-retry-after'), 1000, 'dry run: x-acs-retry-after 1000');
}

# a code added with mqttapi_throttle_codes that the catalog does not call
# retryable: the upstream's Retry-After (delay-seconds or an HTTP-date) is
# still the floor of the back-off, while the relayed answer stays as the
# README has it for a non-retryable code (the upstream's header, nothing added)
for my $c (['custfloor', 10, 'Retry-After: 10', 10, 10],
           ['custfloorm', 'date:12', 'Retry-After: an HTTP-date 12 s on',
            10, 12]) {
    my ($loc, $ra, $name, $min, $max) = @$c;
    my $k = "custfloor-$loc";
    my $r = req($loc, $k, code => 'MyCustomThrottle', ra => $ra);
    is($r->{status}, 400, "$name: MyCustomThrottle relayed");
    is(h($r, 'X-Throttle'), 'pass', "$name: it passed");
    is(h($r, 'X-MQTTAPI-Retryable'), 'false', "$name: not retryable");
    is(scalar(my @ra = headers_all($r, 'Retry-After')), 1,
       "$name: one Retry-After, the upstream's");
    ok(!defined h($r, 'x-acs-retry-after'),
       "$name: no x-acs-retry-after on a code that is not a throttling one");
    ok(!exists((json_decode($r->{body}) // {})->{RetryAfter}),
       "$name: no RetryAfter in the body");
    my $rj = req($loc, $k);
    is_reject($rj, 'MyCustomThrottle', "$name: next request");
    my $s = h($rj, 'Retry-After') // -1;
    ok($s >= $min && $s <= $max,
       "$name: local Retry-After $s within [$min, $max] although backoff=1s");
    my $ms = h($rj, 'x-acs-retry-after') // -1;
    ok($ms > ($min - 1) * 1000 && $ms <= $max * 1000,
       "$name: x-acs-retry-after $ms ms");
    is(json_decode($rj->{body})->{RetryAfter}, $s, "$name: body RetryAfter");
    is($loc eq 'custfloorm' ? mock_count($k) : up_count_settled($k, 1), 1,
       "$name: the upstream saw only the first");
}

# ---------------------------------------------------------------------------
# Other keys, the empty key, mqttapi_throttle off
# ---------------------------------------------------------------------------

{
    my $k = 'iso-A';
    req('b3', $k, code => 'SystemOverFlow');
    is_reject(req('b3', $k), 'SystemOverFlow', 'key A backed off');
    is_pass(req('b3', 'iso-B'), 'another key is not affected');
    is_pass(req('b3', 'iso-A2'), 'a key with A as prefix is not affected');
    is_pass(req('b3', 'iso-'), 'a prefix of A is not affected');
    my $rm = req('mqoff', $k);
    is($rm->{status}, 200, 'mqttapi off: the same key passes');
    ok(!defined h($rm, 'X-MQTTAPI-Throttled'), 'mqttapi off: not local');

    # HEAD, and a POST with a body on a keep-alive connection: answered
    # locally, and the connection goes on with the next request
    my $rh = http_request(port => $port, method => 'HEAD', path => path('b3', $k));
    is($rh->{status}, 429, 'HEAD: answered locally');
    is(h($rh, 'X-MQTTAPI-Throttled'), 'gateway', 'HEAD: X-MQTTAPI-Throttled');
    is($rh->{body}, '', 'HEAD: no body');
    my $rk = http_request(port => $port, method => 'POST', path => path('b3', $k),
                          body => 'x' x 3000, keepalive => 1);
    is_reject($rk, 'SystemOverFlow', 'keep-alive POST with a body');
    ok($rk->{sock}, 'keep-alive POST: the connection stays open');
    if ($rk->{sock}) {
        my $rn = http_request(sock => $rk->{sock}, path => path('b3', 'iso-C'),
                              keepalive => 1);
        is_pass($rn, 'the next request on that connection');
        my $rj2 = http_request(sock => $rn->{sock} // $rk->{sock},
                               path => path('b3', $k));
        is_reject($rj2, 'SystemOverFlow', 'and a reject after it');
    }

    my $ro = req('off', $k);
    is($ro->{status}, 200, 'mqttapi_throttle off: the same key passes');
    ok(!defined h($ro, 'X-MQTTAPI-Throttled'),
       'mqttapi_throttle off: not answered locally');
    ok(!length(h($ro, 'X-Throttle') // ''),
       'mqttapi_throttle off: $mqttapi_throttle is empty');

    # the empty key: absent, or present and empty
    for my $c (['absent', undef], ['empty', '']) {
        my ($what, $key) = @$c;
        my $m = "empty-$what";
        my $r1 = req('b3', $key, code => 'SystemOverFlow', m => $m);
        is($r1->{status}, 400, "$what key: throttle code relayed");
        my $r2 = req('b3', $key, code => 'SystemOverFlow', m => $m);
        is($r2->{status}, 400, "$what key: not limited");
        ok(!defined h($r2, 'X-MQTTAPI-Throttled'),
           "$what key: no local answer");
        my $r3 = req('b3', $key, m => $m);
        is($r3->{status}, 200, "$what key: a clean request passes");
        is(up_count_settled($m, 3, 2), 3, "$what key: all reached the upstream");
    }
}

# ---------------------------------------------------------------------------
# Retry-After counts down
# ---------------------------------------------------------------------------

{
    my $k = 'countdown';
    my $t0 = time;          # the back-off opens after this
    req('b3', $k, code => 'ApplyTokenOverFlow');
    my $a1 = time;          # the first reject is made between $a1 and $b1
    my $r1 = req('b3', $k);
    my $b1 = time;
    is_reject($r1, 'ApplyTokenOverFlow', 'countdown: first reject');
    my $ms1 = h($r1, 'x-acs-retry-after') // 0;
    ok($ms1 <= 3000 && $ms1 >= 2700 - 1000 * ($b1 - $t0) - 50,
       "countdown: at first the whole back-off is left ($ms1 ms)");
    is(h($r1, 'Retry-After'), int(($ms1 + 999) / 1000),
       'countdown: Retry-After is the seconds left, rounded up');
    sleep 1.2 - (time - $b1);
    my $a2 = time;          # the second one between $a2 and $b2
    my $r2 = req('b3', $k);
    my $b2 = time;
    is_reject($r2, 'ApplyTokenOverFlow', 'countdown: after 1.2 s');
    my $ms2 = h($r2, 'x-acs-retry-after') // 0;
    # by the time that passed between the two rejects (the clocks' grain
    # aside), whatever the machine's load made of it
    ok($ms1 - $ms2 >= 1000 * ($a2 - $b1) - 30
       && $ms1 - $ms2 <= 1000 * ($b2 - $a1) + 30,
       "countdown: x-acs-retry-after went down by the time between "
       . "($ms1 -> $ms2 ms in " . int(1000 * ($a2 - $b1)) . '-'
       . int(1000 * ($b2 - $a1)) . ' ms)');
    my $ra2 = h($r2, 'Retry-After') // -1;
    is($ra2, int(($ms2 + 999) / 1000),
       'countdown: Retry-After is the seconds left, rounded up');
    cmp_ok($ra2, '<', h($r1, 'Retry-After') // 0,
           'countdown: Retry-After went down');
    is(json_decode($r2->{body})->{RetryAfter}, $ra2,
       'countdown: RetryAfter as Retry-After');
    is(up_count($k), 1, 'countdown: only the first request reached upstream');
}

# ---------------------------------------------------------------------------
# Doubling, the cap, jitter; a clean probe closes the back-off and the next
# throttle starts over at backoff
# ---------------------------------------------------------------------------

{
    my $k = 'doubling';

    # opens (or reopens) the back-off with $first, returns the delay seen
    # by the reject right after it, checked against [0.9 d, d]
    my $round = sub {
        my ($first, $d, $name) = @_;
        my $t0 = time;      # the back-off opens after this
        my $r = $first->();
        my $rj = req('b1', $k);
        my $took = time - $t0;
        my $rms = h($r, 'x-acs-retry-after') // -1;
        ok($rms <= $d && $rms >= 0.9 * $d,
           "$name: the relayed answer says the delay ($rms ms)");
        is(h($r, 'Retry-After'), int(($rms + 999) / 1000),
           "$name: the relayed answer's Retry-After, rounded up");
        is_reject($rj, 'SystemOverFlow', "$name: reject");
        my $ms = h($rj, 'x-acs-retry-after') // -1;
        ok($ms <= $d && $ms >= 0.9 * $d - 1000 * $took - 30,
           "$name: delay within [0.9, 1.0] x $d ms ($ms ms left)");
        ok($ms <= $rms && $ms >= $rms - 1000 * $took - 30,
           "$name: the reject's delay is what the relayed answer said");
        is(h($rj, 'Retry-After'), int(($ms + 999) / 1000),
           "$name: Retry-After is the seconds left, rounded up");
        return $ms;
    };

    my $probe_throttled = sub {
        my $r = req('b1', $k, code => 'SystemOverFlow');
        is($r->{status}, 400, 'throttled probe relayed');
        is(h($r, 'X-Throttle'), 'probe', '$mqttapi_throttle = probe');
        return $r;
    };

    my $ms = $round->(sub { req('b1', $k, code => 'SystemOverFlow') },
                      1000, 'throttle #1');
    sleep $ms / 1000 + 0.05;
    $ms = $round->($probe_throttled, 2000, 'throttle #2 (doubled)');
    sleep $ms / 1000 + 0.05;
    $ms = $round->($probe_throttled, 2000, 'throttle #3 (max_backoff)');
    sleep $ms / 1000 + 0.05;

    is(up_count_settled($k, 3), 3, 'doubling: only the probes reached upstream');

    my $r = req('b1', $k);
    is_pass($r, 'clean probe', 'probe');
    is_pass(req('b1', $k), 'after a clean probe');
    is_pass(req('b1', $k), 'after a clean probe, again');

    $round->(sub { req('b1', $k, code => 'SystemOverFlow') },
             1000, 'throttle after a clean probe starts at backoff');
}

# ---------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------

sub mock_count {
    my ($k) = @_;
    return scalar grep { $_->{path} =~ /[?&]AccessKeyId=\Q$k\E(?:&|$)/ }
                  $mock->requests;
}

sub open_probe_backoff {
    my ($k) = @_;
    my $r = req('probe', $k, code => 'SystemOverFlow');
    is($r->{status}, 400, "$k: throttle code relayed");
    my $rj = req('probe', $k);
    is_reject($rj, 'SystemOverFlow', "$k: backed off");
    sleep((h($rj, 'x-acs-retry-after') // 1000) / 1000 + 0.05);
}

# asks for $k until a request is not answered locally (the turn to probe
# came) or $secs have passed since $t0; returns the last answer and how
# many were answered locally before it
sub probe_until_turn {
    my ($k, $t0, $secs) = @_;
    my $rej = 0;
    while (1) {
        my $r = req('probe', $k);
        return ($r, $rej) unless local_answer($r) && time - $t0 < $secs;
        $rej++;
        sleep 0.05;
    }
}

# N requests at once when the back-off is over: exactly one probe reaches
# the upstream (which takes 2 s to answer, for the others to arrive
# meanwhile however loaded the machine), the rest are rejected
{
    my $k = 'probe-burst';
    open_probe_backoff($k);
    my $n0 = mock_count($k);
    my @r = burst($port, map { path('probe', $k, sleep => '2') } 1 .. 12);
    my @probe = grep { ($_->{status} // 0) == 200 } @r;
    my @rej = grep { ($_->{status} // 0) == 429 } @r;
    is(scalar @probe, 1, 'burst after the back-off: exactly one passes');
    is(scalar @rej, 11, 'burst after the back-off: the others are rejected');
    is(h($probe[0], 'X-Throttle'), 'probe', 'the one that passed is the probe')
        if @probe;
    is(scalar(grep { (h($_, 'Retry-After') // '') eq '1' } @rej), 11,
       'rejected while the probe is out: Retry-After 1');
    is(scalar(grep { (h($_, 'X-MQTTAPI-Throttled') // '') eq 'gateway'
                     && (h($_, 'X-MQTTAPI-Error-Code') // '') eq 'SystemOverFlow' }
              @rej), 11, 'rejected while the probe is out: local answers');
    is(mock_count($k) - $n0, 1, 'exactly one request reached the upstream');
    is_pass(req('probe', $k), 'after the clean probe');
    is(mock_count($k) - $n0, 2, 'and that one reached the upstream');
}

# a probe whose client goes away gives its turn back at once
{
    my $k = 'probe-gone';
    open_probe_backoff($k);
    my $n0 = mock_count($k);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp') or die "connect: $!";
    syswrite($s, "GET " . path('probe', $k, hang => 1)
               . " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    my $deadline = time + 3;
    sleep 0.02 while mock_count($k) == $n0 && time < $deadline;
    is(mock_count($k) - $n0, 1, 'the hanging probe reached the upstream');
    my $rj = req('probe', $k);
    is_reject($rj, 'SystemOverFlow', 'while the probe is out');
    is(h($rj, 'Retry-After'), 1, 'while the probe is out: Retry-After 1');
    # the turn comes back as soon as nginx sees the client go, long before
    # the probe's 5 s timeout would give it back: asked for until then
    my $t0 = time;
    close $s;
    my ($r, $rej) = probe_until_turn($k, $t0, 4);
    is_pass($r, 'the probe client went away: a new probe', 'probe');
    cmp_ok(time - $t0, '<', 4.5,
           "the turn came back before the probe timeout ($rej answered "
           . 'locally meanwhile)');
    is(mock_count($k) - $n0, 2, 'the new probe reached the upstream');
    is_pass(req('probe', $k), 'back-off closed by the new probe');
}

# a probe that hangs loses its turn after 5 s
{
    my $k = 'probe-hang';
    open_probe_backoff($k);
    my $n0 = mock_count($k);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp') or die "connect: $!";
    my $t0 = time;          # the probe starts after this
    syswrite($s, "GET " . path('probe', $k, hang => 1)
               . " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    my $deadline = time + 3;
    sleep 0.02 while mock_count($k) == $n0 && time < $deadline;
    is(mock_count($k) - $n0, 1, 'the hanging probe reached the upstream');
    my $t1 = time;          # it started before this

    sleep 1;
    is_reject(req('probe', $k), 'SystemOverFlow', 'probe out for 1 s');
    sleep 3.5 - (time - $t0);
    is_reject(req('probe', $k), 'SystemOverFlow',
              sprintf('probe out for %.1f-3.5 s', 3.5 - ($t1 - $t0)));

    # then the turn is lost after 5 s: asked for until it is
    my ($r, $rej) = probe_until_turn($k, $t0, 15);
    my $t2 = time;          # the new probe passed before this
    is_pass($r, 'the hanging probe lost its turn: a new probe', 'probe');
    cmp_ok($t2 - $t0, '>', 4.99,
           sprintf('the turn was lost after 5 s, not before (%.2f s; %d '
                   . 'answered locally meanwhile)', $t2 - $t0, $rej));
    is(mock_count($k) - $n0, 2, 'the new probe reached the upstream');
    is_pass(req('probe', $k), 'back-off closed by the new probe');
    close $s;
}

# a probe answered by an error the gateway made (502: the upstream is
# down; 504: it timed out) is no answer of the upstream: the back-off stays
# with its count and the next request probes again; once the upstream
# answers, a throttled probe reopens the back-off doubled and a clean one
# closes it
{
    my $k = 'probe-gw';
    my $r = req('gwm', $k, code => 'SystemOverFlow');
    is($r->{status}, 400, 'gateway errors: throttle code relayed');
    my $rj = req('gwm', $k);
    is_reject($rj, 'SystemOverFlow', 'gateway errors: backed off');
    my $ms = h($rj, 'x-acs-retry-after') // -1;
    ok($ms > 0 && $ms <= 1000, "gateway errors: first delay 1 s ($ms ms)");
    sleep $ms / 1000 + 0.05;
    my $n0 = mock_count($k);

    my $mark = $ng->error_log_mark;
    my $r1 = req('gwd', $k);
    is($r1->{status}, 502, 'probe to an upstream that is down: 502');
    is(h($r1, 'X-MQTTAPI-Error-Code'), 'GatewayUpstreamUnavailable',
       'probe to an upstream that is down: the gateway code');
    is(h($r1, 'X-Throttle'), 'probe', 'the 502 was the probe');
    like($ng->error_log($mark),
         qr/probe got "GatewayUpstreamUnavailable" from the gateway/,
         'the failed probe is logged');

    # the next request is a new probe (it hangs until the 2 s read
    # timeout); meanwhile the others are still answered locally
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp') or die "connect: $!";
    syswrite($s, "GET " . path('gwm', $k, hang => 1)
               . " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    my $deadline = time + 3;
    sleep 0.01 while mock_count($k) == $n0 && time < $deadline;
    is(mock_count($k) - $n0, 1,
       'after the 502: a new probe reached the upstream');
    is_reject(req('gwm', $k), 'SystemOverFlow', 'while that probe is out');
    my $r2 = http_read_response($s, timeout => 5);
    is($r2->{status}, 504, 'probe to an upstream that times out: 504');
    is(h($r2, 'X-MQTTAPI-Error-Code'), 'GatewayUpstreamTimeout',
       'probe to an upstream that times out: the gateway code');
    is(h($r2, 'X-Throttle'), 'probe', 'the 504 was the probe, not a pass');

    # the upstream answers again, still throttling: the back-off reopens
    # doubled, the count survived the failed probes
    my $t0 = time;          # the back-off opens after this
    my $r3 = req('gwm', $k, code => 'SystemOverFlow');
    is($r3->{status}, 400, 'the upstream answers: throttled');
    is(h($r3, 'X-Throttle'), 'probe', 'after the 504: a probe again');
    $rj = req('gwm', $k);
    is_reject($rj, 'SystemOverFlow', 'throttled probe: backed off again');
    $ms = h($rj, 'x-acs-retry-after') // -1;
    ok($ms > 1800 - 1000 * (time - $t0) - 30 && $ms <= 2000,
       "the doubling survived the failed probes: 2 s ($ms ms)");
    is(mock_count($k) - $n0, 2, 'only the probes reached the upstream');
    sleep $ms / 1000 + 0.05;

    # a failed probe again, then a clean one closes the back-off
    my $r4 = req('gwd', $k);
    is($r4->{status}, 502, 'failed probe after the second back-off');
    is(h($r4, 'X-Throttle'), 'probe', 'it was the probe');
    is_pass(req('gwm', $k), 'the upstream recovered: a clean probe', 'probe');
    is_pass(req('gwm', $k), 'the clean probe closed the back-off');
    is_pass(req('gwm', $k), 'the clean probe closed the back-off, again');

    # closed: the next throttle starts over at backoff
    req('gwm', $k, code => 'SystemOverFlow');
    $rj = req('gwm', $k);
    is_reject($rj, 'SystemOverFlow', 'a throttle after the clean probe');
    $ms = h($rj, 'x-acs-retry-after') // -1;
    ok($ms > 0 && $ms <= 1000, "it starts over at backoff=1s ($ms ms)");
}

# ---------------------------------------------------------------------------
# dry run, status, log level, throttle codes
# ---------------------------------------------------------------------------

{
    my $k = 'dry';
    my $mark = $ng->error_log_mark;
    my $r = req('dry', $k, code => 'SystemOverFlow');
    is($r->{status}, 400, 'dry run: throttle code relayed');
    for my $i (1 .. 3) {
        is_pass(req('dry', $k), "dry run: request $i", 'dry_run');
    }
    is(up_count_settled($k, 4), 4, 'dry run: the upstream saw every request');
    my $log = $ng->error_log($mark);
    like($log, qr/\[warn\].*dry run.*SystemOverFlow/, 'dry run: logged');
    unlike($log, qr/answering "SystemOverFlow" locally/,
           'dry run: nothing answered locally');
    is_pass(req('dry', 'dry-other'), 'dry run: another key', 'pass');
}

{
    my $k = 'status503';
    my $mark = $ng->error_log_mark;
    req('st', $k, code => 'SystemOverFlow');
    my $rj = req('st', $k);
    is_reject($rj, 'SystemOverFlow', 'mqttapi_throttle_status 503', 503);
    is(json_decode($rj->{body})->{Code}, 'SystemOverFlow', '503: body Code');
    is(up_count($k), 1, '503: the reject did not reach the upstream');
    my $log = $ng->error_log($mark);
    like($log, qr/\[notice\].*answering "SystemOverFlow" locally/,
         'mqttapi_throttle_log_level notice');
    unlike($log, qr/\[warn\].*answering/, 'log level notice: not at warn');

    # the default level is warn
    $mark = $ng->error_log_mark;
    req('b3', 'warnlevel', code => 'SystemOverFlow');
    req('b3', 'warnlevel');
    like($ng->error_log($mark),
         qr/\[warn\].*answering "SystemOverFlow" locally/,
         'default log level: warn');
}

{
    my $r = req('cust', 'cust-1', code => 'MyCustomThrottle');
    is($r->{status}, 400, 'custom code relayed');
    my $rj = req('cust', 'cust-1');
    is_reject($rj, 'MyCustomThrottle',
              'mqttapi_throttle_codes MyCustomThrottle opens a back-off');
    is(json_decode($rj->{body})->{Code}, 'MyCustomThrottle',
       'custom code: body Code');
    is(up_count('cust-1'), 1, 'custom code: the reject did not reach upstream');

    req('cust', 'cust-2', code => 'ApplyTokenOverFlow');
    is_pass(req('cust', 'cust-2'),
            'mqttapi_throttle_codes: ApplyTokenOverFlow no longer does');
    is(up_count_settled('cust-2', 2), 2, 'ApplyTokenOverFlow: both reached');

    # and MyCustomThrottle does nothing where the list is the default
    req('b3', 'cust-3', code => 'MyCustomThrottle');
    is_pass(req('b3', 'cust-3'), 'MyCustomThrottle with the default codes');
}

# many distinct codes in one zone: a local answer never carries another
# key's code
{
    my %code;
    for my $i (1 .. 16) {
        req('many', "many-$i", code => "Custom$i");
        my $rj = req('many', "many-$i");
        $code{$i} = h($rj, 'X-MQTTAPI-Error-Code') // '';
        is($rj->{status}, 429, "Custom$i: backed off");
    }
    is_deeply([ map { $code{$_} } 1 .. 15 ], [ map { "Custom$_" } 1 .. 15 ],
              '15 codes at once: each local answer has its own');
    ok($code{16} eq 'Custom16' || $code{16} eq 'SystemOverFlow',
       "a 16th code at once: its own or the generic one ($code{16})");

    # once those back-offs are closed, their slots serve new codes
    sleep 1.05;
    is(scalar(grep { ($_->{status} // 0) == 200 }
              map { req('many', "many-$_") } 1 .. 16), 16,
       'clean probes closed the 16 back-offs');
    req('many', 'many-17', code => 'Custom17');
    my $rj = req('many', 'many-17');
    is_reject($rj, 'Custom17', 'Custom17 after the others were closed');
    is(json_decode($rj->{body})->{Code}, 'Custom17', 'Custom17: body Code');
    req('many', 'many-1b', code => 'Custom1');
    is_reject(req('many', 'many-1b'), 'Custom1', 'Custom1 again');
}

# ---------------------------------------------------------------------------
# Long keys
# ---------------------------------------------------------------------------

{
    my $k1 = 'L' x 5000;
    my $k2 = ('L' x 4999) . 'M';
    my $k3 = 'K' x 65;
    for my $c ([$k1, '5000-byte key'], [$k3, '65-byte key']) {
        my ($k, $name) = @$c;
        my $r = req('b3', $k, code => 'SystemOverFlow');
        is($r->{status}, 400, "$name: throttle code relayed");
        is_reject(req('b3', $k), 'SystemOverFlow', "$name: backed off");
        is(up_count($k), 1, "$name: the reject did not reach the upstream");
    }
    is_pass(req('b3', $k2), 'a 5000-byte key differing in the last byte');
    is_pass(req('b3', 'K' x 64), 'a 64-byte prefix of the 65-byte key');
    is_pass(req('b3', 'K' x 66), 'a 66-byte key');
}

# ---------------------------------------------------------------------------
# Reload
# ---------------------------------------------------------------------------

{
    my $k = 'reload';
    req('long', $k, code => 'QueryTokenOverFlow');
    my $a1 = time;
    my $r1 = req('long', $k);
    is_reject($r1, 'QueryTokenOverFlow', 'before reload');
    my @old = $ng->worker_pids;
    ok($ng->reload, 'reload');
    my %old = map { $_ => 1 } @old;
    is(scalar(grep { $old{$_} } $ng->worker_pids), 0, 'new workers');
    my $r2 = req('long', $k);
    my $b2 = time;
    is_reject($r2, 'QueryTokenOverFlow', 'after reload: still backed off');
    my ($ms1, $ms2) = map { h($_, "x-acs-retry-after") // 0 } $r1, $r2;
    ok($ms2 < $ms1 && $ms1 - $ms2 <= 1000 * ($b2 - $a1) + 30,
       "after reload: the same back-off goes on ($ms1 -> $ms2 ms)");
    is(up_count($k), 1, 'after reload: the upstream saw only the first');
    is_pass(req('long', 'reload-other'), 'after reload: another key passes');

    # reload with a changed configuration (another location)
    (my $new = $http) =~ s{(location /b3/ \{)}{location /new/ { return 204; }\n        $1};
    ok($ng->reload(http => $new), 'reload with a changed configuration');
    is(get($port, '/new/')->{status}, 204, 'the new configuration is active');
    is_reject(req('long', $k), 'QueryTokenOverFlow',
              'after the second reload: still backed off');

    # a zone whose size changes is a fresh one, as with limit_req
    (my $resized = $new) =~ s{zone=long:1m}{zone=long:2m} or die;
    my $mark = $ng->error_log_mark;
    ok($ng->reload(http => $resized), 'reload with zone "long" resized');
    is_pass(req('long', $k), 'after resizing the zone: its state is gone');
    unlike($ng->error_log($mark), qr/\[(?:emerg|alert|crit)\]/,
           'resizing the zone: no errors');
}

# a worker that dies (SIGKILL) loses nothing: the new one sees the state
{
    my $k = 'workerkill';
    req('long', $k, code => 'SystemOverFlow');
    is_reject(req('long', $k), 'SystemOverFlow', 'before a worker dies');
    my @w = $ng->worker_pids;
    kill 'KILL', $w[0];
    my $deadline = time + 5;
    sleep 0.05 while (grep { $_ == $w[0] } $ng->worker_pids
                      or $ng->worker_pids < 2) && time < $deadline;
    is(scalar(my @n = $ng->worker_pids), 2, 'the master started a new worker');
    for my $i (1 .. 6) {
        is_reject(req('long', $k), 'SystemOverFlow',
                  "after a worker died: still backed off ($i)");
    }
    is_pass(req('long', 'workerkill-other'), 'after a worker died: others pass');
    is(up_count($k), 1, 'after a worker died: upstream saw only the first');
}

# ---------------------------------------------------------------------------
# A minimum-size zone flooded with 10,000 keys
# ---------------------------------------------------------------------------

# $n keys "$prefix$c-$i" by $children parallel clients over keep-alive
# connections, each answered with a throttle code; returns the statuses
# each client saw, as "status=count ..."
sub flood {
    my ($loc, $prefix, $children, $n) = @_;
    my $dir = File::Temp::tempdir('mqttapi-flood-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    my @pids;
    for my $c (0 .. $children - 1) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my %st;
            my $sock;
            for my $i (1 .. $n) {
                my $r = http_request(
                    $sock ? (sock => $sock) : (port => $port),
                    path => path($loc, "$prefix$c-$i", code => 'SystemOverFlow'),
                    keepalive => 1);
                $sock = $r->{sock};
                $st{ $r->{status} // 'error' }++;
            }
            open my $fh, '>', "$dir/$c" or POSIX::_exit(1);
            print $fh join(' ', map { "$_=$st{$_}" } sort keys %st);
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid($_, 0) for @pids;
    return map { MqttapiTest::_slurp("$dir/$_") // 'no result' }
               0 .. $children - 1;
}

{
    my $mark = $ng->error_log_mark;
    my $t0 = time;

    # 9,900 keys from 4 parallel clients, then the 100 most recent ones
    my @res = flood('small', 'f', 4, 2475);
    is($res[$_], '400=2475', "flood, client $_: every answer the relayed 400")
        for 0 .. 3;
    my $bad = 0;
    for my $i (1 .. 100) {
        my $r = req('small', "tail-$i", code => 'SystemOverFlow');
        $bad++ unless ($r->{status} // 0) == 400;
    }
    is($bad, 0, 'flood: the last 100 keys were relayed too');
    note sprintf 'flood of 10,000 keys took %.1f s', time - $t0;

    my $rej = grep { local_answer(req('small', "tail-$_")) } 1 .. 100;
    is($rej, 100, 'flood: the 100 most recent keys are still rejected');

    is_pass(req('small', 'flood-new'), 'flood: a new key passes');
    is_pass(req('b3', 'flood-elsewhere'), 'flood: other locations pass');
    is_pass(req('small', 'f0-1'),
            'flood: the oldest key was evicted, it passes');

    # the full zone still opens back-offs, for keys of any length
    for my $len (5, 30, 45, 46, 50, 62, 63, 64, 65, 200) {
        my $k = sprintf "a%0*d", $len - 1, 0;
        req('small', $k, code => 'SystemOverFlow');
        ok(local_answer(req('small', $k)),
           "flood: a back-off still opens for a $len-byte key");
    }

    my $log = $ng->error_log($mark);
    ok($log !~ /\[(?:crit|emerg)\]/, 'flood: no [crit] or [emerg]');
    ok($log !~ /exited on signal/, 'flood: no worker crashed');
    my $nf = () = $log =~ /could not allocate a node/g;
    is($nf, 0, 'flood: eviction always made room (no allocation failure)');
    is(scalar(my @w = $ng->worker_pids), 2, 'flood: two workers');
}

# capacity: a 1 MB zone holds 8,000 keys (AccessKeyId-like, 24 bytes)
{
    my @res = flood('big', 'LTAI5tQm8Xv2RkPqZw', 4, 2000);
    is($res[$_], '400=2000', "8,000 keys, client $_: relayed") for 0 .. 3;
    my $rej = 0;
    for my $c (0 .. 3) {
        $rej += grep { local_answer(req('big', "LTAI5tQm8Xv2RkPqZw$c-$_")) }
                     1 .. 25, 1000 .. 1010;
    }
    is($rej, 4 * 36, 'a 1 MB zone holds 8,000 keys: the oldest are kept');
}

# ---------------------------------------------------------------------------
# Whole run
# ---------------------------------------------------------------------------

{
    my $log = $ng->error_log;
    # (but the worker this test killed)
    my @bad = grep { /\[(?:crit|alert|emerg)\]|exited on signal/
                     && !/exited on signal 9\b/ }
              split /\n/, $log;
    is(scalar @bad, 0, 'error log: no crit/alert/emerg, no crash')
        or diag join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)];
}

done_testing();
