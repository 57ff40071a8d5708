#!/usr/bin/perl
# User catalogs (mqttapi_catalog) and languages (Accept-Language).
#
#   * conf/example_user_catalog.json loads cleanly and does what it says:
#     a third language (ja), an overridden built-in English solution, a
#     regex code (Throttling.<x>) whose first capture is exposed
#     (X-MQTTAPI-Invalid-Parameter, InvalidParameter, $mqttapi_error_parameter),
#     added codes;
#   * overriding every field of built-in codes (text, message, categories,
#     mapped_status, retryable, retry_after, throttle), adding codes,
#     regexes (first capture, no capture, an optional first capture that
#     takes no part, alternatives, precedence over the built-in
#     pattern, an exact code before any pattern), another language (de),
#     "local" gateway codes and their order against the built-in "nginx" ones;
#   * levels: http, server, location, repeated on one level (the later file
#     wins), inheritance into locations without their own; a location
#     without user catalogs sees the built-in one only;
#   * Accept-Language: zh-TW, zh-HK, zh-MO, zh-Hant, zh-Hant-TW (prefix
#     fallback), case, zh-CN / zh / zh-Hans-CN (Simplified), q-values,
#     ties, q=0, "*", ja-JP / ja-Latn-JP, de-CH-1996 / de-DE-x-phonebk, malformed
#     weights (the range is ignored), with Content-Language and Vary;
#   * broken catalogs fail `nginx -t` naming mqttapi_catalog, the file, the
#     entry and the problem: bad JSON (line and column), unknown keys, bad
#     status and mapped_status, invalid regex, text for an undeclared
#     language, non-ASCII or multi-line English text, duplicate keys,
#     missing file, bad code, two %s, throttle without retryable, bad
#     language alias, undeclared default_language, gateway code not in the
#     catalog, unknown gateway origin; at http and server level, and in the
#     second file of two;
#   * reload: a changed catalog is applied, a broken one is refused and the
#     old one keeps serving.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use JSON::PP ();
use MqttapiTest;

my $REPO = repo_dir();
my $EXAMPLE = "$REPO/conf/example_user_catalog.json";

sub slurp {
    open my $fh, '<:raw', $_[0] or die "$_[0]: $!";
    local $/;
    return <$fh>;
}

my ($builtin, $entries) = builtin_catalog();
my %entry = %$entries;
my $example = JSON::PP->new->utf8->decode(slurp($EXAMPLE));
my %ex = map { (($_->{code} // $_->{regex}) => $_) } @{ $example->{errors} };

my $DIR = File::Temp::tempdir('mqttapi-cat-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $DIR;

# write_catalog($name, $text or $data) -> path
sub write_catalog {
    my ($name, $c) = @_;
    my $text = ref $c ? JSON::PP->new->utf8->canonical->pretty->encode($c) : $c;
    utf8::encode($text) if utf8::is_utf8($text);
    open my $fh, '>:raw', "$DIR/$name" or die "$name: $!";
    print {$fh} $text;
    close $fh;
    return "$DIR/$name";
}

# ---------------------------------------------------------------------------
# Catalogs
# ---------------------------------------------------------------------------

my $OVERRIDE = write_catalog('override.json', {
    languages => { de => ['de', 'de-DE', 'de-AT', 'de-CH'], 'pt-BR' => ['pt'] },
    gateway => { local => { '4xx' => 'Custom.Code' } },
    errors => [
        { code => 'InstanceNotFound', mapped_status => 410, retryable => JSON::PP::true,
          retry_after => 7, message => 'No such instance (override).',
          text => { en => { cause => 'Overridden cause.' },
                    de => { description => 'Die Instanz wurde nicht gefunden.',
                            cause => 'Keine Instanz passt zur InstanceId.' },
                    'pt-BR' => { description => 'Instância não encontrada.' } } },
        { code => 'ApplyTokenOverFlow', retry_after => 9,
          text => { en => { solution => 'Slow down, then retry (override).' } } },
        { code => 'InternalError', retryable => JSON::PP::false, mapped_status => 503 },
        { code => 'ParameterCheckFailed', retryable => JSON::PP::true,
          throttle => JSON::PP::true, retry_after => 4, categories => ['group'] },
        { code => 'InvalidParameter.%s',
          text => { de => { description => 'Parameter ungültig.' } } },
        { code => 'GatewayUpstreamUnavailable', mapped_status => 503,
          text => { en => { cause => 'Gateway cause (override).' },
                    de => { description => 'Upstream nicht erreichbar.' } } },
        { code => 'Custom.Code', status => 400, mapped_status => 422,
          message => 'A custom error.', categories => ['rule'],
          text => { en => { cause => 'Custom cause.', solution => 'Custom solution.' },
                    de => { description => 'Benutzerdefiniert.' } } },
        { regex => '^QuotaExceeded\.(\w+)$', status => 400, mapped_status => 429,
          message => 'Quota exceeded.', retryable => JSON::PP::true, retry_after => 11,
          text => { en => { cause => 'The %s quota is exhausted.',
                            solution => 'Wait for the %s quota to refill.' } } },
        { regex => '^NoCapture\.[A-Z]+$', status => 400, message => 'No capture.',
          text => { en => { cause => 'Matched without a capture.' } } },
        { regex => '^Opt(x)?Y$', status => 400, message => 'An optional capture.',
          text => { en => { cause => 'Variant [%s] is invalid.',
                            solution => 'Use a variant other than [%s].' },
                    de => { description => 'Variante [%s] ungültig.' } } },
        { regex => '^Alt\.(?:N(\d+)|S([a-z]+))$', status => 400, message => 'Alternatives.',
          text => { en => { cause => 'Alternative [%s].' } } },
        { code => 'Limit.%s.Exceeded', status => 400, message => 'A limit.',
          text => { en => { cause => 'The %s limit is exceeded.' } } },
        { regex => '^Holes\.(\w+)$', status => 400, message => 'Several holes.',
          text => { en => { cause => '100% of %s, %s again, %%s, %d and %',
                            solution => 'No hole: 50% off.' },
                    de => { description => '%s%s' } } },
        { code => 'Exact.WithPercent', status => 400, message => 'No capture at all.',
          text => { en => { cause => 'Nothing [%s] to fill.' } } },
        { regex => '^InvalidParameter\.Group(\w+)$', status => 400,
          message => 'A group parameter is invalid.',
          text => { en => { cause => 'Group parameter %s is invalid.' } } },
        { regex => '^Instance(\w+)$', status => 400, message => 'Any instance error.',
          text => { en => { cause => 'Should never match an exact code.' } } },
    ],
});

my $SECOND = write_catalog('second.json', {
    errors => [
        { code => 'Custom.Code', text => { en => { cause => 'Custom cause, second file.' } } },
        { code => 'InstanceNotFound',
          text => { de => { description => 'Instanz fehlt (zweite Datei).' } } },
    ],
});

my $HTTPCAT = write_catalog('http.json', {
    errors => [ { code => 'HttpLevel.Code', status => 400, message => 'from http',
                  text => { en => { cause => 'http level' } } } ],
});
my $SRVCAT = write_catalog('server.json', {
    errors => [ { code => 'ServerLevel.Code', status => 400, message => 'from server',
                  text => { en => { cause => 'server level' } } } ],
});
my $RELOAD = write_catalog('reload.json', {
    errors => [ { code => 'Reload.Code', status => 400, message => 'v1',
                  text => { en => { cause => 'version one' } } } ],
});

my $hang = mock_upstream(script => [[hang => 1]]);
my $HANG = $hang->port;
my $DEAD = dead_port();

# ---------------------------------------------------------------------------
# nginx
#   PORT0  user catalogs per location (server level: server.json)
#   PORT1  the emulator
#   PORT2  no catalog of its own: http.json from the http level
#   PORT3  built-in catalog only (mqttapi_catalog at http level is
#          inherited; this server has none of its own, so it is the check
#          of http-level inheritance, and /builtin/ below is built-in only)
# ---------------------------------------------------------------------------

my $ng = start_nginx(http => <<"EOF");
    include %%REPO%%/conf/emulator_http.conf;

    mqttapi_catalog $HTTPCAT;

    server {
        listen 127.0.0.1:%%PORT1%%;
        include %%REPO%%/conf/emulator.conf;
    }

    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        mqttapi_catalog $SRVCAT;
        add_header X-Param \$mqttapi_error_parameter always;

        location /ex/ {
            mqttapi_catalog $EXAMPLE;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /exn/ {
            mqttapi_catalog $EXAMPLE;
            mqttapi_normalize_status on;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /ov/ {
            mqttapi_catalog $OVERRIDE;
            mqttapi_normalize_status on;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /ovp/ {
            mqttapi_catalog $OVERRIDE;
            mqttapi_body problem;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /two/ {
            mqttapi_catalog $OVERRIDE;
            mqttapi_catalog $SECOND;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /inh/ { proxy_pass http://127.0.0.1:%%PORT1%%/; }
        location /ovdead/ {
            mqttapi_catalog $OVERRIDE;
            mqttapi_normalize_status on;
            proxy_pass http://127.0.0.1:$DEAD;
        }
        location /dead/ { proxy_pass http://127.0.0.1:$DEAD; }
        location /ovret404/ { mqttapi_catalog $OVERRIDE; return 404; }
        location /ovret405/ { mqttapi_catalog $OVERRIDE; return 405; }
        location /ovdead405/ {
            mqttapi_catalog $OVERRIDE;
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 = \@ret405;
        }
        location \@ret405 { mqttapi_catalog $OVERRIDE; return 405; }
        location /exhang/ {
            mqttapi_catalog $EXAMPLE;
            proxy_read_timeout 1s;
            proxy_pass http://127.0.0.1:$HANG;
        }
        location /rl/ {
            mqttapi_catalog $RELOAD;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        mqttapi on;
        location / { proxy_pass http://127.0.0.1:%%PORT1%%/; }
    }
EOF

my ($GW, $EMU, $GW2) = ($ng->port(0), $ng->port(1), $ng->port(2));

sub req {
    my ($loc, $code, %x) = @_;
    my $q = "/$loc/?mqttemu_code=$code";
    $q .= "&Action=$x{action}" if $x{action};
    $q .= "&mqttemu_retry_after=$x{retry_after}" if defined $x{retry_after};
    my $r = get($x{port} // $GW, $q,
                defined $x{lang} ? ('Accept-Language' => $x{lang}) : ());
    $r->{json} = json_decode($r->{body});
    return $r;
}

sub fill {
    my ($text, $param) = @_;
    $text =~ s/%s/$param/g if defined $text && defined $param;
    return $text;
}

# ---------------------------------------------------------------------------
# 1. The example user catalog
# ---------------------------------------------------------------------------

{
    my ($rc, $out) = nginx_test_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; mqttapi_catalog $EXAMPLE; return 200; }
    }
EOF
    is($rc, 0, 'example catalog: nginx -t ok') or diag $out;
    unlike($out, qr/\[(warn|emerg|alert)\]/, 'example catalog: no warning');

    ok($example->{languages}{ja}, 'example catalog: adds ja');
    my @ja = grep { $_->{text}{ja} } @{ $example->{errors} };
    cmp_ok(scalar @ja, '>=', 3, 'example catalog: Japanese for a few codes');
    ok((grep { $_->{regex} && $_->{regex} =~ /Throttling/ } @{ $example->{errors} }),
       'example catalog: a Throttling regex');
    ok($ex{InstanceNotFound}{text}{en}{solution}, 'example catalog: overrides an English solution');
    ok((grep { $_->{code} && !$entry{ $_->{code} } } @{ $example->{errors} }),
       'example catalog: adds a code');
}

{
    # the overridden English solution, in the header and the body
    my $r = req('ex', 'InstanceNotFound');
    my $sol = $ex{InstanceNotFound}{text}{en}{solution};
    isnt($sol, $entry{InstanceNotFound}{text}{en}{solution}, 'example: the solution differs');
    is(h($r, 'X-MQTTAPI-Error-Solution'), $sol, 'example: overridden solution (header)');
    is($r->{json}{Solution}, $sol, 'example: overridden solution (body)');
    is($r->{json}{Cause}, $entry{InstanceNotFound}{text}{en}{cause},
       'example: the built-in cause kept');
    is($r->{status}, 400, 'example: status kept');

    # Japanese
    $r = req('ex', 'InstanceNotFound', lang => 'ja');
    is($r->{json}{Description}, $ex{InstanceNotFound}{text}{ja}{description},
       'example: ja description');
    is(h($r, 'Content-Language'), 'ja', 'example: Content-Language ja');
    is($r->{json}{Cause}, $entry{InstanceNotFound}{text}{en}{cause},
       'example: English cause when ja has none');
    is(h($r, 'X-MQTTAPI-Error-Solution'), $sol, 'example: headers stay English');

    $r = req('ex', 'GroupIdAlreadyExsited', lang => 'ja-JP');
    is($r->{json}{Description}, $ex{GroupIdAlreadyExsited}{text}{ja}{description},
       'example: ja-JP alias');

    $r = req('ex', 'InvalidParameter.GroupId', lang => 'ja-Latn-JP');
    is($r->{json}{Description}, $ex{'InvalidParameter.%s'}{text}{ja}{description},
       'example: ja-Latn-JP falls back to ja; the built-in pattern in Japanese');
    is($r->{json}{InvalidParameter}, 'GroupId', 'example: built-in pattern still matches');

    # the built-in zh-Hant is still there
    $r = req('ex', 'InstanceNotFound', lang => 'zh-TW');
    is($r->{json}{Description}, $entry{InstanceNotFound}{text}{'zh-Hant'}{description},
       'example: zh-TW still Traditional Chinese');

    # a code without Japanese text: English, Content-Language en
    $r = req('ex', 'PermissionCheckFailed', lang => 'ja');
    ok(!exists $r->{json}{Description}, 'example: no ja text, no Description');
    is(h($r, 'Content-Language'), 'en', 'example: no ja text, Content-Language en');

    # the regex code, its first capture exposed three ways
    my ($thr) = grep { $_->{regex} } @{ $example->{errors} };
    $r = req('ex', 'Throttling.User', lang => 'ja', action => 'ApplyToken');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'Throttling.User', 'example regex: code');
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'User',
       'example regex: first capture in X-MQTTAPI-Invalid-Parameter');
    is($r->{json}{InvalidParameter}, 'User', 'example regex: InvalidParameter member');
    is(h($r, 'X-Param'), 'User', 'example regex: $mqttapi_error_parameter');
    is(h($r, 'X-MQTTAPI-Error-Cause'), $thr->{text}{en}{cause}, 'example regex: cause');
    is($r->{json}{Description}, $thr->{text}{ja}{description}, 'example regex: ja description');
    is(h($r, 'X-MQTTAPI-Retryable'), 'true', 'example regex: retryable');
    is(h($r, 'Retry-After'), $thr->{retry_after}, 'example regex: Retry-After');
    is(h($r, 'x-acs-retry-after'), $thr->{retry_after} * 1000,
       'example regex: throttle code, x-acs-retry-after');
    is(h($r, 'X-MQTTAPI-Error-Category'), 'token', 'example regex: category from the Action');

    $r = req('ex', 'Throttling.Api');
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'Api', 'example regex: another capture');
    $r = req('ex', 'Throttling.User.Extra');
    ok(!defined h($r, 'X-MQTTAPI-Invalid-Parameter'),
       'example regex: anchored, Throttling.User.Extra does not match');
    is(h($r, 'X-MQTTAPI-Error-Cause'), undef, 'example regex: no text for a non-match');

    $r = req('exn', 'Throttling.User');
    is($r->{status}, $thr->{mapped_status}, 'example regex: mapped status with normalize on');
    is(h($r, 'X-MQTTAPI-Upstream-Status'), 400, 'example regex: upstream status');

    # the added codes
    for my $c (grep { $_->{code} && !$entry{ $_->{code} } } @{ $example->{errors} }) {
        $r = req('exn', $c->{code}, lang => 'ja');
        is(h($r, 'X-MQTTAPI-Error-Cause'), $c->{text}{en}{cause}, "example $c->{code}: cause");
        is($r->{status}, $c->{mapped_status}, "example $c->{code}: mapped status");
        is($r->{json}{Description}, $c->{text}{ja}{description},
           "example $c->{code}: ja description");
        is($r->{json}{Cause}, $c->{text}{ja}{cause} // $c->{text}{en}{cause},
           "example $c->{code}: Cause in ja when the catalog has one");
    }

    # a gateway-made error in Japanese (the example's GatewayUpstreamTimeout)
    $r = get($GW, '/exhang/x', 'Accept-Language' => 'ja');
    is($r->{status}, 504, 'example: hanging upstream, 504');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayUpstreamTimeout', 'example: GatewayUpstreamTimeout');
    is(json_decode($r->{body})->{Description}, $ex{GatewayUpstreamTimeout}{text}{ja}{description},
       'example: GatewayUpstreamTimeout in Japanese');
    is(h($r, 'Content-Language'), 'ja', 'example: gateway error Content-Language ja');

    # not in a location without the user catalog
    $r = req('inh', 'Throttling.User', lang => 'ja');
    ok(!defined h($r, 'X-MQTTAPI-Invalid-Parameter'), 'built-in only: no Throttling regex');
    ok(!defined h($r, 'X-MQTTAPI-Error-Cause'), 'built-in only: Throttling.User unknown');
    is(h($r, 'X-MQTTAPI-Error-Category'), 'unknown', 'built-in only: category unknown');
    $r = req('inh', 'InstanceNotFound', lang => 'ja');
    is(h($r, 'Content-Language'), 'en', 'built-in only: no ja');
    is(h($r, 'X-MQTTAPI-Error-Solution'), $entry{InstanceNotFound}{text}{en}{solution},
       'built-in only: the built-in solution');
}

# ---------------------------------------------------------------------------
# 2. Overriding every field, adding codes, regexes, a language
# ---------------------------------------------------------------------------

{
    my $r = req('ov', 'InstanceNotFound');
    is($r->{status}, 410, 'override mapped_status: 410');
    is(h($r, 'X-MQTTAPI-Upstream-Status'), 400, 'override: upstream status');
    is(h($r, 'X-MQTTAPI-Retryable'), 'true', 'override retryable: true');
    is(h($r, 'Retry-After'), 7, 'override retry_after: 7');
    is($r->{json}{RetryAfter}, 7, 'override retry_after: body');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Overridden cause.', 'override text: cause');
    is(h($r, 'X-MQTTAPI-Error-Solution'), $entry{InstanceNotFound}{text}{en}{solution},
       'override text: the solution not named is kept');
    is(h($r, 'X-MQTTAPI-Error-Category'), 'unknown', 'override: categories not named kept');

    $r = req('ovp', 'InstanceNotFound');
    is($r->{json}{title}, 'No such instance (override).', 'override message: problem title');

    $r = req('ov', 'InstanceNotFound', lang => 'de-CH-1996');
    is($r->{json}{Description}, 'Die Instanz wurde nicht gefunden.', 'de: de-CH-1996 -> de-CH');
    is($r->{json}{Cause}, 'Keine Instanz passt zur InstanceId.', 'de: localized Cause');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Overridden cause.', 'de: the header stays English');
    is(h($r, 'Content-Language'), 'de', 'de: Content-Language');

    $r = req('ov', 'InstanceNotFound', lang => 'de-DE-x-phonebk');
    is(h($r, 'Content-Language'), 'de', 'de: de-DE-x-phonebk -> de-DE');
    for my $al ('pt-BR', 'pt', 'pt-PT', 'pt-br;q=0.9, en;q=0.1') {
        $r = req('ov', 'InstanceNotFound', lang => $al);
        is(h($r, 'Content-Language'), 'pt-BR', "a tag with a region as language: $al");
        is($r->{json}{Description}, 'Instância não encontrada.', "pt-BR description: $al");
    }
    $r = req('ov', 'InvalidParameter.Topic', lang => 'de');
    is($r->{json}{Description}, 'Parameter ungültig.', 'de: text added to the built-in pattern');
    $r = req('ov', 'ApiNotSupport', lang => 'de');
    is(h($r, 'Content-Language'), 'en', 'de: a code without German text -> en');
    # de is negotiated (per catalog, not per code); without German text
    # the body is English, and Content-Language says so
    $r = req('ov', 'ApiNotSupport', lang => 'de, zh-TW;q=0.5');
    is(h($r, 'Content-Language'), 'en', 'de negotiated, no German text: Content-Language en');
    ok(!exists $r->{json}{Description}, 'de negotiated, no German text: no Description');

    $r = req('ov', 'ApplyTokenOverFlow');
    is(h($r, 'Retry-After'), 9, 'override retry delay of a throttle code');
    is(h($r, 'x-acs-retry-after'), 9000, 'override retry delay: x-acs-retry-after');
    is(h($r, 'X-MQTTAPI-Error-Solution'), 'Slow down, then retry (override).',
       'override: solution of a throttle code');
    is($r->{status}, 429, 'override: the mapping not named is kept');
    $r = req('ov', 'ApplyTokenOverFlow', retry_after => 20);
    is(h($r, 'Retry-After'), 20, "override: the upstream's Retry-After still wins");

    $r = req('ov', 'InternalError');
    is($r->{status}, 503, 'override mapped_status: InternalError 503');
    is(h($r, 'X-MQTTAPI-Retryable'), 'false', 'override retryable: false');
    ok(!defined h($r, 'Retry-After'), 'override retryable false: no Retry-After');

    $r = req('ov', 'ParameterCheckFailed');
    is(h($r, 'X-MQTTAPI-Retryable'), 'true', 'override throttle: retryable');
    is(h($r, 'x-acs-retry-after'), 4000, 'override throttle: now a throttle code');
    is(h($r, 'X-MQTTAPI-Error-Category'), 'group', 'override categories');

    $r = req('ov', 'Custom.Code', lang => 'de');
    is($r->{status}, 422, 'added code: mapped status');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Custom cause.', 'added code: cause');
    is(h($r, 'X-MQTTAPI-Error-Category'), 'rule', 'added code: category');
    is($r->{json}{Description}, 'Benutzerdefiniert.', 'added code: de');

    $r = req('ov', 'QuotaExceeded.Daily');
    is($r->{status}, 429, 'added regex: mapped status');
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'Daily', 'added regex: first capture');
    is(h($r, 'X-Param'), 'Daily', 'added regex: $mqttapi_error_parameter');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'The Daily quota is exhausted.',
       'added regex: the capture named in the text');
    is(h($r, 'Retry-After'), 11, 'added regex: retry_after');

    $r = req('ov', 'NoCapture.ABC');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Matched without a capture.', 'regex without capture');
    ok(!defined h($r, 'X-MQTTAPI-Invalid-Parameter'), 'regex without capture: no parameter');
    ok(!exists $r->{json}{InvalidParameter}, 'regex without capture: no member');
    ok(!defined h($r, 'X-Param'), 'regex without capture: $mqttapi_error_parameter empty');

    # the first capture only, when it took part in the match; a "%s" with
    # nothing to fill stands for nothing, never a literal "%s"
    $r = req('ov', 'OptxY', lang => 'de');
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'x', 'optional capture taking part: exposed');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Variant [x] is invalid.', 'optional capture: cause');
    is($r->{json}{Description}, 'Variante [x] ungültig.', 'optional capture: description');

    for my $loc ('ov', 'ovp') {
        $r = req($loc, 'OptY', lang => 'de');
        my $w = "optional capture taking no part (/$loc/)";
        is(h($r, 'X-MQTTAPI-Error-Code'), 'OptY', "$w: the regex matched");
        is(h($r, 'X-MQTTAPI-Error-Cause'), 'Variant [] is invalid.', "$w: cause header");
        is(h($r, 'X-MQTTAPI-Error-Solution'), 'Use a variant other than [].',
           "$w: solution header");
        ok(!defined h($r, 'X-MQTTAPI-Invalid-Parameter'), "$w: no parameter header");
        ok(!defined h($r, 'X-Param'), "$w: \$mqttapi_error_parameter empty");
        ok(!exists $r->{json}{InvalidParameter}, "$w: no InvalidParameter member");
        is($r->{json}{Cause}, 'Variant [] is invalid.', "$w: Cause member");
        is($r->{json}{Description}, 'Variante [] ungültig.', "$w: Description member");
        is($r->{json}{detail}, $loc eq 'ovp' ? 'Variant [] is invalid.' : undef,
           "$w: problem detail");
        unlike($r->{body}, qr/%s/, "$w: no %s in the body");
        ok(!grep({ $_->[1] =~ /%s/ } @{ $r->{headers} }), "$w: no %s in a header");
    }

    # every "%s" of a text is filled (counted once, at load time); a lone
    # '%' and "%d" stay as they are, "%%s" is a '%' and the parameter
    $r = req('ov', 'Holes.P7', lang => 'de');
    is(h($r, 'X-MQTTAPI-Error-Cause'), '100% of P7, P7 again, %P7, %d and %',
       'several holes: cause header');
    is($r->{json}{Cause}, '100% of P7, P7 again, %P7, %d and %', 'several holes: Cause');
    is(h($r, 'X-MQTTAPI-Error-Solution'), 'No hole: 50% off.', 'no hole: solution header');
    is($r->{json}{Solution}, 'No hole: 50% off.', 'no hole: Solution');
    is($r->{json}{Description}, 'P7P7', 'two adjacent holes: Description');

    $r = req('ov', 'Alt.N12');
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), '12', 'alternatives: the first capture');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Alternative [12].', 'alternatives: first capture text');
    $r = req('ov', 'Alt.Sabc');
    ok(!defined h($r, 'X-MQTTAPI-Invalid-Parameter'),
       'alternatives: the second capture is never exposed');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Alternative [].', 'alternatives: nothing for %s');

    # a user code with "%s" and a suffix: the middle is the parameter
    for (['Limit.Daily.Exceeded', 'Daily'], ['Limit.A.b-c_9.Exceeded', 'A.b-c_9'],
         ['Limit..Exceeded', undef], ['LimitXDaily.Exceeded', undef],
         ['Limit.Daily.ExceededX', undef], ['XLimit.Daily.Exceeded', undef]) {
        my ($code, $param) = @$_;
        $r = req('ov', $code);
        is(h($r, 'X-MQTTAPI-Invalid-Parameter'), $param,
           "user %s code, $code: parameter " . ($param // 'none'));
        is(h($r, 'X-MQTTAPI-Error-Cause'),
           defined $param ? "The $param limit is exceeded." : undef,
           "user %s code, $code: " . (defined $param ? 'its text' : 'no match'));
    }

    $r = req('ov', 'Exact.WithPercent');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Nothing [] to fill.', 'an exact code: %s is dropped');
    is($r->{json}{Cause}, 'Nothing [] to fill.', 'an exact code: %s is dropped (body)');

    $r = req('ov', 'InvalidParameter.GroupId');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Group parameter Id is invalid.',
       "a user regex before the built-in pattern");
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'Id', 'a user regex: its capture');
    $r = req('ov', 'InvalidParameter.Topic');
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'Topic', 'the built-in pattern still matches the rest');

    $r = req('ov', 'InstanceNotFound');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Overridden cause.', 'an exact code before any regex');
    $r = req('ov', 'InstanceGone');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Should never match an exact code.',
       'the regex matches what is not an exact code');

    # a gateway code overridden: the errors nginx makes use the override
    $r = get($GW, '/ovdead/x', 'Accept-Language' => 'de');
    is($r->{status}, 503, 'gateway code override: mapped_status');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayUpstreamUnavailable', 'gateway code override: code');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Gateway cause (override).', 'gateway code override: cause');
    is(json_decode($r->{body})->{Description}, 'Upstream nicht erreichbar.',
       'gateway code override: de description');
    # "local" gateway codes: the local status, the nginx status, the local
    # class, the nginx class; not for errors made after the upstream was used
    $r = get($GW, '/ovret405/x');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'Custom.Code', 'user "local" 4xx: a local 405');
    is($r->{status}, 405, 'user "local" 4xx: status kept');
    is(h($r, 'X-MQTTAPI-Error-Category'), 'gateway', 'user "local" 4xx: category gateway');
    $r = get($GW, '/ovret404/x');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayNotFound',
       'user "local" 4xx: the built-in "nginx" 404 comes before a "local" class');
    $r = get($GW, '/ovdead405/x');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GatewayBadRequest',
       'user "local" 4xx: not after the upstream was used');

    $r = get($GW, '/dead/x', 'Accept-Language' => 'de');
    is($r->{status}, 502, 'gateway code elsewhere: built-in status');
    is(h($r, 'X-MQTTAPI-Error-Cause'), $entry{GatewayUpstreamUnavailable}{text}{en}{cause},
       'gateway code elsewhere: built-in cause');

    # repeated on one level: the later file wins, the earlier still applies
    $r = req('two', 'Custom.Code', lang => 'de');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'Custom cause, second file.', 'two files: the later wins');
    is(h($r, 'X-MQTTAPI-Error-Solution'), 'Custom solution.', 'two files: the earlier applies');
    $r = req('two', 'InstanceNotFound', lang => 'de');
    is($r->{json}{Description}, 'Instanz fehlt (zweite Datei).', 'two files: later text');
    is(h($r, 'X-MQTTAPI-Retryable'), 'true', 'two files: earlier fields kept');

    # server and http level
    $r = req('inh', 'ServerLevel.Code');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'server level', 'server-level catalog inherited');
    $r = req('', 'HttpLevel.Code', port => $GW2);
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'http level', 'http-level catalog inherited');

    # the built-in entries are not changed for other locations
    $r = req('inh', 'InstanceNotFound');
    is(h($r, 'X-MQTTAPI-Error-Cause'), $entry{InstanceNotFound}{text}{en}{cause},
       'other locations: the built-in text');
    is(h($r, 'X-MQTTAPI-Retryable'), 'false', 'other locations: the built-in retryable');
    $r = req('inh', 'ApplyTokenOverFlow');
    is(h($r, 'Retry-After'), $entry{ApplyTokenOverFlow}{retry_after},
       'other locations: the built-in retry_after');
}

# ---------------------------------------------------------------------------
# 3. Accept-Language
# ---------------------------------------------------------------------------

my $ZH = $entry{InstanceNotFound}{text}{'zh-Hant'}{description};
my $ZHS = $entry{InstanceNotFound}{text}{'zh-Hans'}{description};
my $JA = $ex{InstanceNotFound}{text}{ja}{description};

my @langs = (
    # [location, Accept-Language, expected Content-Language]
    ['inh', 'zh-TW', 'zh-Hant'],
    ['inh', 'zh-HK', 'zh-Hant'],
    ['inh', 'zh-MO', 'zh-Hant'],
    ['inh', 'zh-Hant', 'zh-Hant'],
    ['inh', 'zh-Hant-TW', 'zh-Hant'],
    ['inh', 'zh-Hant-HK', 'zh-Hant'],
    ['inh', 'ZH-tw', 'zh-Hant'],
    ['inh', 'zh-CN', 'zh-Hans'],
    ['inh', 'zh', 'zh-Hans'],
    ['inh', 'zh-Hans-CN', 'zh-Hans'],
    ['inh', 'fr-FR', 'en'],
    ['inh', '*', 'en'],
    ['inh', '', 'en'],
    ['inh', undef, 'en'],
    ['inh', 'en-US,en;q=0.9,zh-TW;q=0.8', 'en'],
    ['inh', 'fr;q=1, zh-TW;q=0.2', 'zh-Hant'],
    ['inh', 'en;q=0.5, zh-TW;q=0.9', 'zh-Hant'],
    ['inh', 'zh-TW;q=0.3, en;q=0.8', 'en'],
    ['inh', 'zh-TW;q=0.80, en;q=0.799', 'zh-Hant'],
    ['inh', 'en, zh-TW', 'en'],
    ['inh', 'zh-TW, en', 'zh-Hant'],
    ['inh', 'zh-TW;q=0, *', 'en'],
    ['inh', 'zh-TW;q=0', 'en'],
    ['inh', 'en;q=0, zh-TW;q=0.1', 'zh-Hant'],
    ['inh', 'zh-HK;q=0.5, en;q=0', 'zh-Hant'],
    ['inh', '*;q=0.9, zh-TW', 'zh-Hant'],
    # both excluded: the first language that is not (zh-Hans)
    ['inh', 'en;q=0, zh-HK;q=0', 'zh-Hans'],
    ['inh', 'en;q=0, zh-HK;q=0, zh;q=0', 'en'],
    # a malformed weight: the range is ignored, it neither chooses nor
    # excludes (before: q=abc counted as q=0, q=1.5 and q= as q=1)
    ['inh', 'fr;q=abc', 'en'],
    ['inh', 'zh-TW, zh-TW;q=abc', 'zh-Hant'],
    ['inh', 'zh-TW;q=abc, en;q=0', 'zh-Hant'],
    ['inh', 'zh-TW;q=0.9999, en;q=0.5', 'en'],
    ['inh', 'zh-TW;q=1.001, en;q=0.5', 'en'],
    ['inh', 'zh-TW;q=, en;q=0.5', 'en'],
    ['inh', 'zh-TW;q=.5, en;q=0.4', 'en'],
    ['inh', 'zh-TW;q = 0.9, en;q=0.5', 'en'],
    ['inh', 'zh-TW;level=1, en;q=0.5', 'en'],
    ['inh', 'zh-TW;q=0.9;x=y, en;q=0.5', 'en'],
    ['inh', 'en;q=0.5, zh-TW;q=abc, zh-HK;q=0.6', 'zh-Hant'],
    # well-formed weights, with optional whitespace and the longest forms
    ['inh', 'zh-TW ; q=0.8 , en;q=0.7', 'zh-Hant'],
    ['inh', 'zh-TW;Q=1.000, en', 'zh-Hant'],
    ['inh', 'en;q=0.999, zh-TW;q=1.', 'zh-Hant'],
    ['inh', 'zh-TW;q=0., en;q=0.001', 'en'],
    ['ex', 'ja', 'ja'],
    ['ex', 'JA-jp', 'ja'],
    ['ex', 'ja-Latn-JP', 'ja'],
    ['ex', 'zh-TW;q=0.5, ja;q=0.8', 'ja'],
    ['ex', 'ja;q=0.5, zh-TW;q=0.8', 'zh-Hant'],
    ['ex', 'ja;q=0, zh-HK;q=0.1', 'zh-Hant'],
    ['ex', 'ja;q=0, en', 'en'],
    ['ex', 'fr, ja;q=0.1', 'ja'],
    ['ex', 'zh-Hant-TW;q=0.9, ja-JP;q=0.95', 'ja'],
    ['ex', 'ja;q=1.5, zh-TW;q=0.9', 'zh-Hant'],
    ['ex', 'ja;q=abc, zh-TW;q=0.9', 'zh-Hant'],
    ['ex', 'ja, ja;q=x', 'ja'],
    ['inh', 'ja', 'en'],
);

for my $l (@langs) {
    my ($loc, $al, $want) = @$l;
    my $r = req($loc, 'InstanceNotFound', lang => $al);
    my $w = "Accept-Language " . (defined $al ? "\"$al\"" : '(none)') . " at /$loc/";
    is(h($r, 'Content-Language'), $want, "$w: Content-Language $want");
    my $desc = $want eq 'zh-Hant' ? $ZH : $want eq 'zh-Hans' ? $ZHS
             : $want eq 'ja' ? $JA : undef;
    is($r->{json}{Description}, $desc, "$w: Description");
    like(h($r, 'Vary') // '', qr/Accept-Language/i, "$w: Vary: Accept-Language");
    is(h($r, 'X-MQTTAPI-Error-Cause'), $entry{InstanceNotFound}{text}{en}{cause},
       "$w: headers English");
}

# ---------------------------------------------------------------------------
# 4. Broken catalogs fail nginx -t
# ---------------------------------------------------------------------------

# [name, file content (undef: no file), entry regex or undef, problem regex]
my @broken = (
    ['bad JSON', qq({\n  "errors": [\n    { "code": "Foo", }\n  ]\n}\n),
     undef, qr/line 3, column \d+/],
    ['unknown key', '{"errors":[{"code":"FooBar","status":400,"colour":"red"}]}',
     'FooBar', qr/"colour" is not a known key/],
    ['unknown top-level key', '{"languages":{"ja":["ja"]},"erors":[]}',
     undef, qr/"erors" is not a known key/],
    ['unknown text key', '{"errors":[{"code":"FooBar","text":{"en":{"cuase":"x"}}}]}',
     'FooBar', qr/text "en": "cuase" is not a known key/],
    ['unknown quota key', '{"quota":{"burst":5}}', undef, qr/quota "burst" is not a known key/],
    ['unknown action key', '{"actions":{"ApplyToken":{"qouta":5}}}', undef,
     qr/action "ApplyToken": "qouta" is not a known key/],
    ['bad action category', '{"actions":{"ApplyToken":{"category":"a b"}}}', undef,
     qr/action "ApplyToken": "category" is not a name of \[A-Za-z0-9_-\]/],
    ['bad action throttle_code', '{"actions":{"ApplyToken":{"throttle_code":7}}}', undef,
     qr/action "ApplyToken": "throttle_code" is not a code of/],
    ['bad quota code', '{"quota":{"code":"a b"}}', undef, qr/quota "code" is not a code of/],
    ['retryable not a boolean', '{"errors":[{"code":"FooBar","status":400,"retryable":"yes"}]}',
     'FooBar', qr/"retryable" is not true or false/],
    ['empty categories', '{"errors":[{"code":"FooBar","status":400,"categories":[]}]}',
     'FooBar', qr/"categories" is not a non-empty array of names/],
    ['bad category', '{"errors":[{"code":"FooBar","status":400,"categories":["a/b"]}]}',
     'FooBar', qr/"categories" is not a non-empty array of names/],
    ['empty message', '{"errors":[{"code":"FooBar","status":400,"message":""}]}',
     'FooBar', qr/"message" is not a non-empty string/],
    ['retry_after out of range', '{"errors":[{"code":"FooBar","status":400,"retry_after":86401}]}',
     'FooBar', qr/"retry_after" is not an integer of seconds between 0 and 86400/],
    ['default_language not a string', '{"default_language":1}', undef,
     qr/"default_language" is not a string/],
    ['bad status', '{"errors":[{"code":"FooBar","status":700}]}',
     'FooBar', qr/"status".*400 and 599/],
    ['status not a number', '{"errors":[{"code":"FooBar","status":"400"}]}',
     'FooBar', qr/"status".*integer/],
    ['bad mapped_status', '{"errors":[{"code":"InstanceNotFound","mapped_status":302}]}',
     'InstanceNotFound', qr/"mapped_status".*400 and 599/],
    ['invalid regex', '{"errors":[{"regex":"^Foo\\\\.(\\\\w+$","status":400}]}',
     qr/\^Foo\\\.\(\\w\+\$/, qr/pcre|regex|parenthes/i],
    ['text for an undeclared language', '{"errors":[{"code":"FooBar","status":400,'
     . '"text":{"fr":{"cause":"x"}}}]}', 'FooBar', qr/"fr".*not one of the "languages"/],
    ['non-ASCII English cause', qq({"errors":[{"code":"FooBar","status":400,)
     . qq("text":{"en":{"cause":"caf\xc3\xa9 closed"}}}]}), 'FooBar', qr/ASCII/],
    ['multi-line English solution', '{"errors":[{"code":"FooBar","status":400,'
     . '"text":{"en":{"solution":"a\r\nX-Evil: 1"}}}]}', 'FooBar', qr/ASCII/],
    ['duplicate key', qq({"errors":[\n{"code":"FooBar",\n"status":400,\n"status":401}]}),
     undef, qr/duplicate.*"status"|"status".*duplicate/],
    ['bad code', '{"errors":[{"code":"Foo Bar","status":400}]}',
     'Foo Bar', qr/characters outside/],
    ['two %s', '{"errors":[{"code":"Foo.%s.%s","status":400}]}',
     qr/Foo\.%s\.%s/, qr/exactly one "%s"/],
    ['throttle without retryable', '{"errors":[{"code":"FooBar","status":400,'
     . '"retryable":false,"throttle":true}]}', 'FooBar', qr/retryable/],
    ['neither code nor regex', '{"errors":[{"status":400}]}',
     qr/#1/, qr/"code".*"regex"/],
    ['bad language alias', '{"languages":{"de":["de","de DE"]}}',
     undef, qr/"de DE".*BCP 47/],
    ['undeclared default_language', '{"default_language":"fr"}',
     undef, qr/"fr".*not one of the "languages"/],
    ['gateway code not in the catalog', '{"gateway":{"nginx":{"502":"NoSuchCode"}}}',
     undef, qr/"NoSuchCode".*not in the catalog/],
    ['unknown gateway origin', '{"gateway":{"proxy":{"502":"GatewayUpstreamError"}}}',
     undef, qr/unknown origin "proxy", expected "nginx", "local" or "upstream"/],
    ['not an object', '["errors"]', undef, qr/not an object/],
    ['missing file', undef, undef, qr/No such file|stat\(\)|open/],
);

my $n = 0;
for my $b (@broken) {
    my ($name, $content, $entry_re, $problem) = @$b;
    my $file = defined $content ? write_catalog('broken' . ++$n . '.json', $content)
                                : "$DIR/does-not-exist.json";
    my ($rc, $out) = nginx_test_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / {
            mqttapi on;
            mqttapi_catalog $file;
            return 200;
        }
    }
EOF
    my $w = "broken catalog ($name)";
    isnt($rc, 0, "$w: nginx -t fails");
    like($out, qr/\[emerg\].*mqttapi_catalog/, "$w: names mqttapi_catalog");
    like($out, qr/\Q$file\E/, "$w: names the file");
    if (defined $entry_re) {
        my $re = ref $entry_re ? $entry_re : qr/\Q$entry_re\E/;
        like($out, qr/entry "[^"]*$re/, "$w: names the entry");
    }
    like($out, $problem, "$w: says what is wrong");
    like($out, qr/nginx\.conf:\d+/, "$w: names the configuration line");
    unlike($out, qr/syntax is ok/, "$w: no 'syntax is ok'");
}

# at http and server level, and the second file of two
{
    my $bad = write_catalog('bad-level.json', '{"errors":[{"code":"LevelCode","status":99}]}');
    my $good = $EXAMPLE;
    for my $case (['http', "mqttapi_catalog $bad;\n    server { listen 127.0.0.1:%%PORT0%%; }"],
                  ['server', "server { listen 127.0.0.1:%%PORT0%%; mqttapi_catalog $bad; }"],
                  ['second of two', "server { listen 127.0.0.1:%%PORT0%%;\n"
                                    . "location / { mqttapi_catalog $good;\n"
                                    . "mqttapi_catalog $bad; } }"]) {
        my ($where, $http) = @$case;
        my ($rc, $out) = nginx_test_config($http);
        isnt($rc, 0, "broken catalog at $where: nginx -t fails");
        like($out, qr/mqttapi_catalog "\Q$bad\E": entry "LevelCode": "status"/,
             "broken catalog at $where: directive, file, entry, problem");
        unlike($out, qr/\Q$good\E/, "broken catalog at $where: the good file is not blamed");
    }
}

# a later file makes a language with non-ASCII (or multi-line) texts the
# default: those texts would go into headers
{
    my $ja = write_catalog('ja-texts.json', qq({"languages":{"ja":["ja"]},"errors":[)
        . qq({"code":"InstanceNotFound","text":{"ja":{"cause":"\xe6\x97\xa5\\r\\nX-Evil: 1"}}}]}));
    my $def = write_catalog('ja-default.json', '{"default_language":"ja"}');
    my ($rc, $out) = nginx_test_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; mqttapi_catalog $ja; mqttapi_catalog $def; return 200; }
    }
EOF
    isnt($rc, 0, 'default_language switched to texts unfit for headers: nginx -t fails');
    like($out, qr/mqttapi_catalog "\Q$def\E": entry "InstanceNotFound": text "ja": .*ASCII/,
         'default_language switched: names the directive, file, entry and problem');

    ($rc, $out) = nginx_test_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT0%%;
        location / { mqttapi on; mqttapi_catalog $ja; return 200; }
    }
EOF
    is($rc, 0, 'the same texts in a language that is not the default: ok') or diag $out;
}

# ---------------------------------------------------------------------------
# 5. Reload
# ---------------------------------------------------------------------------

{
    my $r = req('rl', 'Reload.Code');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'version one', 'reload: before');

    write_catalog('reload.json', {
        errors => [ { code => 'Reload.Code', status => 400, message => 'v2',
                      text => { en => { cause => 'version two' } } } ],
    });
    ok($ng->reload, 'reload with a changed catalog');
    $r = req('rl', 'Reload.Code');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'version two', 'reload: the new text');

    write_catalog('reload.json', '{"errors":[{"code":"Reload.Code","status":400,');
    ok(!$ng->reload, 'reload with a broken catalog is refused');
    like($ng->error_log, qr/mqttapi_catalog "\Q$DIR\E\/reload\.json": line \d+, column \d+/,
         'reload: the error names the file');
    $r = req('rl', 'Reload.Code');
    is(h($r, 'X-MQTTAPI-Error-Cause'), 'version two', 'reload refused: the old one serves');
}

{
    my $log = $ng->error_log;
    unlike($log, qr/\[(alert|crit)\]/, 'no [alert] or [crit]');
    unlike($log, qr/exited on signal/, 'no worker crashed');
}

done_testing();
