#!/usr/bin/perl
# The bundled OpenAPI emulator (conf/emulator_http.conf, conf/emulator.conf),
# through the gateway in front of it, wired as conf/gateway.conf does
# (`mqttapi on`, proxy_pass to the emulator server): each rule of the
# header of conf/emulator_http.conf, in its order of precedence.
#
#   unknown or missing Action            404 ApiNotSupport
#   missing or malformed parameter       400 InvalidParameter.<Name>, the
#                                        first failing one, InstanceId first;
#                                        a list parameter by its API name
#                                        (ClientIdList, not ClientIdList.1)
#   unknown instance                     400 InstanceNotFound
#   ApplyToken / QueryToken over 5 r/s   400 ApplyTokenOverFlow /
#   (burst 2) per InstanceId             QueryTokenOverFlow
#   CreateGroupId of an existing id      400 GroupIdAlreadyExsited
#   mqttemu_code / X-Emulator-Code       any catalog code, its status and
#                                        message
#   otherwise                            200, RequestId plus the action's
#                                        fields, for every action it knows
#
# Error answers have the real API's members, in its order (RequestId,
# HostId, Code, Message, Recommend), the gateway's annotation after them;
# every answer carries x-acs-request-id equal to its RequestId.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP ();
use Time::HiRes ();
use MqttapiTest;

my $REPO = repo_dir();

my $catalog = do {
    open my $fh, '<:raw', "$REPO/conf/mqttapi_catalog.json" or die "catalog: $!";
    local $/;
    JSON::PP->new->utf8->decode(<$fh>);
};
my %entry = map { $_->{code} => $_ } @{ $catalog->{errors} };
my @upstream_codes = grep { !grep { $_ eq 'gateway' } @{ $entry{$_}{categories} } }
                     map { $_->{code} } @{ $catalog->{errors} };

my $ng = start_nginx(http => emulator_gateway());

my $GW = $ng->port(0);

my $RID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
my $INVALID_PARAMETER_MESSAGE = $entry{'InvalidParameter.%s'}{message};

# fetch($method, $path, @headers) -> response, with {json} and {keys}
# (top-level members in order)
sub fetch {
    my ($method, $path, @h) = @_;
    my $r = http_request(port => $GW, method => $method, path => $path, headers => [@h]);
    my ($d, $keys) = json_decode_ordered($r->{body});
    $r->{json} = $d;
    $r->{keys} = $keys || [];
    return $r;
}

# call($query, @headers): GET /?$query through the gateway
sub call { my ($q, @h) = @_; fetch('GET', "/?$q", @h) }

# The parts every answer shares.
sub common {
    my ($r, $w) = @_;
    ok(!$r->{error}, "$w: answered") or diag $r->{error};
    ok($r->{json} && ref $r->{json} eq 'HASH', "$w: a JSON object")
        or diag $r->{body};
    like(h($r, 'Content-Type') // '', qr{^application/json;charset=utf-8$},
         "$w: Content-Type");
    is(scalar(my @ct = headers_all($r, 'Content-Type')), 1, "$w: one Content-Type");
    my $rid = $r->{json} ? $r->{json}{RequestId} // '' : '';
    like($rid, $RID, "$w: RequestId shaped like the real ones");
    is(h($r, 'x-acs-request-id'), $rid, "$w: x-acs-request-id is the RequestId");
}

# is_error($r, $code, $w, %o): an emulator error answer, annotated
#   %o: status (default the catalog's), param (InvalidParameter.<param>)
sub is_error {
    my ($r, $code, $w, %o) = @_;
    my $e = $entry{$code} // ($code =~ /^InvalidParameter\./ ? $entry{'InvalidParameter.%s'}
                                                              : undef);
    common($r, $w);
    is($r->{status}, $o{status} // ($e ? $e->{status} : 400), "$w: status");
    my $d = $r->{json} || {};
    is($d->{Code}, $code, "$w: Code");
    is($d->{Message}, $e ? $e->{message} : $o{message}, "$w: the catalog's Message")
        if $e || defined $o{message};
    is($d->{HostId}, 'onsmqtt.cn-hangzhou.aliyuncs.com', "$w: HostId");
    is($d->{Recommend}, "https://api.aliyun.com/troubleshoot?q=$code&product=OnsMqtt",
       "$w: Recommend");
    is_deeply([@{ $r->{keys} }[0 .. 4]], [qw(RequestId HostId Code Message Recommend)],
              "$w: the real API's members, in its order");
    is(h($r, 'X-MQTTAPI-Error-Code'), $code, "$w: annotated by the gateway");
    is(h($r, 'X-MQTTAPI-Invalid-Parameter'), $o{param}, "$w: X-MQTTAPI-Invalid-Parameter");
    return $d;
}

# is_success($r, $w, @keys): 200, exactly these top-level members
sub is_success {
    my ($r, $w, @keys) = @_;
    common($r, $w);
    is($r->{status}, 200, "$w: 200");
    is_deeply($r->{keys}, ['RequestId', @keys], "$w: members RequestId @keys");
    ok(!grep({ $_->[0] =~ /^x-mqttapi-/i } @{ $r->{headers} }), "$w: not annotated");
    return $r->{json} || {};
}

sub is_bool { JSON::PP::is_bool($_[0]) }

my $N = 0;
sub instance { 'mqtt-cn-t' . (++$N) . "-$$" }    # a fresh rate-limit key

# valid parameters per action (besides InstanceId)
my %VALID = (
    ApplyToken    => [Resources => 'demo%2Fdevice1', Actions => 'R,W',
                      ExpireTime => '1999999999000'],
    QueryToken    => [Token => 'abc'],
    RevokeToken   => [Token => 'abc'],
    CreateGroupId => [GroupId => 'GID_fresh'],
    DeleteGroupId => [GroupId => 'GID_existing'],
    ListGroupId   => [],
    SendMessage   => [MqttTopic => 'demo%2Fdevice1', Payload => 'aGVsbG8%3D'],
    QuerySessionByClientId       => [ClientId => 'GID_demo%40%40%40device1'],
    BatchQuerySessionByClientIds => ['ClientIdList.1' => 'GID_demo%40%40%40device1'],
);

# q_for($action, %set): a valid query for $action on a fresh instance,
# with the parameters in %set (InstanceId among them) replaced
sub q_for {
    my ($action, %set) = @_;
    my @p = (InstanceId => instance(), @{ $VALID{$action} });
    my @q = ("Action=$action");
    while (my ($k, $v) = splice @p, 0, 2) {
        push @q, "$k=" . (exists $set{$k} ? delete $set{$k} : $v);
    }
    push @q, map { "$_=$set{$_}" } sort keys %set;
    return join '&', @q;
}

# ---------------------------------------------------------------------------
# 1. unknown Action: 404 ApiNotSupport
# ---------------------------------------------------------------------------

for my $c (['Action=NoSuchAction&InstanceId=mqtt-cn-demo', 'unknown Action'],
           ['InstanceId=mqtt-cn-demo', 'no Action'],
           ['Action=&InstanceId=mqtt-cn-demo', 'empty Action'],
           [q_for('ApplyToken') =~ s/^Action=ApplyToken/Action=applytoken/r,
            'Action in the wrong case'],
           ['Action=ApplyToken%20&InstanceId=mqtt-cn-demo', 'Action with a trailing space']) {
    my ($q, $w) = @$c;
    is_error(call($q), 'ApiNotSupport', "$w");
}

# before any parameter check: an unknown action with no parameters at all
is_error(call('Action=Nope'), 'ApiNotSupport', 'unknown Action, no InstanceId');

# the action from x-acs-action (ACS3 requests carry no Action argument),
# which wins over the Action argument, as in the gateway
{
    my $d = is_success(call('InstanceId=mqtt-cn-demo', 'x-acs-action' => 'ListGroupId'),
                       'x-acs-action: ListGroupId, no Action', 'Data');
    is_success(call('Action=NoSuchAction&InstanceId=mqtt-cn-demo',
                    'x-acs-action' => 'ListGroupId'),
               'x-acs-action: ListGroupId wins over Action=NoSuchAction', 'Data');
    is_error(call('Action=ListGroupId&InstanceId=mqtt-cn-demo',
                  'x-acs-action' => 'NoSuchAction'),
             'ApiNotSupport', 'x-acs-action: NoSuchAction wins over Action=ListGroupId');
}

# the internal answering URIs are not reachable from outside
is_error(fetch(GET => '/mqttemu/reply/ok/200?Action=ListGroupId&InstanceId=mqtt-cn-demo'),
         'ApiNotSupport', 'internal URI asked for directly');

# ---------------------------------------------------------------------------
# 2. missing or malformed parameters: InvalidParameter.<Name>
# ---------------------------------------------------------------------------

my $AT = 'Resources=r&Actions=R&ExpireTime=1999999999000';
my @params = (
    # action, query (after Action=), parameter, what
    ['ApplyToken', $AT, 'InstanceId', 'no InstanceId'],
    ['ApplyToken', "InstanceId=&$AT", 'InstanceId', 'empty InstanceId'],
    ['ApplyToken', "InstanceId=cn-demo&$AT", 'InstanceId', 'InstanceId without mqtt- prefix'],
    ['ApplyToken', "InstanceId=mqtt-cn_demo&$AT", 'InstanceId', 'InstanceId with _'],
    ['ApplyToken', '', 'InstanceId', 'nothing at all: InstanceId first'],
    ['ApplyToken', 'InstanceId=mqtt-cn-p1', 'Resources', 'then Resources'],
    ['ApplyToken', 'InstanceId=mqtt-cn-p1&Resources=r&ExpireTime=1', 'Actions', 'no Actions'],
    ['ApplyToken', 'InstanceId=mqtt-cn-p1&Resources=r&Actions=X&ExpireTime=1', 'Actions',
     'Actions=X'],
    ['ApplyToken', 'InstanceId=mqtt-cn-p1&Resources=r&Actions=R,W,R&ExpireTime=1', 'Actions',
     'Actions=R,W,R'],
    ['ApplyToken', 'InstanceId=mqtt-cn-p1&Resources=r&Actions=R', 'ExpireTime',
     'no ExpireTime'],
    ['ApplyToken', 'InstanceId=mqtt-cn-p1&Resources=r&Actions=W&ExpireTime=tomorrow',
     'ExpireTime', 'ExpireTime not a number'],
    ['QueryToken', 'InstanceId=mqtt-cn-p1', 'Token', 'no Token'],
    ['RevokeToken', 'InstanceId=mqtt-cn-p1&Token=', 'Token', 'empty Token'],
    ['CreateGroupId', 'InstanceId=mqtt-cn-p1', 'GroupId', 'no GroupId'],
    ['CreateGroupId', 'InstanceId=mqtt-cn-p1&GroupId=demo', 'GroupId', 'GroupId without GID_'],
    ['DeleteGroupId', 'InstanceId=mqtt-cn-p1&GroupId=GID_', 'GroupId', 'GroupId GID_ only'],
    ['ListGroupId', '', 'InstanceId', 'ListGroupId without InstanceId'],
    ['SendMessage', 'InstanceId=mqtt-cn-p1&Payload=x', 'MqttTopic', 'no MqttTopic'],
    ['SendMessage', 'InstanceId=mqtt-cn-p1&MqttTopic=t', 'Payload', 'no Payload'],
    ['QuerySessionByClientId', 'InstanceId=mqtt-cn-p1', 'ClientId', 'no ClientId'],
    ['BatchQuerySessionByClientIds', 'InstanceId=mqtt-cn-p1', 'ClientIdList',
     'no ClientIdList.1'],
    ['BatchQuerySessionByClientIds', 'InstanceId=mqtt-cn-p1&ClientIdList.1=', 'ClientIdList',
     'empty ClientIdList.1'],
    ['BatchQuerySessionByClientIds', 'InstanceId=mqtt-cn-p1&ClientIdList.2=c2', 'ClientIdList',
     'ClientIdList.2 without ClientIdList.1'],
    ['BatchQuerySessionByClientIds', 'InstanceId=mqtt-cn-p1&ClientIdList=c1', 'ClientIdList',
     'ClientIdList without an index'],
    ['BatchQuerySessionByClientIds', 'InstanceId=mqtt-cn-p1&ClientIdList.1=c1&ClientIdList.2=a"b',
     'ClientIdList', 'a malformed ClientIdList.2'],
    ['BatchQuerySessionByClientIds',
     'InstanceId=mqtt-cn-p1&ClientIdList.1=' . ('c' x 129), 'ClientIdList',
     'a ClientIdList.1 of 129 characters'],
    ['BatchQuerySessionByClientIds',
     'InstanceId=mqtt-cn-p1&' . join('&', map { "ClientIdList.$_=c$_" } 1 .. 11),
     'ClientIdList', '11 ClientIds (the real limit is 10)'],
    # a parameter check comes before the instance check
    ['QueryToken', 'InstanceId=mqtt-cn-missing', 'Token',
     'no Token on an unknown instance: the parameter first'],
);

for my $c (@params) {
    my ($action, $q, $param, $w) = @$c;
    my $d = is_error(call("Action=$action" . (length $q ? "&$q" : '')),
                     "InvalidParameter.$param", "$action, $w", param => $param);
    is($d->{InvalidParameter}, $param, "$action, $w: the gateway names the parameter")
        if exists $d->{InvalidParameter};
}

# what is accepted
is_success(call(q_for('ApplyToken', Actions => $_)), "ApplyToken Actions=$_ accepted", 'Token')
    for 'R', 'W', 'R,W', 'W,R', 'W%2CR';
is_success(call('Action=BatchQuerySessionByClientIds&InstanceId=mqtt-cn-p2&'
                . join('&', map { "ClientIdList.$_=c$_" } 1 .. 10)),
           'BatchQuerySessionByClientIds with 10 ClientIds accepted', 'OnlineStatusList');

# ---------------------------------------------------------------------------
# 3. unknown instance: InstanceNotFound
# ---------------------------------------------------------------------------

for my $c (['mqtt-cn-missing', 'mqtt-cn-missing'],
           ['post-cn-MISSING-2', 'containing MISSING (any case)'],
           ['mqtt-abc', 'well-formed, without -cn-'],
           ['mqtt-serverless-1', 'well-formed, another region scheme']) {
    my ($inst, $w) = @$c;
    for my $action (qw(ApplyToken ListGroupId CreateGroupId)) {
        is_error(call(q_for($action, InstanceId => $inst)), 'InstanceNotFound',
                 "$action on $w");
    }
}
is_success(call(q_for('ListGroupId', InstanceId => 'post-cn-0pp12gl')), 'a post-cn- instance is known',
           'Data');

# ---------------------------------------------------------------------------
# 4. ApplyToken / QueryToken faster than 5 r/s per InstanceId
# ---------------------------------------------------------------------------

for my $c (['ApplyToken', 'ApplyTokenOverFlow', 'Token'],
           ['QueryToken', 'QueryTokenOverFlow', 'TokenStatus']) {
    my ($action, $code, $field) = @$c;
    my $inst = instance();

    # errors are not counted: parameter errors on this instance first
    call("Action=$action&InstanceId=$inst") for 1 .. 6;

    my $t0 = Time::HiRes::time();
    my @r = map { call(q_for($action, InstanceId => $inst)) } 1 .. 8;
    my $elapsed = Time::HiRes::time() - $t0;
    my @ok   = grep { ($_->{status} // 0) == 200 } @r;
    my @over = grep { (($_->{json} || {})->{Code} // '') eq $code } @r;

    is(@ok + @over, 8, "$action burst: each answer a success or $code");
    is($r[0]{status}, 200, "$action burst: the first one succeeds (errors were not counted)");
    cmp_ok(scalar @ok, '>=', 3, "$action burst: the burst of 2 passes");
    cmp_ok(scalar @ok, '<=', 3 + int($elapsed * 5) + 1,
           "$action burst: no more than 5 r/s after it (${\ scalar @ok} in "
           . sprintf('%.2fs', $elapsed) . ')');
    ok(@over >= 1, "$action burst: throttled") or next;
    is_error($over[0], $code, "$action burst: the throttled answer");
    is(h($over[0], 'X-MQTTAPI-Retryable'), 'true', "$action burst: retryable");
    ok(defined h($over[0], 'x-acs-retry-after'), "$action burst: x-acs-retry-after");

    # per InstanceId: another instance is not throttled
    is_success(call(q_for($action)), "$action burst: another InstanceId is not throttled",
               $field);

    # the rate refills
    Time::HiRes::sleep(0.45);
    is_success(call(q_for($action, InstanceId => $inst)),
               "$action burst: accepted again after 0.45s",
               $field);
}

# the other actions are not rate limited
{
    my $inst = instance();
    my @r = map { call(q_for('ListGroupId', InstanceId => $inst)) } 1 .. 8;
    is(scalar(grep { $_->{status} == 200 } @r), 8, 'ListGroupId: 8 in a row, not limited');
}

# ---------------------------------------------------------------------------
# 5. CreateGroupId of an existing id: GroupIdAlreadyExsited
# ---------------------------------------------------------------------------

for my $gid (qw(GID_existing GID_demo GID_sensors_exists GID-x_exists)) {
    my $r = call(q_for('CreateGroupId', GroupId => $gid));
    is_error($r, 'GroupIdAlreadyExsited', "CreateGroupId $gid");
    is(h($r, 'X-MQTTAPI-Error-Category'), 'group', "CreateGroupId $gid: category group");
}
is_success(call(q_for('CreateGroupId', GroupId => $_)), "CreateGroupId $_: created")
    for qw(GID_fresh GID_existing2 GID_exists_not);
is_success(call(q_for('DeleteGroupId', GroupId => 'GID_existing')),
           'DeleteGroupId GID_existing: only creating an existing id fails');
is_error(call(q_for('CreateGroupId', InstanceId => 'mqtt-cn-missing',
                    GroupId => 'GID_existing')),
         'InstanceNotFound', 'CreateGroupId GID_existing on an unknown instance: instance first');

# ---------------------------------------------------------------------------
# 6. any catalog code on demand
# ---------------------------------------------------------------------------

for my $code (@upstream_codes) {
    (my $c = $code) =~ s/%s/Foo/g;
    my $w = "on demand $c";
    my $d = is_error(call("Action=ListGroupId&InstanceId=mqtt-cn-demo&mqttemu_code=$c"), $c, $w,
                     $code =~ /%s/ ? (param => 'Foo') : ());
}

{
    # by header, whatever the request (no Action: the code wins)
    is_error(call('', 'X-Emulator-Code' => 'InternalError'), 'InternalError',
             'X-Emulator-Code: InternalError, no Action');
    # the argument wins over the header
    is_error(call('Action=ListGroupId&mqttemu_code=MqttRuleExist',
                  'X-Emulator-Code' => 'InternalError'),
             'MqttRuleExist', 'mqttemu_code wins over X-Emulator-Code');
    # a code outside the catalog: 400, a generic message
    is_error(call('Action=ListGroupId&mqttemu_code=Custom.Code_1'), 'Custom.Code_1',
             'a code outside the catalog', status => 400,
             message => 'The request failed. This error code was produced on demand by '
                      . 'the emulator and is not in its catalog.');
    # not a code (characters outside [A-Za-z0-9._-]): ignored
    is_success(call('Action=ListGroupId&InstanceId=mqtt-cn-demo&mqttemu_code=Bad%22Code'),
               'mqttemu_code with a quote: ignored', 'Data');
    is_success(call('Action=ListGroupId&InstanceId=mqtt-cn-demo&mqttemu_code=' . ('A' x 129)),
               'mqttemu_code of 129 characters: ignored', 'Data');
    # the status and Retry-After can be chosen too
    my $r = call('Action=ListGroupId&mqttemu_code=InternalError&mqttemu_status=503'
                 . '&mqttemu_retry_after=7');
    is_error($r, 'InternalError', 'on demand with mqttemu_status=503', status => 503);
    is(h($r, 'Retry-After'), 7, 'on demand with mqttemu_retry_after=7: Retry-After kept');
    is_error(call('Action=ListGroupId&mqttemu_code=InternalError&mqttemu_status=299'),
             'InternalError', 'mqttemu_status=299 (not offered): the catalog status',
             status => 500);
}

# ---------------------------------------------------------------------------
# 7. successes, for every action the emulator knows
# ---------------------------------------------------------------------------

{
    my $d = is_success(call(q_for('ApplyToken')), 'ApplyToken', 'Token');
    ok(!ref $d->{Token} && length($d->{Token} // '') > 32, 'ApplyToken: a Token string');
    my $d2 = is_success(call(q_for('ApplyToken')), 'ApplyToken again', 'Token');
    isnt($d2->{Token}, $d->{Token}, 'ApplyToken: a new Token each time');
}
{
    my $d = is_success(call(q_for('QueryToken')), 'QueryToken', 'TokenStatus');
    ok(is_bool($d->{TokenStatus}) && $d->{TokenStatus}, 'QueryToken: TokenStatus true');
    for my $t (qw(expired-1 token-revoked INVALID)) {
        my $x = is_success(call(q_for('QueryToken', Token => $t)), "QueryToken Token=$t",
                           'TokenStatus');
        ok(is_bool($x->{TokenStatus}) && !$x->{TokenStatus}, "QueryToken $t: TokenStatus false");
    }
}
is_success(call(q_for('RevokeToken')), 'RevokeToken');
is_success(call(q_for('CreateGroupId')), 'CreateGroupId');
is_success(call(q_for('DeleteGroupId')), 'DeleteGroupId');
{
    my $d = is_success(call(q_for('ListGroupId', InstanceId => 'mqtt-cn-list')), 'ListGroupId',
                       'Data');
    my $data = $d->{Data};
    ok(ref $data eq 'ARRAY' && @$data, 'ListGroupId: Data is a non-empty array') or $data = [];
    is_deeply([map { $_->{GroupId} } @$data], [qw(GID_demo GID_existing)],
              'ListGroupId: the existing groups');
    for my $g (@$data) {
        is_deeply([sort keys %$g],
                  [sort qw(GroupId InstanceId CreateTime IndependentNaming UpdateTime)],
                  "ListGroupId $g->{GroupId}: the real members");
        is($g->{InstanceId}, 'mqtt-cn-list', "ListGroupId $g->{GroupId}: InstanceId echoed");
        like($g->{CreateTime}, qr/^\d{13}$/, "ListGroupId $g->{GroupId}: CreateTime in ms");
        ok(is_bool($g->{IndependentNaming}), "ListGroupId $g->{GroupId}: IndependentNaming bool");
    }
}
{
    my $d = is_success(call(q_for('SendMessage')), 'SendMessage', 'MsgId');
    like($d->{MsgId} // '', qr/^[0-9A-Za-z]{16,}$/, 'SendMessage: a MsgId');
}
{
    my $d = is_success(call(q_for('QuerySessionByClientId')), 'QuerySessionByClientId',
                       'OnlineStatus');
    ok(is_bool($d->{OnlineStatus}) && $d->{OnlineStatus}, 'QuerySessionByClientId: online');
    my $x = is_success(call(q_for('QuerySessionByClientId',
                                  ClientId => 'GID_a%40%40%40offline1')),
                       'QuerySessionByClientId offline', 'OnlineStatus');
    ok(is_bool($x->{OnlineStatus}) && !$x->{OnlineStatus}, 'QuerySessionByClientId: offline');
}
{
    my $d = is_success(call('Action=BatchQuerySessionByClientIds&InstanceId=mqtt-cn-demo'
                            . '&ClientIdList.1=GID_demo%40%40%40device1'
                            . '&ClientIdList.2=GID_demo%40%40%40Offline2'
                            . '&ClientIdList.3=plain-3'),
                       'BatchQuerySessionByClientIds', 'OnlineStatusList');
    my $l = $d->{OnlineStatusList};
    ok(ref $l eq 'ARRAY', 'Batch: OnlineStatusList is an array') or $l = [];
    is_deeply([map { $_->{ClientId} } @$l],
              ['GID_demo@@@device1', 'GID_demo@@@Offline2', 'plain-3'],
              'Batch: one entry per ClientIdList.N, in order, %40 decoded');
    is_deeply([map { [sort keys %$_] } @$l], [([qw(ClientId OnlineStatus)]) x 3],
              'Batch: entries have ClientId and OnlineStatus');
    is_deeply([map { is_bool($_->{OnlineStatus}) ? ($_->{OnlineStatus} ? 1 : 0) : 'x' } @$l],
              [1, 0, 1], 'Batch: OnlineStatus booleans (offline when the id says so)');

    my $one = is_success(call(q_for('BatchQuerySessionByClientIds')), 'Batch, one id',
                         'OnlineStatusList');
    is(scalar @{ $one->{OnlineStatusList} || [] }, 1, 'Batch, one id: one entry');
}

# every other action the emulator knows (the catalog's topic and rule
# actions): RequestId, plus an empty Data for a List
for my $action (grep { !exists $VALID{$_} } sort keys %{ $catalog->{actions} }) {
    is_success(call("Action=$action&InstanceId=mqtt-cn-demo"), $action,
               $action =~ /^List/ ? 'Data' : ());
}

# POST with the arguments in the query string, as RPC clients send them
is_success(fetch(POST => '/?' . q_for('ListGroupId'),
                 'Content-Type' => 'application/x-www-form-urlencoded'),
           'POST ListGroupId', 'Data');

unlike($ng->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/,
       'error log: no alert, crit, emerg, crash');
unlike($ng->error_log, qr/could not build optimal variables_hash/,
       'error log: the emulator fits in the variables hash');

done_testing();
