#!/usr/bin/perl
# The status page in a real browser: Debian's chromium, headless, driven
# over the DevTools protocol (t/lib/MqttapiChrome.pm), against a gateway
# with traffic:
#
#   * the page loads and runs with no console error, no exception, no CSP
#     violation, and requests nothing but its own location (the page, then
#     its JSON);
#   * after annotated errors and a back-off opened while it is shown, it
#     shows the same counts as the JSON, and the back-off with its masked
#     key, within a refresh (polled with a generous deadline: the machine
#     may be busy); the whole key is nowhere in its DOM;
#   * numbers formatted (1,250 errors: "1.3k", their rate "1.2k/s");
#   * local answers, quotas, the node's facts as in the JSON; the plot and
#     its legend in words; state in words; every table in a region the
#     keyboard reaches; nothing wider than a 360 px screen; larger type on
#     a wall screen;
#   * the gateway stopped: it says "reconnecting"; started again: it
#     resumes by itself;
#   * screenshots under build/ (not committed).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path ();
use Time::HiRes qw(sleep);
use MqttapiTest;
use MqttapiStatus;

binmode(Test::More->builder->$_, ":encoding(UTF-8)")
    for qw(output failure_output todo_output);
use MqttapiChrome;

my $DEADLINE = 60;       # seconds, for anything the page has to show
my $SHOTS = repo_dir() . '/build';
File::Path::make_path($SHOTS);

ok(MqttapiChrome::available(), "chromium is installed ($MqttapiChrome::CHROMIUM)")
    or BAIL_OUT('no chromium (Debian package chromium, a test dependency)');

my $ng = start_nginx(http => status_page_http(), workers => 2);
my $port = $ng->port(0);
my $base = "http://127.0.0.1:$port";

# some traffic before the page is opened
get($port, '/?Action=QueryToken&mqttemu_code=InstanceNotFound') for 1 .. 4;
get($port, '/?Action=ListGroupId&mqttemu_code=InvalidParameter.GroupId');
get($port, "/?Action=QueryToken&AccessKeyId=qk&InstanceId=mqtt-cn-a&Token=t")
    for 1 .. 3;

my $c = MqttapiChrome->new;
ok($c, 'chromium started') or BAIL_OUT("chromium: $@");

ok(eval { $c->load("$base/mqttapi/status?format=html&refresh=1"); 1 },
   'the page loads') or diag $@;

sub page { $c->js($_[0]) }

ok(poll_until($DEADLINE, sub { page('document.body.dataset.state') eq 'live' }),
   'it says "live" once it has the JSON');
is(page('document.getElementById("state").textContent'), 'live',
   'the state in words');
is(page('document.getElementById("refresh").textContent'), 'every 1 s',
   '?refresh=1: every second');
ok(page('document.getElementById("sync").hidden'),
   'no mqttapi_sync: no fleet section (t/122_status_page_sync.t has one)');

# ---------------------------------------------------------------------------
# Traffic while it is shown: annotated errors, a back-off
# ---------------------------------------------------------------------------

my $KEY = 'LTAI5tQmB7wholeSECRETkey';
for (1 .. 7) {
    my $r = get($port, '/?Action=QueryToken&mqttemu_code=InstanceNotFound');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'InstanceNotFound', 'annotated error')
        if $_ == 1;
}
my $r = get($port, "/batch/?Action=ApplyToken&AccessKeyId=$KEY"
                   . '&mqttemu_code=ApplyTokenOverFlow');
is(h($r, 'X-MQTTAPI-Error-Code'), 'ApplyTokenOverFlow', 'a back-off opened');
my $answered = grep {
    local_answer(get($port, "/batch/?Action=ApplyToken&AccessKeyId=$KEY"))
} 1 .. 4;
is($answered, 4, 'four local answers');

my $d = status_json($port);
my ($bz) = grep { $_->{zone} eq 'batch' } @{ $d->{backoffs} };
my $masked = $bz->{keys}[0]{key};
like($masked, qr/^LTAI\x{2026}[0-9a-f]{6}$/, "the JSON's masked key: $masked");

# what the page shows, as plain data
my $SHOWN = <<'JS';
(function () {
  function cells(tr) {
    return Array.prototype.map.call(tr.cells, function (td) {
      return td.textContent;
    });
  }
  function table(sel) {
    return Array.prototype.map.call(document.querySelectorAll(sel + " tbody tr"),
                                    function (tr) {
      return { data: Object.assign({}, tr.dataset), cells: cells(tr) };
    });
  }
  return {
    errors: table("#errors"),
    local: table("#local"),
    quotas: table("#quotas"),
    backoffs: table("#backoffs table[data-zone='batch']"),
    version: document.getElementById("version").textContent,
    nginx: document.getElementById("nginx").textContent,
    workers: document.getElementById("workers").textContent,
    uptime: document.getElementById("uptime").textContent
  };
})()
JS

# the errors by code as the JSON has them (summed over actions)
sub json_errors {
    my ($d) = @_;
    my %e;
    for my $row (@{ $d->{responses_total} }) {
        $e{"$row->{code} $row->{category} $row->{source}"} += $row->{value};
    }
    return \%e;
}

sub page_errors {
    my ($s) = @_;
    return { map { ("$_->{cells}[0] $_->{cells}[1] $_->{cells}[2]"
                    => $_->{cells}[3]) }
             grep { defined $_->{data}{code} } @{ $s->{errors} } };
}

sub flat {
    my ($h) = @_;
    return join ';', map { "$_=$h->{$_}" } sort keys %$h;
}

my ($shown, $json);
ok(poll_until($DEADLINE, sub {
    $json = status_json($port);
    $shown = page($SHOWN);
    my ($row) = grep { ($_->{data}{key} // '') eq $masked } @{ $shown->{backoffs} };
    return $row && $row->{cells}[3] eq '4'
           && flat(page_errors($shown)) eq flat(json_errors($json));
}), 'within a refresh: the same errors as the JSON, and the back-off')
    or diag explain { page => page_errors($shown), json => json_errors($json),
                      backoffs => $shown->{backoffs} };

is_deeply(page_errors($shown), json_errors($json),
          'errors by code, category and source: the counts of the JSON');
is(page_errors($shown)->{'InstanceNotFound token upstream'}, 11,
   'InstanceNotFound: 11 (4 before the page, 7 while shown)');

my ($bo) = grep { ($_->{data}{key} // '') eq $masked } @{ $shown->{backoffs} };
is_deeply($bo && $bo->{cells}[0], $masked, 'the back-off: its masked key');
is($bo && $bo->{cells}[1], 'ApplyTokenOverFlow', 'the back-off: its code');
like($bo && $bo->{cells}[2], qr/^\d+\.\d$/, 'the back-off: seconds left');
cmp_ok($bo && $bo->{cells}[2], '<=', 60, 'the back-off: at most 60 s left');
is($bo && $bo->{cells}[3], '4', 'the back-off: 4 local answers');
is($bo && $bo->{cells}[4], 'answering locally', 'the back-off: its state in words');

my %local = map { ("$_->{cells}[0] $_->{cells}[1]" => $_->{cells}[2]) }
            grep { defined $_->{data}{zone} } @{ $shown->{local} };
is($local{'batch backoff'},
   status_value($json, 'local_rejects_total', zone => 'batch', reason => 'backoff'),
   'local answers of zone batch: those of the JSON');

my %quota = map { ($_->{cells}[0] => $_) } grep { defined $_->{data}{action} }
            @{ $shown->{quotas} };
ok($quota{QueryToken}, 'the quota of QueryToken is shown');
is($quota{QueryToken} && $quota{QueryToken}{cells}[2], '300/s',
   "QueryToken: against the gateway's limit of the JSON")
    and is((grep { $_->{action} eq 'QueryToken' } @{ $json->{quotas} })[0]{limit},
           300, 'the JSON: 300');
like($quota{QueryToken} && $quota{QueryToken}{cells}[3], qr/% (ok|near limit|at limit)$/,
     'quota use in words');

my ($build) = @{ $json->{build_info} };
is($shown->{version}, $build->{version}, 'version');
is($shown->{nginx}, $build->{nginx}, 'nginx');
is($shown->{workers}, '2', 'workers');
like($shown->{uptime}, qr/^\d+(s|m \d\ds)$/, "uptime: $shown->{uptime}");

# the whole key is nowhere in the page
my $dom = page('document.documentElement.outerHTML');
unlike($dom, qr/\Q$KEY\E/, 'the whole key is nowhere in the DOM');
unlike($dom, qr/SECRET/, 'nor any part of it past the first 4 characters');
like($dom, qr/\Q$masked\E/, 'the masked key is');

# numbers formatted: 1,250 errors of one code show as "1.3k" (a total),
# their rate with "/s" (through /batch/: no gateway-wide quota there)
my $BIG = 1250;
my $big = 0;
for (1 .. $BIG) {
    my $r = get($port, '/batch/?Action=QueryToken&mqttemu_code=InternalError');
    $big++ if (h($r, 'X-MQTTAPI-Error-Code') // '') eq 'InternalError';
}
is($big, $BIG, "$BIG InternalError answers, annotated");
is(status_value(status_json($port), 'responses_total', code => 'InternalError'),
   $BIG, "the JSON: $BIG");
my $row;
ok(poll_until($DEADLINE, sub {
    ($row) = grep { ($_->{data}{code} // '') eq 'InternalError' }
             @{ page($SHOWN)->{errors} };
    return $row && $row->{cells}[3] eq '1.3k';
}), 'the page: 1.3k') or diag explain $row;
like($row && $row->{cells}[4], qr/^[\d.]+k?\/s$/, 'its rate: '
     . ($row ? $row->{cells}[4] : '-'));

# the plot: after a few refreshes, a line per series, named in the legend
ok(poll_until($DEADLINE, sub {
    page('document.querySelectorAll("#plot polyline").length') >= 2
}), 'the plot draws the rates (all errors, by category)');
like(page('document.getElementById("legend").textContent'),
     qr/all errors: [\d.]+k?\/s, peak/, 'the legend says which line is which, in words');
ok(page('document.getElementById("plot").getAttribute("role") === "img" '
        . '&& document.getElementById("plot-desc").textContent.length > 20'),
   'the plot has a text alternative');

# keyboard: every table is in a focusable region
is(page('Array.prototype.filter.call(document.querySelectorAll("table"), '
        . 'function (t) { var s = t.closest(".scroll"); '
        . 'return !s || s.tabIndex !== 0; }).length'), 0,
   'every table is in a region the keyboard reaches (tabindex 0)');
ok(page('document.querySelectorAll(".scroll[tabindex=\'0\']").length >= 4'),
   'at least four such regions');

# ---------------------------------------------------------------------------
# Nothing but its own location; no console error
# ---------------------------------------------------------------------------

$c->pump(2);
my @requests = $c->requests;
ok(scalar(grep { $_ eq "$base/mqttapi/status?format=json" } @requests) >= 2,
   'it polled its JSON (' . scalar(@requests) . ' requests)');
is_deeply([grep { $_ ne "$base/mqttapi/status?format=html&refresh=1"
                  && $_ ne "$base/mqttapi/status?format=json" } @requests],
          [], 'it requested nothing but its own location');
is_deeply([$c->problems], [], 'no console error, exception or CSP violation');
{
    # the test's own requests, the gateway's to the emulator, the page's
    my @other = grep { !m{^/mqttapi/status(\?format=(html&refresh=1|json))?$}
                       && !m{^/(batch/)?\?Action=} }
                map { m{"[A-Z]+ (\S+) HTTP/[\d.]+"} ? $1 : $_ }
                split /\n/, $ng->access_log;
    is_deeply(\@other, [], 'the access log agrees: no other request '
              . '(no favicon either)');
}

# ---------------------------------------------------------------------------
# Screen sizes; screenshots
# ---------------------------------------------------------------------------

$c->viewport(1280, 1000);
$c->pump(1.5);
ok($c->screenshot("$SHOTS/status_page.png", full => 1),
   "screenshot: $SHOTS/status_page.png");

$c->viewport(360, 740);
ok(poll_until($DEADLINE, sub {
    page('document.documentElement.clientWidth') == 360
}), 'a phone: 360 px');
$c->pump(1.5);
cmp_ok(page('document.documentElement.scrollWidth'), '<=', 360,
       '360 px: nothing wider than the screen (tables scroll in their region)');
cmp_ok(page('parseFloat(getComputedStyle(document.body).fontSize)'), '>=', 14,
       '360 px: type of 14 px at least');
ok($c->screenshot("$SHOTS/status_page_360.png", full => 1),
   "screenshot: $SHOTS/status_page_360.png");

$c->viewport(3840, 2160);
$c->pump(1.5);
cmp_ok(page('parseFloat(getComputedStyle(document.body).fontSize)'), '>=', 24,
       'a wall screen (3840 px): type of 24 px at least');
cmp_ok(page('document.documentElement.scrollWidth'), '<=', 3840,
       'a wall screen: nothing wider');

# ---------------------------------------------------------------------------
# The gateway away, and back
# ---------------------------------------------------------------------------

my $uptime_before = status_json($port)->{uptime};
$ng->stop;
ok(poll_until($DEADLINE, sub {
    page('document.body.dataset.state') eq 'reconnecting'
}), 'the gateway stopped: the page notices');
like(page('document.getElementById("state").textContent'), qr/^reconnecting/,
     'it says "reconnecting"');

my ($rc, $out) = MqttapiTest::_run_cmd($MqttapiTest::NGINX, '-p', $ng->prefix,
                                       '-e', $ng->error_log_file,
                                       '-c', 'conf/nginx.conf');
is($rc, 0, 'the gateway started again on the same port') or diag $out;
$ng->_wait_started(30);
ok(poll_until($DEADLINE, sub { page('document.body.dataset.state') eq 'live' }),
   'the page resumes by itself');
ok(poll_until($DEADLINE, sub {
    my $s = page($SHOWN);
    return !grep { defined $_->{data}{code} } @{ $s->{errors} };
}), 'and shows the restarted gateway (its counters start afresh)');
cmp_ok(status_json($port)->{uptime}, '<=', $uptime_before + $DEADLINE,
       'the uptime restarted');

$c->quit;
done_testing();
