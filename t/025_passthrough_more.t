#!/usr/bin/perl
# Pass-through and safety cases not in t/020_passthrough.t / t/030_malformed.t:
#
#   1xx      a 101 Switching Protocols upgrade through `mqttapi on`
#            (proxy_http_version 1.1, Upgrade/Connection headers): the
#            handshake is the one `mqttapi off` gives, the tunnelled bytes
#            pass unchanged both ways, even when they look like a JSON error
#   subrequests
#            an SSI `include virtual` of a location with `mqttapi on` whose
#            upstream answers a 400 / 500 JSON error: the included bytes are
#            the upstream's, unannotated; an auth_request subrequest that
#            gets a 403 JSON error: no annotation header on it
#   the action
#            x-acs-action wins over the Action argument for the category;
#            both reach the upstream as sent
#   untrusted text in other members
#            CR/LF, other control characters, non-ASCII (raw UTF-8 and \u
#            escapes) in Message,
#            RequestId, HostId, Recommend: never in a header, the header
#            block stays ASCII, the body stays valid JSON with the values
#            kept (augment and problem, Content-Length and chunked)

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use Time::HiRes ();
use MqttapiTest;

my $ERR400 = '{"RequestId":"r-400","HostId":"onsmqtt.cn-hangzhou.aliyuncs.com",'
           . '"Code":"InstanceNotFound","Message":"Failed to find the instance."}';
my $ERR500 = '{"RequestId":"r-500","HostId":"h","Code":"InternalError","Message":"m"}';
my $ERR403 = '{"RequestId":"r-403","HostId":"h","Code":"PermissionCheckFailed","Message":"m"}';

# what the upstream sends after its 101, and answers to tunnelled bytes
my $GREETING = "\x81\x1b" . '{"Code":"InstanceNotFound"}' . "\x00\xff\r\n";
my $ECHO     = "ECHO:";

# ---------------------------------------------------------------------------
# untrusted members (CR/LF, NUL, non-ASCII) in fields other than Code
# ---------------------------------------------------------------------------

my %UNTRUSTED = (
    message_crlf     => ['{"RequestId":"r","Code":"InstanceNotFound",'
                         . '"Message":"m\r\nX-Evil: injected\r\n\r\nbody"}', 'X-Evil'],
    message_utf8     => [qq({"RequestId":"r","Code":"InstanceNotFound",)
                         . qq("Message":"\xe6\x89\xbe\xe4\xb8\x8d\xe5\x88\xb0\xc3\xa9"}), "\xe6\x89"],
    message_escapes  => ['{"Code":"InstanceNotFound","Message":"\u627e\u00e9\u000d\u000aX-Evil: 1'
                         . '\u0009\u001f\"\\\/"}', 'X-Evil'],
    requestid_crlf   => ['{"RequestId":"r-1\r\nSet-Cookie: evil=1","Code":"InstanceNotFound",'
                         . '"Message":"m"}', 'Set-Cookie'],
    requestid_utf8   => [qq({"RequestId":"r-\xe4\xb8\xad\xe6\x96\x87","Code":"InstanceNotFound"}),
                         "\xe4\xb8\xad"],
    hostid_crlf      => ['{"RequestId":"r","HostId":"h\u000d\u000aLocation: http://evil/",'
                         . '"Code":"InstanceNotFound","Message":"m"}', 'evil'],
    hostid_utf8      => [qq({"RequestId":"r","HostId":"h\xc3\xa9\xe2\x82\xac",)
                         . '"Code":"InstanceNotFound"}', "\xc3\xa9"],
    recommend_crlf   => ['{"RequestId":"r","Code":"InstanceNotFound","Message":"m",'
                         . '"Recommend":"https://x/?q=1\r\nX-Evil: 1\n\rX-Evil2: 2"}', 'X-Evil'],
    recommend_utf8   => [qq({"RequestId":"r","Code":"InstanceNotFound","Message":"m",)
                         . qq("Recommend":"https://api.aliyun.com/\xe6\x8e\x92\xe6\x9f\xa5?q=\xc3\xa9"}),
                         "\xe6\x8e"],
    all_of_them      => [qq({"RequestId":"\\r\\nX-Evil-R: 1\xe4\xb8\xad","HostId":"\\nX-Evil-H: 1",)
                         . qq("Code":"InstanceNotFound","Message":"\\u000aX-Evil-M: \xf0\x9f\x98\x80",)
                         . qq("Recommend":"\\rX-Evil-C: \\u2028"}), 'X-Evil'],
);

sub chunk { sprintf("%x\r\n", length $_[0]) . $_[0] . "\r\n" }

# ---------------------------------------------------------------------------
# mock upstream
# ---------------------------------------------------------------------------

my $mock = mock_upstream(per_request => sub {
    my ($head) = @_;
    my ($path) = $head =~ /^\S+ (\S+)/;
    $path =~ s{^/[a-z]+/}{/};

    if ($path =~ m{^/ws}) {
        return [[send => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: mqtt-test\r\n"
                         . "Connection: Upgrade\r\nX-Upstream: ws\r\n\r\n$GREETING"]]
            if $head =~ /^Upgrade: mqtt-test\r$/mi;
        return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         . "Content-Length: " . length($ERR400) . "\r\n\r\n$ERR400"]];
    }
    if ($path =~ m{^/tunnel}) {
        # tunnelled bytes that happen to look like a request: echo them
        return [[send => $ECHO . $head]];
    }
    if ($path =~ m{^/untrusted/(\w+)/(cl|chunked)}) {
        my $body = $UNTRUSTED{$1}[0];
        return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n"
                         . $body], [close => 1]] if $2 eq 'cl';
        my @s = ([send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                          . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"]);
        for (my $o = 0; $o < length $body; $o += 7) {
            push @s, [send => chunk(substr($body, $o, 7))], [sleep => 0.002];
        }
        return [@s, [send => "0\r\n\r\n"], [close => 1]];
    }
    if ($path =~ m{^/action}) {
        return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         . "Content-Length: " . length($ERR400) . "\r\nConnection: close\r\n\r\n"
                         . $ERR400], [close => 1]];
    }
    return [[send => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"],
            [close => 1]];
});
my $MOCK = $mock->port;

# ---------------------------------------------------------------------------
# nginx: PORT0 the gateway, PORT1 a fixed-body upstream
# ---------------------------------------------------------------------------

my $ng = start_nginx(http => <<"EOF");
    server {
        listen 127.0.0.1:%%PORT1%%;
        default_type application/json;

        location = /err400 { return 400 '$ERR400'; }
        location = /err500 { return 500 '$ERR500'; }
        location = /err403 {
            add_header X-Probe seen always;
            return 403 '$ERR403';
        }
        location = /ok200  { return 200 '{"RequestId":"r-ok"}'; }
        location = /page {
            default_type text/html;
            return 200 '<p><!--# include virtual="/u/err400" --></p>';
        }
    }

    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;

        # upgrades
        location /ws/ {
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 5s;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /wsoff/ {
            mqttapi off;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 5s;
            proxy_pass http://127.0.0.1:$MOCK;
        }

        # what SSI includes and auth_request asks
        location /u/ {
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }

        # SSI: a static page, and a proxied one
        location /ssi/ {
            ssi on;
            root %%PREFIX%%/html;
        }
        location /ssip/ {
            ssi on;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }

        # auth_request: the subrequest gets a 403 JSON error
        location /protected/ {
            auth_request /authz;
            auth_request_set \$auth_code \$sent_http_x_mqttapi_error_code;
            auth_request_set \$auth_var \$mqttapi_error_code;
            auth_request_set \$auth_probe \$sent_http_x_probe;
            add_header X-Auth-Probe "[\$auth_probe]" always;
            add_header X-Auth-Code "[\$auth_code]" always;
            add_header X-Auth-Var "[\$auth_var]" always;
            proxy_pass http://127.0.0.1:%%PORT1%%/ok200;
        }
        location = /authz {
            internal;
            proxy_pass http://127.0.0.1:%%PORT1%%/err403;
        }

        location /m/ {
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /mproblem/ {
            mqttapi_body problem;
            proxy_pass http://127.0.0.1:$MOCK;
        }
    }
EOF

my $GW = $ng->port(0);
my $prefix = $ng->prefix;

sub no_mqttapi_headers {
    my ($r, $w) = @_;
    my @x = grep { $_->[0] =~ /^x-mqttapi-|^content-language$|^x-acs-retry-after$/i }
            @{ $r->{headers} };
    ok(!@x, "$w: not annotated") or diag join "\n", map { "$_->[0]: $_->[1]" } @x;
}

# read exactly $n bytes from $sock (leftovers of the response first)
sub read_n {
    my ($sock, $n, $timeout) = @_;
    my $buf = delete(${*$sock}{mqttapi_buf}) // '';
    my $sel = IO::Select->new($sock);
    my $deadline = Time::HiRes::time() + ($timeout // 5);
    while (length $buf < $n) {
        my $left = $deadline - Time::HiRes::time();
        last if $left <= 0 || !$sel->can_read($left);
        my $got = sysread($sock, $buf, $n - length $buf, length $buf);
        last unless $got;
    }
    return $buf;
}

# ---------------------------------------------------------------------------
# 1. 101 Switching Protocols
# ---------------------------------------------------------------------------

my %handshake;
for my $loc (qw(ws wsoff)) {
    my $w = "101 /$loc/";
    my $r = http_request(port => $GW, path => "/$loc/ws", keepalive => 1,
                         headers => [[Upgrade => 'mqtt-test'], [Connection => 'Upgrade']]);
    ok(!$r->{error}, "$w: answered") or diag $r->{error};
    is($r->{status}, 101, "$w: 101 Switching Protocols");
    is(h($r, 'Upgrade'), 'mqtt-test', "$w: Upgrade from the upstream");
    is(h($r, 'X-Upstream'), 'ws', "$w: the upstream's own header");
    no_mqttapi_headers($r, $w);
    $handshake{$loc} = $r->{head} =~ s/^Date: [^\r]*\r\n//mr;

    my $sock = $r->{sock};
    ok($sock, "$w: the connection stays open for the tunnel") or next;
    my $g = read_n($sock, length $GREETING);
    ok($g eq $GREETING, "$w: the upstream's bytes after the 101, unchanged")
        or diag explain $g;

    my $tunnel = "GET /t/tunnel HTTP/1.1\r\nX-Bytes: \x00\x01\x7f\x80\xfe\xff"
               . '{"Code":"InstanceNotFound"}' . "\r\n\r\n";
    syswrite($sock, $tunnel);
    my $e = read_n($sock, length($ECHO) + length $tunnel);
    ok($e eq $ECHO . $tunnel, "$w: the client's bytes reach the upstream unchanged, and back")
        or diag explain $e;
    close $sock;
}
is($handshake{ws}, $handshake{wsoff}, '101: the handshake with mqttapi on is the one with off');

# the same location without Upgrade: an ordinary, annotated error
{
    my $r = get($GW, '/ws/ws');
    is($r->{status}, 400, '/ws/ without Upgrade: the 400');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', '/ws/ without Upgrade: annotated');
}

# ---------------------------------------------------------------------------
# 2. subrequests
# ---------------------------------------------------------------------------

mkdir "$prefix/html";
mkdir "$prefix/html/ssi";
open my $fh, '>', "$prefix/html/ssi/page.html" or die "page: $!";
print {$fh} "A<!--# include virtual=\"/u/err400\" -->B"
          . "<!--# include virtual=\"/u/err500\" -->C"
          . "<!--# include virtual=\"/u/ok200\" -->D\n";
close $fh;

{
    my $w = 'SSI include of 400/500 JSON errors';
    my $r = get($GW, '/ssi/page.html');
    ok(!$r->{error}, "$w: answered") or diag $r->{error};
    is($r->{status}, 200, "$w: the page's 200");
    ok($r->{body} eq "A${ERR400}B${ERR500}C" . '{"RequestId":"r-ok"}' . "D\n",
       "$w: the included errors are the upstream's bytes, unannotated")
        or diag $r->{body};
    no_mqttapi_headers($r, $w);
    unlike($r->{body}, qr/"Cause"|"Category"|"Retryable"/, "$w: no annotation member");
}
{
    my $w = 'SSI include in a proxied page';
    my $r = get($GW, '/ssip/page');
    is($r->{status}, 200, "$w: 200");
    ok($r->{body} eq "<p>$ERR400</p>", "$w: the included error unannotated") or diag $r->{body};
    no_mqttapi_headers($r, $w);
}
{
    # a direct request to the same location is annotated: the location is on
    my $r = get($GW, '/u/err400');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', 'the included location, asked directly: annotated');
    like($r->{body}, qr/"Cause"/, 'the included location, asked directly: annotated body');
}
{
    my $w = 'auth_request subrequest with a 403 JSON error';
    my $r = get($GW, '/protected/x');
    is($r->{status}, 403, "$w: the 403 of auth_request");
    is(h($r, 'X-Auth-Probe'), '[seen]', "$w: the subrequest's response headers are visible (sanity)");
    is(h($r, 'X-Auth-Code'), '[]', "$w: the subrequest has no X-MQTTAPI-Error-Code");
    like(h($r, 'X-Auth-Var') // '', qr/^\[-?\]$/, "$w: \$mqttapi_error_code empty in it");
}

# ---------------------------------------------------------------------------
# 3. the action: x-acs-action wins over Action
# ---------------------------------------------------------------------------

# InstanceNotFound belongs to group, topic and rule: the category comes
# from the action, or is unknown
for my $c (['?Action=ApplyToken', [], 'token', 'Action=ApplyToken'],
           ['?Action=CreateMqttRule', [], 'rule', 'Action=CreateMqttRule'],
           ['?x=1', ['x-acs-action' => 'ApplyToken'], 'token', 'x-acs-action only'],
           ['?Action=ListGroupId', ['x-acs-action' => 'ApplyToken'], 'token',
            'x-acs-action ApplyToken, Action ListGroupId'],
           ['?Action=ApplyToken', ['x-acs-action' => 'CreateMqttTopic'], 'topic',
            'x-acs-action CreateMqttTopic, Action ApplyToken'],
           ['?Action=ApplyToken', ['X-ACS-Action' => 'DeleteGroupId'], 'group',
            'X-ACS-Action (any case) DeleteGroupId, Action ApplyToken'],
           ['?x=1', [], 'unknown', 'no action']) {
    my ($q, $h, $cat, $w) = @$c;
    my $r = get($GW, "/m/action$q", @$h);
    is($r->{status}, 400, "category, $w: 400");
    is(h($r, 'X-MQTTAPI-Error-Category'), $cat, "category, $w: $cat");
    my $d = json_decode($r->{body});
    is($d && $d->{Category}, $cat, "category, $w: body Category $cat");
    my $req = $mock->last_request;
    is($req && $req->{path}, "/m/action$q", "category, $w: the query reaches the upstream as sent");
    if (@$h) {
        like($req ? $req->{head} : '', qr/^\Q$h->[0]\E: \Q$h->[1]\E\r$/m,
             "category, $w: the header reaches the upstream as sent");
    }
}

# ---------------------------------------------------------------------------
# 4. CR/LF and non-ASCII in Message, RequestId, HostId, Recommend
# ---------------------------------------------------------------------------

for my $name (sort keys %UNTRUSTED) {
    my ($body, $marker) = @{ $UNTRUSTED{$name} };
    my $orig = json_decode($body) or BAIL_OUT("bad case $name");
    for my $loc (qw(m mproblem)) {
        for my $t (qw(cl chunked)) {
            my $w = "$name /$loc/ $t";
            my $r = get($GW, "/$loc/untrusted/$name/$t");
            ok(!$r->{error}, "$w: answered") or diag $r->{error};
            is($r->{status}, 400, "$w: 400");
            is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', "$w: annotated");

            # the header block: ASCII, no injected header, no untrusted text
            my ($head) = $r->{head} // '';
            ok($head !~ /[^\x20-\x7e\r\n]/, "$w: the header block is printable ASCII");
            ok(!grep({ $_->[0] =~ /evil|^set-cookie$|^location$/i } @{ $r->{headers} }),
               "$w: no injected header");
            ok(!grep({ index($_->[1], $marker) >= 0 || $_->[1] =~ /evil/i } @{ $r->{headers} }),
               "$w: no member text in a header value") or diag $head;
            my @lines = split /\r\n/, $head;
            ok(!grep({ !/^HTTP\/|^[A-Za-z0-9-]+: / } @lines[0 .. $#lines]),
               "$w: every header line well-formed");

            # the body: valid JSON, the members' values kept
            my $d = json_decode($r->{body});
            ok($d && ref $d eq 'HASH', "$w: valid JSON") or do { diag $r->{body}; next };
            for my $k (qw(RequestId HostId Message Recommend)) {
                next unless exists $orig->{$k};
                is($d->{$k}, $orig->{$k}, "$w: $k kept");
            }
            # the upstream escaped its control characters: so does the output
            unlike($r->{body}, qr/[\x00-\x1f]/, "$w: no raw control character in the body");
            if ($loc eq 'm') {
                my $cut = rindex($body, '}');
                ok(substr($r->{body}, 0, $cut) eq substr($body, 0, $cut),
                   "$w: augment keeps the original bytes");
            } else {
                like(h($r, 'Content-Type') // '', qr{^application/problem\+json}, "$w: problem");
            }
            is(h($r, 'Content-Length'), length $r->{body}, "$w: Content-Length");
        }
    }
}

# nginx is fine afterwards
is(get($GW, '/u/ok200')->{status}, 200, 'a normal request still works');
unlike($ng->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/,
       'error log: no alert, crit, emerg, crash');

done_testing();
