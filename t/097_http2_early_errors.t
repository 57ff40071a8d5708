#!/usr/bin/perl
# Two things the README says about the protocol side:
#
# (a) HTTP/2.  With http2 enabled on the gateway's listening socket
#     (`listen ... http2` up to nginx 1.25.0, `http2 on;` after), clients
#     speaking HTTP/2 (curl --http2-prior-knowledge, cleartext) get the
#     same answers as over HTTP/1.1: a success unchanged, an upstream error
#     annotated (status, X-MQTTAPI-* headers, the augmented body and its
#     content-length), nginx's own 502 in the envelope, and the local
#     answers of a back-off.
# (b) Errors nginx makes before it has chosen a location (a malformed
#     request line: 400; a request line over large_client_header_buffers:
#     414; a header over it: 400) are answered with the server's own
#     configuration: nginx's HTML page when `mqttapi on` is only in
#     locations, the envelope (GatewayBadRequest, status kept) when it is
#     set for the server.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use MqttapiTest;

my ($curl) = map { "$_/curl" } grep { -x "$_/curl" } split /:/, $ENV{PATH} // '';

# ---------------------------------------------------------------------------
# the configuration
# ---------------------------------------------------------------------------

my (undef, $V) = MqttapiTest::_run_cmd($MqttapiTest::NGINX, '-V');
my ($version) = $V =~ m{nginx/(\d+\.\d+\.\d+)};
my $num = sprintf '%03d%03d%03d', split /\./, $version // '0.0.0';
my $have_v2 = $V =~ /--with-http_v2_module/;
# the listen parameter is deprecated (a warning) from 1.25.1 on
my ($h2_listen, $h2_on) = $num ge '001025001' ? ('', 'http2 on;')
                                             : (' http2', '');

my $http = emulator_http() . <<"EOF";

    mqttapi_throttle_zone \$arg_AccessKeyId zone=h2:1m backoff=30s;

    # (a) the gateway, HTTP/2 only (cleartext: prior knowledge)
EOF
$http .= <<"EOF" if $have_v2;
    server {
        listen 127.0.0.1:%%PORT0%%$h2_listen;
        $h2_on

        location / {
            mqttapi on;
            mqttapi_throttle zone=h2;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /down {
            mqttapi on;
            proxy_pass http://127.0.0.1:%%PORT4%%;
        }
    }
EOF
$http .= <<"EOF";

    # (b) mqttapi on in the location only
    server {
        listen 127.0.0.1:%%PORT2%%;
        large_client_header_buffers 2 1k;

        location / {
            mqttapi on;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }

    # (b) mqttapi on for the server
    server {
        listen 127.0.0.1:%%PORT3%%;
        large_client_header_buffers 2 1k;
        mqttapi on;

        location / {
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }
EOF

# %%PORT4%%: a free port nothing listens on (the upstream is down)
my $ng = start_nginx(http => $http);

# ---------------------------------------------------------------------------
# (a) HTTP/2
# ---------------------------------------------------------------------------

# h2($path, @curl_args) -> { proto, status, h => {lc name => value}, body }
sub h2 {
    my ($path, @args) = @_;
    my $url = 'http://127.0.0.1:' . $ng->port(0) . $path;
    my ($rc, $out) = MqttapiTest::_run_cmd($curl, '-s', '-i', '--max-time', '20',
                                           '--http2-prior-knowledge', @args, $url);
    my ($head, $body) = split /\r\n\r\n/, $out, 2;
    my ($sl, @lines) = split /\r\n/, $head // '';
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = $v;
    }
    my ($proto, $status) = ($sl // '') =~ m{^(HTTP/\S+) (\d{3})};
    return { rc => $rc, proto => $proto, status => $status, h => \%h,
             body => $body // '', json => json_decode($body // '') };
}

SKIP: {
    skip 'no curl', 1 unless $curl;
    skip "nginx $version is built without the HTTP/2 module", 1 unless $have_v2;

    my $r = h2('/?Action=ApplyToken&InstanceId=mqtt-cn-demo&Resources=d%2F1'
               . '&Actions=R&ExpireTime=1999999999000');
    is($r->{proto}, 'HTTP/2', 'HTTP/2: curl spoke HTTP/2');
    is($r->{status}, 200, 'HTTP/2: a success');
    ok(!grep({ /^x-mqttapi-/ } keys %{ $r->{h} }), 'HTTP/2: a success is not annotated');
    ok($r->{json} && $r->{json}{Token}, 'HTTP/2: its body unchanged (a Token)');

    $r = h2('/?Action=CreateGroupId&InstanceId=mqtt-cn-demo&GroupId=GID_existing',
            '-H', 'Accept-Language: zh-TW');
    is($r->{status}, 400, 'HTTP/2: the upstream error, status 400');
    is($r->{h}{'x-mqttapi-error-code'}, 'GroupIdAlreadyExsited',
       'HTTP/2: x-mqttapi-error-code');
    is($r->{h}{'x-mqttapi-error-category'}, 'group', 'HTTP/2: x-mqttapi-error-category');
    is($r->{h}{'x-mqttapi-retryable'}, 'false', 'HTTP/2: x-mqttapi-retryable');
    like($r->{h}{'x-mqttapi-error-cause'} // '', qr/already exists/,
         'HTTP/2: x-mqttapi-error-cause');
    is($r->{h}{'content-language'}, 'zh-Hant', 'HTTP/2: content-language');
    is($r->{h}{'content-length'}, length $r->{body},
       'HTTP/2: content-length is the annotated body\'s');
    my @keys = json_top_keys($r->{body});
    is_deeply([@keys[0 .. 2]], [qw(RequestId HostId Code)],
              'HTTP/2: the upstream\'s members first') or diag "@keys";
    is($r->{json} && $r->{json}{Category}, 'group', 'HTTP/2: the body annotated (Category)');
    ok($r->{json} && ($r->{json}{Description} // '') =~ /[^\x00-\x7f]/,
       'HTTP/2: the Traditional Chinese description');

    $r = h2('/down/?Action=ApplyToken');
    is($r->{status}, 502, 'HTTP/2: upstream down, 502');
    is($r->{h}{'x-mqttapi-error-code'}, 'GatewayUpstreamUnavailable',
       'HTTP/2: nginx\'s 502 in the envelope');
    is($r->{h}{'content-type'}, 'application/json;charset=utf-8',
       'HTTP/2: the envelope\'s content-type');
    is($r->{json} && $r->{json}{Code}, 'GatewayUpstreamUnavailable',
       'HTTP/2: the envelope\'s Code');

    # a throttling code from the upstream opens a back-off (30 s): the
    # next request is answered by the gateway
    $r = h2('/?Action=ApplyToken&AccessKeyId=h2key&InstanceId=mqtt-cn-demo'
            . '&mqttemu_code=ApplyTokenOverFlow');
    is($r->{h}{'x-mqttapi-error-code'}, 'ApplyTokenOverFlow',
       'HTTP/2: the upstream\'s throttling code, annotated');
    $r = h2('/?Action=ApplyToken&AccessKeyId=h2key&InstanceId=mqtt-cn-demo');
    is($r->{status}, 429, 'HTTP/2: then a local answer, 429');
    is($r->{h}{'x-mqttapi-throttled'}, 'gateway', 'HTTP/2: x-mqttapi-throttled: gateway');
    like($r->{h}{'retry-after'} // '', qr/^\d+$/, 'HTTP/2: retry-after');
    is($r->{h}{'content-length'}, length $r->{body}, 'HTTP/2: its content-length');
    is($r->{json} && $r->{json}{Code}, 'ApplyTokenOverFlow', 'HTTP/2: its body');
}

# ---------------------------------------------------------------------------
# (b) errors before a location
# ---------------------------------------------------------------------------

# raw($port, $bytes) -> the response, read to the end (nginx closes)
sub raw {
    my ($port, $bytes) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp') or die "connect: $!";
    syswrite($s, $bytes);
    return http_read_response($s, timeout => 10);
}

my $long = 'a' x 3000;
my @early = (
    [ 'a malformed request line', 400, "GET /a b c\r\n\r\n" ],
    [ 'a request line over large_client_header_buffers', 414,
      "GET /?x=$long HTTP/1.1\r\nHost: localhost\r\n\r\n" ],
    [ 'a header over large_client_header_buffers', 400,
      "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: $long\r\n\r\n" ],
);

for my $e (@early) {
    my ($what, $status, $bytes) = @$e;

    my $r = raw($ng->port(2), $bytes);
    is($r->{status}, $status, "$what, mqttapi on in the location: $status");
    like(h($r, 'Content-Type') // '', qr{^text/html}, "$what: nginx's HTML page");
    ok(!grep({ $_->[0] =~ /^X-MQTTAPI-/i } @{ $r->{headers} }),
       "$what: not annotated");

    $r = raw($ng->port(3), $bytes);
    is($r->{status}, $status, "$what, mqttapi on for the server: $status kept");
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayBadRequest',
       "$what: annotated, GatewayBadRequest");
    my $j = json_decode($r->{body});
    is($j && $j->{Code}, 'GatewayBadRequest', "$what: in the envelope");
}

done_testing();
