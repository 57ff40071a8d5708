#!/usr/bin/perl
# Headers the upstream sends with an error that the gateway annotates:
#
#   * Content-Language: the annotated body carries the catalog's text, so
#     the response has exactly one Content-Language, the gateway's (the
#     upstream's is dropped, never doubled);
#   * the upstream's other headers (its own, Vary, Cache-Control) are kept;
#   * a success response keeps the upstream's Content-Language untouched;
#   * X-MQTTAPI-* headers from the upstream never reach the client.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MqttapiTest;

my $http = <<"EOF";
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;

        location / {
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        default_type application/json;

        add_header Content-Language de always;
        add_header Vary Accept-Encoding always;
        add_header Cache-Control no-store always;
        add_header X-Upstream-Own yes always;
        add_header X-MQTTAPI-Error-Cause spoofed always;

        location /err {
            return 400 '{"RequestId":"R1","HostId":"h","Code":"InstanceNotFound","Message":"m"}';
        }
        location /ok {
            return 200 '{"RequestId":"R2"}';
        }
    }
EOF

my $ng = start_nginx(http => $http);
my $port = $ng->port(0);

for my $lang ('', 'zh-TW') {
    my $w = $lang ? "Accept-Language $lang" : 'no Accept-Language';
    my $r = get($port, '/err?Action=ListGroupId',
                $lang ? ('Accept-Language' => $lang) : ());
    is($r->{status}, 400, "$w: status");
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', "$w: annotated");
    my @cl = headers_all($r, 'Content-Language');
    is_deeply(\@cl, [ $lang ? 'zh-Hant' : 'en' ],
              "$w: one Content-Language, the gateway's")
        or diag explain \@cl;
    is_deeply([ headers_all($r, 'X-Upstream-Own') ], ['yes'],
              "$w: the upstream's own header kept");
    is_deeply([ headers_all($r, 'Cache-Control') ], ['no-store'],
              "$w: Cache-Control kept");
    my @vary = headers_all($r, 'Vary');
    ok((grep { /Accept-Encoding/ } @vary) && (grep { /Accept-Language/ } @vary),
       "$w: Vary has Accept-Encoding and Accept-Language")
        or diag explain \@vary;
    my @cause = headers_all($r, 'X-MQTTAPI-Error-Cause');
    is(scalar(@cause), 1, "$w: one X-MQTTAPI-Error-Cause");
    isnt($cause[0] // '', 'spoofed', "$w: not the upstream's");
}

my $r = get($port, '/ok');
is($r->{status}, 200, 'success: status');
is_deeply([ headers_all($r, 'Content-Language') ], ['de'],
          'success: the upstream\'s Content-Language untouched');
is($r->{body}, '{"RequestId":"R2"}', 'success: body untouched');

done_testing();
