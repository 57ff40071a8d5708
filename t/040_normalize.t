#!/usr/bin/perl
# Normalization (and mqttapi_normalize_status):
# every error that leaves an `mqttapi on` location is the Alibaba-shaped
# JSON envelope.
#
#   * errors nginx makes itself for the location: upstream stopped
#     (connection refused), reset before answering, hanging
#     (proxy_read_timeout 1s -> 504), closing mid-body (Content-Length 500,
#     20 bytes, close; chunked likewise; with and without proxy_buffering:
#     502), stalling mid-body likewise (504), a too big upstream header, a request body over
#     client_max_body_size (413), an internal failure (500);
#   * non-JSON upstream errors: HTML pages, plain text, empty bodies (with
#     and without a JSON Content-Type), whitespace;
#   * the envelope: RequestId from $request_id, HostId from
#     mqttapi_host_id (complex value, JSON-escaped), else the server name,
#     else the machine host name; Code/Message/Cause/Solution from the
#     catalog, headers, Content-Type/Length, keepalive after it;
#   * error_page and proxy_intercept_errors: a static error page in a
#     location that inherits `mqttapi on`, and in one that does not (the
#     error still left an `mqttapi on` location), intercepted HTML and JSON
#     upstream errors, named locations, `=200` (a success stays untouched);
#   * what a 4xx or 503 means survives: upstream HTML 401/403/404/413/429
#     (with Retry-After)/405, limit_req_status 429, limit_req's 503, deny
#     all, return 401/404/405/503, normalize on and off; a gateway
#     throttling code never opens the back-off;
#   * mqttapi_normalize_status on: every catalog code with a mapped_status
#     (the upstream codes through the emulator, the gateway codes through
#     their triggers), checking the status and X-MQTTAPI-Upstream-Status;
#     upstream status overrides, a code outside the catalog; off: status
#     untouched and no X-MQTTAPI-Upstream-Status.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use JSON::PP ();
use Sys::Hostname ();
use Time::HiRes ();
use MqttapiTest;

# ---------------------------------------------------------------------------
# The built-in catalog, the reference for codes, texts and statuses
# ---------------------------------------------------------------------------

my $catalog = builtin_catalog();
my %entry = map { (($_->{code} // $_->{regex}) => $_) } @{ $catalog->{errors} };
my %gw_nginx    = %{ $catalog->{gateway}{nginx} };
my %gw_local    = %{ $catalog->{gateway}{local} };
my %gw_upstream = %{ $catalog->{gateway}{upstream} };

# gw_code(nginx | local | upstream => $status): the catalog's gateway code;
# "local" (nginx made it without using an upstream) before "nginx", key by key
sub gw_code {
    my ($origin, $status) = @_;
    my $class = int($status / 100) . 'xx';
    return $gw_local{$status} // $gw_nginx{$status} // $gw_local{$class} // $gw_nginx{$class}
        if $origin eq 'local';
    my $t = $origin eq 'nginx' ? \%gw_nginx : \%gw_upstream;
    return $t->{$status} // $t->{$class};
}

my $HOSTNAME = lc Sys::Hostname::hostname();

# ---------------------------------------------------------------------------
# Mock upstream
# ---------------------------------------------------------------------------

my $HTML502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            . "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n"
            . "</body>\r\n</html>\r\n";
my $JSON400 = '{"RequestId":"5A4F2C1E-0000-4C1B-9E0D-UPSTREAM","HostId":"onsmqtt.cn-hangzhou.aliyuncs.com",'
            . '"Code":"InstanceNotFound","Message":"Failed to find the instance."}';

sub resp {
    my ($status, $ctype, $body, @extra) = @_;
    return "HTTP/1.1 $status\r\n"
         . (defined $ctype ? "Content-Type: $ctype\r\n" : '')
         . join('', map { "$_\r\n" } @extra)
         . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
}

sub chunk { sprintf("%x\r\n", length $_[0]) . $_[0] . "\r\n" }

my %MOCK = (
    html502   => [[send => resp('502 Bad Gateway', 'text/html', $HTML502)], [close => 1]],
    html503ra => [[send => resp('503 Service Unavailable', 'text/html; charset=utf-8',
                                "<h1>down for maintenance</h1>\n", 'Retry-After: 30')],
                  [close => 1]],
    text503   => [[send => resp('503 Service Unavailable', 'text/plain', "Service Unavailable\n")],
                  [close => 1]],
    html504   => [[send => resp('504 Gateway Timeout', 'text/html', "<b>timeout</b>")], [close => 1]],
    html500   => [[send => resp('500 Internal Server Error', 'text/html', "<b>oops</b>")],
                  [close => 1]],
    html404   => [[send => resp('404 Not Found', 'text/html', "<h1>404 Not Found</h1>")],
                  [close => 1]],
    html401   => [[send => resp('401 Unauthorized', 'text/html', "<h1>401</h1>")], [close => 1]],
    html403   => [[send => resp('403 Forbidden', 'text/html', "<h1>403 Forbidden</h1>")],
                  [close => 1]],
    html405   => [[send => resp('405 Not Allowed', 'text/html', "<h1>405</h1>")], [close => 1]],
    html413   => [[send => resp('413 Request Entity Too Large', 'text/html', "<h1>413</h1>")],
                  [close => 1]],
    html429ra => [[send => resp('429 Too Many Requests', 'text/html',
                                "<h1>429 Too Many Requests</h1>", 'Retry-After: 5')],
                  [close => 1]],
    empty500  => [[send => resp('500 Internal Server Error', undef, '')], [close => 1]],
    xml400    => [[send => resp('400 Bad Request', 'text/xml;charset=utf-8',
                                '<?xml version="1.0" encoding="UTF-8"?><Error><RequestId>X-1'
                                . '</RequestId><Code>InstanceNotFound</Code></Error>')],
                  [close => 1]],
    emptyjson => [[send => resp('400 Bad Request', 'application/json', '')], [close => 1]],
    wsjson    => [[send => resp('503 Service Unavailable', 'application/json;charset=utf-8',
                                " \r\n\t ")], [close => 1]],
    emptychunked => [[send => "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n"
                              . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"],
                     [close => 1]],
    json400   => [[send => resp('400 Bad Request', 'application/json;charset=utf-8', $JSON400)],
                  [close => 1]],
    ok        => [[send => resp('200 OK', 'application/json', '{"RequestId":"ok"}')], [close => 1]],
    json429   => [[send => resp('400 Bad Request', 'application/json',
                                '{"RequestId":"t","Code":"ApplyTokenOverFlow","Message":"m"}')],
                  [close => 1]],
    # closing mid-body: headers with Content-Length 500, 20 bytes, close
    abortcl   => [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                           . "Content-Length: 500\r\nConnection: close\r\n\r\n"
                           . substr($JSON400, 0, 20)],
                  [sleep => 0.1], [close => 1]],
    abortch   => [[send => "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                           . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                           . chunk(substr($JSON400, 0, 20))],
                  [sleep => 0.1], [close => 1]],
    stallbody => [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                           . "Content-Length: 500\r\nConnection: close\r\n\r\n"
                           . substr($JSON400, 0, 20)],
                  [hang => 1]],
    stallch   => [[send => "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                           . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                           . chunk(substr($JSON400, 0, 20))],
                  [hang => 1]],
    # unknown codes: retryable as their status says
    unk503ra  => [[send => resp('503 Service Unavailable', 'application/json',
                                '{"RequestId":"u1","Code":"No.Such.Code","Message":"m"}',
                                'Retry-After: 7')], [close => 1]],
    unk429    => [[send => resp('429 Too Many Requests', 'application/json',
                                '{"RequestId":"u2","Code":"No.Such.Code","Message":"m"}')],
                  [close => 1]],
    unk502    => [[send => resp('502 Bad Gateway', 'application/json',
                                '{"RequestId":"u3","Code":"No.Such.Code","Message":"m"}')],
                  [close => 1]],
    unk504ra  => [[send => resp('504 Gateway Timeout', 'application/json',
                                '{"RequestId":"u4","Code":"No.Such.Code","Message":"m"}',
                                'Retry-After: 9')], [close => 1]],
    unk500ra  => [[send => resp('500 Internal Server Error', 'application/json',
                                '{"RequestId":"u5","Code":"No.Such.Code","Message":"m"}',
                                'Retry-After: 7')], [close => 1]],
    unk400ra  => [[send => resp('400 Bad Request', 'application/json',
                                '{"RequestId":"u6","Code":"No.Such.Code","Message":"m"}',
                                'Retry-After: 7')], [close => 1]],
    # the OpenAPI's error under another content type: read as JSON
    sniffhtml  => [[send => resp('400 Bad Request', 'text/html;charset=utf-8', $JSON400)],
                   [close => 1]],
    sniffplain => [[send => resp('404 Not Found', 'text/plain', "\r\n $JSON400\n")],
                   [close => 1]],
    sniffnone  => [[send => resp('400 Bad Request', undef, $JSON400)], [close => 1]],
    sniffnocode => [[send => resp('400 Bad Request', 'text/html',
                                  '{"RequestId":"x","Message":"no code"}')], [close => 1]],
    sniffnum   => [[send => resp('400 Bad Request', 'text/plain',
                                 '{"RequestId":"x","Code":400}')], [close => 1]],
    sniffbad   => [[send => resp('400 Bad Request', 'text/html',
                                 '{"RequestId":"x","Code":"InstanceNotFound"')], [close => 1]],
    sniffarray => [[send => resp('400 Bad Request', 'text/html',
                                 '[{"Code":"InstanceNotFound"}]')], [close => 1]],
    hang      => [[hang => 1]],
    reset     => [[close => 1]],
    bighead   => [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                           . "X-Big: " . ('b' x 8000) . "\r\nContent-Length: 2\r\n\r\n{}"],
                  [close => 1]],
);

my $mock = mock_upstream(per_request => sub {
    my ($head) = @_;
    my ($path) = $head =~ /^\S+ (\S+)/;
    $path =~ s/\?.*//;
    my ($name) = $path =~ m{([^/]+)$};
    return $MOCK{$name // ''} // $MOCK{ok};
});
my $MP = $mock->port;
my $DEAD = dead_port();     # nothing listens here: connection refused

# static error pages of the operator
my $WWW = File::Temp::tempdir('mqttapi-www-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $WWW;
for my $f (qw(50x.html 40x.html)) {
    open my $fh, '>', "$WWW/$f" or die "$f: $!";
    print {$fh} "<html><body><h1>Sorry, the service is unavailable</h1></body></html>\n";
    close $fh;
}
{
    open my $fh, '>', "$WWW/ok.json" or die "ok.json: $!";
    print {$fh} '{"RequestId":"static-ok","Status":"degraded"}';
    close $fh;
}

# errors nginx makes without an upstream, and the back-off they must not
# open (in the normalize off and on servers)
my $LOCAL_ERRORS = <<"EOF";
        location /lr429/  { limit_req zone=lr; limit_req_status 429;
                            proxy_pass http://127.0.0.1:$MP; }
        location /lr503/  { limit_req zone=lr; proxy_pass http://127.0.0.1:$MP; }
        location /deny/   { deny all; proxy_pass http://127.0.0.1:$MP; }
        location /ret401/ { return 401; }
        location /ret404/ { return 404; }
        location /ret405/ { return 405; }
        location /ret503/ { return 503; }
        location /thr/    { mqttapi_throttle zone=gwt; proxy_pass http://127.0.0.1:$MP; }
        location /thr-lr/ { mqttapi_throttle zone=gwt; limit_req zone=lr; limit_req_status 429;
                            proxy_pass http://127.0.0.1:$MP; }
EOF

# ---------------------------------------------------------------------------
# nginx
#   PORT0  gateway, server_name gw.example.test, mqttapi on at server level
#   PORT1  the emulator
#   PORT2  no server_name, mqttapi on only in some locations
#   PORT3  mqttapi_normalize_status on
# ---------------------------------------------------------------------------

my $ng = start_nginx(http => <<"EOF");
    include %%REPO%%/conf/emulator_http.conf;

    limit_req_zone \$binary_remote_addr zone=lr:1m rate=1r/m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=gwt:1m backoff=10s;

    server {
        listen 127.0.0.1:%%PORT1%%;
        include %%REPO%%/conf/emulator.conf;
    }

    server {
        listen 127.0.0.1:%%PORT0%%;
        server_name gw.example.test alias.example.test;

        mqttapi on;
        proxy_read_timeout 1s;
        proxy_connect_timeout 2s;
        add_header X-Request-Id \$request_id always;

        location /dead/ { proxy_pass http://127.0.0.1:$DEAD; }
        location /m/    { proxy_pass http://127.0.0.1:$MP; }
        location /nb/   { proxy_pass http://127.0.0.1:$MP; proxy_buffering off; }
$LOCAL_ERRORS
        location /small/ {
            proxy_buffer_size 1k;
            proxy_pass http://127.0.0.1:$MP;
        }
        location /big/ {
            client_max_body_size 10;
            proxy_pass http://127.0.0.1:$MP;
        }
        location /int/ { proxy_pass http://\$arg_nohost; }
        location /hid/ {
            mqttapi_host_id "edge-\$server_port.gw";
            proxy_pass http://127.0.0.1:$DEAD;
        }
        location /hidq/ {
            mqttapi_host_id 'a"b\\\\c';
            proxy_pass http://127.0.0.1:$DEAD;
        }

        # error_page / proxy_intercept_errors
        location /ep/static/ {
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 504 /50x.html;
        }
        location /ep/intercept-html/ {
            proxy_pass http://127.0.0.1:$MP;
            proxy_intercept_errors on;
            error_page 502 503 504 /50x.html;
        }
        location /ep/intercept-nopage/ {
            proxy_pass http://127.0.0.1:$MP;
            proxy_intercept_errors on;
            error_page 502 /50x.html;
        }
        location /ep/intercept-json/ {
            proxy_pass http://127.0.0.1:$MP;
            proxy_intercept_errors on;
            error_page 400 /40x.html;
        }
        location /ep/named/ {
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 = \@fallback;
        }
        location /ep/named-return/ {
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 504 = \@down;
        }
        location /ep/ok/ {
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 =200 /ok.json;
        }
        location \@fallback {
            rewrite ^ /json400 break;
            proxy_pass http://127.0.0.1:$MP;
        }
        location \@down { return 503; }
        location = /50x.html { root $WWW; }
        location = /40x.html { root $WWW; }
        location = /ok.json  { root $WWW; }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;

        proxy_read_timeout 1s;

        location /plain/ { proxy_pass http://127.0.0.1:$DEAD; }
        location /api/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:$DEAD;
        }
        location /api-ep/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 504 /static50x.html;
        }
        location /api-ep-problem/ {
            mqttapi on;
            mqttapi_body problem;
            mqttapi_host_id edge-problem;
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 /static50x.html;
        }
        location /api-ep-named/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 = \@static;
        }
        location = /static50x.html { root $WWW; try_files /50x.html =404; }
        location \@static { return 503 "temporarily unavailable\\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT3%%;
        server_name norm.example.test;

        mqttapi on;
        mqttapi_normalize_status on;
        proxy_read_timeout 1s;

        location /emu/ { proxy_pass http://127.0.0.1:%%PORT1%%/; }
        location /emu-off/ {
            mqttapi_normalize_status off;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /m/   { proxy_pass http://127.0.0.1:$MP; }
        location /m-off/ {
            mqttapi_normalize_status off;
            proxy_pass http://127.0.0.1:$MP;
        }
        location /dead/ { proxy_pass http://127.0.0.1:$DEAD; }
        location /big/ {
            client_max_body_size 10;
            proxy_pass http://127.0.0.1:$MP;
        }
        location /int/ { proxy_pass http://\$arg_nohost; }
$LOCAL_ERRORS
    }
EOF

my $GW   = $ng->port(0);
my $EMU  = $ng->port(1);
my $GW2  = $ng->port(2);
my $NORM = $ng->port(3);

# ---------------------------------------------------------------------------
# The envelope
# ---------------------------------------------------------------------------

# check_envelope($r, $what, code => C, status => S, host => H, problem => 0)
# The response is the gateway's envelope for catalog code C.
sub check_envelope {
    my ($r, $w, %x) = @_;
    my $code = $x{code};
    my $e = $entry{$code} or die "no catalog entry $code";
    my $status = $x{status} // $e->{status};

    ok(!$r->{error}, "$w: complete response") or diag $r->{error};
    is($r->{status}, $status, "$w: status $status");
    if ($x{problem}) {
        is(h($r, 'Content-Type'), 'application/problem+json', "$w: problem+json");
    } else {
        like(h($r, 'Content-Type') // '', qr{^application/json\b}i, "$w: Content-Type JSON");
    }
    is(h($r, 'Content-Length'), length $r->{body}, "$w: Content-Length matches the body")
        unless $r->{chunked};
    unlike($r->{body}, qr/<html|<h1|<b>|Tengine|Sorry|Service Unavailable\n/i,
           "$w: nothing of the original page");

    my ($d, $keys) = json_decode_ordered($r->{body});
    ok(ref $d eq 'HASH', "$w: body is a JSON object") or do { diag $r->{body}; return };
    my @k = grep { /^[A-Z]/ } @$keys;
    is_deeply([@k[0 .. 3]], [qw(RequestId HostId Code Message)],
              "$w: RequestId, HostId, Code, Message first, in that order");
    is($d->{Code}, $code, "$w: Code $code");
    is($d->{Message}, $e->{message}, "$w: Message from the catalog");
    like($d->{RequestId}, qr/^[0-9a-f]{32}\z/, "$w: RequestId looks like \$request_id");
    is($d->{RequestId}, h($r, 'X-Request-Id'), "$w: RequestId is this request's \$request_id")
        if defined h($r, 'X-Request-Id');
    is($d->{HostId}, $x{host}, "$w: HostId") if exists $x{host};
    is($d->{Cause}, $e->{text}{en}{cause}, "$w: Cause");
    is($d->{Solution}, $e->{text}{en}{solution}, "$w: Solution");
    is($d->{Category}, 'gateway', "$w: Category gateway");
    is(JSON::PP::is_bool($d->{Retryable}) ? 0 + $d->{Retryable} : 'not a boolean',
       $e->{retryable} ? 1 : 0, "$w: Retryable");
    if ($e->{retryable}) {
        is($d->{RetryAfter}, $x{retry_after} // $e->{retry_after} // 1, "$w: RetryAfter");
        is(h($r, 'Retry-After'), $x{retry_after} // $e->{retry_after} // 1,
           "$w: one Retry-After header");
    } else {
        ok(!exists $d->{RetryAfter}, "$w: no RetryAfter");
    }
    if ($x{problem}) {
        is($d->{status}, $status, "$w: problem status");
        like($d->{type}, qr/\Q$code\E\z/, "$w: problem type");
    }

    is(h($r, 'X-MQTTAPI-Error-Code'), $code, "$w: X-MQTTAPI-Error-Code");
    is(h($r, 'X-MQTTAPI-Error-Category'), 'gateway', "$w: X-MQTTAPI-Error-Category");
    is(h($r, 'X-MQTTAPI-Error-Cause'), $e->{text}{en}{cause}, "$w: X-MQTTAPI-Error-Cause");
    is(h($r, 'X-MQTTAPI-Retryable'), $e->{retryable} ? 'true' : 'false',
       "$w: X-MQTTAPI-Retryable");
    ok(!defined h($r, 'ETag') && !defined h($r, 'Last-Modified'),
       "$w: no ETag / Last-Modified of a replaced page");
    return $d;
}

# ---------------------------------------------------------------------------
# 1. Errors nginx makes for the location
# ---------------------------------------------------------------------------

{
    my $r = get($GW, '/dead/x?Action=ApplyToken');
    my $d = check_envelope($r, 'connection refused', code => gw_code(nginx => 502),
                           host => 'gw.example.test');
    is(gw_code(nginx => 502), 'GatewayUpstreamUnavailable',
       'catalog: nginx 502 is GatewayUpstreamUnavailable');
    is($d->{Category}, 'gateway', 'connection refused: category gateway even with an Action');

    my $r2 = get($GW, '/dead/x');
    isnt(json_decode($r2->{body})->{RequestId}, $d->{RequestId},
         'RequestId differs between requests');

    $r = get($GW, '/m/reset');
    check_envelope($r, 'reset before answering', code => 'GatewayUpstreamUnavailable');

    my $t0 = Time::HiRes::time();
    $r = get($GW, '/m/hang');
    check_envelope($r, 'hanging upstream (proxy_read_timeout 1s)',
                   code => 'GatewayUpstreamTimeout', status => 504);
    is(gw_code(nginx => 504), 'GatewayUpstreamTimeout', 'catalog: nginx 504');
    cmp_ok(Time::HiRes::time() - $t0, '<', 4, 'hanging upstream: answered after the timeout');

    # closing mid-body: the aborted path, 502 GatewayUpstreamUnavailable
    for my $loc (qw(m nb)) {
        for my $name (qw(abortcl abortch)) {
            my $w = "closing mid-body ($name, "
                  . ($loc eq 'nb' ? 'proxy_buffering off' : 'buffered') . ')';
            $r = get($GW, "/$loc/$name");
            check_envelope($r, $w, code => 'GatewayUpstreamUnavailable', status => 502);
            unlike($r->{body}, qr/5A4F2C1E/, "$w: none of the partial body");
            is(lc(h($r, 'Connection') // ''), 'close', "$w: connection closed");
        }
    }

    # stalling mid-body (proxy_read_timeout 1s): the read timed out, 504
    # GatewayUpstreamTimeout, never the partial body; the event pipe
    # finalizes it with 502 like a reset, without buffering it is 504
    for my $loc (qw(m nb)) {
        for my $name (qw(stallbody stallch)) {
            my $w = "stalling mid-body ($name, "
                  . ($loc eq 'nb' ? 'proxy_buffering off' : 'buffered') . ')';
            my $t1 = Time::HiRes::time();
            $r = get($GW, "/$loc/$name");
            check_envelope($r, $w, code => 'GatewayUpstreamTimeout', status => 504);
            unlike($r->{body}, qr/5A4F2C1E/, "$w: none of the partial body");
            is(lc(h($r, 'Connection') // ''), 'close', "$w: connection closed");
            cmp_ok(Time::HiRes::time() - $t1, '<', 4, "$w: answered after the timeout");
        }
    }
    like($ng->error_log, qr/upstream timed out .* while reading upstream/,
         'error log: the read timed out mid-body');
    like($ng->error_log, qr/upstream prematurely closed connection/,
         'error log: the upstream closed mid-body');

    # a too big upstream header: nginx's 502
    $r = get($GW, '/small/bighead');
    check_envelope($r, 'too big upstream header', code => gw_code(nginx => 502));

    # a request body over client_max_body_size: 413 made by nginx
    $r = http_request(port => $GW, method => 'POST', path => '/big/x', body => 'x' x 100);
    check_envelope($r, 'request body too large (413)', code => gw_code(nginx => 413),
                   status => 413);
    is(gw_code(nginx => 413), 'GatewayRequestTooLarge', 'catalog: nginx 413');
    is(gw_code(nginx => 405), 'GatewayBadRequest', 'catalog: other nginx 4xx');
    ok(!grep({ $_->{path} =~ m{^/big/} } $mock->requests), '413: never reached the upstream');

    # an internal failure of the proxy module: 500
    $r = get($GW, '/int/x');
    check_envelope($r, 'proxy failure (500)', code => gw_code(nginx => 500), status => 500);
    is(gw_code(nginx => 500), 'GatewayInternalError', 'catalog: nginx 500');

    like($ng->error_log, qr/connect\(\) failed/, 'error log: the refused connection');
}

# ---------------------------------------------------------------------------
# 2. Non-JSON upstream errors
# ---------------------------------------------------------------------------

{
    my $r = get($GW, '/m/html502');
    check_envelope($r, 'upstream HTML 502', code => gw_code(upstream => 502),
                   host => 'gw.example.test');

    $r = get($GW, '/m/html503ra');
    check_envelope($r, 'upstream HTML 503 with Retry-After: 30',
                   code => gw_code(upstream => 503), status => 503, retry_after => 30);
    is(scalar(my @ra = headers_all($r, 'Retry-After')), 1, 'upstream Retry-After kept, once');

    $r = get($GW, '/m/text503');
    check_envelope($r, 'upstream plain text 503', code => gw_code(upstream => 503),
                   status => 503);

    $r = get($GW, '/m/html504');
    check_envelope($r, 'upstream HTML 504', code => gw_code(upstream => 504), status => 504);

    $r = get($GW, '/m/html500');
    check_envelope($r, 'upstream HTML 500', code => gw_code(upstream => 500), status => 500);
    is(gw_code(upstream => 500), 'GatewayUpstreamError', 'catalog: upstream 5xx');

    $r = get($GW, '/m/html404');
    check_envelope($r, 'upstream HTML 404', code => gw_code(upstream => 404), status => 404);
    is(gw_code(upstream => 404), 'GatewayNotFound', 'catalog: upstream 404');
    is(gw_code(upstream => 405), 'GatewayUpstreamRejected', 'catalog: other upstream 4xx');

    $r = get($GW, '/m/xml400');
    check_envelope($r, 'upstream XML error (Format=XML)', code => gw_code(upstream => 400),
                   status => 400);
    unlike(h($r, 'Content-Type'), qr/xml/, 'upstream XML error: never sent as text/xml');

    $r = get($GW, '/m/empty500');
    check_envelope($r, 'upstream empty body, no Content-Type', code => gw_code(upstream => 500),
                   status => 500);

    $r = get($GW, '/m/emptychunked');
    check_envelope($r, 'upstream empty chunked body', code => gw_code(upstream => 502),
                   status => 502);

    $r = get($GW, '/m/emptyjson');
    check_envelope($r, 'upstream empty body with a JSON Content-Type',
                   code => gw_code(upstream => 400), status => 400);

    $r = get($GW, '/m/wsjson');
    check_envelope($r, 'upstream whitespace body with a JSON Content-Type',
                   code => gw_code(upstream => 503), status => 503);

    # the upstream's JSON error is annotated, not replaced
    $r = get($GW, '/m/json400');
    is($r->{status}, 400, 'upstream JSON error: status');
    is(json_decode($r->{body})->{RequestId}, '5A4F2C1E-0000-4C1B-9E0D-UPSTREAM',
       "upstream JSON error: the upstream's RequestId kept");
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', 'upstream JSON error: its code');

    # keepalive: an envelope, then another error, on one client connection
    my $k1 = http_request(port => $GW, path => '/m/html502', keepalive => 1);
    ok($k1->{sock}, 'keepalive: connection kept after an envelope');
    is(json_decode($k1->{body})->{Code}, 'GatewayUpstreamUnavailable', 'keepalive: first');
    my $k2 = http_request(sock => $k1->{sock}, path => '/m/json400');
    is(h($k2, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound',
       'keepalive: second response on the same connection');
}

# ---------------------------------------------------------------------------
# 3. HostId and RequestId
# ---------------------------------------------------------------------------

{
    my $r = get($GW, '/dead/x', Host => 'alias.example.test');
    is(json_decode($r->{body})->{HostId}, 'gw.example.test',
       'HostId: the (first) server name, whatever the Host header');

    $r = get($GW2, '/api/x', Host => 'client.example');
    check_envelope($r, 'server without server_name', code => 'GatewayUpstreamUnavailable',
                   host => $HOSTNAME);

    $r = get($GW, '/hid/x');
    is(json_decode($r->{body})->{HostId}, "edge-$GW.gw",
       'HostId: mqttapi_host_id with a variable');

    $r = get($GW, '/hidq/x');
    my $d = json_decode($r->{body});
    ok($d, 'HostId with a quote and a backslash: still valid JSON') or diag $r->{body};
    is($d && $d->{HostId}, 'a"b\\c', 'HostId: JSON-escaped');

    # the RequestId is $request_id: the same value as in the access log
    $r = get($GW, '/dead/logged');
    my $id = json_decode($r->{body})->{RequestId};
    is($id, h($r, 'X-Request-Id'), 'RequestId equals $request_id (add_header)');
}

# ---------------------------------------------------------------------------
# 4. error_page and proxy_intercept_errors
# ---------------------------------------------------------------------------

{
    my $r = get($GW, '/ep/static/x');
    check_envelope($r, 'error_page 502 to a static page (mqttapi inherited)',
                   code => 'GatewayUpstreamUnavailable', host => 'gw.example.test');

    $r = get($GW, '/ep/intercept-html/html502');
    check_envelope($r, 'proxy_intercept_errors + error_page, upstream HTML 502',
                   code => 'GatewayUpstreamUnavailable');

    $r = get($GW, '/ep/intercept-html/text503');
    check_envelope($r, 'proxy_intercept_errors + error_page, upstream text 503',
                   code => 'GatewayUpstreamUnavailable', status => 503);

    # an upstream error the operator did not intercept: annotated JSON
    $r = get($GW, '/ep/intercept-nopage/json400');
    is($r->{status}, 400, 'proxy_intercept_errors, no error_page for 400: status');
    my $d = json_decode($r->{body});
    is($d && $d->{RequestId}, '5A4F2C1E-0000-4C1B-9E0D-UPSTREAM',
       'proxy_intercept_errors, no error_page for 400: the upstream body');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound',
       'proxy_intercept_errors, no error_page for 400: annotated');

    # an upstream JSON error intercepted by the operator: the upstream's
    # answer is gone, what is left is that the upstream rejected it
    $r = get($GW, '/ep/intercept-json/json400');
    check_envelope($r, 'proxy_intercept_errors + error_page 400, upstream JSON 400',
                   code => gw_code(upstream => 400), status => 400);

    # error_page to a named location that proxies elsewhere: that answer
    $r = get($GW, '/ep/named/x');
    is($r->{status}, 400, 'error_page = @fallback: the fallback status');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound',
       'error_page = @fallback: the fallback upstream error, annotated');

    $r = get($GW, '/ep/named-return/x');
    check_envelope($r, 'error_page = @down (return 503)', code => 'GatewayUpstreamUnavailable',
                   status => 503);

    # error_page =200: a success, never touched
    $r = get($GW, '/ep/ok/x');
    is($r->{status}, 200, 'error_page =200: status 200');
    is($r->{body}, '{"RequestId":"static-ok","Status":"degraded"}',
       'error_page =200: the page byte for byte');
    ok(!grep({ /^x-mqttapi-/i } map { $_->[0] } @{ $r->{headers} }),
       'error_page =200: no X-MQTTAPI-* header');

    # mqttapi on only in the location: the error page is served by a
    # location without it, but the error left an `mqttapi on` location
    $r = get($GW2, '/plain/x');
    is($r->{status}, 502, 'mqttapi off: nginx 502');
    like($r->{body}, qr/<html>/, "mqttapi off: nginx's own page (control)");

    $r = get($GW2, '/api-ep/x');
    check_envelope($r, 'error_page to a location without mqttapi',
                   code => 'GatewayUpstreamUnavailable', host => $HOSTNAME);

    $r = get($GW2, '/api-ep-problem/x');
    check_envelope($r, 'error_page to a location without mqttapi (problem, host id)',
                   code => 'GatewayUpstreamUnavailable', host => 'edge-problem',
                   problem => 1);

    $r = get($GW2, '/api-ep-named/x');
    check_envelope($r, 'error_page = @named without mqttapi (return 503 text)',
                   code => 'GatewayUpstreamUnavailable', status => 503);
}

# ---------------------------------------------------------------------------
# 5. mqttapi_normalize_status
# ---------------------------------------------------------------------------

my @mapped = grep { defined $_->{mapped_status} } @{ $catalog->{errors} };
ok(@mapped >= 20, 'catalog: codes with a mapped_status');
for my $e (@mapped) {
    my $c = $e->{code} // $e->{regex};
    ok($e->{mapped_status} >= 400 && $e->{mapped_status} <= 599,
       "catalog: $c mapped_status within 400-599");
}

# the meaning of the mapping
{
    my %want = (ApplyTokenOverFlow => 429, QueryTokenOverFlow => 429, SystemOverFlow => 429,
                InstanceNotFound => 404, ApiNotSupport => 404,
                GroupIdAlreadyExsited => 409, MqttTopicExist => 409, MqttRuleExist => 409,
                PermissionCheckFailed => 403, ResourcePermissionCheckFailed => 403,
                InstancePermissionCheckFailed => 403,
                ParameterCheckFailed => 400, ParameterFieldCheckFailed => 400,
                'InvalidParameter.%s' => 400);
    for my $c (sort keys %want) {
        is($entry{$c}{mapped_status}, $want{$c}, "catalog: $c maps to $want{$c}");
    }
    like($entry{$_}{mapped_status}, qr/^50[23]\z/, "catalog: $_ maps to 502/503")
        for qw(InternalError CreateGroupIdError);
}

my %covered;

# upstream codes, through the emulator, with their catalog status
for my $e (grep { !grep({ $_ eq 'gateway' } @{ $_->{categories} }) } @mapped) {
    my $c = $e->{code};
    (my $req = $c) =~ s/%s/InstanceId/;
    my $r = get($NORM, "/emu/?mqttemu_code=$req");
    my $w = "normalize on: $req";
    ok(!$r->{error}, "$w: answered") or diag $r->{error};
    is($r->{status}, $e->{mapped_status}, "$w: status $e->{mapped_status}");
    is(h($r, 'X-MQTTAPI-Upstream-Status'), $e->{status}, "$w: X-MQTTAPI-Upstream-Status");
    is(h($r, 'X-MQTTAPI-Error-Code'), $req, "$w: code");
    is(json_decode($r->{body})->{Code}, $req, "$w: body Code unchanged");
    $covered{$c}++;
}

# gateway codes, through what makes them
my @gw_cases = (
    # [path, method, expected code, upstream status or undef]
    ['/dead/x',                'GET',  'GatewayUpstreamUnavailable', undef],
    ['/m/html502',             'GET',  'GatewayUpstreamUnavailable', 502],
    ['/m/text503',             'GET',  'GatewayUpstreamUnavailable', 503],
    ['/m/hang',                'GET',  'GatewayUpstreamTimeout',     undef],
    ['/m/html504',             'GET',  'GatewayUpstreamTimeout',     504],
    ['/m/html500',             'GET',  'GatewayUpstreamError',       500],
    ['/m/empty500',            'GET',  'GatewayUpstreamError',       500],
    ['/big/x',                 'POST', 'GatewayRequestTooLarge',     undef],
    ['/int/x',                 'GET',  'GatewayInternalError',       undef],
);

for my $g (@gw_cases) {
    my ($path, $method, $code, $ups) = @$g;
    my $e = $entry{$code};
    my $r = http_request(port => $NORM, method => $method, path => $path,
                         $method eq 'POST' ? (body => 'x' x 100) : ());
    my $w = "normalize on: $code via $path";
    is($r->{status}, $e->{mapped_status}, "$w: status $e->{mapped_status}");
    is(h($r, 'X-MQTTAPI-Error-Code'), $code, "$w: code");
    is(h($r, 'X-MQTTAPI-Upstream-Status'), $ups,
       "$w: X-MQTTAPI-Upstream-Status " . ($ups // 'absent (no upstream answer)'));
    my $d = json_decode($r->{body});
    is($d && $d->{Code}, $code, "$w: envelope");
    $covered{$code}++;
}

# what a 4xx or a 503 means survives in the gateway code, and in the status
# with normalize on (before: 400 GatewayUpstreamRejected/GatewayBadRequest,
# and 502 GatewayUpstreamUnavailable for a limit_req 503); off: the status
# is nginx's or the upstream's, the code the same
{
    my $r = get($GW, '/lr429/prime');
    is($r->{status}, 200, 'limit_req: the first request passes');

    my @cases = (
        # [what, path, code, status sent, upstream status, Retry-After]
        ['upstream HTML 429 with Retry-After: 5', '/m/html429ra', 'GatewayThrottled', 429, 429, 5],
        ['upstream HTML 403', '/m/html403', 'GatewayForbidden',       403, 403],
        ['upstream HTML 404', '/m/html404', 'GatewayNotFound',        404, 404],
        ['upstream HTML 401', '/m/html401', 'GatewayUnauthorized',    401, 401],
        ['upstream HTML 413', '/m/html413', 'GatewayRequestTooLarge', 413, 413],
        ['upstream HTML 405', '/m/html405', 'GatewayUpstreamRejected', 405, 405],
        ['limit_req_status 429', '/lr429/x', 'GatewayThrottled',         429],
        ['limit_req (503)',      '/lr503/x', 'GatewayServiceUnavailable', 503],
        ['deny all (403)',       '/deny/x',  'GatewayForbidden',          403],
        ['return 401',           '/ret401/x', 'GatewayUnauthorized',      401],
        ['return 404',           '/ret404/x', 'GatewayNotFound',          404],
        ['return 405',           '/ret405/x', 'GatewayBadRequest',        405],
        ['return 503',           '/ret503/x', 'GatewayServiceUnavailable', 503],
    );

    for my $c (@cases) {
        my ($what, $path, $code, $sent, $ups, $ra) = @$c;
        my $e = $entry{$code};
        is($ups ? gw_code(upstream => $sent) : gw_code(local => $sent), $code,
           "catalog: $what is $code");
        for my $on (0, 1) {
            my $w = "$what, normalize " . ($on ? 'on' : 'off');
            my $status = $on ? $e->{mapped_status} : $sent;
            $r = get($on ? $NORM : $GW, $path);
            check_envelope($r, $w, code => $code, status => $status,
                           defined $ra ? (retry_after => $ra) : ());
            is(h($r, 'X-MQTTAPI-Upstream-Status'), $on ? $ups : undef,
               "$w: X-MQTTAPI-Upstream-Status " . ($on && $ups ? $ups : 'absent'));
            is(h($r, 'x-acs-retry-after'),
               $e->{throttle} ? ($ra // $e->{retry_after}) * 1000 : undef,
               "$w: x-acs-retry-after " . ($e->{throttle} ? 'on a throttling code' : 'absent'));
            is(scalar(my @h = headers_all($r, 'Retry-After')), $e->{retryable} ? 1 : 0,
               "$w: Retry-After " . ($e->{retryable} ? 'once' : 'absent'));
        }
        $covered{$code}++;
    }

    is($entry{GatewayThrottled}{mapped_status}, 429, 'catalog: GatewayThrottled maps to 429');
    ok($entry{GatewayThrottled}{retryable}, 'catalog: GatewayThrottled is retryable');
    unlike($entry{GatewayServiceUnavailable}{text}{en}{cause}, qr/could not connect/,
           'catalog: a local 503 does not claim the upstream was unreachable');
    ok(!grep({ $_->{path} =~ m{^/(lr503|deny|ret\d+)/|^/lr429/x} } $mock->requests),
       'limit_req, deny, return: the upstream was never contacted');

    # an error nginx made after the upstream failed is still the
    # upstream's unavailability (error_page 502 = @down; return 503)
    is(h(get($GW, '/ep/named-return/x'), 'X-MQTTAPI-Error-Code'), 'GatewayUpstreamUnavailable',
       'return 503 after the upstream was refused: GatewayUpstreamUnavailable');

    # a gateway throttling code never opens the client-side back-off: only
    # the upstream's throttling codes (or mqttapi_throttle_codes) do
    for my $p ('/thr/html429ra', '/thr-lr/x') {
        $r = get($GW, "$p?AccessKeyId=K$p");
        is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayThrottled', "back-off: $p is GatewayThrottled");
        $r = get($GW, "/thr/ok?AccessKeyId=K$p");
        is($r->{status}, 200, "back-off: not opened by GatewayThrottled ($p)");
        ok(!defined h($r, 'X-MQTTAPI-Throttled'), "back-off: no local answer after $p");
    }
    $r = get($GW, '/thr/json429?AccessKeyId=Kcontrol');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'ApplyTokenOverFlow', 'back-off control: an upstream throttle');
    $r = get($GW, '/thr/ok?AccessKeyId=Kcontrol');
    is(h($r, 'X-MQTTAPI-Throttled'), 'gateway', 'back-off control: opened by the upstream code');
}

is_deeply([sort grep { !$covered{$_} } map { $_->{code} // $_->{regex} } @mapped], [],
          'every catalog code with a mapped_status was checked');

# upstream status overrides, a code outside the catalog
{
    my $r = get($NORM, '/emu/?mqttemu_code=InstanceNotFound&mqttemu_status=404');
    is($r->{status}, 404, 'InstanceNotFound sent as 404: 404');
    is(h($r, 'X-MQTTAPI-Upstream-Status'), 404, 'InstanceNotFound sent as 404: upstream 404');

    $r = get($NORM, '/emu/?mqttemu_code=InternalError&mqttemu_status=503');
    is($r->{status}, $entry{InternalError}{mapped_status}, 'InternalError sent as 503: mapped');
    is(h($r, 'X-MQTTAPI-Upstream-Status'), 503, 'InternalError sent as 503: upstream 503');

    $r = get($NORM, '/emu/?mqttemu_code=ApplyTokenOverFlow&mqttemu_status=500');
    is($r->{status}, 429, 'ApplyTokenOverFlow sent as 500: 429');
    is(h($r, 'X-MQTTAPI-Upstream-Status'), 500, 'ApplyTokenOverFlow sent as 500: upstream 500');

    $r = get($NORM, '/emu/?mqttemu_code=Some.UnknownCode&mqttemu_status=422');
    is($r->{status}, 422, 'code outside the catalog: status kept');
    is(h($r, 'X-MQTTAPI-Upstream-Status'), 422,
       'code outside the catalog: X-MQTTAPI-Upstream-Status');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'Some.UnknownCode', 'code outside the catalog: code');

    # a spoofed X-MQTTAPI-Upstream-Status from the upstream never survives
    $r = get($NORM, '/emu/?mqttemu_code=InstanceNotFound');
    is(scalar(my @u = headers_all($r, 'X-MQTTAPI-Upstream-Status')), 1,
       'one X-MQTTAPI-Upstream-Status');
}

# normalize off: status untouched, no X-MQTTAPI-Upstream-Status
{
    for my $c (qw(ApplyTokenOverFlow SystemOverFlow InstanceNotFound GroupIdAlreadyExsited)) {
        my $r = get($NORM, "/emu-off/?mqttemu_code=$c");
        is($r->{status}, $entry{$c}{status}, "normalize off: $c keeps $entry{$c}{status}");
        ok(!defined h($r, 'X-MQTTAPI-Upstream-Status'),
           "normalize off: $c has no X-MQTTAPI-Upstream-Status");
        is(h($r, 'X-MQTTAPI-Error-Code'), $c, "normalize off: $c annotated");
    }
    my $r = get($NORM, '/m-off/html500');
    is($r->{status}, 500, 'normalize off: upstream HTML 500 stays 500');
    ok(!defined h($r, 'X-MQTTAPI-Upstream-Status'),
       'normalize off: no X-MQTTAPI-Upstream-Status on an envelope');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayUpstreamError', 'normalize off: envelope');
}

# ---------------------------------------------------------------------------
# An error body that is the OpenAPI's JSON error under another content type
# (HTML, plain text, none) is the upstream's error: annotated as JSON, its
# Code, Message and RequestId kept; anything else under such a type still
# gets the gateway's envelope
# ---------------------------------------------------------------------------

for (['sniffhtml', 400, 'text/html'], ['sniffplain', 404, 'text/plain'],
     ['sniffnone', 400, 'no content type']) {
    my ($name, $status, $type) = @$_;
    my $r = get($GW, "/m/$name");
    my $d = json_decode($r->{body}) // {};
    my $w = "JSON error body under $type";
    is($r->{status}, $status, "$w: status kept");
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', "$w: the upstream's code");
    is($d->{Code}, 'InstanceNotFound', "$w: Code kept");
    is($d->{Message}, 'Failed to find the instance.', "$w: Message kept");
    is($d->{RequestId}, '5A4F2C1E-0000-4C1B-9E0D-UPSTREAM', "$w: RequestId kept");
    ok(length($d->{Cause} // ''), "$w: annotated (Cause)");
    is(substr($r->{body}, 0, length($JSON400) - 1), substr($JSON400, 0, -1),
       "$w: the upstream's bytes first")
        unless $name eq 'sniffplain';
    like(h($r, 'Content-Type') // '', qr{^application/json}, "$w: Content-Type JSON");
    is(h($r, 'Content-Length'), length $r->{body}, "$w: Content-Length");
}

for (['sniffnocode', 'an object without Code'], ['sniffnum', 'a number Code'],
     ['sniffbad', 'a truncated object'], ['sniffarray', 'an array']) {
    my ($name, $what) = @$_;
    my $r = get($GW, "/m/$name");
    check_envelope($r, "$what under a non-JSON type", code => gw_code(upstream => 400),
                   status => 400);
}

# ---------------------------------------------------------------------------
# A code the catalog does not know: retryable as its status says (429, 502,
# 503, 504), the upstream's delay kept, 1 s without one; others are not
# ---------------------------------------------------------------------------

for (['unk503ra', 503, 'true', 7], ['unk429', 429, 'true', 1],
     ['unk502', 502, 'true', 1], ['unk504ra', 504, 'true', 9],
     ['unk500ra', 500, 'false', undef], ['unk400ra', 400, 'false', undef]) {
    my ($name, $status, $retryable, $delay) = @$_;
    my $r = get($GW, "/m/$name");
    my $d = json_decode($r->{body}) // {};
    my $w = "unknown code, $status";
    is($r->{status}, $status, "$w: status kept");
    is(h($r, 'X-MQTTAPI-Error-Code'), 'No.Such.Code', "$w: annotated");
    is(h($r, 'X-MQTTAPI-Retryable'), $retryable, "$w: X-MQTTAPI-Retryable");
    is(JSON::PP::is_bool($d->{Retryable}) ? ($d->{Retryable} ? 'true' : 'false')
                                          : 'not a boolean',
       $retryable, "$w: Retryable");
    is($d->{RetryAfter}, $delay, "$w: RetryAfter");
    if ($retryable eq 'true') {
        is(h($r, 'Retry-After'), $delay, "$w: Retry-After");
    } else {
        # the upstream's header is the upstream's: relayed, not advertised
        is(h($r, 'Retry-After'), '7', "$w: the upstream's Retry-After relayed");
    }
    is($d->{Code}, 'No.Such.Code', "$w: Code kept");
}

# ---------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------

{
    my $log = $ng->error_log;
    unlike($log, qr/\[(alert|crit|emerg)\]/, 'no [alert], [crit] or [emerg] in the error log')
        or diag join "\n", $log =~ /^.*\[(?:alert|crit|emerg)\].*$/mg;
    unlike($log, qr/exited on signal/, 'no worker crashed');
    my $r = get($GW, '/m/ok');
    is($r->{status}, 200, 'still serving');
    is($r->{body}, '{"RequestId":"ok"}', 'a success passes byte for byte');
}

done_testing();
