#!/usr/bin/perl
# Prepared annotations (src/ngx_http_mqttapi_answer.c): an upstream error
# whose body has only the OpenAPI's own members and that is not retryable
# is annotated once per worker and location for a code, a language, a
# category and an upstream status; the next ones get the kept members and
# headers added to their own body.  Through a real nginx with one worker:
#
#   * every response of a series is the first one (annotated as usual),
#     header for header and byte for byte, but for what the upstream said
#     differently (its RequestId, its whitespace, its other headers);
#   * series interleave: a kept annotation of one code, parameter,
#     language, Action or status is never given to another;
#   * what the upstream sent that the gateway hides (X-MQTTAPI-*, its
#     Content-Language) stays hidden on kept ones;
#   * more variants than there are kept places are still right;
#   * retryable errors and bodies with members of their own are annotated
#     each time (their delay and members are their own);
#   * the kept annotations are used: the module's debug log shows one
#     rendering for a series, the rest added from the kept annotation.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MqttapiTest;

my $body = '{"RequestId":"$request_id","HostId":"up","Code":"$arg_code",'
         . '"Message":"from the upstream"}';

my $http = <<"EOF";
    server {
        listen 127.0.0.1:%%PORT0%%;
        error_log %%PREFIX%%/debug.log debug;

        mqttapi on;

        location /a/ {
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /n/ {
            mqttapi_normalize_status on;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        default_type application/json;

        add_header X-MQTTAPI-Error-Code \$arg_spoof always;
        add_header Content-Language \$arg_cl always;
        add_header Retry-After \$arg_ra always;
        add_header X-Up \$arg_up always;

        location /s400 {
            return 400 '$body';
        }
        location /s404 {
            return 404 '$body';
        }
        location /s503 {
            return 503 '$body';
        }
        location /ws {
            return 400 '{ "RequestId" : "\$request_id",\n  "Code":"\$arg_code" ,
  "Message" : "spaced"   }\n';
        }
        location /extra {
            return 400 '{"RequestId":"\$request_id","Code":"\$arg_code","Message":"m","Extra":"\$arg_up"}';
        }
    }
EOF

my $ng = start_nginx(http => $http, workers => 1);
my $port = $ng->port(0);

# how the annotations of requests whose line matches $re were made since
# the log had $from bytes: "rendered/from the kept one"
sub made {
    my ($re, $from) = @_;
    my %n = (rendered => 0, kept => 0);
    for (debug_events($ng->prefix . '/debug.log',
                      qr/mqttapi: (?:rendering the annotation|annotation from kept)/)) {
        my ($line, $what) = @$_;
        $n{ $what =~ /rendering/ ? 'rendered' : 'kept' }++ if $line =~ $re;
    }
    return "$n{rendered}/$n{kept}";
}

# a response with what the upstream made differ replaced
sub shape {
    my ($r) = @_;
    my $b = $r->{body} // '';
    $b =~ s/"RequestId"\s*:\s*"[0-9a-f]{32}"/"RequestId":"<up>"/;
    my @h;
    for (@{ $r->{headers} || [] }) {
        my ($k, $v) = @$_;
        next if lc $k eq 'date' || lc $k eq 'x-up';
        push @h, "$k: $v";
    }
    return join("\n", "$r->{status}", @h, '', $b);
}

my @variants = (
    [ 'exact code',             'a', 's400', code => 'GroupIdAlreadyExsited' ],
    [ 'pattern, InstanceId',    'a', 's400', code => 'InvalidParameter.InstanceId' ],
    [ 'pattern, GroupId',       'a', 's400', code => 'InvalidParameter.GroupId' ],
    [ 'pattern, zh-TW',         'a', 's400', code => 'InvalidParameter.InstanceId',
      h => [ 'Accept-Language' => 'zh-TW' ] ],
    [ 'Action ListGroupId',     'a', 's400', code => 'InvalidParameter.InstanceId',
      Action => 'ListGroupId' ],
    [ 'x-acs-action',           'a', 's400', code => 'InvalidParameter.InstanceId',
      h => [ 'x-acs-action' => 'ListGroupId' ] ],
    [ 'status 404',             'a', 's404', code => 'InvalidParameter.InstanceId' ],
    [ 'normalized, 400',        'n', 's400', code => 'GroupIdAlreadyExsited' ],
    [ 'normalized, 404',        'n', 's404', code => 'GroupIdAlreadyExsited' ],
    [ 'unknown code',           'a', 's400', code => 'No.Such.Code' ],
    [ 'unknown code, zh-HK',    'a', 's400', code => 'No.Such.Code',
      h => [ 'Accept-Language' => 'zh-HK' ] ],
    [ 'spoofed headers',        'a', 's400', code => 'GroupIdAlreadyExsited',
      spoof => 'evil', cl => 'fr' ],
    [ 'spoofed, unknown code',  'a', 's400', code => 'No.Such.Code',
      spoof => 'evil', cl => 'fr' ],
    [ 'whitespace',             'a', 'ws',   code => 'InvalidParameter.Topic' ],
);

sub path {
    my ($v, $n) = @_;
    my ($name, $loc, $up, @q) = @$v;
    my %q = @q;
    delete $q{h};
    $q{up} = "r$n";
    $q{tag} = $name =~ s/\W+/_/gr;     # for the debug log
    return "/$loc/$up?" . join('&', map { "$_=$q{$_}" } sort keys %q);
}

sub hdrs {
    my ($v) = @_;
    my (undef, undef, undef, %q) = @$v;
    return @{ $q{h} || [] };
}

# the variants interleaved, four rounds
my %series;
for my $n (1 .. 4) {
    for my $v (@variants) {
        push @{ $series{ $v->[0] } }, get($port, path($v, $n), hdrs($v));
    }
}

my %first;

for my $v (@variants) {
    my $name = $v->[0];
    my @s = @{ $series{$name} };
    my $s0 = shape($s[0]);

    is(scalar(grep { shape($_) eq $s0 } @s), 4,
       "$name: every response is the first one")
        or diag join "\n----\n", map { shape($_) } @s;

    # the upstream's own parts are each response's
    my @ids = map { (json_decode($_->{body}) // {})->{RequestId} // '' } @s;
    is(scalar(grep { /^[0-9a-f]{32}$/ } @ids), 4, "$name: RequestIds kept");
    my %u = map { $_ => 1 } @ids;
    is(scalar(keys %u), 4, "$name: each its own RequestId");
    is(join(',', map { h($_, 'X-Up') // '' } @s), 'r1,r2,r3,r4',
       "$name: each its own upstream header");

    # rendered once at the most (a series of the same key before it may
    # have been kept already), the others from the kept annotation
    my $tag = $name =~ s/\W+/_/gr;
    like(made(qr/[?&]tag=\Q$tag\E&up=r\d HTTP/), qr{^(?:1/3|0/4)$},
         "$name: rendered at most once, then from the kept one");

    $first{$name} = $s0;
}

# variants that differ in what the annotation says never share one
for (['exact code', 'pattern, InstanceId'],
     ['pattern, InstanceId', 'pattern, GroupId'],
     ['pattern, InstanceId', 'pattern, zh-TW'],
     ['pattern, InstanceId', 'Action ListGroupId'],
     ['pattern, InstanceId', 'status 404'],
     ['normalized, 400', 'normalized, 404'],
     ['exact code', 'normalized, 400'],
     ['pattern, InstanceId', 'whitespace']) {
    my ($x, $y) = @$_;
    isnt($first{$x}, $first{$y}, "$x / $y: annotated apart");
}

# what each says
my %r = map { $_->[0] => $series{ $_->[0] }[3] } @variants;

is(h($r{'pattern, GroupId'}, 'X-MQTTAPI-Invalid-Parameter'), 'GroupId',
   'pattern: its own parameter');
like(h($r{'pattern, GroupId'}, 'X-MQTTAPI-Error-Cause') // '', qr/GroupId/,
     'pattern: its own cause');
is(h($r{'pattern, zh-TW'}, 'Content-Language'), 'zh-Hant', 'zh-TW: Content-Language');
is(h($r{'pattern, InstanceId'}, 'Content-Language'), 'en', 'en: Content-Language');
is(h($r{'Action ListGroupId'}, 'X-MQTTAPI-Error-Category'), 'group',
   'Action: its category');
is(h($r{'x-acs-action'}, 'X-MQTTAPI-Error-Category'), 'group',
   'x-acs-action: its category');
is(h($r{'pattern, InstanceId'}, 'X-MQTTAPI-Error-Category'), 'token',
   'no Action: the code\'s category');
is($r{'status 404'}{status}, 404, 'status 404 relayed');
is($r{'normalized, 400'}{status}, 409, 'normalized: the code\'s status');
is(h($r{'normalized, 400'}, 'X-MQTTAPI-Upstream-Status'), '400',
   'normalized: upstream status 400');
is(h($r{'normalized, 404'}, 'X-MQTTAPI-Upstream-Status'), '404',
   'normalized: upstream status 404');
is(h($r{'unknown code'}, 'X-MQTTAPI-Error-Category'), 'unknown', 'unknown code');

for my $name ('spoofed headers', 'spoofed, unknown code') {
    my @codes = map { $_->[1] } grep { lc $_->[0] eq 'x-mqttapi-error-code' }
                @{ $r{$name}{headers} };
    is("@codes", $name =~ /unknown/ ? 'No.Such.Code' : 'GroupIdAlreadyExsited',
       "$name: the upstream's X-MQTTAPI-Error-Code hidden");
}
is(join(',', map { $_->[1] } grep { lc $_->[0] eq 'content-language' }
                 @{ $r{'spoofed headers'}{headers} }), 'en',
   'known code: the upstream\'s Content-Language replaced');
is(join(',', map { $_->[1] } grep { lc $_->[0] eq 'content-language' }
                 @{ $r{'spoofed, unknown code'}{headers} }), 'fr',
   'unknown code: the upstream\'s Content-Language kept');

{
    my $b = $r{'whitespace'}{body};
    like($b, qr/^\{ "RequestId" : "[0-9a-f]{32}",\n  "Code":"InvalidParameter.Topic" ,\n  "Message" : "spaced"   ,"Cause":/,
         'whitespace: the upstream\'s body as it was, then the members');
    like($b, qr/"InvalidParameter":"Topic"\}\n$/, 'whitespace: what followed the object');
    ok(json_decode($b), 'whitespace: valid JSON');
}

# more variants than the worker's table has places (64): each right, the
# first ones kept, the last ones rendered every time
for my $round (1 .. 2) {
    my $ok = 0;
    for my $i (1 .. 80) {
        my $r = get($port, "/a/s400?code=InvalidParameter.P$i&round=$round");
        my $j = json_decode($r->{body}) // {};
        $ok++ if (h($r, 'X-MQTTAPI-Invalid-Parameter') // '') eq "P$i"
                 && ($j->{InvalidParameter} // '') eq "P$i"
                 && ($j->{Cause} // '') =~ /\bP$i\b/
                 && $r->{status} == 400;
    }
    is($ok, 80, "round $round: 80 parameters, each its own annotation");
}
{
    my ($r, $k) = split m{/}, made(qr/InvalidParameter\.P\d+&round=2 /);
    ok($k > 0 && $r > 0 && $r + $k == 80,
       "round 2: $k from the kept annotations, $r without a place left");
}

# retryable: the upstream's delay is each response's own
{
    my @ra;
    for my $s (7, 3, 11) {
        my $r = get($port, "/a/s503?code=InternalError&ra=$s");
        push @ra, join('/', h($r, 'Retry-After') // '-',
                       (json_decode($r->{body}) // {})->{RetryAfter} // '-');
    }
    is("@ra", '7/7 3/3 11/11', 'retryable: each its own Retry-After');
    is(made(qr{^GET /a/s503\?}), '3/0', 'retryable: rendered every time');
}

# members of the upstream's own: annotated each time, never overwritten
{
    my @e;
    for my $x (qw(x1 x2 x3)) {
        my $r = get($port, "/a/extra?code=GroupIdAlreadyExsited&up=$x");
        my $j = json_decode($r->{body}) // {};
        push @e, ($j->{Extra} // '-') . '/' . (defined $j->{Cause} ? 'c' : '-');
    }
    is("@e", 'x1/c x2/c x3/c', 'own members: kept, annotated each time');
    is(made(qr{^GET /a/extra\?}), '3/0', 'own members: rendered every time');
}

$ng->stop;

done_testing();
