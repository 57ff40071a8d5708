#!/usr/bin/perl
# Body modes: mqttapi_body problem | off |
# augment.
#
#   problem  application/problem+json, the hybrid RFC 9457 body: `type`
#            (mqttapi_problem_base_uri + the code, URI-escaped; the default
#            base; one set at http level), `title`, `status` (the sent
#            status, also with mqttapi_normalize_status on), `detail`,
#            `instance`, the annotation members, and the original PascalCase
#            keys kept at the top level with their values and order; every
#            upstream code of the catalog through the emulator; gateway-made
#            and HTML errors; codes outside the catalog; upstream members
#            never overwritten nor duplicated; a body without a top-level
#            "Code" is never turned into a problem (passed byte for byte);
#            localized Description; a broken mqttapi_problem_base_uri fails
#            nginx -t.
#   off      headers only, the body byte for byte (JSON, HTML, nginx's own
#            page), Content-Type and Content-Length untouched, also with
#            mqttapi_normalize_status on.
#   augment  the upstream's bytes kept up to its closing brace (compact and
#            pretty-printed), the annotation members appended, upstream
#            members never overwritten.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use MqttapiTest;

my $catalog = builtin_catalog();
my %entry = map { (($_->{code} // $_->{regex}) => $_) } @{ $catalog->{errors} };

# ---------------------------------------------------------------------------
# Upstream bodies
# ---------------------------------------------------------------------------

my $STD = '{"RequestId":"D1E2F3A4-5B6C-4D7E-8F90-A1B2C3D4E5F6",'
        . '"HostId":"onsmqtt.cn-hangzhou.aliyuncs.com","Code":"InstanceNotFound",'
        . '"Message":"Failed to find the instance. The instanceId may be invalid.",'
        . '"Recommend":"https://api.aliyun.com/troubleshoot?q=InstanceNotFound&product=OnsMqtt"}';
my $PRETTY = "{\n  \"RequestId\": \"PRETTY-1\",\n  \"HostId\": \"onsmqtt.cn-hangzhou.aliyuncs.com\",\n"
           . "  \"Code\": \"GroupIdAlreadyExsited\",\n  \"Message\": \"The specified GroupId already exists.\"\n}\n";
my $INVPARAM = '{"RequestId":"IP-1","HostId":"h","Code":"InvalidParameter.GroupId",'
             . '"Message":"An error occurred while validating the parameter."}';
my $THROTTLE = '{"RequestId":"TH-1","HostId":"h","Code":"ApplyTokenOverFlow",'
             . '"Message":"You have applied for tokens too many times."}';
my $NOCODE   = '{"RequestId":"NC-1","HostId":"h","Message":"something went wrong"}';
my $ARRAY    = '[{"RequestId":"AR-1","Code":"InstanceNotFound"}]';
my $UNKNOWN  = '{"RequestId":"UK-1","HostId":"h","Code":"Foo%41Bar.Baz","Message":"custom"}';
my $OWNED    = '{"type":"https://upstream.example/problems/x","status":"upstream-status",'
             . '"title":"upstream title","RequestId":"OW-1","Code":"InstanceNotFound",'
             . '"Message":"m","Category":"upstream-category","Cause":"upstream cause"}';
my $HTML503  = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n";

my %MOCK = (
    std      => [400, 'application/json;charset=utf-8', $STD],
    pretty   => [400, 'application/json', $PRETTY],
    invparam => [400, 'application/json', $INVPARAM],
    throttle => [400, 'application/json', $THROTTLE, 'Retry-After: 3'],
    nocode   => [400, 'application/json', $NOCODE],
    array    => [400, 'application/json', $ARRAY],
    unknown  => [418, 'application/json', $UNKNOWN],
    owned    => [400, 'application/json', $OWNED],
    html503  => [503, 'text/html', $HTML503],
    stdhtml  => [400, 'text/html', $STD],
    ok       => [200, 'application/json', '{"RequestId":"OK-1"}'],
);

sub raw_response {
    my ($name) = @_;
    my ($status, $ct, $body, @extra) = @{ $MOCK{$name} };
    return "HTTP/1.1 $status X\r\nContent-Type: $ct\r\n"
         . join('', map { "$_\r\n" } @extra)
         . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
}

my $mock = mock_upstream(per_request => sub {
    my ($head) = @_;
    my ($name) = $head =~ m{^\S+ \S*/([a-z0-9]+)(?:\?\S*)? HTTP};
    $name = 'ok' unless defined $name && $MOCK{$name};
    return [[send => raw_response($name)], [close => 1]];
});
my $MP = $mock->port;
my $DEAD = dead_port();

my $ng = start_nginx(http => emulator_http() . <<"EOF");

    server {
        listen 127.0.0.1:%%PORT0%%;
        server_name problem.example.test;

        mqttapi on;
        add_header X-Request-Id \$request_id always;

        location /p/   { mqttapi_body problem; proxy_pass http://127.0.0.1:$MP; }
        location /pb/  {
            mqttapi_body problem;
            mqttapi_problem_base_uri https://errors.example.com/mqtt/;
            proxy_pass http://127.0.0.1:$MP;
        }
        location /pn/  {
            mqttapi_body problem;
            mqttapi_normalize_status on;
            proxy_pass http://127.0.0.1:$MP;
        }
        location /pe/  { mqttapi_body problem; proxy_pass http://127.0.0.1:%%PORT1%%/; }
        location /pd/  { mqttapi_body problem; proxy_pass http://127.0.0.1:$DEAD; }
        location /o/   { mqttapi_body off; proxy_pass http://127.0.0.1:$MP; }
        location /on/  {
            mqttapi_body off;
            mqttapi_normalize_status on;
            proxy_pass http://127.0.0.1:$MP;
        }
        location /od/  { mqttapi_body off; proxy_pass http://127.0.0.1:$DEAD; }
        location /a/   { proxy_pass http://127.0.0.1:$MP; }
        location /aa/  { mqttapi_body augment; proxy_pass http://127.0.0.1:$MP; }
        location /raw/ { mqttapi off; proxy_pass http://127.0.0.1:$MP; }
        location /rawdead/ { mqttapi off; proxy_pass http://127.0.0.1:$DEAD; }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        mqttapi on;
        mqttapi_body problem;
        location / { proxy_pass http://127.0.0.1:$MP; }
    }
EOF

my ($GW, $EMU, $GW2) = ($ng->port(0), $ng->port(1), $ng->port(2));

# the body as the upstream sends it, straight through (mqttapi off)
sub upstream_body { get($GW, "/raw/$_[0]")->{body} }

# a catalog text naming the parameter of a patterned code
sub fill {
    my ($text, $param) = @_;
    $text =~ s/%s/$param/g if defined $param;
    return $text;
}

sub dup_keys {
    my ($text) = @_;
    my %seen;
    return grep { $seen{$_}++ } json_top_keys($text);
}

sub subsequence {
    my ($all, @want) = @_;
    my $i = 0;
    for my $k (@$all) { $i++ if $i < @want && $k eq $want[$i] }
    return $i == @want;
}

# check_problem($r, $w, %x): code, status, base, orig (the upstream body),
# lang (expected Content-Language), desc (expected Description)
sub check_problem {
    my ($r, $w, %x) = @_;
    my $code = $x{code};
    my $e = $entry{$code};
    my $status = $x{status} // $r->{status};
    my $base = $x{base} // 'urn:mqttapi:error:';

    ok(!$r->{error}, "$w: complete") or diag $r->{error};
    is($r->{status}, $status, "$w: HTTP status $status");
    is(h($r, 'Content-Type'), 'application/problem+json', "$w: application/problem+json");
    is(h($r, 'Content-Length'), length $r->{body}, "$w: Content-Length");
    my ($d, $keys) = json_decode_ordered($r->{body});
    ok(ref $d eq 'HASH', "$w: a JSON object") or do { diag $r->{body}; return };
    is_deeply([dup_keys($r->{body})], [], "$w: no duplicate member");

    # RFC 9457 members
    (my $esc = $code) =~ s/%/%25/g;
    is($d->{type}, $base . $esc, "$w: type") unless $x{owned};
    is($d->{title}, $e ? $e->{message} : $d->{title}, "$w: title") unless $x{owned};
    ok(defined $d->{title} && length $d->{title}, "$w: title present");
    ok(!ref $d->{status} && $d->{status} =~ /^\d+\z/ && $r->{body} =~ /"status":\d/,
       "$w: status is a number") unless $x{owned};
    is($d->{status}, $status, "$w: status member is the sent status") unless $x{owned};
    is($d->{detail}, $e->{text}{en}{cause}, "$w: detail is the cause") if $e && !$x{owned};
    like($d->{instance} // '', qr/\Q@{[ h($r, 'X-Request-Id') ]}\E/,
         "$w: instance names this request") if defined h($r, 'X-Request-Id');
    ok(defined $d->{instance} && length $d->{instance}, "$w: instance present");

    # the original PascalCase keys, at the top level, values and order kept
    is($d->{Code}, $code, "$w: Code at the top level");
    if (defined $x{orig}) {
        my ($o, $okeys) = json_decode_ordered($x{orig});
        for my $k (@$okeys) {
            is_deeply($d->{$k}, $o->{$k}, "$w: original member $k kept");
        }
        ok(subsequence($keys, @$okeys), "$w: original members in their order");
    }
    for my $k (qw(RequestId Code Message)) {
        ok(exists $d->{$k}, "$w: $k present");
    }

    # annotations
    if ($e && !$x{owned}) {
        is($d->{Cause}, $e->{text}{en}{cause}, "$w: Cause");
        is($d->{Solution}, $e->{text}{en}{solution}, "$w: Solution");
    }
    ok(JSON::PP::is_bool($d->{Retryable}), "$w: Retryable boolean");
    ok(defined $d->{Category}, "$w: Category");
    is($d->{Description}, $x{desc}, "$w: Description") if exists $x{desc};
    is(h($r, 'Content-Language'), $x{lang}, "$w: Content-Language") if exists $x{lang};
    is(h($r, 'X-MQTTAPI-Error-Code'), $code, "$w: X-MQTTAPI-Error-Code");
    return $d;
}

# ---------------------------------------------------------------------------
# problem
# ---------------------------------------------------------------------------

{
    my $r = get($GW, '/p/std');
    my $d = check_problem($r, 'problem: InstanceNotFound', code => 'InstanceNotFound',
                          status => 400, orig => $STD, lang => 'en');
    is($d->{Recommend}, 'https://api.aliyun.com/troubleshoot?q=InstanceNotFound&product=OnsMqtt',
       'problem: Recommend kept');
    is($d->{Retryable}, JSON::PP::false, 'problem: Retryable false');
    ok(!exists $d->{RetryAfter}, 'problem: no RetryAfter when not retryable');

    $r = get($GW, '/pb/std');
    check_problem($r, 'problem, base URI', code => 'InstanceNotFound',
                  base => 'https://errors.example.com/mqtt/', orig => $STD);

    $r = get($GW, '/p/pretty');
    check_problem($r, 'problem: pretty-printed upstream', code => 'GroupIdAlreadyExsited',
                  orig => $PRETTY);

    $r = get($GW, '/p/invparam');
    $d = check_problem($r, 'problem: InvalidParameter.GroupId',
                       code => 'InvalidParameter.GroupId', orig => $INVPARAM);
    is($d->{InvalidParameter}, 'GroupId', 'problem: InvalidParameter member');
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'GroupId', 'problem: X-MQTTAPI-Invalid-Parameter');
    is($d->{title}, $entry{'InvalidParameter.%s'}{message}, 'problem: title of the pattern');
    is($d->{detail}, fill($entry{'InvalidParameter.%s'}{text}{en}{cause}, 'GroupId'),
       'problem: detail of the pattern, naming the parameter');
    is($d->{Cause}, fill($entry{'InvalidParameter.%s'}{text}{en}{cause}, 'GroupId'),
       'problem: Cause of the pattern, naming the parameter');

    $r = get($GW, '/p/throttle');
    $d = check_problem($r, 'problem: ApplyTokenOverFlow', code => 'ApplyTokenOverFlow',
                       status => 400, orig => $THROTTLE);
    is($d->{Retryable}, JSON::PP::true, 'problem: Retryable true');
    is($d->{RetryAfter}, 3, "problem: RetryAfter from the upstream's Retry-After");
    is(h($r, 'Retry-After'), 3, 'problem: Retry-After kept');

    # normalize on: the status member follows the sent status
    $r = get($GW, '/pn/throttle');
    check_problem($r, 'problem + normalize: ApplyTokenOverFlow', code => 'ApplyTokenOverFlow',
                  status => 429, orig => $THROTTLE);
    is(h($r, 'X-MQTTAPI-Upstream-Status'), 400, 'problem + normalize: upstream status');
    $r = get($GW, '/pn/std');
    check_problem($r, 'problem + normalize: InstanceNotFound', code => 'InstanceNotFound',
                  status => 404, orig => $STD);

    # a code outside the catalog, with a '%' to escape in the type URI
    $r = get($GW, '/p/unknown');
    $d = check_problem($r, 'problem: code outside the catalog', code => 'Foo%41Bar.Baz',
                       status => 418, orig => $UNKNOWN);
    is($d->{type}, 'urn:mqttapi:error:Foo%2541Bar.Baz', 'problem: type URI-escaped');
    is($d->{Category}, 'unknown', 'problem: category unknown');

    # upstream members are never overwritten nor duplicated
    $r = get($GW, '/p/owned');
    $d = check_problem($r, 'problem: upstream already has type/status/title',
                       code => 'InstanceNotFound', orig => $OWNED, owned => 1);
    is($d->{type}, 'https://upstream.example/problems/x', "problem: upstream's type kept");
    is($d->{status}, 'upstream-status', "problem: upstream's status kept");
    is($d->{Category}, 'upstream-category', "problem: upstream's Category kept");
    is($d->{Cause}, 'upstream cause', "problem: upstream's Cause kept");
    is($d->{Solution}, $entry{InstanceNotFound}{text}{en}{solution},
       'problem: missing annotations still added');

    # localized Description
    $r = get($GW, '/p/std', 'Accept-Language' => 'zh-TW,en;q=0.5');
    check_problem($r, 'problem: zh-TW', code => 'InstanceNotFound', orig => $STD,
                  lang => 'zh-Hant',
                  desc => $entry{InstanceNotFound}{text}{'zh-Hant'}{description});

    # gateway-made and non-JSON errors
    $r = get($GW, '/pd/x');
    $d = check_problem($r, 'problem: upstream refused', code => 'GatewayUpstreamUnavailable',
                       status => 502);
    is($d->{HostId}, 'problem.example.test', 'problem: gateway HostId');
    like($d->{RequestId}, qr/^[0-9a-f]{32}\z/, 'problem: gateway RequestId');
    is($d->{RequestId}, h($r, 'X-Request-Id'), 'problem: gateway RequestId is $request_id');
    is($d->{Message}, $entry{GatewayUpstreamUnavailable}{message}, 'problem: gateway Message');

    $r = get($GW, '/p/html503');
    check_problem($r, 'problem: upstream HTML 503', code => 'GatewayUpstreamUnavailable',
                  status => 503);
    unlike($r->{body}, qr/<html/, 'problem: nothing of the HTML');

    # the server-level setting applies to its locations
    $r = get($GW2, '/std');
    check_problem($r, 'problem at server level', code => 'InstanceNotFound', orig => $STD);

    # never a problem without a top-level Code: passed through unchanged
    for my $name (qw(nocode array)) {
        $r = get($GW, "/p/$name");
        is($r->{body}, $MOCK{$name}[2], "problem: $name body byte for byte");
        is(h($r, 'Content-Type'), 'application/json', "problem: $name Content-Type kept");
        ok(!defined h($r, 'X-MQTTAPI-Error-Code'), "problem: $name not annotated");
    }

    # success responses are never touched
    $r = get($GW, '/p/ok');
    is($r->{body}, '{"RequestId":"OK-1"}', 'problem: success byte for byte');
    is(h($r, 'Content-Type'), 'application/json', 'problem: success Content-Type');
}

# every upstream code of the catalog, through the emulator
for my $e (grep { !grep({ $_ eq 'gateway' } @{ $_->{categories} }) } @{ $catalog->{errors} }) {
    (my $code = $e->{code}) =~ s/%s/Topic/;
    my $param = $e->{code} =~ /%s/ ? 'Topic' : undef;
    my $r = get($GW, "/pe/?mqttemu_code=$code");
    my $w = "problem (emulator): $code";
    is($r->{status}, $e->{status}, "$w: status");
    is(h($r, 'Content-Type'), 'application/problem+json', "$w: problem+json");
    my $d = json_decode($r->{body});
    ok($d, "$w: JSON") or next;
    is($d->{type}, "urn:mqttapi:error:$code", "$w: type");
    is($d->{title}, $e->{message}, "$w: title");
    is($d->{status}, $e->{status}, "$w: status member");
    is($d->{detail}, fill($e->{text}{en}{cause}, $param), "$w: detail");
    is($d->{Code}, $code, "$w: Code");
    is($d->{Message}, $e->{message}, "$w: the emulator's Message kept");
    like($d->{RequestId} // '', qr/^[0-9a-f]{8}-/, "$w: the upstream's RequestId kept");
    is($d->{HostId}, 'onsmqtt.cn-hangzhou.aliyuncs.com', "$w: HostId kept");
    like($d->{Recommend} // '', qr/\Q$code\E/, "$w: Recommend kept");
    is_deeply([dup_keys($r->{body})], [], "$w: no duplicate member");
}

# an OpenAPI error under another content type: the problem body keeps its
# Code, Message and RequestId; "off" keeps its bytes and type, with the
# headers of its code
{
    my $r = get($GW, '/p/stdhtml');
    my $d = json_decode($r->{body}) // {};
    is($r->{status}, 400, 'problem, text/html JSON error: status');
    like(h($r, 'Content-Type') // '', qr{^application/problem\+json},
         'problem, text/html JSON error: problem+json');
    is($d->{Code}, 'InstanceNotFound', 'problem, text/html JSON error: Code kept');
    is($d->{RequestId}, 'D1E2F3A4-5B6C-4D7E-8F90-A1B2C3D4E5F6',
       'problem, text/html JSON error: RequestId kept');
    like($d->{type} // '', qr/InstanceNotFound$/, 'problem, text/html JSON error: type of the code');

    $r = get($GW, '/o/stdhtml');
    is($r->{body}, $STD, 'off, text/html JSON error: body byte for byte');
    is(h($r, 'Content-Type'), 'text/html', 'off, text/html JSON error: its Content-Type');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', 'off, text/html JSON error: its code');
}

# a broken mqttapi_problem_base_uri
for my $bad ('"urn:with space:"', q('urn:"quoted":'), 'urn:back\\\\slash:') {
    my ($rc, $out) = nginx_test_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; mqttapi_problem_base_uri $bad; return 200; }
    }
EOF
    isnt($rc, 0, "mqttapi_problem_base_uri $bad: nginx -t fails");
    like($out, qr/mqttapi_problem_base_uri/, "mqttapi_problem_base_uri $bad: names the directive");
}
{
    my ($rc, $out) = nginx_test_config(<<"EOF");
    mqttapi_problem_base_uri https://errors.example.com/p/;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; mqttapi_body problem; return 200; }
    }
EOF
    is($rc, 0, 'mqttapi_problem_base_uri at http level: nginx -t ok') or diag $out;
}

# ---------------------------------------------------------------------------
# off: headers only, body byte for byte
# ---------------------------------------------------------------------------

for my $name (qw(std pretty invparam throttle unknown html503)) {
    my $r = get($GW, "/o/$name");
    my ($status, $ct, $body) = @{ $MOCK{$name} };
    my $w = "off: $name";
    is($r->{status}, $status, "$w: status");
    is($r->{body}, $body, "$w: body byte for byte");
    is(h($r, 'Content-Type'), $ct, "$w: Content-Type untouched");
    is(h($r, 'Content-Length'), length $body, "$w: Content-Length untouched");
    ok(defined h($r, 'X-MQTTAPI-Error-Code'), "$w: annotated in headers");
    ok(defined h($r, 'X-MQTTAPI-Error-Category'), "$w: category header");
    ok(defined h($r, 'X-MQTTAPI-Retryable'), "$w: retryable header");
}
{
    my $r = get($GW, '/o/std');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', 'off: code header');
    is(h($r, 'X-MQTTAPI-Error-Cause'), $entry{InstanceNotFound}{text}{en}{cause}, 'off: cause');
    is(h($r, 'X-MQTTAPI-Error-Solution'), $entry{InstanceNotFound}{text}{en}{solution},
       'off: solution');
    $r = get($GW, '/o/html503');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayUpstreamUnavailable', 'off: HTML error code');
    $r = get($GW, '/o/invparam');
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'GroupId', 'off: invalid parameter header');
    $r = get($GW, '/o/throttle');
    is(h($r, 'Retry-After'), 3, 'off: Retry-After');
    is(h($r, 'x-acs-retry-after'), 3000, 'off: x-acs-retry-after');

    # with normalize on: the status changes, the body does not
    $r = get($GW, '/on/throttle');
    is($r->{status}, 429, 'off + normalize: 429');
    is($r->{body}, $THROTTLE, 'off + normalize: body byte for byte');
    is(h($r, 'X-MQTTAPI-Upstream-Status'), 400, 'off + normalize: upstream status');

    # a gateway-made error: nginx's own page, with the headers
    my $plain = get($GW, '/rawdead/x');
    $r = get($GW, '/od/x');
    is($r->{status}, 502, 'off, upstream refused: 502');
    is($r->{body}, $plain->{body}, "off, upstream refused: nginx's page byte for byte");
    is(h($r, 'Content-Type'), h($plain, 'Content-Type'), 'off, upstream refused: Content-Type');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayUpstreamUnavailable',
       'off, upstream refused: code header');

    # a Code-less body stays as it is, without annotation headers
    $r = get($GW, '/o/nocode');
    is($r->{body}, $NOCODE, 'off: Code-less body byte for byte');
}

# ---------------------------------------------------------------------------
# augment (the default)
# ---------------------------------------------------------------------------

for my $loc (qw(a aa)) {
    for my $name (qw(std pretty invparam throttle)) {
        my $orig = $MOCK{$name}[2];
        my $r = get($GW, "/$loc/$name");
        my $w = "augment ($loc): $name";
        (my $head = $orig) =~ s/\}\s*\z//;
        is(substr($r->{body}, 0, length $head), $head,
           "$w: the upstream's bytes kept up to its closing brace");
        is(h($r, 'Content-Type'), $MOCK{$name}[1], "$w: Content-Type kept");
        is(h($r, 'Content-Length'), length $r->{body}, "$w: Content-Length");
        my ($d, $keys) = json_decode_ordered($r->{body});
        ok($d, "$w: JSON") or next;
        my @ok = json_top_keys($orig);
        is_deeply([@$keys[0 .. $#ok]], \@ok, "$w: original keys first, in order");
        my @added = @$keys[@ok .. $#$keys];
        ok(subsequence(\@added, qw(Cause Solution Category Retryable)),
           "$w: annotation members appended");
        ok(!grep({ /^(type|title|status|detail|instance)\z/ } @$keys),
           "$w: no RFC 9457 members");
        is_deeply([dup_keys($r->{body})], [], "$w: no duplicate member");
    }
}
{
    my $r = get($GW, '/a/owned');
    my $d = json_decode($r->{body});
    is($d->{Category}, 'upstream-category', "augment: the upstream's Category kept");
    is($d->{Cause}, 'upstream cause', "augment: the upstream's Cause kept");
    is_deeply([dup_keys($r->{body})], [], 'augment: no duplicate member');
    is($d->{Solution}, $entry{InstanceNotFound}{text}{en}{solution}, 'augment: Solution added');

    $r = get($GW, '/a/throttle');
    $d = json_decode($r->{body});
    is($d->{RetryAfter}, 3, 'augment: RetryAfter');
    is($d->{Retryable}, JSON::PP::true, 'augment: Retryable');

    $r = get($GW, '/a/std', 'Accept-Language' => 'zh-HK');
    $d = json_decode($r->{body});
    is($d->{Description}, $entry{InstanceNotFound}{text}{'zh-Hant'}{description},
       'augment: Description (zh-HK)');
    is($d->{Cause}, $entry{InstanceNotFound}{text}{en}{cause}, 'augment: English cause');
}

{
    my $log = $ng->error_log;
    unlike($log, qr/\[(alert|crit|emerg)\]/, 'no [alert], [crit] or [emerg]');
    unlike($log, qr/exited on signal/, 'no worker crashed');
}

done_testing();
