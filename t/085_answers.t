#!/usr/bin/perl
# Prepared local answers (src/ngx_http_mqttapi_answer.c): while a key is
# backed off, each worker renders the first local answer of a location for
# a code, an action and a language, keeps it, and copies the next ones from
# it with their own RequestId and delay.  Through a real nginx with two
# workers:
#
#   * every answer of a series is the same as the first one, header for
#     header and byte for byte, but for the RequestId and the delay;
#   * the kept answers are the same as answers rendered every time (a
#     location whose mqttapi_host_id has a variable is never kept), in
#     augment, problem and off bodies;
#   * the Action (argument or x-acs-action) and the language of each
#     request are its own: a kept answer for one is never given to another;
#     an Action the catalog does not list is answered as no Action;
#   * problem bodies carry the RequestId twice (RequestId, instance);
#   * the RequestIds are distinct and the delays count down;
#   * the RequestId is the request's $request_id, made by the module with
#     the answer or read before it (a "set" in the rewrite phase);
#   * the kept answers are used: the module's debug log shows one
#     rendering per worker for a series, the rest copied from the kept
#     answer, and every answer of a location that cannot keep rendered.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;

my $http = <<"EOF";
    mqttapi_throttle_zone \$arg_AccessKeyId zone=z:1m
                          backoff=60s max_backoff=60s;
    mqttapi_throttle_zone \${arg_AccessKeyId} zone=k1:1m backoff=60s;
    mqttapi_throttle_zone \$arg_AccessKeyId:\$arg_Action zone=k2:1m
                          backoff=60s;
    mqttapi_throttle_zone \$http_x_key zone=k3:1m backoff=60s;

    server {
        listen 127.0.0.1:%%PORT0%%;
        server_name gw;
        error_log %%PREFIX%%/debug.log debug;

        mqttapi on;
        mqttapi_throttle zone=z;
        mqttapi_throttle_log_level info;

        location /kept/ {
            mqttapi_host_id gw;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /rendered/ {
            mqttapi_host_id \$server_name;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /pkept/ {
            mqttapi_body problem;
            mqttapi_host_id gw;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /prendered/ {
            mqttapi_body problem;
            mqttapi_host_id \$server_name;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /k1/ {
            mqttapi_throttle zone=k1;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /k2/ {
            mqttapi_throttle zone=k2;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /k3/ {
            mqttapi_throttle zone=k3;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        # \$request_id read before the local answer (rewrite phase)
        location /rid/ {
            mqttapi_host_id gw;
            set \$rid \$request_id;
            add_header X-Rid \$rid always;
            add_header X-Req-Id \$request_id always;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /okept/ {
            mqttapi_body off;
            mqttapi_host_id gw;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /orendered/ {
            mqttapi_body off;
            mqttapi_host_id \$server_name;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        default_type application/json;

        location / {
            return 400 '{"RequestId":"UP","HostId":"up","Code":"\$arg_code","Message":"from the upstream"}';
        }
    }
EOF

my $ng = start_nginx(http => $http, workers => 2);
my $port = $ng->port(0);

my $ID = qr/[0-9a-f]{32}/;

# a response with what may differ between two answers of a series
# replaced: the RequestId, the delay in seconds and in milliseconds
sub shape {
    my ($r) = @_;
    my $body = $r->{body} // '';
    my $id = (json_decode($body) // {})->{RequestId} // '';
    $body =~ s/\Q$id\E/<id>/g if length $id;
    $body =~ s/("RetryAfter":)\d+/$1<s>/;
    my @h;
    for (@{ $r->{headers} || [] }) {
        my ($k, $v) = @$_;
        next if lc $k eq 'date';
        $v = '<s>' if lc $k eq 'retry-after';
        $v = '<ms>' if lc $k eq 'x-acs-retry-after';
        push @h, "$k: $v";
    }
    return join("\n", "$r->{status}", @h, '', $body);
}

# the variant's "v" marks its requests in the debug log
sub path {
    my ($loc, $key, %q) = @_;
    return "/$loc/?AccessKeyId=$key"
         . join('', map { "&$_=$q{$_}" } sort keys %q);
}

# open a back-off for the key with the code
for my $k (qw(kA kB)) {
    my $code = $k eq 'kA' ? 'ApplyTokenOverFlow' : 'SystemOverFlow';
    my $r = get($port, path('kept', $k, code => $code));
    is($r->{status}, 400, "$k: the upstream's $code is relayed");
}

my @variants = (
    [ 'no Action, English' ],
    [ 'ListGroupId, English',  q => { Action => 'ListGroupId' } ],
    [ 'ApplyToken, English',   q => { Action => 'ApplyToken' } ],
    [ 'ListGroupId, zh-TW',    q => { Action => 'ListGroupId' },
      h => [ 'Accept-Language' => 'zh-TW' ] ],
    [ 'x-acs-action, zh-HK',   q => { Action => 'ListGroupId' },
      h => [ 'x-acs-action' => 'QueryToken', 'Accept-Language' => 'zh-HK' ] ],
    [ 'ApplyToken, zh-TW',     q => { Action => 'ApplyToken' },
      h => [ 'Accept-Language' => 'zh-TW;q=0.9, en;q=0.1' ] ],
    # actions the catalog does not list say what no Action says
    [ 'made-up Action',        q => { Action => 'NoSuchAction' } ],
    [ 'made-up x-acs-action',  q => { Action => 'ListGroupId' },
      h => [ 'x-acs-action' => 'listgroupid' ] ],
);

my %category = ('no Action, English' => 'token',
                'ListGroupId, English' => 'group',
                'ApplyToken, English' => 'token',
                'ListGroupId, zh-TW' => 'group',
                'x-acs-action, zh-HK' => 'token',
                'ApplyToken, zh-TW' => 'token',
                'made-up Action' => 'token',
                'made-up x-acs-action' => 'token');

my (%ids, %first);

for my $kind (qw(augment problem off)) {
    my ($kept, $rendered) = $kind eq 'augment' ? qw(kept rendered)
                          : $kind eq 'problem' ? qw(pkept prendered)
                          : qw(okept orendered);

    for my $key (qw(kA kB)) {
        my $code = $key eq 'kA' ? 'ApplyTokenOverFlow' : 'SystemOverFlow';

        # the variants interleaved, so that a kept answer of one variant
        # is there when the next one asks
        my %series;
        for my $round (1 .. 6) {
            for my $v (@variants) {
                my ($name, %a) = @$v;
                for my $loc ($kept, $rendered) {
                    my $r = get($port, path($loc, $key, %{ $a{q} || {} },
                                            v => $name =~ s/\W+/_/gr),
                                @{ $a{h} || [] });
                    push @{ $series{"$loc $name"} }, $r;
                }
            }
        }

        # how each answer was made: rendered, or from a kept answer
        my %made;
        for (debug_events($ng->prefix . '/debug.log',
                          qr/mqttapi: (?:rendering the envelope|answer from kept answer)/)) {
            my ($line, $what) = @$_;
            my ($loc, $k, $v) = $line =~ m{^GET /(\w+)/\?AccessKeyId=(\w+)&.*\bv=(\w+)}
                or next;
            next unless $k eq $key;
            $made{"$loc $v"}{$what =~ /rendering/ ? 'rendered' : 'kept'}++;
        }

        for my $v (@variants) {
            my ($name) = @$v;
            my $t = "$kind, $code, $name";
            my $vv = $name =~ s/\W+/_/gr;
            my %mk = %{ $made{"$kept $vv"} || {} };
            my %mr = %{ $made{"$rendered $vv"} || {} };

            # two workers: each renders the first answer it gives, at most
            ok(($mk{rendered} // 0) <= 2 && ($mk{kept} // 0) >= 4
               && ($mk{rendered} // 0) + ($mk{kept} // 0) == 6,
               "$t: kept answers used (rendered " . ($mk{rendered} // 0)
               . ', from the kept one ' . ($mk{kept} // 0) . ')');
            is(($mr{rendered} // 0) . '/' . ($mr{kept} // 0), '6/0',
               "$t: a variable HostId: rendered every time");
            my @k = @{ $series{"$kept $name"} };
            my @r = @{ $series{"$rendered $name"} };

            is(scalar(grep { $_->{status} == 429 } @k, @r), 12,
               "$t: 12 local answers");
            is(scalar(grep { (h($_, 'X-MQTTAPI-Throttled') // '')
                             eq 'gateway' } @k), 6,
               "$t: X-MQTTAPI-Throttled on every kept answer");

            # the series is one answer
            my $s0 = shape($k[0]);
            is(scalar(grep { shape($_) eq $s0 } @k), 6,
               "$t: every answer of the series is the first one")
                or diag join "\n----\n", $s0, map { shape($_) } @k;

            # and the same as the one rendered every time
            is(shape($r[0]), $s0, "$t: kept = rendered")
                or diag "kept:\n$s0\nrendered:\n" . shape($r[0]);
            is(scalar(grep { shape($_) eq $s0 } @r), 6,
               "$t: every rendered answer too");

            # this request's action and language
            is(h($k[-1], 'X-MQTTAPI-Error-Category'), $category{$name},
               "$t: category of this request's action");
            is(h($k[-1], 'X-MQTTAPI-Error-Code'), $code, "$t: code");
            my $lang = $name =~ /zh-/ ? 'zh-Hant' : 'en';
            like(h($k[-1], 'Content-Language') // '', qr/^\Q$lang\E/i,
                 "$t: Content-Language $lang")
                unless $kind eq 'off';

            # RequestIds: their own, and where a problem body says it
            for my $r (@k, @r) {
                my $d = json_decode($r->{body});
                if ($kind eq 'off') {
                    $d //= {};
                }
                my $id = ($d // {})->{RequestId} // '';
                $ids{$id}++ if $id =~ /\A$ID\z/;
                if ($kind eq 'problem') {
                    is($d->{instance}, "urn:mqttapi:request:$id",
                       "$t: instance names the RequestId")
                        if $r == $k[-1] || $r == $r[-1];
                    is($d->{status}, 429, "$t: problem status")
                        if $r == $k[-1];
                }
            }

            # the delay is this request's (a 60 s back-off: <= 60)
            my $ra = h($k[-1], 'Retry-After') // -1;
            my $ms = h($k[-1], 'x-acs-retry-after') // -1;
            ok($ra >= 1 && $ra <= 60, "$t: Retry-After $ra");
            ok($ms > ($ra - 1) * 1000 && $ms <= $ra * 1000,
               "$t: x-acs-retry-after $ms within the second of $ra");
            $first{$t} = $k[0];
        }
    }
}

my $n = scalar keys %ids;
is(scalar(grep { $ids{$_} > 1 } keys %ids), 0,
   "RequestIds: $n ids, none twice");
is($n, 2 * @variants * 12 * 3, 'RequestIds: one per answer');

# the ids are random hex: over 576 ids every digit 0-9a-f stands in every
# one of the 32 places (a digit missing somewhere would mean a broken
# digit conversion; by chance, about 4e-10)
my @seen = map { {} } 1 .. 32;
for my $id (keys %ids) {
    my $i = 0;
    $seen[$i++]{$_}++ for split //, $id;
}
is(scalar(grep { keys(%$_) == 16 } @seen), 32,
   'RequestIds: all 16 hex digits in every place');

# the delay counts down in kept answers too
{
    my $r1 = get($port, path('kept', 'kA', Action => 'ApplyToken'));
    sleep 1.1;
    my $r2 = get($port, path('kept', 'kA', Action => 'ApplyToken'));
    my ($a1, $a2) = map { h($_, 'x-acs-retry-after') // 0 } $r1, $r2;
    cmp_ok($a2, '<', $a1 - 900, "the delay counts down ($a1 ms, then $a2)");
    my ($b1, $b2) = map { (json_decode($_->{body}) // {})->{RetryAfter} // 0 }
                    $r1, $r2;
    cmp_ok($b2, '<', $b1, "RetryAfter counts down ($b1 s, then $b2)");
}

# a \$request_id read before the local answer is its RequestId: kept
# answers copy it into the body (the module makes the ones nobody read)
{
    my $r = get($port, path('rid', 'kR', code => 'SystemOverFlow'));
    is($r->{status}, 400, 'rid: throttled by the upstream');
    my ($same, %seen) = (0);
    for my $i (1 .. 12) {
        my $q = get($port, path('rid', 'kR', v => 'rid'));
        my $id = (json_decode($q->{body}) // {})->{RequestId} // '';
        $seen{$id}++ if $q->{status} == 429 && $id =~ /\A$ID\z/;
        $same++ if $id eq (h($q, 'X-Rid') // '')
                   && $id eq (h($q, 'X-Req-Id') // '');
    }
    is(scalar keys %seen, 12, 'rid: 12 local answers, 12 distinct ids');
    is($same, 12, 'rid: each RequestId is the $request_id read before');
    my $kept = grep { $_->[0] =~ m{^GET /rid/\?AccessKeyId=kR&v=rid} }
               debug_events($ng->prefix . '/debug.log',
                            qr/mqttapi: answer from kept answer/);
    cmp_ok($kept, '>=', 10, "rid: kept answers used ($kept of 12)");
}

# keys of every kind: \${arg_...} (read without the variable, the name
# compared as \$arg_ does), a complex value, another variable; 400 is the
# upstream's answer (it reached the upstream), 429 the gateway's
{
    my $st = sub { (get($port, @_))->{status} };
    is($st->('/k1/?Action=X&AccessKeyId=q1&code=SystemOverFlow'), 400,
       'k1: throttled');
    is($st->('/k1/?AccessKeyId=q1'), 429, 'k1: same key rejected');
    is($st->('/k1/?a=1&&accesskeyid=q1&x'), 429,
       'k1: the name case-insensitively, after "&&"');
    is($st->('/k1/?xAccessKeyId=q1&AccessKeyId=q2'), 400,
       'k1: "xAccessKeyId" is another argument');
    is($st->('/k1/?AccessKeyId=q1x'), 400, 'k1: another key');
    is($st->('/k1/?AccessKeyId=&x=q1'), 400, 'k1: an empty key');

    is($st->('/k2/?AccessKeyId=q1&Action=A&code=SystemOverFlow'), 400,
       'k2: throttled');
    is($st->('/k2/?Action=A&AccessKeyId=q1'), 429, 'k2: same key rejected');
    is($st->('/k2/?Action=B&AccessKeyId=q1'), 400, 'k2: another action');

    is($st->('/k3/?code=SystemOverFlow', 'X-Key' => 'h1'), 400,
       'k3: throttled');
    is($st->('/k3/?a=b', 'X-Key' => 'h1'), 429, 'k3: same header rejected');
    is($st->('/k3/?a=b', 'X-Key' => 'h2'), 400, 'k3: another header');
    is($st->('/k3/?a=b'), 400, 'k3: no header, no key');

    # the preaccess decision of each request, from the debug log
    my %how = map { $_->[0] => $_->[1] }
              debug_events($ng->prefix . '/debug.log',
                           qr/mqttapi throttle: (?:pass|local \S+)/);
    like($how{'GET /k1/?AccessKeyId=q1 HTTP/1.1'} // '',
         qr/^mqttapi throttle: local "SystemOverFlow"/,
         'debug log: the local answer is a decision of its own');
    is($how{'GET /k1/?AccessKeyId=q1x HTTP/1.1'} // '',
       'mqttapi throttle: pass', 'debug log: another key passes');
}

unlike($ng->error_log, qr/\[(alert|crit|emerg)\]|segfault|signal/,
       'no alerts in the error log');

done_testing();
