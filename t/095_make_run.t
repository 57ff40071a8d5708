#!/usr/bin/perl
# The demo of `make run` (conf/run.sh, which `make run` calls after the
# build): started in the background on free ports (MQTTAPI_PORT,
# MQTTAPI_EMULATOR_PORT) with its own prefix (MQTTAPI_RUN_DIR), it prints
# the example curl commands; each of them is run as printed (with curl) and
# its output must show what the comment above it promises, the access log
# on stdout must carry the annotations.  Then SIGINT (Ctrl-C) stops it: the
# script's nginx and its workers are gone, nothing listens any more.
# It runs a copy of the template (MQTTAPI_CONF), and its error log has no
# line for the keep-alive connections curl closes.  A second run.sh on a
# port in use refuses to start, before printing anything else, and says how
# to pick other ports.
#
# README.md shows the output of these examples: its demo responses must be
# what the demo answers (up to the Date and the request ids), and every
# example response in it and in docs/*.md must have a Content-Length that
# is its body's.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use File::Basename ();
use Time::HiRes ();
use MqttapiTest;

my $REPO = repo_dir();

my $curl = (grep { -x "$_/curl" } split /:/, $ENV{PATH} // '')[0];
ok($curl, 'curl is installed (make deps installs it)') or BAIL_OUT('no curl');

# ---------------------------------------------------------------------------
# start the demo
# ---------------------------------------------------------------------------

my $dir  = MqttapiTest::_tempdir('run');
my $PORT = free_port();
my $EMU  = free_port();
my $out  = "$dir/stdout";
my $err  = "$dir/stderr";

# the template, copied (MQTTAPI_CONF runs a copy): a marker line added
my $template = "$dir/my-gateway.conf";
MqttapiTest::_spew($template, "# my copy of the demo template\n"
                              . slurp("$REPO/conf/gateway.conf"));

# the nginx and module under test: MQTTAPI_MODULE=none is a build with
# the module compiled in (run.sh's STATIC=1)
sub demo_env {
    $ENV{NGINX} = $MqttapiTest::NGINX;
    if ($MqttapiTest::MODULE eq 'none') {
        $ENV{STATIC} = 1;
        delete $ENV{MQTTAPI_MODULE};
    } else {
        delete $ENV{STATIC};
        $ENV{MQTTAPI_MODULE} = $MqttapiTest::MODULE;
    }
}

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    setpgrp(0, 0);
    open STDIN,  '<', '/dev/null';
    open STDOUT, '>', $out or POSIX::_exit(126);
    open STDERR, '>', $err or POSIX::_exit(126);
    $ENV{MQTTAPI_PORT} = $PORT;
    $ENV{MQTTAPI_EMULATOR_PORT} = $EMU;
    $ENV{MQTTAPI_RUN_DIR} = "$dir/prefix";
    $ENV{MQTTAPI_CONF} = $template;
    demo_env();
    exec 'bash', "$REPO/conf/run.sh" or POSIX::_exit(127);
}

# whatever happens below, the demo does not outlive the test
END { if ($pid && $$ != $pid) { kill 'KILL', -$pid; kill 'KILL', $pid; waitpid($pid, 0) } }

sub slurp { MqttapiTest::_slurp($_[0]) // '' }

# Starting (the build check, nginx -t, the start) and stopping take what
# they take on a loaded machine: every wait polls until its condition
# holds, the demo exits, or this deadline passes, whichever comes first.
my $DEADLINE = $ENV{MQTTAPI_DEMO_DEADLINE} || 90;

# wait_until($cond): poll until $cond holds or the deadline passes
sub wait_until {
    my ($cond) = @_;
    my $deadline = Time::HiRes::time() + $DEADLINE;
    Time::HiRes::sleep(0.05) until $cond->() || Time::HiRes::time() > $deadline;
}

# wait_for($cond) -> '' once $cond holds, else why not
sub wait_for {
    my ($cond) = @_;
    my $deadline = Time::HiRes::time() + $DEADLINE;
    until ($cond->()) {
        return "run.sh exited (status " . ($? >> 8) . ")"
            if waitpid($pid, POSIX::WNOHANG()) == $pid;
        return "not up after ${DEADLINE}s" if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    return '';
}

my $why = wait_for(sub {
    MqttapiTest::_port_listening($PORT) && MqttapiTest::_port_listening($EMU)
        && slurp($out) =~ /^# 6\..*\n.*curl.*\n\n/m
});
is($why, '', "the demo listens on the gateway ($PORT) and emulator ($EMU) ports")
    or BAIL_OUT("demo did not start: $why\n" . slurp($out) . slurp($err));

my $banner = slurp($out);
like(slurp($err), qr/test is successful/, 'run.sh checked the configuration (nginx -t)');
like($banner, qr{gateway\s+http://127\.0\.0\.1:$PORT/}, 'banner: the gateway address');
like($banner, qr{emulator\s+http://127\.0\.0\.1:$EMU/}, 'banner: the emulator address');
like($banner, qr{config\s+\Q$dir\E/prefix/nginx\.conf}, 'banner: the generated config');
ok(-f "$dir/prefix/nginx.conf" && -f "$dir/prefix/nginx.pid",
   'nginx.conf and the pid file are in MQTTAPI_RUN_DIR');
like(slurp("$dir/prefix/nginx.conf"), qr/\A# my copy of the demo template\n/,
     'MQTTAPI_CONF: the copy of the template is what runs');
like($banner, qr/generated from \Q$template\E/, 'banner: names the template');
like(slurp("$dir/prefix/nginx.pid"), qr/^$pid\b/,
     'the pid file names the foreground nginx (run.sh exec-ed it)');

# ---------------------------------------------------------------------------
# another demo on the same gateway port
# ---------------------------------------------------------------------------

{
    local $ENV{MQTTAPI_PORT} = $PORT;
    local $ENV{MQTTAPI_EMULATOR_PORT} = free_port();
    local $ENV{MQTTAPI_RUN_DIR} = "$dir/prefix2";
    local ($ENV{NGINX}, $ENV{STATIC}, $ENV{MQTTAPI_MODULE});
    demo_env();
    my ($rc, $text) = MqttapiTest::_run_cmd('timeout', $DEADLINE, 'bash',
                                            "$REPO/conf/run.sh");
    isnt($rc, 0, 'a second demo on a port in use: run.sh fails');
    like($text, qr/port\(s\) $PORT already in use/, 'it names the port');
    like($text, qr/MQTTAPI_PORT=\d+ MQTTAPI_EMULATOR_PORT=\d+ make run/,
         'it says how to pick other ports');
    unlike($text, qr/ngx_http_mqttapi_module demo|syntax is ok/,
           'it stops before nginx -t and the banner');
}

# ---------------------------------------------------------------------------
# the printed examples, run as printed
# ---------------------------------------------------------------------------

# "# N. comment" then the command lines, up to a blank line
my %example;
while ($banner =~ /^# (\d)\. ([^\n]*)\n((?:#[^\n]*\n)*)((?:[^#\n][^\n]*\n)+)/mg) {
    $example{$1} = { title => $2, cmd => $4 };
}
is_deeply([sort keys %example], [1 .. 6], 'six examples printed');

for my $n (sort keys %example) {
    my $cmd = $example{$n}{cmd};
    my @urls = $cmd =~ m{'(http://[^']*)'}g;
    ok(@urls && !grep({ !m{^http://127\.0\.0\.1:$PORT/\?Action=} } @urls),
       "example $n: requests the gateway on its port") or diag $cmd;
    my ($rc, $text, $stderr) = run_shell($cmd);
    is($rc, 0, "example $n: the command runs") or diag $stderr;
    $example{$n}{out} = $text;
}

# run_shell($script) -> (exit code, stdout, stderr)
sub run_shell {
    my ($script) = @_;
    my $k = fork // die "fork: $!";
    if ($k == 0) {
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>', "$dir/cmd.out" or POSIX::_exit(126);
        open STDERR, '>', "$dir/cmd.err" or POSIX::_exit(126);
        exec 'timeout', $DEADLINE, 'bash', '-c', $script or POSIX::_exit(127);
    }
    waitpid($k, 0);
    return ($? >> 8, slurp("$dir/cmd.out"), slurp("$dir/cmd.err"));
}

# curl -i output -> { status, headers => [[n, v]], h => {lc n => v}, body, raw }
sub parse_curl {
    my ($text) = @_;
    my ($head, $body) = split /\r?\n\r?\n/, $text // '', 2;
    my ($sl, @lines) = split /\r?\n/, $head // '';
    my $r = { raw => $text, body => $body // '', headers => [], h => {} };
    ($r->{status}) = ($sl // '') =~ m{^HTTP/\S+ (\d{3})};
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $r->{headers} }, [$k, $v];
        $r->{h}{lc $k} = $v;
    }
    $r->{json} = json_decode($r->{body});
    return $r;
}

my %r = map { $_ => parse_curl($example{$_}{out}) } grep { $_ != 5 } keys %example;

{
    my $r = $r{1};
    is($r->{status}, 200, 'example 1 (ApplyToken): 200');
    ok(!grep({ $_->[0] =~ /^x-mqttapi-/i } @{ $r->{headers} }), 'example 1: not annotated');
    ok($r->{json} && $r->{json}{Token}, 'example 1: a Token');
}
{
    my $r = $r{2};
    is($r->{status}, 400, 'example 2 (no ExpireTime): 400');
    is($r->{h}{'x-mqttapi-error-code'}, 'InvalidParameter.ExpireTime', 'example 2: the code');
    is($r->{h}{'x-mqttapi-invalid-parameter'}, 'ExpireTime', 'example 2: the parameter');
    is($r->{h}{'x-mqttapi-error-category'}, 'token', 'example 2: category token');
    like($r->{h}{'x-mqttapi-error-cause'} // '', qr/ExpireTime/, 'example 2: the cause names it');
    is($r->{json} && $r->{json}{InvalidParameter}, 'ExpireTime', 'example 2: body InvalidParameter');
    is($r->{h}{'content-length'}, length $r->{body}, 'example 2: Content-Length');
}
{
    my $r = $r{3};
    is($r->{status}, 400, 'example 3 (unknown instance): 400');
    is($r->{h}{'x-mqttapi-error-code'}, 'InstanceNotFound', 'example 3: InstanceNotFound');
    ok(length($r->{h}{'x-mqttapi-error-cause'} // ''), 'example 3: a cause');
    is($r->{h}{'x-mqttapi-retryable'}, 'false', 'example 3: not retryable');
}
{
    my $r = $r{4};
    is($r->{status}, 400, 'example 4 (existing group, zh-TW): 400');
    is($r->{h}{'x-mqttapi-error-code'}, 'GroupIdAlreadyExsited', 'example 4: the code');
    is($r->{h}{'content-language'}, 'zh-Hant', 'example 4: Content-Language zh-Hant');
    ok($r->{json} && ($r->{json}{Description} // '') =~ /[^\x00-\x7f]/,
       'example 4: a Chinese Description in the body');
    ok(!grep({ $_->[1] =~ /[^\x20-\x7e]/ } @{ $r->{headers} }), 'example 4: headers stay ASCII');
}
{
    my @lines = split /\n/, $example{5}{out} // '';
    is(scalar @lines, 8, 'example 5 (burst): eight answers');
    my $first = (grep { $lines[$_] =~ /^400 ApplyTokenOverFlow throttled= retry-after=\d+$/ }
                 0 .. $#lines)[0];
    ok(defined $first, 'example 5: the emulator throttles (400 ApplyTokenOverFlow)')
        or diag $example{5}{out};
    ok(!grep({ !/^200 / } @lines[0 .. ($first // 0) - 1]), 'example 5: successes before it');
    my @after = defined $first ? @lines[$first + 1 .. $#lines] : ();
    ok(@after && !grep({ !/^429 ApplyTokenOverFlow throttled=gateway retry-after=\d+$/ } @after),
       'example 5: then the gateway answers locally (429, throttled=gateway)')
        or diag $example{5}{out};
}
{
    my $r = $r{6};
    is($r->{status}, 500, 'example 6 (on demand InternalError): 500');
    is($r->{h}{'x-mqttapi-error-code'}, 'InternalError', 'example 6: the code');
    is($r->{h}{'x-mqttapi-retryable'}, 'true', 'example 6: retryable');
    like($r->{h}{'retry-after'} // '', qr/^\d+$/, 'example 6: Retry-After');
}

# the access log, on stdout
{
    my $log = substr(slurp($out), length $banner);
    like($log, qr/"GET \/ Action=ApplyToken" 400 upstream=400 code=InvalidParameter\.ExpireTime (?#
                 )category=token retryable=false retry_after=- param=ExpireTime /,
         'access log: the annotation of example 2');
    like($log, qr/"GET \/ Action=CreateGroupId" 400 .* code=GroupIdAlreadyExsited category=group/,
         'access log: example 4');
    like($log, qr/"GET \/ Action=ApplyToken" 429 upstream=- code=ApplyTokenOverFlow .*(?#
                 )throttle=rejected/, 'access log: a local answer of example 5');
    unlike($log, qr/AccessKeyId|LTAIdemo/, 'access log: no AccessKeyId');
}

# the status endpoint of the demo, as the banner prints it
{
    my ($json) = $banner =~ m{^#\s+(curl -s '[^']*/mqttapi/status')\s+JSON$}m;
    my ($prom) = $banner =~ m{^#\s+(curl -s '[^']*/mqttapi/status\?format=prometheus')}m;
    ok($json && $prom, 'banner: how to read the status endpoint') or diag $banner;
    my ($rc, $text) = run_shell($json // 'false');
    my $d = json_decode($text);
    ok($d && grep({ $_->{code} eq 'InvalidParameter.%s' && $_->{value} >= 1 }
                  @{ $d->{responses_total} || [] }),
       'status: the annotated examples are counted') or diag $text;
    ok($d && grep({ $_->{reason} eq 'backoff' && $_->{value} >= 1 }
                  @{ $d->{local_rejects_total} || [] }),
       'status: the local answers of example 5 are counted') or diag $text;
    ($rc, $text) = run_shell(($prom // 'false') . ' | promtool check metrics');
    is($rc, 0, 'status: the Prometheus text passes promtool check metrics')
        or diag $text;
}

# ---------------------------------------------------------------------------
# README.md and docs/: their example responses
# ---------------------------------------------------------------------------

# fenced_responses($file) -> the fenced blocks (from an opening fence, with
# or without an info string, to the next fence) that are HTTP responses
sub fenced_responses {
    my ($file) = @_;
    my (@fenced, $cur);
    for (split /\n/, slurp($file)) {
        if (/^```\S*\s*$/) {
            if (defined $cur) { push @fenced, $cur; undef $cur; } else { $cur = ''; }
            next;
        }
        $cur .= "$_\n" if defined $cur;
    }
    return grep { /\AHTTP\/1\.1 \d{3}/ } @fenced;
}

my @blocks = fenced_responses("$REPO/README.md");
cmp_ok(scalar @blocks, '>=', 4, 'README: example responses found');
my @docs = map { [ "docs/$_", fenced_responses("$REPO/docs/$_") ] }
           map { File::Basename::basename($_) } glob("$REPO/docs/*.md");
cmp_ok(scalar(map { @$_[1 .. $#$_] } @docs), '>=', 3,
       'docs/: example responses found');
for my $d ([ 'README', @blocks ], @docs) {
    my ($where, @b) = @$d;
    for my $b (@b) {
        my ($head, $body) = split /\n\n/, $b, 2;
        my ($status) = $head =~ /\A(HTTP\S+ \d+)/;
        my ($code) = $head =~ /^X-MQTTAPI-Error-Code: (\S+)/m;
        my ($cl) = $head =~ /^Content-Length: (\d+)/m;
        chomp(my $bytes = $body // '');
        utf8::encode($bytes) if utf8::is_utf8($bytes);
        is($cl, length $bytes,
           "$where: $status " . ($code // '') . ": Content-Length is the body's");
    }
}

# the demo examples, as they were answered here (the README's "# ..."
# remarks out, the Date and the request ids blanked)
sub normalized {
    my ($text) = @_;
    $text =~ s/\r//g;
    $text =~ s/[ \t]+#[^\n]*$//mg;
    $text =~ s/^Date: .*$/Date: -/mg;
    $text =~ s/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/RID/g;
    $text =~ s/("Token":"[^"]*?)[0-9a-f]{32}"/$1ID"/g;
    $text =~ s/\n+\z//;
    return $text;
}

for my $n (1, 2, 4) {
    my $want = normalized($r{$n}{raw});
    my $code = $r{$n}{h}{'x-mqttapi-error-code'};
    my ($doc) = grep { /\AHTTP\/1\.1 $r{$n}{status} /
                       && (defined $code ? /^X-MQTTAPI-Error-Code: \Q$code\E\b/m
                                         : !/^X-MQTTAPI-/m)
                       && /^Server: nginx$/m } @blocks;
    ok(defined $doc, "README: the response of example $n is shown") or next;
    is(normalized($doc), $want, "README: example $n is what the demo answers");
}

# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------

# (the error log's filter is a child of the nginx run.sh exec-ed too)
my @workers = map { $_->[0] } grep { $_->[1] =~ /^nginx: worker process/ }
              MqttapiTest::_children($pid);
ok(@workers, 'the demo nginx has workers');
kill 'INT', $pid;
my $gone = 0;
my $deadline = Time::HiRes::time() + $DEADLINE;
while (Time::HiRes::time() < $deadline) {
    if (waitpid($pid, POSIX::WNOHANG()) == $pid) { $gone = 1; last }
    Time::HiRes::sleep(0.02);
}
ok($gone, 'SIGINT stops the demo');
is($? >> 8, 0, 'the demo exits with status 0') if $gone;
ok(!grep({ MqttapiTest::_alive($_) } @workers), 'its workers are gone');
ok(!MqttapiTest::_port_listening($PORT) && !MqttapiTest::_port_listening($EMU),
   'nothing listens on the demo ports any more');
# the error log passes through a filter, which ends after nginx: wait for
# its last line
wait_until(sub { slurp($err) =~ /\b$pid#\d+: exit\n\z/ });
like(slurp($err), qr/\b$pid#\d+: exit\n\z/, 'the error log ends with the master exiting');
unlike(slurp($err), qr/closed keepalive connection/,
       'error log: no line for the keep-alive connections curl closed');
unlike(slurp($err), qr/\[(alert|crit|emerg)\]|could not build optimal/,
       'error log: no alert, crit, emerg, no hash warning');
$pid = 0 if $gone;

done_testing();
