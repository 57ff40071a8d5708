#!/usr/bin/perl
# What the module writes to the error log at warn and above carries no
# secret of the request: a signed request's Signature and AccessKeyId
# appear in those lines only inside nginx's own context (the request line
# and upstream URL nginx adds to every message about a request), never in
# the module's text; the Authorization header nowhere; and nothing of them
# in the access log of conf/gateway.conf's format.
#
# Every warn line the module writes is made: a back-off opened by the
# upstream's throttle code, requests answered locally, the probe after it,
# a dry run, a quota reject; the request carries its AccessKeyId (the
# zone's key) and Signature in the query and in an Authorization header.
# The info line about an unparsable upstream error body does not quote
# the body (an error message can echo the AccessKeyId).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use Time::HiRes ();
use MqttapiTest;

my $KEY = 'LTAIsecretAccessKey7';
my $SIG = 'c2VjcmV0U2lnbmF0dXJl';
my $AUTH = 'acs ' . $KEY . ':SecretAuthSig99';

# a low quota for RevokeToken, so that one is rejected
my $DIR = File::Temp::tempdir('mqttapi-log-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $DIR;
{
    open my $fh, '>', "$DIR/quota.json" or die $!;
    print {$fh} '{"actions":{"RevokeToken":{"quota":1}}}';
    close $fh;
}

my $ng = start_nginx(http => emulator_http() . <<"EOF");
    log_format mqttapi '\$remote_addr [\$time_local] '
                       '"\$request_method \$uri Action=\$mqttapi_action" '
                       '\$status code=\$mqttapi_error_code '
                       'throttle=\$mqttapi_throttle';

    mqttapi_throttle_zone \$arg_AccessKeyId zone=t:1m backoff=1s max_backoff=1s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=d:1m backoff=30s max_backoff=30s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=q:1m;

    server {
        listen 127.0.0.1:%%PORT0%%;
        access_log %%PREFIX%%/gateway.log mqttapi;

        mqttapi on;
        mqttapi_throttle_log_level warn;

        location /t/ {
            mqttapi_throttle zone=t;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /d/ {
            mqttapi_throttle zone=d;
            mqttapi_throttle_dry_run on;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /q/ {
            mqttapi_quota zone=q;
            mqttapi_catalog $DIR/quota.json;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /cut/ {
            proxy_pass http://127.0.0.1:%%PORT2%%/;
        }
    }

    # an upstream error that echoes the request, not JSON: jansson's
    # message quotes a short token ("invalid token near 'LTAIsecret...'")
    server {
        listen 127.0.0.1:%%PORT2%%;
        default_type application/json;
        location / {
            return 400 '{"RequestId":"c","Code":"SignatureDoesNotMatch","Message":"m","Key":$KEY}';
        }
    }
EOF


my $GW = $ng->port(0);
my $Q = "AccessKeyId=$KEY&Signature=$SIG&SignatureNonce=n1";
my @H = (Authorization => $AUTH);

# the back-off: opened, answered locally, over, probed, closed
my $r = get($GW, "/t/?$Q&Action=ApplyToken&mqttemu_code=ApplyTokenOverFlow", @H);
is(h($r, 'X-MQTTAPI-Error-Code'), 'ApplyTokenOverFlow', 'the upstream throttles');
$r = get($GW, "/t/?$Q&Action=ApplyToken", @H);
is($r->{status}, 429, 'answered locally');
my $deadline = Time::HiRes::time() + 10;
do {
    Time::HiRes::sleep(0.2);
    $r = get($GW, "/t/?$Q&Action=ListGroupId&InstanceId=mqtt-cn-x", @H);
} while ($r->{status} == 429 && Time::HiRes::time() < $deadline);
is($r->{status}, 200, 'the back-off is over: the probe is answered');

# a dry run
get($GW, "/d/?$Q&Action=ApplyToken&mqttemu_code=ApplyTokenOverFlow", @H);
$r = get($GW, "/d/?$Q&Action=ListGroupId&InstanceId=mqtt-cn-x", @H);
is($r->{status}, 200, 'dry run: not answered locally');

# a quota reject
for (1 .. 5) {
    $r = get($GW, "/q/?$Q&Action=RevokeToken", @H);
    last if $r->{status} == 429;
}
is($r->{status}, 429, 'quota: answered locally');

# an unparsable error body that holds the key: passed through, and the
# info line about it says why without quoting the body
$r = get($GW, "/cut/?Action=ApplyToken");
like($r->{body}, qr/\Q$KEY\E/, 'unparsable body: passed through as it is');
my ($info) = grep { /unparsable error body/ } split /\n/, $ng->error_log;
like($info // '', qr/\[info\].*: invalid token at byte \d+[ ,]/,
     'unparsable body: an info line says why, and where');
ok(defined $info && $info !~ /LTAIsecret/, 'unparsable body: that line does not quote the body')
    or diag $info // 'no such line';

# ---------------------------------------------------------------------------

my @lines = grep { /\[(warn|error|crit|alert|emerg)\]/ && /mqttapi/ }
            split /\n/, $ng->error_log;

for my $what (qr/backing off/, qr/answering "ApplyTokenOverFlow" locally/,
              qr/probing/, qr/probe was answered/, qr/dry run/,
              qr/answering "\w+" locally/) {
    ok((grep { $_ =~ $what } @lines), "a warn line: $what");
}

my $with_request = 0;
for my $l (@lines) {
    # nginx's context: ", client: ..., server: ..., request: "...",
    # upstream: "...", host: ..." (the request line and the upstream's URL
    # carry the query as nginx writes them in any message)
    my ($own, $context) = $l =~ /^(.*?)(, client: .*)?$/;
    $with_request++ if ($context // '') =~ /request: "[^"]*\Q$SIG\E/;
    unlike($own, qr/\Q$KEY\E|\Q$SIG\E|SecretAuthSig/,
           "the module's own text carries no secret: " . substr($own, 0, 100));
    unlike($l, qr/SecretAuthSig/, 'no line carries the Authorization header');
}
cmp_ok(scalar @lines, '>=', 6, 'warn lines of the module were written');
ok($with_request, "nginx's own request: context does carry the query (sanity)");

# the access log of conf/gateway.conf's format: the action, not the query
{
    my $log = do {
        open my $fh, '<', $ng->prefix . '/gateway.log' or die $!;
        local $/;
        <$fh>;
    };
    like($log, qr/"GET \/t\/ Action=ApplyToken" 429 code=ApplyTokenOverFlow throttle=rejected/,
         'access log: the local answer, with its action');
    unlike($log, qr/\Q$KEY\E|\Q$SIG\E|SecretAuthSig/, 'access log: no secret');
}

done_testing();
