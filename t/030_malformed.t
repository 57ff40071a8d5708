#!/usr/bin/perl
# Bad upstream bodies: whatever a JSON error body contains, nginx
# keeps serving, the response is either annotated correctly or the
# upstream's bytes unchanged, and nothing untrusted reaches a header.
#
# Every case is a 400 with Content-Type application/json from a mock
# upstream, sent with Content-Length and chunked (in small pieces), through
# `mqttapi_body augment` (checked exactly) and `problem` (checked for
# safety).  After all cases: no [alert]/[crit], no crashed worker, and a
# normal request still works.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes ();
use IO::Socket::INET;
use JSON::PP ();
use MqttapiTest;

# ---------------------------------------------------------------------------
# Cases: name => [body, kind, marker]
#   kind:   pass     the body must come back byte for byte
#           valid    annotated, with this code in X-MQTTAPI-Error-Code
#           invalid  annotated or passed through, never an
#                    X-MQTTAPI-Error-Code
#           either   annotated or passed through (a code header, if any,
#                    is a well-formed code)
#   marker: untrusted text that must not appear in any header value
# ---------------------------------------------------------------------------

my $LONG128 = 'A' x 128;
my $LONG129 = 'A' x 129;

sub nest { my ($n) = @_; ('[' x $n) . (']' x $n) }

my %CASES = (
    control          => ['{"RequestId":"r","Code":"InstanceNotFound","Message":"m"}', 'valid',
                         undef, 'InstanceNotFound'],
    truncated        => ['{"RequestId":"r","Code":"InstanceNotFound","Mess', 'pass'],
    truncated_string => ['{"RequestId":"r","Code":"InstanceNot', 'pass'],
    only_brace       => ['{', 'pass'],
    dup_keys         => ['{"Code":"InstanceNotFound","Code":"EvilDup"}', 'either', 'EvilDup'],
    dup_code_first   => ['{"Code":"EvilDup","Message":"m","Code":"InstanceNotFound"}', 'either',
                         'EvilDup'],
    code_number      => ['{"RequestId":"r","Code":400,"Message":"m"}', 'pass'],
    code_float       => ['{"RequestId":"r","Code":1e999,"Message":"m"}', 'either'],
    code_object      => ['{"RequestId":"r","Code":{"Code":"InstanceNotFound"}}', 'pass'],
    code_array       => ['{"RequestId":"r","Code":["InstanceNotFound"]}', 'pass'],
    code_null        => ['{"RequestId":"r","Code":null}', 'pass'],
    code_true        => ['{"RequestId":"r","Code":true}', 'pass'],
    code_empty       => ['{"RequestId":"r","Code":""}', 'invalid'],
    code_crlf        => ['{"RequestId":"r","Code":"InstanceNotFound\r\nX-Evil: injected",'
                         . '"Message":"m"}', 'invalid', 'X-Evil'],
    code_lf          => ['{"Code":"Instance\nNotFound"}', 'invalid', 'NotFound'],
    code_cr_raw      => [qq({"Code":"Instance\rEvil"}), 'pass', 'Evil'],  # raw CR: invalid JSON
    code_tab         => ['{"Code":"Instance\tEvil"}', 'invalid', 'Evil'],
    code_e_acute     => [qq({"Code":"Instanc\xc3\xa9NotFound"}), 'invalid', "\xc3\xa9"],
    code_e_escaped   => ['{"Code":"Instanc\u00e9NotFound"}', 'invalid', 'NotFound'],
    code_chinese     => [qq({"Code":"\xe4\xb8\xadInstanceNotFound"}), 'invalid', "\xe4\xb8\xad"],
    code_chinese_esc => ['{"Code":"\u4e2dInstanceNotFound"}', 'invalid', 'InstanceNotFound'],
    code_128         => [qq({"Code":"$LONG128"}), 'valid', undef, $LONG128],
    code_129         => [qq({"Code":"$LONG129"}), 'invalid', $LONG129],
    code_huge        => ['{"Code":"' . ('B' x 5000) . '"}', 'invalid', 'BBBBBBBB'],
    code_space       => ['{"Code":"Instance NotFound"}', 'invalid', 'Instance NotFound'],
    code_quote       => ['{"Code":"Instance\"Evil"}', 'invalid', 'Evil'],
    code_backslash   => ['{"Code":"Instance\\\\Evil"}', 'invalid', 'Evil'],
    code_colon       => ['{"Code":"X-Evil: 1"}', 'invalid', 'Evil'],
    code_semicolon   => ['{"Code":"InstanceNotFound;Evil"}', 'invalid', 'Evil'],
    code_angle       => ['{"Code":"<script>Evil</script>"}', 'invalid', 'Evil'],
    code_pattern     => ['{"Code":"InvalidParameter.%s"}', 'either'],
    code_pattern_bad => ['{"Code":"InvalidParameter.Evil Name"}', 'invalid', 'Evil'],
    code_pattern_nl  => ['{"Code":"InvalidParameter.Evil\nX-Evil: 1"}', 'invalid', 'Evil'],
    code_pct_escape  => ['{"Code":"Instance%0d%0aEvil"}', 'either'],
    invalid_utf8     => [qq({"Code":"InstanceNotFound","Message":"\xff\xfe\xfd"}), 'pass'],
    invalid_utf8_code=> [qq({"Code":"Instance\xc3\x28Evil"}), 'pass', 'Evil'],
    overlong_utf8    => [qq({"Code":"InstanceNotFound","Message":"\xc0\xaf"}), 'pass'],
    surrogate_esc    => ['{"Code":"InstanceNotFound","Message":"\ud800"}', 'either'],
    nul_escaped_msg  => ['{"Code":"InstanceNotFound","Message":"a\u0000b"}', 'either'],
    nul_escaped_code => ['{"Code":"Instance\u0000Evil"}', 'invalid', 'Evil'],
    nul_raw          => [qq({"Code":"InstanceNotFound","Message":"a\0b"}), 'pass'],
    nul_raw_code     => [qq({"Code":"Instance\0Evil"}), 'pass', 'Evil'],
    deep_nesting     => ['{"Code":"InstanceNotFound","Data":' . nest(10000) . '}', 'either'],
    deep_objects     => ['{"Code":"InstanceNotFound","Data":' . ('{"a":' x 10000) . '1'
                         . ('}' x 10000) . '}', 'either'],
    huge_string      => ['{"RequestId":"r","Code":"InstanceNotFound","Message":"'
                         . ('x' x 60000) . '"}', 'valid', undef, 'InstanceNotFound'],
    huge_escapes     => ['{"Code":"InstanceNotFound","Message":"' . ('\u4e2d' x 10000) . '"}',
                         'valid', undef, 'InstanceNotFound'],
    over_limit       => ['{"Code":"InstanceNotFound","Message":"' . ('y' x 70000) . '"}', 'pass'],
    trailing_garbage => ['{"Code":"InstanceNotFound"} trailing', 'pass'],
    two_objects      => ['{"Code":"InstanceNotFound"}{"Code":"Evil"}', 'pass', 'Evil'],
    top_array        => ['[{"Code":"InstanceNotFound"}]', 'pass'],
    top_string       => ['"InstanceNotFound"', 'pass'],
    top_number       => ['400', 'pass'],
    empty_object     => ['{}', 'pass'],
    empty_body       => ['', 'either'],
    whitespace_only  => ["  \r\n ", 'either'],
    bom              => [qq(\xef\xbb\xbf{"Code":"InstanceNotFound"}), 'either'],
    spaces_around    => [qq(\r\n  {"Code" : "InstanceNotFound" , "Message":"m"}  \n), 'valid',
                         undef, 'InstanceNotFound'],
    escaped_key      => ['{"\u0043ode":"InstanceNotFound"}', 'valid', undef, 'InstanceNotFound'],
    brace_in_string  => ['{"Code":"InstanceNotFound","Message":"}}}"}', 'valid', undef,
                         'InstanceNotFound'],
    upstream_members => ['{"Code":"InstanceNotFound","Cause":"upstream cause","Category":"mine",'
                         . '"Retryable":"maybe","Description":"d"}', 'valid', undef,
                         'InstanceNotFound'],
    many_members     => ['{' . join(',', map { qq("k$_":$_) } 1 .. 2000)
                         . ',"Code":"InstanceNotFound"}', 'valid', undef, 'InstanceNotFound'],
    comment          => ['{"Code":"InstanceNotFound" /* c */}', 'pass'],
    single_quotes    => ["{'Code':'InstanceNotFound'}", 'pass'],
    nan              => ['{"Code":"InstanceNotFound","X":NaN}', 'pass'],
);

my @NAMES = sort keys %CASES;

# bodies that are no JSON object at all: an envelope may replace them
my %empty = map { $_ => 1 } qw(empty_body whitespace_only);

# ---------------------------------------------------------------------------
# Upstream and gateway
# ---------------------------------------------------------------------------

# Upstreams that fail in the middle of the body: what the client
# gets is not specified here (a gateway error is a later issue), only that
# it is safe.
my $PARTIAL = '{"RequestId":"r","Code":"InstanceNotFound","Message":"' . ('z' x 100) . '"}';
my %ABORT = (
    cl_short    => [[send => "Content-Length: 500\r\n\r\n" . substr($PARTIAL, 0, 50)],
                    [sleep => 0.05], [close => 1]],
    cl_short_nocode => [[send => "Content-Length: 500\r\n\r\n" . '{"Message":"' . ('z' x 40)],
                    [sleep => 0.05], [close => 1]],
    ch_short    => [[send => "Transfer-Encoding: chunked\r\n\r\n32\r\n" . substr($PARTIAL, 0, 50)
                             . "\r\n"], [sleep => 0.05], [close => 1]],
    ch_bad_size => [[send => "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"Cod\r\nzz\r\n"],
                    [sleep => 0.05], [close => 1]],
    hang        => [[send => "Content-Length: 500\r\n\r\n" . substr($PARTIAL, 0, 50)],
                    [hang => 1]],
    hang_head   => [[send => "Content-Length: 500\r\n"], [hang => 1]],
    reset_early => [[close => 1]],
);

# Retry-After values the upstream may send with a throttling code
my $THROTTLED = '{"RequestId":"r","Code":"ApplyTokenOverFlow","Message":"m"}';
my %RETRY_AFTER = (
    digits    => '5',
    zero      => '0',
    word      => 'soon',
    negative  => '-5',
    huge      => '99999999999',
    fraction  => '1.5',
    past_date => 'Wed, 21 Oct 2015 07:28:00 GMT',
    bad_date  => 'Wed, 99 Foo 2015 07:28:00 GMT',
);

sub http_date { POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime $_[0]) }

my $mock = mock_upstream(per_request => sub {
    my ($head) = @_;
    my ($path) = $head =~ /^\S+ (\S+)/;
    my (undef, $loc, $mode, $name) = split m{/}, $path;
    if ($mode eq 'abort') {
        return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         . "Connection: close\r\n"], @{ $ABORT{$name} }];
    }
    if ($mode eq 'ra') {
        my $v = $name eq 'future_date' ? http_date(time + 30) : $RETRY_AFTER{$name};
        return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                         . "Retry-After: $v\r\nContent-Length: " . length($THROTTLED)
                         . "\r\nConnection: close\r\n\r\n$THROTTLED"], [close => 1]];
    }
    my $body = $CASES{$name // ''} ? $CASES{$name}[0] : '{"Code":"NoSuchCase"}';
    my $h = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n";
    if ($mode eq 'cl') {
        return [[send => "${h}Content-Length: " . length($body)
                         . "\r\nConnection: close\r\n\r\n$body"], [close => 1]];
    }
    # chunked, in pieces of 7 bytes (at most 40 pieces, then the rest)
    my @s = ([send => "${h}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"]);
    my $off = 0;
    for (1 .. 40) {
        last if $off >= length $body;
        my $p = substr($body, $off, 7);
        $off += length $p;
        push @s, [send => sprintf("%x\r\n", length $p) . "$p\r\n"];
        push @s, [sleep => 0.002] if $_ % 10 == 0;
    }
    if ($off < length $body) {
        my $p = substr($body, $off);
        push @s, [send => sprintf("%x\r\n", length $p) . "$p\r\n"];
    }
    push @s, [send => "0\r\n\r\n"], [close => 1];
    return \@s;
});
my $MOCK = $mock->port;

my $ng = start_nginx(http => <<"EOF");
    server {
        listen 127.0.0.1:%%PORT0%%;

        location /a/ {
            mqttapi on;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /nb/ {
            mqttapi on;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /p/ {
            mqttapi on;
            mqttapi_body problem;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /t/ {
            mqttapi on;
            proxy_read_timeout 500ms;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /tnb/ {
            mqttapi on;
            proxy_buffering off;
            proxy_read_timeout 500ms;
            proxy_pass http://127.0.0.1:$MOCK;
        }
        location /ok {
            return 200 'fine';
        }
    }
EOF

my $GW = $ng->port(0);
my @WORKERS = sort $ng->worker_pids;

my %ANNOT = map { $_ => 1 } qw(Cause Solution Category Retryable RetryAfter
                               InvalidParameter Description);

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

sub headers_safe {
    my ($r, $w, $marker) = @_;
    my $head = $r->{head} // '';
    ok($head !~ /\r(?!\n)/ && $head !~ /(?<!\r)\n/, "$w: no bare CR or LF in the response head");
    my @bad = grep { $_->[1] !~ /^[\x20-\x7e]*$/ || $_->[0] !~ /^[!#-'*+.0-9A-Z^-z|~-]+$/ }
              @{ $r->{headers} };
    ok(!@bad, "$w: header names are tokens, values printable ASCII")
        or diag join "\n", map { "$_->[0]: $_->[1]" } @bad;
    ok(!grep({ lc $_->[0] eq 'x-evil' } @{ $r->{headers} }), "$w: no injected header");
    if (defined $marker) {
        my @m = grep { index($_->[1], $marker) >= 0 || index($_->[0], $marker) >= 0 }
                @{ $r->{headers} };
        ok(!@m, "$w: untrusted text not reflected in a header")
            or diag join "\n", map { "$_->[0]: $_->[1]" } @m;
    }
}

# is $r the augmentation of $orig?  Returns a list of problems.
sub augment_problems {
    my ($r, $orig) = @_;
    my @p;
    my $cut = rindex($orig, '}');
    return ('the original is not an object') if $cut < 0;
    my $b = $r->{body};
    push @p, 'original bytes not kept before the annotation'
        unless substr($b, 0, $cut) eq substr($orig, 0, $cut);
    my $tail = substr($orig, $cut);
    push @p, 'original ending not kept'
        unless length($b) >= length($tail) && substr($b, -length $tail) eq $tail;
    my ($d, $keys) = json_decode_ordered($b);
    my (undef, $okeys) = json_decode_ordered($orig);
    if (!$d) {
        push @p, 'not valid JSON';
    } elsif ($okeys) {
        my @k = @$keys;
        my @first = splice(@k, 0, scalar @$okeys);
        push @p, 'original keys not first' unless "@first" eq "@$okeys";
        my @extra = grep { !$ANNOT{$_} } @k;
        push @p, "unexpected members: @extra" if @extra;
        my %seen;
        my @dup = grep { $seen{$_}++ } @$keys;
        push @p, "duplicate members: @dup" if @dup;
        push @p, 'no Category member'
            unless defined $d->{Category} || grep { $_ eq 'Category' } @$okeys;
        push @p, 'Category member differs from the header'
            if !grep({ $_ eq 'Category' } @$okeys)
               && ($d->{Category} // '') ne (h($r, 'X-MQTTAPI-Error-Category') // '');
    }
    return @p;
}

sub check_case {
    my ($loc, $mode, $name) = @_;
    my ($orig, $kind, $marker, $code) = @{ $CASES{$name} };
    my $w = "$name /$loc/$mode";
    my $r = get($GW, "/$loc/$mode/$name");

    ok(!$r->{error}, "$w: complete response, no reset") or diag $r->{error};
    is($r->{status}, 400, "$w: the upstream's status");
    headers_safe($r, $w, $marker);

    my $identical = $r->{body} eq $orig;
    my $hcode = h($r, 'X-MQTTAPI-Error-Code');
    my $category = h($r, 'X-MQTTAPI-Error-Category');
    my $annotated = defined $category;

    if (defined h($r, 'Content-Length')) {
        is(h($r, 'Content-Length'), length $r->{body}, "$w: Content-Length is the body length");
    }

    if ($identical) {
        ok(!$annotated && !defined $hcode && !defined h($r, 'X-MQTTAPI-Retryable'),
           "$w: passed through, without annotation headers");
        like(h($r, 'Content-Type') // '', qr{^application/json$}, "$w: Content-Type kept");
    }

    if ($kind eq 'pass') {
        ok($identical, "$w: passed through byte for byte")
            or diag 'got ' . length($r->{body}) . ' bytes: ' . substr($r->{body}, 0, 300);
        return;
    }

    if ($kind eq 'valid') {
        ok(!$identical && $annotated, "$w: annotated") or return;
        is($hcode, $code, "$w: X-MQTTAPI-Error-Code");
    }

    if ($kind eq 'invalid') {
        is($hcode, undef, "$w: no X-MQTTAPI-Error-Code for an invalid code");
    }

    if (defined $hcode) {
        like($hcode, qr/^[A-Za-z0-9._%-]{1,128}$/, "$w: the code header is a well-formed code");
    }

    return if $identical;

    ok($annotated, "$w: annotated when changed")
        or diag 'got: ' . substr($r->{body}, 0, 300);
    if ($loc eq 'p') {
        # problem: a JSON object that still has the upstream's Code
        my $d = json_decode($r->{body});
        ok(ref $d eq 'HASH', "$w: problem body is a JSON object") or return;
        my $o = json_decode($orig);
        is_deeply($d->{Code}, $o->{Code}, "$w: problem body keeps Code")
            if ref $o eq 'HASH' && exists $o->{Code};
        like(h($r, 'Content-Type') // '', qr{^application/problem\+json}, "$w: problem type");
        return;
    }
    my @p = $empty{$name} ? () : augment_problems($r, $orig);
    ok(!@p, "$w: correctly annotated (augment)")
        or diag join("\n", @p) . "\ngot: " . substr($r->{body}, 0, 300);
}

# ---------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------

for my $name (@NAMES) {
    for my $mode (qw(cl ch)) {
        check_case('a', $mode, $name);
    }
}
check_case('nb', 'ch', $_) for @NAMES;
check_case('p', 'cl', $_) for @NAMES;

# empty bodies: whatever the gateway makes of them is JSON with a Code
for my $name (qw(empty_body whitespace_only)) {
    my $r = get($GW, "/a/cl/$name");
    next if $r->{body} eq $CASES{$name}[0];
    my $d = json_decode($r->{body});
    ok(ref $d eq 'HASH' && defined $d->{Code} && !ref $d->{Code},
       "$name: a replaced empty body is a JSON object with a string Code");
}

# upstreams that fail mid-body
for my $loc (qw(t tnb)) {
    for my $name (sort keys %ABORT) {
        my $w = "upstream fails: $name /$loc/";
        my $t0 = Time::HiRes::time();
        my $r = http_request(port => $GW, path => "/$loc/abort/$name", timeout => 5);
        cmp_ok(Time::HiRes::time() - $t0, '<', 3, "$w: answered or closed in time");
        unlike($r->{error} // '', qr/timeout/, "$w: the client is not left hanging");
        next unless $r->{status};
        headers_safe($r, $w, undef);
        next if $r->{error};        # cut off, as nginx does without the module
        if ($r->{status} == 400) {
            ok(index($PARTIAL, $r->{body}) == 0 || index($r->{body}, '{"Message":"') == 0,
               "$w: a complete 400 only carries the upstream's bytes");
            next;
        }
        like($r->{status}, qr/^5\d\d$/, "$w: otherwise a 5xx from the gateway");
        my $d = json_decode($r->{body});
        ok(ref $d eq 'HASH' && defined $d->{Code} && !ref $d->{Code},
           "$w: the gateway's error is JSON with a string Code") or diag $r->{body};
        is(h($r, 'Content-Length'), length $r->{body}, "$w: Content-Length is the body length")
            if defined h($r, 'Content-Length');
    }
}

# clients that go away while the error body is being collected
for my $path ('/a/ch/huge_string', '/nb/ch/many_members', '/t/abort/hang', '/a/ch/control') {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $GW, Proto => 'tcp')
        or die "connect: $!";
    print {$s} "GET $path HTTP/1.1\r\nHost: localhost\r\n\r\n";
    Time::HiRes::sleep(0.02);
    close $s;
}
Time::HiRes::sleep(0.6);
is(get($GW, '/a/cl/control')->{status}, 400, 'after clients went away: still serving');

# odd client input: never reflected, never a reason to fail
{
    my @cases = (
        ['Accept-Language' => join(',', ('zh-TW;q=0.1') x 500)],
        ['Accept-Language' => 'zh-TW;q=abc, en;q=' . ('9' x 500)],
        ['Accept-Language' => ('x' x 4000) . '-TW'],
        ['Accept-Language' => ';;;,,,;q=;q=0.5,-,--,*-*'],
        ['Accept-Language' => "zh-TW\x80\xff"],
        ['x-acs-action' => 'Evil Action'],
        ['x-acs-action' => 'A' x 5000],
        ['x-acs-action' => "Apply\x80Token"],
    );
    for my $c (@cases) {
        my ($n, $v) = @$c;
        my $w = "client $n " . (length $v > 40 ? substr($v, 0, 40) . '...' : $v);
        $w =~ s/[^\x20-\x7e]/?/g;
        my $r = get($GW, '/a/cl/control', $n => $v);
        is($r->{status}, 400, "$w: status");
        is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', "$w: annotated");
        headers_safe($r, $w, length $v > 8 ? substr($v, 0, 8) : undef);
        like(h($r, 'X-MQTTAPI-Error-Category') // '', qr/^(token|group|topic|rule|unknown)$/,
             "$w: a known category");
        ok(json_decode($r->{body}), "$w: valid JSON");
    }
    for my $q ('Action=Evil%0d%0aX-Evil:%201', 'Action=' . ('B' x 3000),
               'Action=Apply%54oken', 'Action=ApplyToken&Action=CreateGroupId') {
        my $r = get($GW, "/a/cl/control?$q");
        my $w = 'client ' . substr($q, 0, 40);
        is($r->{status}, 400, "$w: status");
        headers_safe($r, $w, 'Evil');
        like(h($r, 'X-MQTTAPI-Error-Category') // '', qr/^(token|group|topic|rule|unknown)$/,
             "$w: a known category");
    }
}

# Retry-After from the upstream: kept as sent, and the delay in the body
# and in x-acs-retry-after agree with it where it can be read
for my $name (sort(keys %RETRY_AFTER), 'future_date') {
    my $w = "upstream Retry-After $name";
    my $r = get($GW, "/a/ra/$name");
    is($r->{status}, 400, "$w: status");
    headers_safe($r, $w, undef);
    is(h($r, 'X-MQTTAPI-Error-Code'), 'ApplyTokenOverFlow', "$w: annotated");
    my @ra = headers_all($r, 'Retry-After');
    is(scalar @ra, 1, "$w: one Retry-After");
    if ($name eq 'future_date') {
        like($ra[0] // '', qr/ GMT$/, "$w: the upstream's date kept");
    } else {
        is($ra[0], $RETRY_AFTER{$name}, "$w: the upstream's value kept");
    }
    my $d = json_decode($r->{body}) || {};
    my $acs = h($r, 'x-acs-retry-after');
    like($d->{RetryAfter} // '', qr/^\d+$/, "$w: body RetryAfter is a non-negative integer");
    like($acs // '', qr/^\d+$/, "$w: x-acs-retry-after is a non-negative integer");
    is($acs, ($d->{RetryAfter} // -1) * 1000, "$w: x-acs-retry-after is RetryAfter in ms");
    my %want = (digits => 5, zero => 0, past_date => 0);
    if (exists $want{$name}) {
        is($d->{RetryAfter}, $want{$name}, "$w: the delay is the upstream's");
    } elsif ($name eq 'future_date') {
        ok(($d->{RetryAfter} // 0) >= 28 && ($d->{RetryAfter} // 0) <= 31,
           "$w: the delay is the time until the upstream's date")
            or diag "RetryAfter: " . ($d->{RetryAfter} // 'none');
    }
}

# ---------------------------------------------------------------------------
# Invalid UTF-8 from the client, the configuration and the upstream: every
# body the gateway writes parses with a strict parser (JSON::PP, utf8), an
# invalid sequence written as U+FFFD; a body the gateway does not write
# (JSON passed through) is the upstream's bytes
# ---------------------------------------------------------------------------

{
    my $BAD = "a\xffb\xc0\x80c\xed\xa0\x80d\xf4\x90\x80\x80e\xe6\x89";  # invalid
    my $BADOUT = "a\x{fffd}b\x{fffd}\x{fffd}c\x{fffd}\x{fffd}\x{fffd}d"
               . "\x{fffd}\x{fffd}\x{fffd}\x{fffd}e\x{fffd}\x{fffd}";
    my $GOOD = "\xc3\xa9\xe6\x89\xbe\xf0\x9f\x98\x80";                     # valid
    my %UP = (
        throttle => ['application/json', '{"RequestId":"t","Code":"ApplyTokenOverFlow","Message":"m"}'],
        jsonbad  => ['application/json', qq({"RequestId":"r\xff","Code":"InstanceNotFound","Message":"m"})],
        htmlbad  => ['text/html', qq({"RequestId":"r\xff","Code":"InstanceNotFound"})],
        pagebad  => ['text/html', "<h1>\xff\xfe</h1>"],
        code     => ['application/json', '{"RequestId":"r","Code":"Instance\u00ffNotFound","Message":"m"}'],
        lone     => ['application/json', '{"RequestId":"r\ud800","Code":"InstanceNotFound","Message":"m"}'],
        codeok   => ['application/json', '{"RequestId":"r","Code":"InvalidParameter.Topic","Message":"m"}'],
    );
    my $up = mock_upstream(per_request => sub {
        my ($head) = @_;
        my ($name) = $head =~ m{^\S+ /(\w+)};
        my ($type, $body) = @{ $UP{$name // ''} || $UP{code} };
        return [[send => "HTTP/1.1 400 Bad Request\r\nContent-Type: $type\r\n"
                         . "Content-Length: " . length($body)
                         . "\r\nConnection: close\r\n\r\n$body"], [close => 1]];
    });
    my $UPP = $up->port;
    my $DEAD = dead_port();

    my $u8 = start_nginx(http => <<"EOF");
    mqttapi_throttle_zone \$arg_k zone=u8:1m backoff=60s;

    server {
        listen 127.0.0.1:%%PORT0%%;
        server_name "gw$BAD";

        mqttapi on;

        location /hid/  { mqttapi_host_id \$http_x_hid; proxy_pass http://127.0.0.1:$DEAD; }
        location /phid/ { mqttapi_body problem; mqttapi_host_id "h-\$http_x_hid";
                          proxy_pass http://127.0.0.1:$DEAD; }
        location /sn/   { proxy_pass http://127.0.0.1:$DEAD; }
        location /thr/  { mqttapi_host_id \$http_x_hid; mqttapi_throttle zone=u8;
                          proxy_pass http://127.0.0.1:$UPP/throttle; }
        location /pthr/ { mqttapi_body problem; mqttapi_host_id \$http_x_hid;
                          mqttapi_throttle zone=u8; proxy_pass http://127.0.0.1:$UPP/throttle; }
        location /up/   { proxy_pass http://127.0.0.1:$UPP/; }
        location /pup/  { mqttapi_body problem; proxy_pass http://127.0.0.1:$UPP/; }
    }
EOF
    my $P = $u8->port(0);

    # what the client controls besides the HostId: the Action (header and
    # raw argument bytes) and the language
    my @client = ('x-acs-action' => "List$BAD", 'Accept-Language' => "zh-TW$BAD, $BAD;q=0.5");

    my $strict = JSON::PP->new->utf8;
    my $check = sub {
        my ($r, $w, %want) = @_;
        my $d = eval { $strict->decode($r->{body}) };
        ok($d, "$w: the body parses strictly") or diag "$@: $r->{body}";
        $d //= {};
        is($d->{$_}, $want{$_}, "$w: $_") for sort keys %want;
        unlike(join('', map { "$_->[0]: $_->[1]\n" } @{ $r->{headers} || [] }),
               qr/[^\x20-\x7e\n]/, "$w: the headers are ASCII");
        return $d;
    };

    for my $hid ([$BAD, $BADOUT, 'invalid'], [$GOOD, "\x{e9}\x{627e}\x{1f600}", 'valid']) {
        my ($in, $out, $what) = @$hid;
        my $r = get($P, "/hid/?Action=\xff", 'X-Hid' => $in, @client);
        is($r->{status}, 502, "host id, $what: the gateway's 502");
        $check->($r, "host id, $what, envelope", HostId => $out,
                 Code => 'GatewayUpstreamUnavailable');

        $r = get($P, "/phid/?Action=\xff", 'X-Hid' => $in, @client);
        $check->($r, "host id, $what, problem envelope", HostId => "h-$out",
                 Code => 'GatewayUpstreamUnavailable');
    }

    {
        my $r = get($P, '/sn/x', @client);
        $check->($r, 'server_name with invalid bytes', HostId => "gw$BADOUT");
    }

    # local answers: the back-off opened by the upstream, then answered
    for my $loc ('thr', 'pthr') {
        my $r = get($P, "/$loc/?k=$loc");
        is($r->{status}, 400, "$loc: the upstream's throttle relayed");
        for my $n (1, 2) {
            $r = get($P, "/$loc/?k=$loc&Action=\xfe", 'X-Hid' => $BAD, @client);
            is($r->{status}, 429, "$loc: local answer $n");
            $check->($r, "$loc: local answer $n", HostId => $BADOUT,
                     Code => 'ApplyTokenOverFlow');
        }
    }

    # upstream bodies
    for my $loc ('up', 'pup') {
        my $r = get($P, "/$loc/jsonbad", @client);
        is($r->{body}, $UP{jsonbad}[1], "$loc: invalid UTF-8 in a JSON body: passed through");
        ok(!defined h($r, 'X-MQTTAPI-Error-Code'), "$loc: invalid UTF-8 in a JSON body: not annotated");

        $r = get($P, "/$loc/htmlbad", @client);
        $check->($r, "$loc: invalid UTF-8 in an HTML body that looks like JSON",
                 Code => 'GatewayUpstreamRejected');
        $r = get($P, "/$loc/pagebad", @client);
        $check->($r, "$loc: invalid UTF-8 in an HTML page", Code => 'GatewayUpstreamRejected');

        $r = get($P, "/$loc/code", @client);
        $check->($r, "$loc: a Code with escaped non-ASCII");
        ok(!defined h($r, 'X-MQTTAPI-Error-Code'), "$loc: that Code is not reflected");

        # jansson refuses a lone surrogate: the upstream's bytes, unchanged
        $r = get($P, "/$loc/lone", @client);
        is($r->{body}, $UP{lone}[1], "$loc: a lone surrogate escape: passed through");

        $r = get($P, "/$loc/codeok?Action=\xff", @client);
        $check->($r, "$loc: a pattern code with the client's bytes around",
                 Code => 'InvalidParameter.Topic');
        is(h($r, 'X-MQTTAPI-Invalid-Parameter'), 'Topic', "$loc: the parameter");
    }

    unlike($u8->error_log, qr/\[(alert|crit|emerg)\]/, 'invalid UTF-8: no alert, crit, emerg');
    $u8->stop;
}

# the server is still fine
{
    my $r = get($GW, '/ok');
    is($r->{status}, 200, 'a normal request still works');
    is($r->{body}, 'fine', 'a normal request still works: body');
    my $c = get($GW, '/a/cl/control');
    is(h($c, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', 'an error is still annotated');
}

is_deeply([sort $ng->worker_pids], \@WORKERS, 'the same worker process served everything');
my $log = $ng->error_log;
unlike($log, qr/\[(alert|crit|emerg)\]/, 'error log: no alert, crit, emerg');
unlike($log, qr/exited on signal|worker process \d+ exited/, 'error log: no worker crash');

done_testing();
