#!/usr/bin/perl
# Configuration mistakes fail `nginx -t` at the line of the directive that
# made them, with a message that says why; settings that would silently
# do nothing are refused.
#
#   * mqttapi_max_body_size 0, mqttapi_throttle_status out of 400-599,
#     an unknown zone in mqttapi_throttle / mqttapi_quota: the message and
#     the line of the directive (not the end of the http block);
#   * mqttapi_throttle / mqttapi_quota in a location without `mqttapi on`,
#     or at server or http level with `mqttapi` on in none of the
#     locations that inherit them (even when another server has it on):
#     refused, at their line; with `mqttapi on` after them, inherited, or
#     in some of the locations below a server-level setting (others with
#     `mqttapi off`): accepted;
#   * a zone declared after the locations that use it is found; a
#     directive in an included file is reported at that file's line;
#   * mqttapi_throttle_zone takes its key and parameters in any order,
#     and says "no key" when there is none; a key given last works (a
#     back-off through nginx).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use MqttapiTest;

# nginx -t of an http block; the line the error names must hold $marker
sub fails_at {
    my ($name, $http, $message, $marker) = @_;
    my ($rc, $out) = nginx_test_config($http);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $message, "$name: says why") or diag $out;
    my ($file, $line) = $out =~ /\[emerg\][^\n]* in (\S+):(\d+)\n/;
    ok($file, "$name: names a file and a line") or return;
    open my $fh, '<', $file or do { fail("$name: cannot read $file: $!"); return };
    my @lines = <$fh>;
    close $fh;
    like($lines[$line - 1] // '', qr/\Q$marker\E/, "$name: the line is the directive's ($line)")
        or diag "line $line: " . ($lines[$line - 1] // '(none)');
}

sub passes {
    my ($name, $http) = @_;
    my ($rc, $out) = nginx_test_config($http);
    is($rc, 0, "$name: nginx -t ok") or diag $out;
}

my $ZONE = 'mqttapi_throttle_zone $arg_AccessKeyId zone=t:1m;';
my $PROXY = 'proxy_pass http://127.0.0.1:%%PORT1%%;';

# ---------------------------------------------------------------------------
# Errors at the directive's line
# ---------------------------------------------------------------------------

fails_at('mqttapi_max_body_size 0', <<"EOF",
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / {
            mqttapi on;
            mqttapi_max_body_size 0;
            $PROXY
        }
        location /b { return 200; }
    }
EOF
    qr/"mqttapi_max_body_size" directive must not be zero/, 'mqttapi_max_body_size 0');

fails_at('mqttapi_throttle_status 600', <<"EOF",
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / {
            mqttapi on;
            mqttapi_throttle_status 600;
            $PROXY
        }
    }
EOF
    qr/between 400 and 599[^\n]*\n[^\n]*"mqttapi_throttle_status"/, 'mqttapi_throttle_status 600');

fails_at('unknown zone in mqttapi_throttle', <<"EOF",
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / {
            mqttapi on;
            mqttapi_throttle zone=nope;
            $PROXY
        }
        location /b { return 200; }
    }
EOF
    qr/"mqttapi_throttle" refers to an unknown mqttapi_throttle_zone "nope"/,
    'mqttapi_throttle zone=nope');

fails_at('unknown zone in mqttapi_quota', <<"EOF",
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        mqttapi_quota zone=none;
        location / { $PROXY }
    }
EOF
    qr/"mqttapi_quota" refers to an unknown mqttapi_throttle_zone "none"/,
    'mqttapi_quota zone=none');

# ---------------------------------------------------------------------------
# Settings that would do nothing
# ---------------------------------------------------------------------------

fails_at('mqttapi_throttle without mqttapi on', <<"EOF",
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        location /api/ { mqttapi on; $PROXY }
        location / {
            mqttapi_throttle zone=t;
            $PROXY
        }
    }
EOF
    qr/"mqttapi_throttle" needs "mqttapi on" in its location/, 'mqttapi_throttle zone=t');

fails_at('mqttapi_quota with mqttapi off', <<"EOF",
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location / {
            mqttapi off;
            mqttapi_quota zone=t;
            $PROXY
        }
    }
EOF
    qr/"mqttapi_quota" needs "mqttapi on" in its location/, 'mqttapi_quota zone=t');

fails_at('server-level mqttapi_throttle, mqttapi on nowhere', <<"EOF",
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi_throttle zone=t;
        location / { $PROXY }
    }
EOF
    qr/"mqttapi_throttle" has no effect: "mqttapi" is not on anywhere/, 'mqttapi_throttle zone=t');

# a server's setting is inherited by its locations: it must reach one where
# mqttapi is on, even when another server has it on (there, in its
# locations, or in none, its locations having "mqttapi off" or nothing)
for (['mqttapi_throttle', "location / { $PROXY }", 'location /health { mqttapi off; return 200; }'],
     ['mqttapi_quota', "location / { mqttapi off; $PROXY }"]) {
    my ($directive, @locations) = @$_;
    fails_at("server-level $directive, mqttapi on only in another server", <<"EOF",
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; $PROXY }
    }
    server {
        listen 127.0.0.1:%%PORT1%%;
        $directive zone=t;
        @locations
    }
EOF
        qr/"$directive" has no effect: "mqttapi" is on in none of the locations it applies to/,
        "$directive zone=t");
}

fails_at('http-level mqttapi_throttle, mqttapi on nowhere', <<"EOF",
    $ZONE
    mqttapi_throttle zone=t;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { $PROXY }
    }
EOF
    qr/"mqttapi_throttle" has no effect: "mqttapi" is not on anywhere/, 'mqttapi_throttle zone=t');

# in an included file: that file and its line
{
    my $dir = File::Temp::tempdir('mqttapi-inc-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $dir;
    open my $fh, '>', "$dir/api.conf" or die $!;
    print {$fh} "# an included location\n\nlocation /api/ {\n"
              . "    mqttapi_quota zone=t;\n    return 200;\n}\n";
    close $fh;
    fails_at('mqttapi_quota in an included file', <<"EOF",
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; $PROXY }
        include $dir/api.conf;
    }
EOF
        qr/"mqttapi_quota" needs "mqttapi on" in its location[^\n]* in \Q$dir\E\/api\.conf:4\n/,
        'mqttapi_quota zone=t');
}

passes('mqttapi on after mqttapi_throttle in the location', <<"EOF");
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi_throttle zone=t; mqttapi_quota zone=t; mqttapi on; $PROXY }
    }
EOF

passes('mqttapi on inherited from the server', <<"EOF");
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location / { mqttapi_throttle zone=t; $PROXY }
    }
EOF

passes('server-level mqttapi_throttle, mqttapi on in a location', <<"EOF");
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi_throttle zone=t;
        mqttapi_quota zone=t;
        location / { mqttapi on; $PROXY }
        location /static { return 200; }
    }
EOF

passes('mqttapi_throttle off where mqttapi is off', <<"EOF");
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi_throttle zone=t;
        location / { mqttapi on; $PROXY }
        location /static { mqttapi_throttle off; return 200; }
    }
EOF

passes('server-level mqttapi_throttle, mqttapi off in some of its locations', <<"EOF");
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        mqttapi_throttle zone=t;
        mqttapi_quota zone=t;
        location / { $PROXY }
        location /health { mqttapi off; return 200; }
    }
EOF

passes('http-level mqttapi_throttle, mqttapi on in one server', <<"EOF");
    $ZONE
    mqttapi_throttle zone=t;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; $PROXY }
    }
    server {
        listen 127.0.0.1:%%PORT1%%;
        location / { $PROXY }
    }
EOF

passes('location-level mqttapi_throttle, mqttapi on in a nested location', <<"EOF");
    $ZONE
    server {
        listen 127.0.0.1:%%PORT0%%;
        location /api/ {
            mqttapi_throttle zone=t;
            location /api/v1/ { mqttapi on; $PROXY }
        }
    }
EOF

passes('a zone declared after its use', <<"EOF");
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; mqttapi_throttle zone=late; $PROXY }
    }
    mqttapi_throttle_zone \$arg_AccessKeyId zone=late:1m;
EOF

# ---------------------------------------------------------------------------
# mqttapi_throttle_zone: any order, no key
# ---------------------------------------------------------------------------

for my $args ('zone=t:1m $arg_AccessKeyId backoff=2s',
              'backoff=2s max_backoff=9s zone=t:1m $arg_AccessKeyId',
              '$arg_AccessKeyId max_backoff=9s zone=t:1m',
              'zone=t:1m backoff=2s "$arg_AccessKeyId:$arg_Action"') {
    passes("mqttapi_throttle_zone $args", <<"EOF");
    mqttapi_throttle_zone $args;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; mqttapi_throttle zone=t; $PROXY }
    }
EOF
}

fails_at('mqttapi_throttle_zone without a key', <<"EOF",
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { return 200; }
    }
    mqttapi_throttle_zone zone=t:1m backoff=2s;
EOF
    qr/no key in "mqttapi_throttle_zone" directive/, 'mqttapi_throttle_zone zone=t:1m');

fails_at('mqttapi_throttle_zone with two keys', <<"EOF",
    mqttapi_throttle_zone \$arg_A zone=t:1m \$arg_B;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { return 200; }
    }
EOF
    qr/invalid parameter "\$arg_B" in "mqttapi_throttle_zone" directive/, 'mqttapi_throttle_zone');

fails_at('mqttapi_throttle_zone with an unknown parameter first', <<"EOF",
    mqttapi_throttle_zone rate=1r/s \$arg_A zone=t:1m;
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { return 200; }
    }
EOF
    qr/invalid parameter "rate=1r\/s" in "mqttapi_throttle_zone" directive/,
    'mqttapi_throttle_zone');

# a key given last: the back-off is per key, through nginx
{
    my $ng = start_nginx(http => emulator_http() . <<'EOF');
    mqttapi_throttle_zone zone=t:1m backoff=30s max_backoff=30s $arg_AccessKeyId;

    server {
        listen 127.0.0.1:%%PORT0%%;
        location / {
            mqttapi on;
            mqttapi_throttle zone=t;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }
EOF
    my $GW = $ng->port(0);
    my $r = get($GW, '/?AccessKeyId=k1&mqttemu_code=ApplyTokenOverFlow');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'ApplyTokenOverFlow', 'key last: the upstream throttles k1');
    ok(!defined h($r, 'X-MQTTAPI-Throttled'), 'key last: that answer is the upstream\'s');

    $r = get($GW, '/?AccessKeyId=k1&Action=ListGroupId&InstanceId=mqtt-cn-x');
    is($r->{status}, 429, 'key last: k1 is answered locally');
    is(h($r, 'X-MQTTAPI-Throttled'), 'gateway', 'key last: X-MQTTAPI-Throttled');

    $r = get($GW, '/?AccessKeyId=k2&Action=ListGroupId&InstanceId=mqtt-cn-x');
    is($r->{status}, 200, 'key last: another key is not');
}

done_testing();
