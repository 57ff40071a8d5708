#!/usr/bin/perl
# The fast scan of JSON error bodies (src/ngx_http_mqttapi_json.c) skips
# the plain characters of a string 16 at a time with SSE2, else 8 at a time
# in a 64-bit word.  Both variants are driven here: the module as built,
# and a second build of it with __SSE2__ undefined (the word-at-a-time
# scan every other machine compiles).  In a string of every length from 0
# to 40, and with a special character at every position of a 40-byte
# string, what the client receives must be what the body calls for:
#
#   plain, escape ("\""), escape_u ("\u0041"), utf8 (two-byte UTF-8),
#   long_key (a member name of that length before "Code")
#       annotated: X-MQTTAPI-Error-Code, the original bytes kept
#   control (a raw 0x01), bad_utf8 (0xff), bad_escape ("\q")
#       invalid JSON: the upstream's bytes unchanged, no annotation

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MqttapiTest;

my $REPO = repo_dir();
my $CODE = 'InstanceNotFound';
my $MAX  = 40;

my %KINDS = (
    plain      => ['annotated', sub { 'x' x $_[0] }],
    escape     => ['annotated', sub { ('x' x $_[0]) . '\\"' . ('y' x ($MAX - $_[0])) }],
    escape_u   => ['annotated', sub { ('x' x $_[0]) . '\\u0041' . ('y' x ($MAX - $_[0])) }],
    utf8       => ['annotated', sub { ('x' x $_[0]) . "\xc3\xa9" . ('y' x ($MAX - $_[0])) }],
    control    => ['pass',      sub { ('x' x $_[0]) . "\x01" . ('y' x ($MAX - $_[0])) }],
    bad_utf8   => ['pass',      sub { ('x' x $_[0]) . "\xff" . ('y' x ($MAX - $_[0])) }],
    bad_escape => ['pass',      sub { ('x' x $_[0]) . '\\q' . ('y' x ($MAX - $_[0])) }],
);

sub body_of {
    my ($kind, $k) = @_;
    if ($kind eq 'long_key') {
        my $key = 'K' x ($k + 1);
        return qq({"RequestId":"r","$key":"v","Code":"$CODE","Message":"m"});
    }
    my $msg = $KINDS{$kind}[1]->($k);
    return qq({"RequestId":"r","Message":"$msg","Code":"$CODE"});
}

sub expected_of { $_[0] eq 'long_key' ? 'annotated' : $KINDS{$_[0]}[0] }

my @KINDS = ((sort keys %KINDS), 'long_key');

my $mock = mock_upstream(per_request => sub {
    my ($head) = @_;
    my ($kind, $k) = $head =~ m{^\S+ /c/(\w+)/(\d+)};
    my $body = defined $kind ? body_of($kind, $k) : '{"Code":"NoSuchCase"}';
    return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     . "Content-Length: " . length($body)
                     . "\r\nConnection: close\r\n\r\n$body"], [close => 1]];
});
my $MOCK = $mock->port;

# ---------------------------------------------------------------------------
# The word-at-a-time build, beside the real one
# ---------------------------------------------------------------------------

my $tmp = MqttapiTest::_tempdir('swar');
my ($rc, $out) = MqttapiTest::_run_cmd('make', '--no-print-directory', '-C', $REPO,
                                       "BUILD=$tmp/build", 'CC_OPT=-U__SSE2__', 'module');
is($rc, 0, 'the module builds with __SSE2__ undefined') or diag $out;

my %BUILDS = (
    as_built => $MqttapiTest::MODULE,
    no_sse2  => "$tmp/build/ngx_http_mqttapi_module.so",
);

sub run_build {
    my ($build) = @_;

    # the second build is a dynamic module for the packaged nginx, also
    # when the suite runs against an nginx with the module compiled in
    local $MqttapiTest::MODULE = $BUILDS{$build};
    local $MqttapiTest::NGINX = $build eq 'no_sse2' ? '/usr/sbin/nginx'
                                                    : $MqttapiTest::NGINX;

    my $ng = start_nginx(http => <<"EOF");
    server {
        listen 127.0.0.1:%%PORT0%%;

        location /c/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:$MOCK;
        }
    }
EOF
    my $gw = $ng->port(0);
    my @wrong;

    for my $kind (@KINDS) {
        for my $k (0 .. $MAX) {
            my $orig = body_of($kind, $k);
            my $want = expected_of($kind);
            my $r = get($gw, "/c/$kind/$k");
            my $code = h($r, 'X-MQTTAPI-Error-Code');
            my $b = $r->{body} // '';
            my $cut = rindex($orig, '}');
            my $got;

            if (($r->{status} // 0) != 400) {
                $got = 'status ' . ($r->{status} // 'none');
            } elsif (defined $code && $code eq $CODE
                     && substr($b, 0, $cut) eq substr($orig, 0, $cut)
                     && $b =~ /"Cause":"[^"]+".*\}\z/s)
            {
                $got = 'annotated';
            } elsif (!defined $code && $b eq $orig) {
                $got = 'pass';
            } else {
                $got = 'something else (code ' . ($code // 'none') . ", body $b)";
            }

            push @wrong, "$kind at $k: $got, wanted $want" if $got ne $want;
        }
    }

    is(scalar @wrong, 0, "$build: every body of every kind and length answered as it should")
        or diag join "\n", @wrong[0 .. ($#wrong < 20 ? $#wrong : 19)];

    my $log = $ng->error_log;
    unlike($log, qr/\[(alert|crit|emerg)\]|signal \d+/, "$build: no alert, no crash");

    $ng->stop;
}

SKIP: {
    skip 'the no_sse2 build failed', 4 if $rc != 0;
    run_build($_) for sort keys %BUILDS;
}

done_testing();
