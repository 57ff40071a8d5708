#!/usr/bin/perl
# What the gateway must not touch (the request, successes), and
# annotation over the
# transports that matter (chunked, unbuffered, keepalive).
#
# Pass-through, byte for byte (compared with the same request sent
# directly to the upstream): 2xx (also large, streamed bodies: not delayed),
# 3xx, HEAD on an error, gzip error bodies, error bodies over
# mqttapi_max_body_size (by Content-Length, and discovered mid-stream),
# unparsable JSON, JSON without a top-level "Code", `mqttapi off`.
# Annotated: chunked error bodies, `proxy_buffering off`, two requests on
# one client connection, an upstream keepalive connection; the upstream's
# own X-MQTTAPI-* headers are dropped.
# 1xx (a 101 upgrade), subrequests (SSI, auth_request), the action header
# and untrusted text in members other than Code: t/025_passthrough_more.t.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Compress::Gzip ();
use IO::Uncompress::Gunzip ();
use IO::Socket::INET;
use Time::HiRes ();
use MqttapiTest;

# ---------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------

my $ERR400 = '{"RequestId":"r-400","HostId":"onsmqtt.cn-hangzhou.aliyuncs.com",'
           . '"Code":"InstanceNotFound","Message":"Failed to find the instance."}';
my $ERR404 = '{"RequestId":"r-404","HostId":"h","Code":"ApiNotSupport",'
           . '"Message":"The specified API is not supported."}';
my $ERR500 = '{"RequestId":"r-500","HostId":"h","Code":"InternalError",'
           . '"Message":"An error occurred."}';

# a 400 JSON error of exactly $n bytes
sub sized_error {
    my ($n) = @_;
    my $head = '{"RequestId":"r-sized","Code":"InstanceNotFound","Message":"';
    my $tail = '"}';
    my $fill = $n - length($head) - length($tail);
    die "too small" if $fill < 0;
    return $head . ('m' x $fill) . $tail;
}

my $LIMIT1024 = sized_error(1024);
my $LIMIT1025 = sized_error(1025);

# streamed bodies from the mock upstream
my $BIG = '{"RequestId":"r-big","Data":"' . ('0123456789abcdef' x 65536) . '"}';  # ~1 MB
my $FIRST = 65536;                 # sent before the pause

my $GZ_JSON = '{"RequestId":"r-gz","Code":"InstanceNotFound","Message":"gzip"}';
my $GZ;
IO::Compress::Gzip::gzip(\$GZ_JSON => \$GZ) or die "gzip failed";

my $J307 = '{"RequestId":"r-307","Code":"InstanceNotFound","Message":"moved"}';

my $CHUNKED_ERR = '{"RequestId":"r-ch","HostId":"h","Code":"InstanceNotFound",'
                . '"Message":"chunked"}';
my $ERR1500 = sized_error(1500);
my $ERR900 = sized_error(900);
my $ERR70K = sized_error(70000);
my $ERR64K = sized_error(65536);

sub chunk { sprintf("%x\r\n", length $_[0]) . $_[0] . "\r\n" }

# send $body as chunks of the given sizes, pausing between them
sub chunked_steps {
    my ($status, $ctype, $body, $pause, @sizes) = @_;
    my @steps = ([send => "HTTP/1.1 $status X\r\nContent-Type: $ctype\r\n"
                         . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"]);
    my $off = 0;
    for my $s (@sizes, length $body) {
        last if $off >= length $body;
        my $piece = substr($body, $off, $s);
        $off += length $piece;
        push @steps, [send => chunk($piece)], [sleep => $pause];
    }
    push @steps, [send => "0\r\n\r\n"], [close => 1];
    return \@steps;
}

my $mock = mock_upstream(per_request => sub {
    my ($head) = @_;
    my ($path) = $head =~ /^\S+ (\S+)/;
    $path =~ s{^/[a-z]+/}{/};

    if ($path eq '/big200cl') {
        return [[send => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         . "Content-Length: " . length($BIG) . "\r\nConnection: close\r\n\r\n"
                         . substr($BIG, 0, $FIRST)],
                [sleep => 1],
                [send => substr($BIG, $FIRST)], [close => 1]];
    }
    if ($path eq '/big200chunked') {
        my @s = ([send => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                          . chunk(substr($BIG, 0, $FIRST))],
                 [sleep => 1]);
        for (my $o = $FIRST; $o < length $BIG; $o += 100000) {
            push @s, [send => chunk(substr($BIG, $o, 100000))];
        }
        return [@s, [send => "0\r\n\r\n"], [close => 1]];
    }
    if ($path eq '/ok200chunkedcode') {
        return chunked_steps('200 OK', 'application/json', $ERR400, 0.05, 20, 20);
    }
    if ($path eq '/gzip400') {
        return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         . "Content-Encoding: gzip\r\nContent-Length: " . length($GZ)
                         . "\r\nConnection: close\r\n\r\n$GZ"], [close => 1]];
    }
    if ($path eq '/json307') {
        return [[send => "HTTP/1.1 307 Temporary Redirect\r\nContent-Type: application/json\r\n"
                         . "Location: http://example.com/elsewhere\r\nContent-Length: "
                         . length($J307) . "\r\nConnection: close\r\n\r\n$J307"], [close => 1]];
    }
    if ($path eq '/errchunked') {
        return chunked_steps('400 Bad Request', 'application/json;charset=utf-8',
                             $CHUNKED_ERR, 0.05, 17, 30);
    }
    if ($path eq '/err1500chunked') {
        return chunked_steps('400 Bad Request', 'application/json', $ERR1500, 0.1, 600, 600);
    }
    if ($path eq '/err900chunked') {
        return chunked_steps('400 Bad Request', 'application/json', $ERR900, 0.05, 300, 300);
    }
    if ($path eq '/err70kchunked') {
        return chunked_steps('400 Bad Request', 'application/json', $ERR70K, 0.05,
                             30000, 30000);
    }
    if ($path eq '/err64kchunked') {
        return chunked_steps('400 Bad Request', 'application/json', $ERR64K, 0.05,
                             30000, 30000);
    }
    if ($path eq '/err70kcl') {
        return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         . "Content-Length: " . length($ERR70K) . "\r\nConnection: close\r\n\r\n"
                         . $ERR70K], [close => 1]];
    }
    return [[send => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"],
            [close => 1]];
});
my $MOCK = $mock->port;

# ---------------------------------------------------------------------------
# nginx: PORT1 is a fixed-body upstream, PORT0 the gateway
# ---------------------------------------------------------------------------

my $ng = start_nginx(http => <<"EOF");
    upstream ka_upstream {
        server 127.0.0.1:%%PORT1%%;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        default_type application/json;

        location ~ /ok200\$ { return 200 '{"RequestId":"r-ok","Token":"abc"}'; }
        location ~ /ok200code\$ { return 200 '$ERR400'; }
        location ~ /ok201\$ { return 201 '{"RequestId":"r-201"}'; }
        location ~ /ok204\$ { return 204; }
        location ~ /redir302\$ { return 302 http://example.com/next; }
        location ~ /redir301\$ { return 301 http://example.com/moved; }
        location ~ /err303\$ { return 303 http://example.com/other; }
        location ~ /err400\$ { return 400 '$ERR400'; }
        location ~ /err500\$ { return 500 '$ERR500'; }
        location ~ /err404\$ { return 404 '$ERR404'; }
        location ~ /errtextjson\$ {
            default_type text/json;
            return 400 '$ERR400';
        }
        location ~ /errproblem\$ {
            default_type "application/problem+json; charset=utf-8";
            return 400 '$ERR400';
        }
        location ~ /trunc\$ { return 400 '{"RequestId":"r-t","Code":"InstanceNotF'; }
        location ~ /nocode\$ { return 400 '{"RequestId":"r-n","Message":"no code here"}'; }
        location ~ /nested\$ { return 400 '{"Error":{"Code":"InstanceNotFound"}}'; }
        location ~ /lowercode\$ { return 400 '{"code":"InstanceNotFound"}'; }
        location ~ /limit1024\$ { return 400 '$LIMIT1024'; }
        location ~ /limit1025\$ { return 400 '$LIMIT1025'; }
        location ~ /spoof\$ {
            add_header X-MQTTAPI-Error-Code Spoofed always;
            add_header X-MQTTAPI-Error-Category evil always;
            add_header X-MQTTAPI-Retryable maybe always;
            add_header X-MQTTAPI-Invalid-Parameter evil always;
            add_header x-mqttapi-error-cause evil always;
            return 400 '$ERR400';
        }
        location ~ /spoofok\$ {
            add_header X-MQTTAPI-Error-Code Spoofed always;
            return 200 '{"RequestId":"r-ok"}';
        }
        location ~ /conn\$ {
            return 400
                '{"Code":"InstanceNotFound","Conn":"\$connection","N":"\$connection_requests"}';
        }
        location ~ /okconn\$ {
            return 200 '{"Conn":"\$connection","N":"\$connection_requests"}';
        }
    }

    server {
        listen 127.0.0.1:%%PORT0%%;

        location /u/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
        location /nb/ {
            mqttapi on;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
        location /off/ {
            mqttapi off;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
        location /small/ {
            mqttapi on;
            mqttapi_max_body_size 1k;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
        location /gz/ {
            mqttapi on;
            gzip on;
            gzip_types application/json;
            gzip_min_length 1;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
        location /ka/ {
            mqttapi on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://ka_upstream;
        }

        location /m/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /mnb/ {
            mqttapi on;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /moff/ {
            mqttapi off;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /msmall/ {
            mqttapi on;
            mqttapi_max_body_size 1k;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /msmallnb/ {
            mqttapi on;
            mqttapi_max_body_size 1k;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:$MOCK;
        }
    }
EOF

my $GW = $ng->port(0);
my $UP = $ng->port(1);

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

my %HOP = map { $_ => 1 } qw(date server connection keep-alive transfer-encoding);

sub end_to_end_headers {
    my ($r) = @_;
    return [map { [lc $_->[0], $_->[1]] } grep { !$HOP{ lc $_->[0] } } @{ $r->{headers} }];
}

sub no_mqttapi_headers {
    my ($r, $w) = @_;
    my @x = grep { $_->[0] =~ /^x-mqttapi-/i } @{ $r->{headers} };
    ok(!@x, "$w: no X-MQTTAPI-* headers")
        or diag join "\n", map { "$_->[0]: $_->[1]" } @x;
    ok(!defined h($r, 'x-acs-retry-after') && !defined h($r, 'Content-Language'),
       "$w: no x-acs-retry-after, no Content-Language");
}

# same_as_direct($path, %opt): the gateway's answer to $path is the
# upstream's answer to the same request, byte for byte.
#   %opt: method
sub same_as_direct {
    my ($path, %opt) = @_;
    my $m = $opt{method} // 'GET';
    my $w = "$m $path";
    my $d = http_request(port => $UP, path => $path, method => $m);
    my $r = http_request(port => $GW, path => $path, method => $m);
    ok(!$d->{error} && !$r->{error}, "$w: answered")
        or diag "direct: " . ($d->{error} // '') . " gateway: " . ($r->{error} // '');
    is($r->{status}, $d->{status}, "$w: status $d->{status} as upstream");
    is($r->{reason}, $d->{reason}, "$w: reason phrase as upstream");
    ok($r->{body} eq $d->{body}, "$w: body byte for byte")
        or diag "upstream: $d->{body}\ngateway:  $r->{body}";
    is_deeply(end_to_end_headers($r), end_to_end_headers($d), "$w: headers as upstream");
    # the gateway adds nothing (the upstream's own X-MQTTAPI-* are compared above)
    no_mqttapi_headers($r, $w) unless grep { $_->[0] =~ /^x-mqttapi-/i } @{ $d->{headers} };
    return ($r, $d);
}

# annotated($r, $orig, $w, %opt): $r is $orig annotated (augment)
sub annotated {
    my ($r, $orig, $w, %opt) = @_;
    my $code = $opt{code} // 'InstanceNotFound';
    ok(!$r->{error}, "$w: answered") or diag $r->{error};
    is($r->{status}, $opt{status} // 400, "$w: status");
    is(h($r, 'X-MQTTAPI-Error-Code'), $code, "$w: X-MQTTAPI-Error-Code");
    is(scalar(my @c = headers_all($r, 'X-MQTTAPI-Error-Code')), 1,
       "$w: one X-MQTTAPI-Error-Code");
    is(h($r, 'X-MQTTAPI-Retryable'), $opt{retryable} // 'false', "$w: X-MQTTAPI-Retryable");
    my $cut = rindex($orig, '}');
    is(substr($r->{body}, 0, $cut), substr($orig, 0, $cut), "$w: original bytes first");
    is(substr($r->{body}, length($r->{body}) - (length($orig) - $cut)), substr($orig, $cut),
       "$w: original ending kept");
    my ($d, $keys) = json_decode_ordered($r->{body});
    ok($d, "$w: valid JSON") or return;
    my (undef, $okeys) = json_decode_ordered($orig);
    is_deeply([@$keys[0 .. $#$okeys]], $okeys, "$w: original keys first, in order");
    is($d->{Code}, $code, "$w: body Code");
    ok(defined $d->{Cause} && defined $d->{Category} && defined $d->{Retryable},
       "$w: body has Cause, Category, Retryable");
    is(h($r, 'Content-Length'), length $r->{body}, "$w: Content-Length is the body length");
    return $d;
}

# Send a GET, note when the first body bytes arrive, then read the rest.
# Returns (response, seconds to the first $want body bytes, total seconds).
sub timed_get {
    my ($port, $path, $want) = @_;
    my $t0 = Time::HiRes::time();
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or return ({ error => "connect: $!" }, 99, 99);
    print {$s} "GET $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    my $buf = '';
    my $first;
    my $sel = IO::Select->new($s);
    while (!defined $first && Time::HiRes::time() - $t0 < 10) {
        next unless $sel->can_read(0.05);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
        my $i = index($buf, "\r\n\r\n");
        $first = Time::HiRes::time() - $t0 if $i >= 0 && length($buf) - $i - 4 >= $want;
    }
    ${*$s}{mqttapi_buf} = $buf;        # MqttapiTest reads leftovers first
    my $r = http_read_response($s, timeout => 10);
    return ($r, $first // 99, Time::HiRes::time() - $t0);
}

# ---------------------------------------------------------------------------
# 2xx and 3xx: byte for byte
# ---------------------------------------------------------------------------

same_as_direct("/u/$_") for qw(ok200 ok200code ok201 ok204 redir302 redir301 err303);
same_as_direct("/nb/$_") for qw(ok200 ok200code);
same_as_direct('/u/spoofok');      # a success is never touched, whatever its headers

{
    # a JSON 3xx with a "Code" (from the mock: its bytes are known)
    my $r = get($GW, '/m/json307');
    is($r->{status}, 307, '307 JSON: status');
    is($r->{body}, $J307, '307 JSON: body byte for byte');
    is(h($r, 'Location'), 'http://example.com/elsewhere', '307 JSON: Location');
    is(h($r, 'Content-Length'), length $J307, '307 JSON: Content-Length');
    no_mqttapi_headers($r, '307 JSON');
}

{
    # a 200 with a "Code", chunked: never annotated, stays chunked
    my $r = get($GW, '/m/ok200chunkedcode');
    is($r->{status}, 200, '200 chunked with Code: status');
    is($r->{body}, $ERR400, '200 chunked with Code: body byte for byte');
    ok($r->{chunked}, '200 chunked with Code: still chunked');
    no_mqttapi_headers($r, '200 chunked with Code');
}

# large successes are streamed, not held back nor altered
for my $loc (qw(moff m mnb)) {
    for my $p (qw(big200cl big200chunked)) {
        my $w = "large 200 /$loc/$p";
        my ($r, $first, $total) = timed_get($GW, "/$loc/$p", 1000);
        ok(!$r->{error}, "$w: answered") or diag $r->{error};
        is($r->{status}, 200, "$w: status");
        ok($r->{body} eq $BIG, "$w: body byte for byte (" . length($BIG) . " bytes)")
            or diag "got " . length($r->{body}) . " bytes";
        cmp_ok($total, '>=', 0.9, "$w: the upstream paused (sanity)");
        cmp_ok($first, '<', 0.7, "$w: first bytes sent before the upstream's pause ended");
        if ($p eq 'big200cl') {
            is(h($r, 'Content-Length'), length $BIG, "$w: Content-Length kept");
        } else {
            ok($r->{chunked}, "$w: chunked to the client");
        }
        no_mqttapi_headers($r, $w);
    }
}

# ---------------------------------------------------------------------------
# Errors that are passed through
# ---------------------------------------------------------------------------

# HEAD on an error
{
    my ($r) = same_as_direct('/u/err400', method => 'HEAD');
    is($r->{body}, '', 'HEAD: no body');
    is(h($r, 'Content-Length'), length $ERR400, 'HEAD: the upstream Content-Length');

    # the connection is still in sync after the HEAD
    my $h = http_request(port => $GW, path => '/u/err400', method => 'HEAD', keepalive => 1);
    ok($h->{sock}, 'HEAD: connection kept alive');
    my $g = http_request(sock => $h->{sock}, path => '/u/err400');
    annotated($g, $ERR400, 'GET after HEAD on one connection');
}

# unparsable JSON, JSON without a top-level string "Code"
for my $p (qw(trunc nocode nested lowercode)) {
    my $mark = $ng->error_log_mark;
    same_as_direct("/u/$p");
    same_as_direct("/nb/$p");
    like($ng->error_log($mark), qr/\[info\].*mqttapi/,
         "/u/$p: the pass-through is logged at info");
}

# gzip error bodies
{
    my $r = get($GW, '/m/gzip400');
    is($r->{status}, 400, 'gzip error: status');
    ok($r->{body} eq $GZ, 'gzip error: compressed body byte for byte');
    is(h($r, 'Content-Encoding'), 'gzip', 'gzip error: Content-Encoding kept');
    is(h($r, 'Content-Length'), length $GZ, 'gzip error: Content-Length kept');
    no_mqttapi_headers($r, 'gzip error');
}

# bodies over mqttapi_max_body_size, by Content-Length
{
    my $mark = $ng->error_log_mark;
    same_as_direct('/small/limit1025');
    like($ng->error_log($mark), qr/\[info\].*mqttapi.*mqttapi_max_body_size/,
         'over the limit: logged at info');
    annotated(get($GW, '/small/limit1024'), $LIMIT1024, 'exactly mqttapi_max_body_size');
    annotated(get($GW, '/u/limit1025'), $LIMIT1025, 'under the default limit');

    my $r = get($GW, '/m/err70kcl');
    is($r->{status}, 400, 'over the default 64k (Content-Length): status');
    ok($r->{body} eq $ERR70K, 'over the default 64k (Content-Length): body byte for byte');
    is(h($r, 'Content-Length'), length $ERR70K, 'over the default 64k: Content-Length kept');
    no_mqttapi_headers($r, 'over the default 64k (Content-Length)');
}

# bodies over the limit, discovered mid-stream (chunked, slow upstream)
for my $c (['/msmall/err1500chunked', $ERR1500], ['/msmallnb/err1500chunked', $ERR1500],
           ['/m/err70kchunked', $ERR70K], ['/mnb/err70kchunked', $ERR70K]) {
    my ($path, $body) = @$c;
    my $w = "over the limit mid-stream $path";
    my $mark = $ng->error_log_mark;
    my $r = get($GW, $path);
    ok(!$r->{error}, "$w: answered") or diag $r->{error};
    is($r->{status}, 400, "$w: status");
    ok($r->{body} eq $body, "$w: body byte for byte (" . length($body) . " bytes)")
        or diag "got " . length($r->{body}) . " bytes: " . substr($r->{body}, 0, 200);
    like(h($r, 'Content-Type') // '', qr{^application/json$}, "$w: Content-Type kept");
    no_mqttapi_headers($r, $w);
    like($ng->error_log($mark), qr/\[info\].*mqttapi/, "$w: logged at info");
}

# ---------------------------------------------------------------------------
# Errors that are annotated, over every transport
# ---------------------------------------------------------------------------

annotated(get($GW, '/u/err400'), $ERR400, 'plain error');
annotated(get($GW, '/u/err500'), $ERR500, '500 error', status => 500, code => 'InternalError',
          retryable => 'true');
annotated(get($GW, '/u/errtextjson'), $ERR400, 'text/json error');
annotated(get($GW, '/u/errproblem'), $ERR400, 'application/problem+json error');
annotated(get($GW, '/nb/err400'), $ERR400, 'proxy_buffering off');
annotated(get($GW, '/nb/err500'), $ERR500, 'proxy_buffering off, 500', status => 500,
          code => 'InternalError', retryable => 'true');
for my $loc (qw(m mnb)) {
    my $r = get($GW, "/$loc/errchunked");
    annotated($r, $CHUNKED_ERR, "chunked upstream error /$loc/");
    like(h($r, 'Content-Type') // '', qr{^application/json}, "chunked /$loc/: JSON content type");
}
annotated(get($GW, '/msmall/err900chunked'), $ERR900, 'chunked, under the limit');
annotated(get($GW, '/msmallnb/err900chunked'), $ERR900, 'chunked, under the limit, unbuffered');
annotated(get($GW, '/m/err64kchunked'), $ERR64K, 'chunked, exactly 64k');
annotated(get($GW, '/mnb/err64kchunked'), $ERR64K, 'chunked, exactly 64k, unbuffered');

# `mqttapi off`: untouched
same_as_direct("/off/$_") for qw(err400 err500 trunc spoof);

# the upstream's own X-MQTTAPI-* headers are not reflected
{
    my $r = get($GW, '/u/spoof');
    annotated($r, $ERR400, 'spoofed upstream headers');
    is_deeply([headers_all($r, 'X-MQTTAPI-Error-Code')], ['InstanceNotFound'],
              'spoofed: only the real code');
    is_deeply([headers_all($r, 'X-MQTTAPI-Error-Category')], ['unknown'],
              'spoofed: only the real category');
    is_deeply([headers_all($r, 'X-MQTTAPI-Retryable')], ['false'],
              'spoofed: only the real retryable');
    is_deeply([headers_all($r, 'X-MQTTAPI-Invalid-Parameter')], [],
              'spoofed: no Invalid-Parameter');
    is(scalar(my @c = headers_all($r, 'X-MQTTAPI-Error-Cause')), 1, 'spoofed: one cause');
    ok(!grep({ $_->[1] =~ /evil|Spoofed|maybe/ } @{ $r->{headers} }),
       'spoofed: no upstream value in any header');
}

# keepalive: two (three) requests on one client connection
{
    my $r1 = http_request(port => $GW, path => '/u/err400', keepalive => 1);
    annotated($r1, $ERR400, 'keepalive 1st (annotated)');
    ok($r1->{sock}, 'keepalive: connection kept after an annotated error');
    my $r2 = http_request(sock => $r1->{sock}, path => '/u/ok200', keepalive => 1);
    is($r2->{status}, 200, 'keepalive 2nd: 200 on the same connection');
    is($r2->{body}, '{"RequestId":"r-ok","Token":"abc"}', 'keepalive 2nd: body');
    ok($r2->{sock}, 'keepalive: connection kept after the success');
    my $r3 = http_request(sock => $r2->{sock}, path => '/m/errchunked');
    annotated($r3, $CHUNKED_ERR, 'keepalive 3rd (annotated, chunked upstream)');
}

# pipelined: the second request waits for the annotated first one
{
    my $raw = "GET /m/errchunked HTTP/1.1\r\nHost: localhost\r\n\r\n"
            . "GET /u/err400 HTTP/1.1\r\nHost: localhost\r\n\r\n"
            . "GET /u/ok200 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    my $r1 = http_request(port => $GW, raw => $raw, keepalive => 1);
    annotated($r1, $CHUNKED_ERR, 'pipelined 1st (chunked upstream)');
    ok($r1->{sock}, 'pipelined: connection open after the 1st');
    my $r2 = $r1->{sock} ? http_read_response($r1->{sock}, keepalive => 1) : {};
    annotated($r2, $ERR400, 'pipelined 2nd');
    my $r3 = $r2->{sock} ? http_read_response($r2->{sock}) : {};
    is($r3->{status}, 200, 'pipelined 3rd: 200');
    is($r3->{body}, '{"RequestId":"r-ok","Token":"abc"}', 'pipelined 3rd: body');
}

# an HTTP/1.0 client: no chunked encoding to fall back on
{
    my $r = http_request(port => $GW, path => '/m/errchunked', http_version => '1.0');
    annotated($r, $CHUNKED_ERR, 'HTTP/1.0 client, chunked upstream error');
    my $p = http_request(port => $GW, path => '/msmall/err1500chunked', http_version => '1.0');
    ok(!$p->{error}, 'HTTP/1.0 client, over the limit mid-stream: answered')
        or diag $p->{error};
    ok($p->{body} eq $ERR1500, 'HTTP/1.0 client, over the limit mid-stream: body byte for byte');
    ok(!$p->{chunked}, 'HTTP/1.0 client, over the limit mid-stream: not chunked');
    no_mqttapi_headers($p, 'HTTP/1.0 client, over the limit mid-stream');
}

# gzip in the gateway: the annotated error is compressed for a client that
# asked (nginx gzips 404s), and only then
{
    my $r = get($GW, '/gz/err404', 'Accept-Encoding' => 'gzip');
    is($r->{status}, 404, 'gzip on, client asked: status');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'ApiNotSupport', 'gzip on, client asked: annotated');
    is(h($r, 'Content-Encoding'), 'gzip', 'gzip on, client asked: compressed');
    my $plain;
    IO::Uncompress::Gunzip::gunzip(\$r->{body} => \$plain, Transparent => 0);
    my $u = { status => 404,
              headers => [grep { lc $_->[0] ne 'content-length' } @{ $r->{headers} }],
              header => { %{ $r->{header} } }, body => $plain // '' };
    $u->{header}{'content-length'} = length $u->{body};
    annotated($u, $ERR404, 'gzip on, client asked: the uncompressed body', status => 404,
              code => 'ApiNotSupport');

    my $p = get($GW, '/gz/err404');
    is(h($p, 'Content-Encoding'), undef, 'gzip on, client did not ask: not compressed');
    annotated($p, $ERR404, 'gzip on, client did not ask', status => 404, code => 'ApiNotSupport');
}

# keepalive to the upstream: the error body is read to its end, the
# upstream connection is reused
{
    my $r1 = get($GW, '/ka/conn');
    my $d1 = annotated($r1, conn_body($r1), 'upstream keepalive 1st');
    my $r2 = get($GW, '/ka/conn');
    my $d2 = annotated($r2, conn_body($r2), 'upstream keepalive 2nd');
    ok($d1 && $d2 && $d1->{Conn} eq $d2->{Conn}, 'upstream keepalive: same upstream connection')
        or diag explain [$d1 && $d1->{Conn}, $d2 && $d2->{Conn}];
    is($d2 && $d2->{N}, $d1 && $d1->{N} + 1, 'upstream keepalive: next request on it');
    my $r3 = get($GW, '/ka/okconn');
    my $d3 = json_decode($r3->{body});
    is($d3 && $d3->{Conn}, $d1 && $d1->{Conn},
       'upstream keepalive: success after errors reuses it');
}

# The upstream's body for /conn, from the values it reported.
sub conn_body {
    my ($r) = @_;
    my $d = json_decode($r->{body}) || {};
    return '{"Code":"InstanceNotFound","Conn":"' . ($d->{Conn} // '?')
         . '","N":"' . ($d->{N} // '?') . '"}';
}

unlike($ng->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/,
       'error log: no alert, crit, emerg, crash');

done_testing();
