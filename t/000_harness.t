#!/usr/bin/perl
# Self-test of t/lib/MqttapiTest.pm, run against plain nginx (the mqttapi
# module is NOT loaded), so it works before the module is built.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MqttapiTest;

# ---------------------------------------------------------------------------
# JSON helpers (no nginx needed)
# ---------------------------------------------------------------------------

{
    my $txt = '{"z":1,"a":{"y":[1,{"q":2,"p":3}],"x":"s\"q"},"m":null,"\u00e9":true}';
    is_deeply([json_top_keys($txt)], ['z', 'a', 'm', "\x{e9}"], 'json_top_keys: document order');
    is_deeply([json_top_keys($txt, 'a')], ['y', 'x'], 'json_top_keys: nested path');
    is_deeply([json_top_keys($txt, 'a', 'y', 1)], ['q', 'p'], 'json_top_keys: path through array');
    my ($data, $keys) = json_decode_ordered($txt);
    is($data->{a}{x}, 's"q', 'json_decode_ordered: data');
    is_deeply($keys, ['z', 'a', 'm', "\x{e9}"], 'json_decode_ordered: keys');
    is(json_decode('{"a":'), undef, 'json_decode: invalid -> undef');
    is_deeply([json_top_keys('{"a":1} x')], [], 'json_top_keys: trailing garbage -> ()');
    is_deeply(json_decode('[1,"\u00e9"]'), [1, "\x{e9}"], 'json_decode: array / unicode');
}

# ---------------------------------------------------------------------------
# mock upstream + HTTP client, directly (no nginx)
# ---------------------------------------------------------------------------

{
    my $m = mock_upstream(script => [
        [send  => "HTTP/1.0 200 OK\r\nX-A: 1\r\nX-A: 2\r\n\r\nuntil "],
        [sleep => 0.05],
        [send  => "close"],
        [close => 1],
    ]);
    my $r = http_request(port => $m->port, path => '/x', body => 'hello',
                         headers => [[Host => 'mock'], ['X-Test', 'yes']]);
    ok(!$r->{error}, 'body until close: no error') or diag $r->{error};
    is($r->{status}, 200, 'body until close: status');
    is($r->{body}, 'until close', 'body until close: body');
    is(h($r, 'x-a'), '1, 2', 'h(): repeated header joined');
    is_deeply([headers_all($r, 'X-A')], [1, 2], 'headers_all()');
    is($m->count, 1, 'mock counted one request');
    my $req = $m->last_request;
    is($req->{path}, '/x', 'mock saw path');
    is($req->{body}, 'hello', 'mock saw request body');
    like($req->{head}, qr/^Host: mock\r$/m, 'mock saw our Host header');
    like($req->{head}, qr/^Connection: close\r$/m, 'Connection: close sent by default');
    $m->stop;
    my $r2 = http_request(port => $m->port, timeout => 2);
    ok($r2->{error}, 'connect to stopped mock -> error');
}

{
    # raw chunked response, truncated body, timeout
    my $m = mock_upstream(per_request => sub {
        my ($head) = @_;
        my ($path) = $head =~ /^\S+ (\S+)/;
        return [[send => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       . "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"]]
            if $path eq '/chunked';
        return [[send => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], [close => 1]]
            if $path eq '/short';
        return [[hang => 1]] if $path eq '/hang';
        return [[send => "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n$path"]];
    });
    my $r = http_request(port => $m->port, path => '/chunked', keepalive => 1);
    ok(!$r->{error}, 'chunked: no error') or diag $r->{error};
    ok($r->{chunked}, 'chunked: flag');
    is($r->{body}, 'hello world', 'chunked: decoded body');
    is($r->{raw_body}, "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
       'chunked: raw body');
    is_deeply($r->{chunks}, [5, 6], 'chunked: chunk sizes');
    is_deeply($r->{trailers}, [['X-Trailer', 't']], 'chunked: trailers');
    ok($r->{sock}, 'keepalive socket returned');
    my $r2 = http_request(sock => $r->{sock}, path => '/ab', keepalive => 1);
    is($r2->{body}, '/ab', 'second request on mock keepalive connection');
    is($m->connections, 1, 'mock: one connection');
    is($m->count, 2, 'mock: two requests');
    close $r2->{sock};

    my $s = http_request(port => $m->port, path => '/short');
    like($s->{error}, qr/closed before end of body/, 'truncated body -> error');
    is($s->{body}, 'abc', 'truncated body: partial body kept');

    my $t0 = Time::HiRes::time();
    my $h = http_request(port => $m->port, path => '/hang', timeout => 0.5);
    like($h->{error}, qr/timeout/, 'hanging upstream -> timeout error');
    cmp_ok(Time::HiRes::time() - $t0, '<', 3, 'timeout honoured');
}

# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------

my $mock = mock_upstream(script => [
    [send  => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            . "5\r\nhello\r\n"],
    [sleep => 0.05],
    [send  => "6\r\n world\r\n0\r\n\r\n"],
    [close => 1],
]);
my $mport = $mock->port;

my $http = <<"EOF";
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location /json { return 200 '{"a":1}'; }
        location /conn { return 200 "\$connection \$connection_requests"; }
        location /prefix { return 200 "%%PREFIX%%"; }
        location /up {
            proxy_pass http://127.0.0.1:$mport;
            proxy_http_version 1.1;
            proxy_buffering off;
        }
        location /second { proxy_pass http://127.0.0.1:%%PORT1%%/; }
    }
    server {
        listen 127.0.0.1:%%PORT1%%;
        location / { return 200 "second server\\n"; }
    }
EOF

my $ng = start_nginx(http => $http, load_module => 0, workers => 2);
ok($ng, 'nginx started');
my $port = $ng->port(0);
isnt($port, $ng->port(1), 'distinct ports');
unlike($ng->config, qr/load_module/, 'load_module => 0 honoured');
is(scalar(my @w = $ng->worker_pids), 2, 'two workers');

{
    my $r = get($port, '/json');
    is($r->{status}, 200, 'GET /json status');
    is($r->{body}, '{"a":1}', 'GET /json body byte-exact');
    is(h($r, 'Content-Length'), 7, 'Content-Length');
    is_deeply(json_decode($r->{body}), { a => 1 }, 'json_decode of body');
    ok(!$r->{sock}, 'no socket kept without keepalive');

    $r = get($port, '/prefix');
    is($r->{body}, $ng->prefix, '%%PREFIX%% substituted');

    $r = get($port, '/second', Host => 'example');
    is($r->{body}, "second server\n", 'PORT1 server via proxy_pass');
}

{
    # HEAD: Content-Length but no body; then a GET on the same connection
    # proves no body bytes were left behind.
    my $r = http_request(port => $port, method => 'HEAD', path => '/json', keepalive => 1);
    is($r->{status}, 200, 'HEAD status');
    is(h($r, 'content-length'), 7, 'HEAD Content-Length');
    is($r->{body}, '', 'HEAD: empty body');
    ok($r->{sock}, 'HEAD: keepalive socket');
    my $r2 = http_request(sock => $r->{sock}, path => '/json');
    is($r2->{body}, '{"a":1}', 'GET after HEAD on same connection');
}

{
    # keepalive: two requests on one connection
    my $r1 = http_request(port => $port, path => '/conn', keepalive => 1);
    ok($r1->{sock}, 'keepalive: socket returned');
    my ($c1, $n1) = split ' ', $r1->{body};
    is($n1, 1, 'first request on connection');
    my $r2 = http_request(sock => $r1->{sock}, path => '/conn', keepalive => 1);
    my ($c2, $n2) = split ' ', $r2->{body};
    is($c2, $c1, 'same nginx connection');
    is($n2, 2, 'second request on connection');
    my $r3 = http_request(sock => $r2->{sock}, path => '/conn');
    is((split ' ', $r3->{body})[1], 3, 'third request, Connection: close');
    is(lc h($r3, 'connection'), 'close', 'server answered Connection: close');
    ok(!$r3->{sock}, 'socket not returned after close');
}

{
    # chunked response through proxy_pass from the mock
    my $r = get($port, '/up/x?y=1');
    ok(!$r->{error}, 'proxied chunked: no error') or diag $r->{error};
    is($r->{status}, 200, 'proxied chunked: status');
    ok($r->{chunked}, 'proxied chunked: client saw chunked encoding');
    is($r->{body}, 'hello world', 'proxied chunked: body');
    is($mock->count, 1, 'mock counted the proxied request');
    is(($mock->requests)[0]{path}, '/up/x?y=1', 'mock saw the proxied path');
    get($port, '/up/again');
    is($mock->count, 2, 'mock count incremented');
}

{
    # nginx -t on the running config
    my ($rc, $out) = $ng->nginx_t;
    is($rc, 0, 'nginx_t: ok') or diag $out;
    like($out, qr/syntax is ok/, 'nginx_t: output');
}

{
    # reload with a changed config
    my @old = $ng->worker_pids;
    (my $new = $http) =~ s{location /json}{location /v2 { return 200 "v2"; }\n        location /json};
    ok($ng->reload(http => $new), 'reload ok');
    my %old = map { $_ => 1 } @old;
    my @now = $ng->worker_pids;
    is(scalar(grep { $old{$_} } @now), 0, 'reload: all workers replaced');
    is(get($port, '/v2')->{body}, 'v2', 'reload: new location active');

    # plain reload (no config change)
    ok($ng->reload, 'plain reload ok');

    # broken config: reload reports failure quickly, old config keeps serving
    my $t0 = Time::HiRes::time();
    ok(!$ng->reload(http => "$new\n    bogus_directive on;\n"), 'reload with bad config fails');
    cmp_ok(Time::HiRes::time() - $t0, '<', 5, 'failed reload detected quickly');
    like($ng->error_log, qr/unknown directive "bogus_directive"/, 'error_log has the reason');
    is(get($port, '/v2')->{body}, 'v2', 'old config still serving');
    my ($rc, $out) = $ng->nginx_t;
    isnt($rc, 0, 'nginx_t on the broken config fails');
    $ng->write_config(http => $new);
}

{
    # nginx_test_config
    my ($rc, $out) = nginx_test_config("server { listen 127.0.0.1:%%PORT0%%; bogus_directive on; }",
                                       load_module => 0);
    isnt($rc, 0, 'nginx_test_config: broken config -> non-zero');
    like($out, qr/unknown directive "bogus_directive"/, 'nginx_test_config: message');
    ($rc, $out) = nginx_test_config("server { listen 127.0.0.1:%%PORT0%%; }", load_module => 0);
    is($rc, 0, 'nginx_test_config: valid config -> 0') or diag $out;

    # start_nginx dies with the reason on a broken config
    my $ok = eval { start_nginx(http => 'bogus_directive on;', load_module => 0); 1 };
    ok(!$ok, 'start_nginx dies on broken config');
    like($@, qr/bogus_directive/, 'start_nginx error mentions the directive');
}

{
    # stop
    my $pid = $ng->pid;
    ok(kill(0, $pid), 'master alive before stop');
    $ng->stop;
    ok(!MqttapiTest::_alive($pid), 'master gone after stop');
    my $r = get($port, '/json');
    ok($r->{error}, 'no longer answering after stop');
}

{
    # DESTROY stops nginx
    my $n2 = start_nginx(http => "server { listen 127.0.0.1:%%PORT0%%; return 204; }",
                         load_module => 0);
    my $r = get($n2->port(0), '/');
    is($r->{status}, 204, '204 response');
    is($r->{body}, '', '204: no body');
    my $pid = $n2->pid;
    undef $n2;
    ok(!MqttapiTest::_alive($pid), 'nginx stopped by DESTROY');
}

done_testing();
