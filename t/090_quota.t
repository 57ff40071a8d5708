#!/usr/bin/perl
# Client-side rate limiting, the quota part, through a real nginx
# with two workers: a sliding one-second window per key and action at the
# action's published quota (conf/mqttapi_catalog.json "actions"), a
# per-action ceiling across all keys ("quota" "api_ceiling"), local answers
# over quota with the action's throttle code, user catalog overrides, and
# the interplay with the back-off and dry run.
#
# The upstream is a second nginx server that answers 200 (or ?code=<Code>
# with status 400) and logs "key|action|marker|msec" per request, which is
# how the tests count what reached it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use File::Temp ();
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiLimit;

my $REPO = repo_dir();

my $catalog = do {
    open my $fh, '<:raw', "$REPO/conf/mqttapi_catalog.json" or die $!;
    local $/;
    JSON::PP->new->utf8->decode(scalar <$fh>);
};

# the data the tests rely on (the built-in catalog's quotas)
is($catalog->{actions}{RevokeToken}{quota}, 5, 'catalog: RevokeToken 5/s');
is($catalog->{actions}{ApplyToken}{quota}, 100, 'catalog: ApplyToken 100/s');
is($catalog->{actions}{QueryToken}{quota}, 100, 'catalog: QueryToken 100/s');
is($catalog->{actions}{$_}{quota}, 10, "catalog: $_ 10/s")
    for qw(CreateGroupId DeleteGroupId ListGroupId);
is($catalog->{actions}{SendMessage}{quota}, 1000, 'catalog: SendMessage');
is($catalog->{actions}{QuerySessionByClientId}{quota}, 500,
   'catalog: QuerySessionByClientId');
is($catalog->{actions}{BatchQuerySessionByClientIds}{quota}, 100,
   'catalog: BatchQuerySessionByClientIds');
is($catalog->{quota}{default}, 500, 'catalog: others 500/s');
is($catalog->{quota}{api_ceiling}, 300, 'catalog: ceiling 300/s per API');
is($catalog->{quota}{code}, 'SystemOverFlow', 'catalog: quota code');
is($catalog->{actions}{ApplyToken}{throttle_code}, 'ApplyTokenOverFlow',
   'catalog: ApplyToken throttle code');
is($catalog->{actions}{QueryToken}{throttle_code}, 'QueryTokenOverFlow',
   'catalog: QueryToken throttle code');

# user catalogs
my $dir = File::Temp::tempdir('mqttapi-quota-XXXXXX', TMPDIR => 1,
                              CLEANUP => 1);
chmod 0755, $dir;
{
    open my $fh, '>', "$dir/user.json" or die $!;
    print $fh '{"actions":{"RevokeToken":{"quota":2},'
            . '"ApplyToken":{"quota":3}},"quota":{"api_ceiling":7}}';
    close $fh;
    open $fh, '>', "$dir/ceil2.json" or die $!;
    print $fh '{"quota":{"api_ceiling":2}}';
    close $fh;
    open $fh, '>', "$dir/code.json" or die $!;
    print $fh '{"actions":{"ListGroupId":{"quota":2,'
            . '"throttle_code":"MyQuotaCode"}},'
            . '"quota":{"default":3,"code":"QuotaExceeded"}}';
    close $fh;
}

# nginx -t of a location with mqttapi_quota and a user catalog of this text
sub nginx_t_catalog {
    my ($json) = @_;
    open my $fh, '>', "$dir/high.json" or die $!;
    print $fh $json;
    close $fh;
    return nginx_test_config(
        'mqttapi_throttle_zone $arg_AccessKeyId zone=q:1m;'
        . ' server { listen 127.0.0.1:%%PORT0%%; location / { mqttapi on;'
        . " mqttapi_quota zone=q; mqttapi_catalog $dir/high.json;"
        . ' proxy_pass http://127.0.0.1:%%PORT1%%; } }');
}

# limits are counted exactly up to 65535 per second (a bucket is 16 bits):
# a higher one fails the configuration test, naming the directive, the
# file and the limit
for my $c (['{"quota":{"api_ceiling":65536}}', 'quota "api_ceiling"'],
           ['{"quota":{"default":1000000}}', 'quota "default"'],
           ['{"actions":{"SendMessage":{"quota":70000}}}',
            'action "SendMessage": "quota"'],
           ['{"actions":{"SendMessage":{"quota":0}}}',
            'action "SendMessage": "quota"']) {
    my ($json, $what) = @$c;
    my ($rc, $out) = nginx_t_catalog($json);
    isnt($rc, 0, "nginx -t fails: $json");
    my $file = qr/\[emerg\] mqttapi_catalog "\Q$dir\E\/high\.json": /;
    my $range = qr/(?:is )?not an integer between 1 and 65535/;
    like($out, qr/$file\Q$what\E\S* $range/,
         "nginx -t: $json: the directive, the file, the limit")
        or diag $out;
}
{
    my ($rc, $out) = nginx_t_catalog(
        '{"quota":{"api_ceiling":65535,"default":65535},'
        . '"actions":{"SendMessage":{"quota":65535}}}');
    is($rc, 0, 'nginx -t: limits of 65535 are accepted') or diag $out;
}

my $http = <<"EOF";
    log_format up '\$arg_AccessKeyId|\$arg_Action|\$arg_m|\$msec';

    mqttapi_throttle_zone \$arg_AccessKeyId zone=q:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=q1:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=q2:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=qu:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=qc:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=qk:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=qd:1m;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=qb:1m backoff=30s;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=qp:1m backoff=1s max_backoff=1s;

    upstream up {
        server 127.0.0.1:%%PORT1%%;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%%PORT0%%;

        mqttapi on;

        add_header X-Throttle \$mqttapi_throttle always;
        add_header X-Req-Id \$request_id always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /q/ {
            mqttapi_quota zone=q;
            proxy_pass http://up/;
        }
        location /q1/ {
            mqttapi_quota zone=q1;
            proxy_pass http://up/;
        }
        location /q2/ {
            mqttapi_quota zone=q2;
            proxy_pass http://up/;
        }
        location /user/ {
            mqttapi_quota zone=qu;
            mqttapi_catalog $dir/user.json;
            proxy_pass http://up/;
        }
        location /code/ {
            mqttapi_quota zone=qc;
            mqttapi_catalog $dir/code.json;
            proxy_pass http://up/;
        }
        location /status/ {
            mqttapi_quota zone=qk;
            mqttapi_throttle_status 503;
            proxy_pass http://up/;
        }
        location /dry/ {
            mqttapi_quota zone=qd;
            mqttapi_throttle_dry_run on;
            proxy_pass http://up/;
        }
        location /both/ {
            mqttapi_throttle zone=qb;
            mqttapi_quota zone=qb;
            proxy_pass http://up/;
        }
        location /probe/ {
            mqttapi_throttle zone=qp;
            mqttapi_quota zone=qp;
            mqttapi_catalog $dir/ceil2.json;
            proxy_pass http://up/;
        }
        location /none/ {
            proxy_pass http://up/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT1%%;
        access_log %%PREFIX%%/up.log up;
        keepalive_requests 100000;
        default_type application/json;

        location / {
            if (\$arg_code) {
                return 400 '{"RequestId":"UP","HostId":"up","Code":"\$arg_code","Message":"m"}';
            }
            return 200 '{"RequestId":"UP-\$request_id"}';
        }
    }
EOF

my $ng = start_nginx(http => $http, workers => 2);
our $port = $ng->port(0);
my $UPLOG = $ng->prefix . '/up.log';

my $UP = upstream_log($UPLOG);

sub up_lines { $UP->lines }

# requests the upstream saw, by key (field 0) or marker (field 2)
sub up_count { $UP->count(@_) }
sub up_count_settled { $UP->count_settled(@_) }

# arrival times (integer ms, upstream clock) of a key's requests (or
# those with another field, 2: the marker)
sub arrivals { $UP->arrivals(@_) }

sub path {
    my ($loc, $key, $action, %a) = @_;
    my @q;
    push @q, "Action=$action" if defined $action;
    push @q, "AccessKeyId=$key" if defined $key;
    push @q, "$_=$a{$_}" for sort keys %a;
    return "/$loc/?" . join('&', @q);
}

sub req {
    return get($port, path(@_));
}

sub rejected {
    my ($r, $code, $status) = @_;
    return ($r->{status} // 0) == ($status // 429)
           && (h($r, 'X-MQTTAPI-Throttled') // '') eq 'gateway'
           && (h($r, 'X-MQTTAPI-Error-Code') // '') eq $code
           && (h($r, 'X-Throttle') // '') eq 'rejected';
}

sub passed {
    my ($r) = @_;
    return ($r->{status} // 0) == 200
           && !defined h($r, 'X-MQTTAPI-Throttled')
           && (h($r, 'X-Throttle') // '') eq 'pass';
}

sub tally {
    my ($name, $code, $want_pass, $want_rej, @r) = @_;
    my $p = grep { passed($_) } @r;
    my $j = grep { rejected($_, $code) } @r;
    my $ok = is($p, $want_pass, "$name: $want_pass passed");
    $ok &&= is($j, $want_rej, "$name: $want_rej answered locally with $code");
    unless ($ok) {
        my %s;
        $s{ ($_->{status} // 'error') . ' '
            . (h($_, 'X-MQTTAPI-Error-Code') // '-') }++ for @r;
        diag explain \%s;
    }
    return $ok;
}

# ---------------------------------------------------------------------------
# RevokeToken: 5 per second per key
# ---------------------------------------------------------------------------

my $t_revoke;
{
    my $k = 'rv-A';
    $t_revoke = time;
    my @r = burst($port, map { path('q', $k, 'RevokeToken') } 1 .. 20);
    tally('RevokeToken burst of 20', 'SystemOverFlow', 5, 15, @r);
    is(up_count_settled($k, 5), 5, 'RevokeToken: the upstream saw 5');
    sleep 0.2;
    is(up_count($k), 5, 'RevokeToken: and no more');

    my ($rj) = grep { rejected($_, 'SystemOverFlow') } @r;
    if ($rj) {
        my $d = json_decode($rj->{body}) // {};
        is($d->{Code}, 'SystemOverFlow', 'over quota: body Code');
        is($d->{RequestId}, h($rj, 'X-Req-Id'),
           'over quota: RequestId = $request_id');
        like($d->{RequestId} // '', qr/^[0-9a-f]{32}$/,
             'over quota: RequestId is a request id');
        is($d->{Category}, 'token', 'over quota: Category of RevokeToken');
        ok(JSON::PP::is_bool($d->{Retryable}) && $d->{Retryable},
           'over quota: Retryable');
        # the window is 8 buckets of 143 ms (at least a second, at most
        # 1144 ms): a burst waits until its bucket leaves the window
        my $ms = h($rj, 'x-acs-retry-after') // -1;
        ok($ms > 0 && $ms <= 8 * 143, "over quota: x-acs-retry-after ($ms)");
        my $s = int(($ms + 999) / 1000);
        is($d->{RetryAfter}, $s, 'over quota: RetryAfter, seconds rounded up');
        is(h($rj, 'Retry-After'), $s, 'over quota: Retry-After, the same');
        is(h($rj, 'X-MQTTAPI-Retryable'), 'true',
           'over quota: X-MQTTAPI-Retryable');
        like(h($rj, 'Content-Type') // '', qr{^application/json\b},
             'over quota: JSON');
    } else {
        fail('no local answer to look at');
    }

    # per-key independence; other actions of the same key are not affected
    my @b = burst($port, map { path('q', 'rv-B', 'RevokeToken') } 1 .. 8);
    tally('RevokeToken, another key', 'SystemOverFlow', 5, 3, @b);
    ok(passed(req('q', $k, 'CreateGroupId')),
       'the same key, another action: passes');
    ok(passed(req('q', $k, 'ListGroupId')),
       'the same key, another action: passes, again');
    ok(rejected(req('q', $k, 'RevokeToken'), 'SystemOverFlow'),
       'the same key, RevokeToken: still over quota');

    # the action from the x-acs-action header counts the same
    my $rh = get($port, path('q', $k, undef), 'x-acs-action' => 'RevokeToken');
    ok(rejected($rh, 'SystemOverFlow'),
       'x-acs-action: RevokeToken is over quota as well');

    is(up_count_settled($k, 7), 7, 'the upstream saw 5 + 2 for key A');
}

# once the burst's bucket has left the window (8 x 143 ms: at most 1.144 s
# after it), requests pass again: asked for from 1.2 s on until one passes
# (a busy machine may have spread the burst over more of the window), then
# five more
{
    my $k = 'rv-A';
    sleep 1.2 - (time - $t_revoke);
    my $n0 = up_count($k);
    my @r;
    my $deadline = time + 3;
    do {
        push @r, req('q', $k, 'RevokeToken');
    } until passed($r[-1]) || time > $deadline;
    my $first = @r;
    push @r, req('q', $k, 'RevokeToken') for 1 .. 5;
    my $p = grep { passed($_) } @r;
    ok(passed($r[$first - 1]),
       "after 1.2 s: RevokeToken passes again (request $first)");
    is(scalar(grep { rejected($_, 'SystemOverFlow') } @r), @r - $p,
       "after 1.2 s: the rest are answered locally ($p of "
       . scalar(@r) . ' passed)');

    sleep 2.1;
    my @r2 = burst($port, map { path('q', $k, 'RevokeToken') } 1 .. 8);
    tally('after 2 s, a full quota again', 'SystemOverFlow', 5, 3, @r2);
    is(up_count_settled($k, $n0 + $p + 5), $n0 + $p + 5,
       'after 2 s: the upstream saw those');
}

# ---------------------------------------------------------------------------
# ApplyToken and QueryToken: 100 per second, their own throttle codes
# ---------------------------------------------------------------------------

for my $c (['ApplyToken', 'ApplyTokenOverFlow'],
           ['QueryToken', 'QueryTokenOverFlow']) {
    my ($action, $code) = @$c;
    my $k = "tk-$action";
    my @r = burst($port, map { path('q', $k, $action) } 1 .. 110);
    tally("$action burst of 110", $code, 100, 10, @r);
    is(up_count_settled($k, 100), 100, "$action: the upstream saw 100");
    my ($rj) = grep { rejected($_, $code) } @r;
    is((json_decode($rj->{body} // '') // {})->{Code}, $code,
       "$action: body Code $code");
}

# ListGroupId 10/s, an action without a quota of its own 500/s, no action
{
    my @r = burst($port, map { path('q', 'lg', 'ListGroupId') } 1 .. 15);
    tally('ListGroupId burst of 15', 'SystemOverFlow', 10, 5, @r);

    @r = burst($port, map { path('q', 'other', 'CreateMqttTopic') } 1 .. 40);
    tally('CreateMqttTopic (500/s) burst of 40', 'SystemOverFlow', 40, 0, @r);

    @r = burst($port, map { path('q', 'noaction', undef) } 1 .. 40);
    tally('no Action (500/s) burst of 40', 'SystemOverFlow', 40, 0, @r);
}

# the empty key is not limited per key (the ceiling still applies, below)
{
    my @r = burst($port, map { path('q', undef, 'RevokeToken', m => 'nokey') } 1 .. 12);
    tally('RevokeToken without a key', 'SystemOverFlow', 12, 0, @r);
    @r = burst($port, map { path('q', '', 'RevokeToken', m => 'emptykey') } 1 .. 12);
    tally('RevokeToken with an empty key', 'SystemOverFlow', 12, 0, @r);
}

# ---------------------------------------------------------------------------
# User catalog: quotas and the ceiling overridden
# ---------------------------------------------------------------------------

# the ceiling counts each action for the whole gateway, whatever the
# location: a quiet second first, so that the bursts above do not count
sleep 1.2;

{
    my @r = burst($port, map { path('user', 'u-1', 'RevokeToken') } 1 .. 6);
    tally('user catalog: RevokeToken quota 2', 'SystemOverFlow', 2, 4, @r);
    is(up_count_settled('u-1', 2), 2, 'user catalog: the upstream saw 2');

    @r = burst($port, map { path('user', 'u-2', 'ApplyToken') } 1 .. 6);
    tally('user catalog: ApplyToken quota 3, code kept',
          'ApplyTokenOverFlow', 3, 3, @r);

    # the ceiling: 7 ListGroupId per second over all keys
    @r = burst($port, map { path('user', "c-$_", 'ListGroupId') } 1 .. 12);
    tally('api_ceiling 7: 12 keys, one request each', 'SystemOverFlow',
          7, 5, @r);
    my $seen = grep { $_->[0] =~ /^c-\d+$/ } up_lines();
    sleep 0.1;
    $seen = grep { $_->[0] =~ /^c-\d+$/ } up_lines();
    is($seen, 7, 'api_ceiling: the upstream saw 7');

    # the ceiling is per action: another action is not affected
    @r = burst($port, map { path('user', "c-$_", 'CreateGroupId') } 1 .. 5);
    tally('api_ceiling is per action', 'SystemOverFlow', 5, 0, @r);

    # requests without a key count towards the ceiling too
    @r = burst($port, map { path('user', undef, 'DeleteGroupId', m => 'ceil-nokey') }
               1 .. 9);
    tally('api_ceiling 7 without keys', 'SystemOverFlow', 7, 2, @r);
}

# the built-in ceiling, 300/s per action: 320 SendMessage (1000/s per key)
# from 8 keys
{
    my @p;
    for my $i (1 .. 320) {
        push @p, path('q', 'sm-' . ($i % 8), 'SendMessage');
    }
    my @r = burst($port, @p);
    tally('api_ceiling 300: 320 SendMessage', 'SystemOverFlow', 300, 20, @r);
}

# the ceiling is one for the whole gateway, not one per zone: two
# locations with quota zones of their own, 200 SendMessage each at once
# (each below the ceiling), over two workers; it survives a reload
sleep 1.2;
{
    my @p;
    for my $i (1 .. 200) {
        push @p, path('q1', 'g1-' . ($i % 8), 'SendMessage', m => 'gw'),
                 path('q2', 'g2-' . ($i % 8), 'SendMessage', m => 'gw');
    }
    my $t0 = time;
    my @r = burst($port, @p);
    tally('api_ceiling 300 over two quota zones: 400 SendMessage',
          'SystemOverFlow', 300, 100, @r);
    is(up_count_settled('gw', 300, 2), 300,
       'two quota zones: the upstream saw 300');
    my %loc;
    for my $i (0 .. $#r) {
        $loc{ $i % 2 ? 'q2' : 'q1' }++ if passed($r[$i]);
    }
    ok(($loc{q1} // 0) > 0 && ($loc{q2} // 0) > 0,
       "both locations had their share ($loc{q1}, $loc{q2})");

    # the ceiling's window is one second from the first of the 300: the
    # check after the reload counts only when the reload and the second
    # burst fit in it, which a busy machine may need a few tries for (as
    # many as fit in half a minute)
    my $mark = $ng->error_log_mark;
    my $checked;
    my $give_up = time + 30;
    for (my $try = 1; ; $try++) {
        ok($ng->reload, "reload with the ceiling used up (try $try)");
        my @w = burst($port,
                      map { path('q2', "g3-$try-$_", 'SendMessage',
                                 m => 'gw') } 1 .. 10);
        if (time - $t0 < 0.9) {
            is(scalar(grep { rejected($_, 'SystemOverFlow') } @w), 10,
               'after the reload: the ceiling is still used up');
            $checked = 1;
            last;
        }
        note "try $try: the reload took too long to check the ceiling";
        last if time > $give_up;
        sleep 1.2;
        $t0 = time;
        @r = burst($port, map { path('q1', "g4-$try-$_", 'SendMessage',
                                     m => 'gw4') } 1 .. 310);
        tally("api_ceiling 300 used up again (try $try)", 'SystemOverFlow',
              300, 10, @r);
    }
    ok($checked, 'the ceiling was checked across a reload');
    unlike($ng->error_log($mark), qr/\[(?:emerg|alert|crit)\]/,
           'reload: no errors');
}

# the same, sustained: four clients on two locations, each sending bursts
# of 40 one after the other (bursts, so that even a busy machine gets past
# 300 a second) for 2.5 s and until each has been answered locally by the
# ceiling 25 times (or half a minute); the upstream never sees more than
# 300 SendMessage in any second
sleep 1.2;
{
    my @pids;
    my $least = time + 2.5;
    my $end = time + 30;
    for my $c (0 .. 3) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my ($n, $rejects) = (0, 0);
            while (time < $end && ($rejects < 25 || time < $least)) {
                my @r = burst($port,
                              map { path($c % 2 ? 'q2' : 'q1',
                                         "gs$c-" . ($n++ % 50),
                                         'SendMessage', m => 'gws') }
                                  1 .. 40);
                $rejects += grep { rejected($_, 'SystemOverFlow') } @r;
            }
            POSIX::_exit($rejects > 255 ? 255 : $rejects);
        }
        push @pids, $pid;
    }
    my $rejects = 0;
    for (@pids) {
        waitpid($_, 0);
        $rejects += $? >> 8;
    }
    sleep 0.2;
    my @t = arrivals('gws', 2);
    cmp_ok($rejects, '>', 0, 'sustained over two zones: the ceiling was '
           . "reached ($rejects answered locally, " . scalar(@t)
           . ' passed)');
    cmp_ok(max_per_second(@t), '<=', 300,
           'sustained over two zones: never more than 300 in any second');
}

# a user catalog's own codes: the action's throttle_code, else quota "code"
{
    my @r = burst($port, map { path('code', 'cc', 'ListGroupId') } 1 .. 4);
    tally('user catalog: action throttle_code', 'MyQuotaCode', 2, 2, @r);
    @r = burst($port, map { path('code', 'cc', 'CreateMqttTopic') } 1 .. 5);
    tally('user catalog: default quota 3 and quota code', 'QuotaExceeded',
          3, 2, @r);
}

# ---------------------------------------------------------------------------
# mqttapi_throttle_status, dry run, with the back-off
# ---------------------------------------------------------------------------

{
    my @r = burst($port, map { path('status', 'st', 'RevokeToken') } 1 .. 7);
    is(scalar(grep { rejected($_, 'SystemOverFlow', 503) } @r), 2,
       'mqttapi_throttle_status 503: over quota answered 503');
}

{
    my $mark = $ng->error_log_mark;
    my @r = burst($port, map { path('dry', 'dr', 'RevokeToken') } 1 .. 8);
    my $p = grep { ($_->{status} // 0) == 200 } @r;
    my $dry = grep { (h($_, 'X-Throttle') // '') eq 'dry_run' } @r;
    is($p, 8, 'dry run: all 8 pass');
    is($dry, 3, 'dry run: 3 of them $mqttapi_throttle = dry_run');
    is(up_count_settled('dr', 8), 8, 'dry run: the upstream saw all 8');
    like($ng->error_log($mark), qr/dry run.*SystemOverFlow/,
         'dry run: logged');
}

{
    # over quota is answered locally but does not open a back-off
    my $k = 'bo';
    my @r = burst($port, map { path('both', $k, 'RevokeToken') } 1 .. 7);
    tally('quota and back-off in one zone', 'SystemOverFlow', 5, 2, @r);
    ok(passed(req('both', $k, 'ListGroupId')),
       'a quota answer does not open a back-off');

    # a back-off answers before the quota is counted
    my $r = req('both', $k, 'ListGroupId', code => 'SystemOverFlow');
    is($r->{status}, 400, 'throttle code relayed');
    ok(rejected(req('both', $k, 'ListGroupId'), 'SystemOverFlow'),
       'back-off opened');
    ok(rejected(req('both', $k, 'CreateGroupId'), 'SystemOverFlow'),
       'back-off applies to every action of the key');
    ok(passed(req('both', 'bo-other', 'RevokeToken')),
       'another key still passes');
}

{
    # the probe after a back-off is over a quota: answered locally, and it
    # gives its turn back at once (a quiet second first: this location's
    # ceiling of 2 counts the gateway's requests of each action)
    sleep 1.2;
    my $k = 'pq';
    my $r = req('probe', $k, 'CreateGroupId', code => 'SystemOverFlow');
    is($r->{status}, 400, 'probe over quota: back-off opened');
    my $rj = req('probe', $k, 'CreateGroupId');
    ok(rejected($rj, 'SystemOverFlow'), 'probe over quota: backed off');
    sleep((h($rj, 'x-acs-retry-after') // 1000) / 1000 + 0.05);

    # two other keys use up the ListGroupId ceiling (2/s) ...
    ok(passed(req('probe', "pq-$_", 'ListGroupId')), "ceiling filler $_")
        for 1 .. 2;
    # ... so the probe, a ListGroupId, is over it
    my $rp = req('probe', $k, 'ListGroupId');
    ok(rejected($rp, 'SystemOverFlow'), 'probe over quota: answered locally');
    like(h($rp, 'Retry-After') // '', qr/^[12]$/,
         'probe over quota: Retry-After 1 or 2 (the bucket window)');
    # the next request of the key is the probe
    my $rn = req('probe', $k, 'CreateGroupId');
    is($rn->{status}, 200, 'the turn came back: the next request passes');
    is(h($rn, 'X-Throttle'), 'probe', 'the turn came back: it is the probe');
    # (another action: the ceiling of 2 is per action, across keys)
    my $rc = req('probe', $k, 'DeleteGroupId');
    ok(passed($rc), 'the clean probe closed the back-off')
        or diag explain $rc;
}

{
    # a location without mqttapi_quota is not limited
    my @r = burst($port, map { path('none', 'no', 'RevokeToken') } 1 .. 10);
    is(scalar(grep { ($_->{status} // 0) == 200
                     && !defined h($_, 'X-MQTTAPI-Throttled') } @r), 10,
       'no mqttapi_quota: not limited');
}

# ---------------------------------------------------------------------------
# Sustained load: a key sending RevokeToken as fast as it can for 2.5 s
# never gets more than 5 in any one second to the upstream
# ---------------------------------------------------------------------------

{
    my $k = 'sustained';
    my $end = time + 2.5;
    my ($n, $sock) = (0, undef);
    my %st;
    while (time < $end) {
        my $r = http_request($sock ? (sock => $sock) : (port => $port),
                             path => path('q', $k, 'RevokeToken'),
                             keepalive => 1);
        $sock = $r->{sock};
        $st{ $r->{status} // 'error' }++;
        $n++;
    }
    close $sock if $sock;
    note "sustained: $n requests: " . join ' ', map { "$_=$st{$_}" } sort keys %st;
    sleep 0.2;
    my @t = arrivals($k);
    cmp_ok(scalar @t, '>=', 10, 'sustained: the upstream saw some');
    cmp_ok(max_per_second(@t), '<=', 5,
           'sustained: never more than 5 in any second')
        or diag "arrivals (ms): @t";
}

# A quiet key, then a cluster at the end of its window, then a steady
# stream: the upstream must still never see more than 5 RevokeToken of the
# key in any one second (below the published limits; the per-IP
# ceiling must never be crossed).
{
    my $k = 'clustered';
    my $t0 = time;
    ok(passed(req('q', $k, 'RevokeToken')), 'clustered: first request');
    sleep 0.9 - (time - $t0);
    my @r = burst($port, map { path('q', $k, 'RevokeToken') } 1 .. 4);
    is(scalar(grep { passed($_) } @r), 4, 'clustered: 4 more at +0.9 s');
    my $n = 0;
    while (time < $t0 + 2.2) {
        $n++ if passed(req('q', $k, 'RevokeToken'));
        sleep 0.01;
    }
    note "clustered: $n more passed between +0.9 s and +2.2 s";
    sleep 0.2;
    my @t = arrivals($k);
    cmp_ok(max_per_second(@t), '<=', 5,
           'clustered: never more than 5 in any second')
        or diag "arrivals (ms from the first): "
                . join ' ', map { $_ - $t[0] } @t;
}

# ---------------------------------------------------------------------------
# Workers whose cached clocks differ: with timer_resolution each worker's
# time lags by up to 100 ms, so a worker may see a window that another
# opened "in its future"; that must not reset the window.
# ---------------------------------------------------------------------------

{
    open my $fh, '>', "$dir/ceiling.json" or die $!;
    print $fh '{"quota":{"api_ceiling":65535}}';
    close $fh;

    my $ng2 = start_nginx(workers => 2, main => 'timer_resolution 100ms;',
                          http => <<"EOF2");
    mqttapi_throttle_zone \$arg_AccessKeyId zone=q:1m;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        mqttapi_quota zone=q;
        mqttapi_catalog $dir/ceiling.json;
        location / { proxy_pass http://127.0.0.1:%%PORT1%%; }
    }
    server {
        listen 127.0.0.1:%%PORT1%%;
        access_log off;
        default_type application/json;
        location / { return 200 '{"RequestId":"UP"}'; }
    }
EOF2
    local $port = $ng2->port(0);
    my %hist;
    for my $i (1 .. 60) {
        my @r = burst($port, map { path('q', "skew-$i", 'RevokeToken') } 1 .. 20);
        $hist{ scalar grep { ($_->{status} // 0) == 200 } @r }++;
    }
    is_deeply(\%hist, { 5 => 60 },
              'timer_resolution 100ms: 60 bursts of 20, always 5 passed')
        or diag explain \%hist;
    $ng2->stop;
}

{
    my @bad = grep { /\[(?:crit|alert|emerg)\]|exited on signal/ }
              split /\n/, $ng->error_log;
    is(scalar @bad, 0, 'error log: no crit/alert/emerg, no crash')
        or diag join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)];
}

done_testing();
