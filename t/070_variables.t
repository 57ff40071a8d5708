#!/usr/bin/perl
# Variables: $mqttapi_error_code, $mqttapi_error_category,
# $mqttapi_retryable, $mqttapi_retry_after, $mqttapi_error_parameter and
# $mqttapi_action
#
#   * in log_format: the access log read back, one line per request, for
#     upstream JSON errors (plain, patterned, throttling with the catalog's
#     and with the upstream's Retry-After), gateway-made errors, HTML
#     errors, errors after error_page (inherited `mqttapi on`, and a page
#     served by a location without it), `mqttapi_body off`, and "-" for
#     successes, pass-throughs (unparsable JSON) and `mqttapi off`;
#   * in map (a class derived from the code, a hint from the retryable flag),
#     used in add_header and in the log;
#   * in `add_header ... always` on every one of those responses, absent
#     when the variable is empty;
#   * the variables agree with the X-MQTTAPI-* headers and the body;
#   * $mqttapi_action from the x-acs-action header (which wins) or the
#     Action argument, on errors and successes, with mqttapi on or off;
#     "-" without one, or for one that is not a name.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use Time::HiRes ();
use MqttapiTest;

my $REPO = repo_dir();
my ($catalog, $entries) = builtin_catalog();
my %entry = %$entries;

my $DEAD = dead_port();
my $WWW = File::Temp::tempdir('mqttapi-www-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $WWW;
{
    open my $fh, '>', "$WWW/50x.html" or die $!;
    print {$fh} "<html><body>sorry</body></html>\n";
    close $fh;
}

my $VARS = 'code=$mqttapi_error_code cat=$mqttapi_error_category '
         . 'retry=$mqttapi_retryable ra=$mqttapi_retry_after '
         . 'param=$mqttapi_error_parameter';

my $ng = start_nginx(http => <<"EOF");
    include %%REPO%%/conf/emulator_http.conf;

    log_format mqttapi 'tag=\$http_x_tag $VARS class=\$mqttapi_class hint=\$mqttapi_hint s=\$status act=\$mqttapi_action';

    map \$mqttapi_error_code \$mqttapi_class {
        ""                      none;
        "~^Gateway"             gateway;
        "~OverFlow\$"           throttled;
        "~^InvalidParameter\\." parameter;
        default                 other;
    }

    map \$mqttapi_retryable \$mqttapi_hint {
        true        retry-later;
        false       do-not-retry;
        default     n/a;
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        include %%REPO%%/conf/emulator.conf;
    }

    server {
        listen 127.0.0.1:%%PORT0%%;
        access_log %%PREFIX%%/mqttapi.log mqttapi;

        mqttapi on;

        add_header X-Code \$mqttapi_error_code always;
        add_header X-Category \$mqttapi_error_category always;
        add_header X-Retryable \$mqttapi_retryable always;
        add_header X-Retry-After \$mqttapi_retry_after always;
        add_header X-Param \$mqttapi_error_parameter always;
        add_header X-Class \$mqttapi_class always;
        add_header X-Hint \$mqttapi_hint always;
        add_header X-Action \$mqttapi_action always;

        location /emu/     { proxy_pass http://127.0.0.1:%%PORT1%%/; }
        location /emu-off/ {
            mqttapi_body off;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /problem/ {
            mqttapi_body problem;
            mqttapi_normalize_status on;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /dead/    { proxy_pass http://127.0.0.1:$DEAD; }
        location /ep/ {
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 /50x.html;
        }
        location = /50x.html { root $WWW; }
        location /nomq/ {
            mqttapi off;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log %%PREFIX%%/mqttapi.log mqttapi;

        add_header X-Code \$mqttapi_error_code always;
        add_header X-Retryable \$mqttapi_retryable always;

        location /api/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:$DEAD;
            error_page 502 /static50x.html;
        }
        location = /static50x.html { root $WWW; try_files /50x.html =404; }
    }
EOF

my ($GW, $EMU, $GW2) = ($ng->port(0), $ng->port(1), $ng->port(2));
my $LOG = $ng->prefix . '/mqttapi.log';

my $tag = 0;

# request($port, $path_with_query) -> ($response, \%logged)
sub request {
    my ($port, $path, @h) = @_;
    my $t = ++$tag;
    my $r = get($port, $path, 'X-Tag' => $t, @h);
    my %f;
    my $deadline = Time::HiRes::time() + 3;
    while (Time::HiRes::time() < $deadline) {
        open my $fh, '<', $LOG or do { Time::HiRes::sleep(0.02); next };
        my @lines = grep { /^tag=$t / } <$fh>;
        close $fh;
        if (@lines) {
            is(scalar @lines, 1, "log: one line for request $t");
            chomp(my $l = $lines[0]);
            %f = $l =~ /(\w+)=(\S*)/g;
            last;
        }
        Time::HiRes::sleep(0.02);
    }
    ok(%f, "log: line for request $t ($path)");
    return ($r, \%f);
}

# check($w, $r, $log, code => , cat => , retry => , ra => , param => ,
#       class => , hint => )  (undef: empty, "-" in the log, no header)
sub check {
    my ($w, $r, $log, %x) = @_;
    my %map = (code => 'X-Code', cat => 'X-Category', retry => 'X-Retryable',
               ra => 'X-Retry-After', param => 'X-Param', class => 'X-Class',
               hint => 'X-Hint');
    for my $k (qw(code cat retry ra param class hint)) {
        next unless exists $x{$k};
        is($log->{$k}, $x{$k} // '-', "$w: log $k=" . ($x{$k} // '-'));
        is(h($r, $map{$k}), $x{$k}, "$w: add_header $map{$k}");
    }
    is($log->{s}, $r->{status}, "$w: log status");
}

# ---------------------------------------------------------------------------
# Upstream JSON errors
# ---------------------------------------------------------------------------

{
    my ($r, $l) = request($GW, '/emu/?mqttemu_code=InstanceNotFound&Action=CreateGroupId');
    check('InstanceNotFound', $r, $l, code => 'InstanceNotFound', cat => 'group',
          retry => 'false', ra => undef, param => undef, class => 'other',
          hint => 'do-not-retry');
    is(h($r, 'X-Code'), h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound: variable = header');
    is(h($r, 'X-Category'), h($r, 'X-MQTTAPI-Error-Category'),
       'InstanceNotFound: category variable = header');

    ($r, $l) = request($GW, '/emu/?mqttemu_code=InvalidParameter.GroupId');
    check('InvalidParameter.GroupId', $r, $l, code => 'InvalidParameter.GroupId', cat => 'token',
          retry => 'false', ra => undef, param => 'GroupId', class => 'parameter');
    is(h($r, 'X-Param'), h($r, 'X-MQTTAPI-Invalid-Parameter'), 'parameter variable = header');
    is(json_decode($r->{body})->{InvalidParameter}, 'GroupId', 'parameter: body member');

    ($r, $l) = request($GW, '/emu/?mqttemu_code=ApplyTokenOverFlow&Action=ApplyToken');
    check('ApplyTokenOverFlow', $r, $l, code => 'ApplyTokenOverFlow', cat => 'token',
          retry => 'true', ra => $entry{ApplyTokenOverFlow}{retry_after}, param => undef,
          class => 'throttled', hint => 'retry-later');
    is(h($r, 'X-Retry-After'), h($r, 'Retry-After'), 'retry_after variable = Retry-After');

    ($r, $l) = request($GW, '/emu/?mqttemu_code=QueryTokenOverFlow&mqttemu_retry_after=7');
    check("QueryTokenOverFlow, upstream's Retry-After: 7", $r, $l, code => 'QueryTokenOverFlow',
          retry => 'true', ra => 7, class => 'throttled');

    ($r, $l) = request($GW, '/emu/?mqttemu_code=InternalError&Action=ListGroupId');
    check('InternalError', $r, $l, code => 'InternalError', cat => 'group', retry => 'true',
          ra => 1, class => 'other');

    ($r, $l) = request($GW, '/emu/?mqttemu_code=Not.In.Catalog');
    check('code outside the catalog', $r, $l, code => 'Not.In.Catalog', cat => 'unknown',
          retry => 'false', ra => undef, param => undef, class => 'other');

    # body off and problem: the same variables
    ($r, $l) = request($GW, '/emu-off/?mqttemu_code=SystemOverFlow');
    check('mqttapi_body off', $r, $l, code => 'SystemOverFlow', retry => 'true', ra => 1,
          class => 'throttled');
    ($r, $l) = request($GW, '/problem/?mqttemu_code=GroupIdAlreadyExsited');
    check('problem + normalize', $r, $l, code => 'GroupIdAlreadyExsited', cat => 'group',
          retry => 'false', class => 'other');
    is($l->{s}, 409, 'problem + normalize: the log has the sent status');
}

# ---------------------------------------------------------------------------
# Gateway-made and non-JSON errors, error_page
# ---------------------------------------------------------------------------

{
    my ($r, $l) = request($GW, '/dead/x');
    check('upstream refused', $r, $l, code => 'GatewayUpstreamUnavailable', cat => 'gateway',
          retry => 'true', ra => 1, param => undef, class => 'gateway', hint => 'retry-later');

    ($r, $l) = request($GW, '/emu/?mqttemu_code=InstanceNotFound&mqttemu_body=html');
    check('upstream HTML error', $r, $l, code => 'GatewayUpstreamRejected', cat => 'gateway',
          retry => 'false', class => 'gateway');

    ($r, $l) = request($GW, '/ep/x');
    check('after error_page (mqttapi inherited)', $r, $l, code => 'GatewayUpstreamUnavailable',
          cat => 'gateway', retry => 'true', ra => 1, class => 'gateway');

    ($r, $l) = request($GW2, '/api/x');
    is($l->{code}, 'GatewayUpstreamUnavailable',
       'after error_page to a location without mqttapi: log code');
    is($l->{retry}, 'true', 'after error_page to a location without mqttapi: log retryable');
    is(h($r, 'X-Code'), 'GatewayUpstreamUnavailable',
       'after error_page to a location without mqttapi: add_header');
}

# ---------------------------------------------------------------------------
# Nothing to say: empty
# ---------------------------------------------------------------------------

{
    my ($r, $l) = request($GW, '/emu/?Action=ListGroupId&InstanceId=mqtt-cn-abc');
    is($r->{status}, 200, 'success: 200');
    check('success', $r, $l, code => undef, cat => undef, retry => undef, ra => undef,
          param => undef, class => 'none', hint => 'n/a');

    ($r, $l) = request($GW, '/emu/?mqttemu_code=InstanceNotFound&mqttemu_body=truncated');
    is($r->{status}, 400, 'unparsable JSON: 400');
    check('unparsable JSON (passed through)', $r, $l, code => undef, cat => undef,
          retry => undef, ra => undef, class => 'none');

    ($r, $l) = request($GW, '/nomq/?mqttemu_code=ApplyTokenOverFlow');
    check('mqttapi off', $r, $l, code => undef, cat => undef, retry => undef, ra => undef,
          param => undef, class => 'none', hint => 'n/a');
    ok(!defined h($r, 'X-MQTTAPI-Error-Code'), 'mqttapi off: not annotated');

    # keepalive: the variables are per request
    my $a = http_request(port => $GW, path => '/dead/x?t=ka1', keepalive => 1);
    is(h($a, 'X-Code'), 'GatewayUpstreamUnavailable', 'keepalive: first request, an error');
    my $b = http_request(sock => $a->{sock},
                         path => '/emu/?Action=ListGroupId&InstanceId=mqtt-cn-abc&t=ka2');
    is($b->{status}, 200, 'keepalive: second request, a success');
    ok(!defined h($b, 'X-Code'), 'keepalive: nothing left over from the first request');
}

# ---------------------------------------------------------------------------
# $mqttapi_action: the header, else the argument
# ---------------------------------------------------------------------------

{
    # [path, x-acs-action header or undef, expected]
    for my $c (
        ['/emu/?mqttemu_code=InstanceNotFound&Action=CreateGroupId', undef, 'CreateGroupId'],
        ['/emu/?mqttemu_code=InstanceNotFound', 'RevokeToken', 'RevokeToken'],
        ['/emu/?mqttemu_code=InstanceNotFound&Action=CreateGroupId', 'DeleteGroupId',
         'DeleteGroupId'],
        ['/emu/?Action=ListGroupId&InstanceId=mqtt-cn-abc', undef, 'ListGroupId'],
        ['/emu/?InstanceId=mqtt-cn-abc', 'ListGroupId', 'ListGroupId'],
        ['/emu/?mqttemu_code=InstanceNotFound&Action=NotInTheCatalog', undef, 'NotInTheCatalog'],
        ['/emu/?mqttemu_code=InstanceNotFound&Action=', 'Query_Token-2', 'Query_Token-2'],
        ['/nomq/?mqttemu_code=ApplyTokenOverFlow&Action=ApplyToken', undef, 'ApplyToken'],
        ['/nomq/?mqttemu_code=ApplyTokenOverFlow', 'ApplyToken', 'ApplyToken'],
        ['/dead/x?Action=QueryToken', undef, 'QueryToken'],
        ['/emu/?mqttemu_code=InstanceNotFound', undef, undef],
        ['/emu/?mqttemu_code=InstanceNotFound&Action=Apply%0D%0AToken', undef, undef],
        ['/emu/?mqttemu_code=InstanceNotFound&Action=a.b', undef, undef],
        ['/emu/?mqttemu_code=InstanceNotFound&Action=' . ('A' x 65), undef, undef],
        ['/emu/?mqttemu_code=InstanceNotFound', 'Apply Token', undef],
    ) {
        my ($path, $hdr, $want) = @$c;
        my $w = "\$mqttapi_action, $path" . (defined $hdr ? " x-acs-action: $hdr" : '');
        my ($r, $l) = request($GW, $path, defined $hdr ? ('x-acs-action' => $hdr) : ());
        is($l->{act}, $want // '-', "$w: log act=" . ($want // '-'));
        is(h($r, 'X-Action'), $want, "$w: add_header X-Action");
    }
}

{
    my $log = $ng->error_log;
    unlike($log, qr/\[(alert|crit|emerg)\]/, 'no [alert], [crit] or [emerg]');
}

done_testing();
