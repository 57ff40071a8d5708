#!/usr/bin/perl
# The status page (SPEC 7, "a page people look at") over HTTP, without a
# browser (t/121_status_page_browser.t drives Chromium):
#
#   * which requests get the page: ?format=html, an Accept that prefers
#     text/html (browsers'); not curl's, "*/*", Prometheus' or none;
#   * its headers: text/html, a Content-Security-Policy that allows only
#     the page's own inline style and script, by the SHA-256 of their text
#     as served (recomputed here), and requests to its own origin;
#     nosniff; no-store; HEAD;
#   * the document: one file under 100 KB, no external asset of any kind;
#   * the JSON members the page reads: uptime and workers, the back-offs
#     in effect (at most 20 a zone, those with the most time left, the key
#     masked: never whole), the quota use per action against its limits;
#   * the Prometheus output keeps its families, nothing of the page.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::MD5 qw(md5_hex);
use Digest::SHA qw(sha256_base64);
use Time::HiRes qw(sleep);
use MqttapiTest;
use MqttapiStatus;

binmode(Test::More->builder->$_, ":encoding(UTF-8)")
    for qw(output failure_output todo_output);

my $CHROME = 'text/html,application/xhtml+xml,application/xml;q=0.9,'
           . 'image/avif,image/webp,image/apng,*/*;q=0.8,'
           . 'application/signed-exchange;v=b3;q=0.7';
my $FIREFOX = 'text/html,application/xhtml+xml,application/xml;q=0.9,'
            . '*/*;q=0.8';
my $PROMETHEUS = 'application/openmetrics-text;version=1.0.0,'
               . 'application/openmetrics-text;version=0.0.1;q=0.75,'
               . 'text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

my $ng = start_nginx(http => status_page_http(), workers => 2);
my $port = $ng->port(0);

sub type_of {
    my ($path, @h) = @_;
    my $r = get($port, $path, @h);
    return "$r->{status} " . (h($r, 'Content-Type') // '-');
}

# ---------------------------------------------------------------------------
# Which requests get the page
# ---------------------------------------------------------------------------

my $HTML = '200 text/html; charset=utf-8';
my $JSON = '200 application/json';
my $PROM = '200 text/plain; version=0.0.4';

is(type_of('/mqttapi/status?format=html'), $HTML, '?format=html: the page');
is(type_of('/mqttapi/status', Accept => $CHROME), $HTML,
   "Chromium's Accept: the page");
is(type_of('/mqttapi/status', Accept => $FIREFOX), $HTML,
   "Firefox's Accept: the page");
is(type_of('/mqttapi/status', Accept => 'text/html'), $HTML,
   'Accept: text/html: the page');
is(type_of('/mqttapi/status?format=html', Accept => 'application/json'),
   $HTML, '?format=html wins over Accept');

is(type_of('/mqttapi/status'), $JSON, 'no Accept: JSON, as before');
is(type_of('/mqttapi/status', Accept => '*/*'), $JSON,
   "Accept: */* (curl's): JSON, as before");
is(type_of('/mqttapi/status', Accept => $PROMETHEUS), $PROM,
   "Prometheus' Accept: the text format, as before");
is(type_of('/mqttapi/status', Accept => 'text/html;q=0.5, application/json'),
   $JSON, 'text/html below application/json: JSON');
is(type_of('/mqttapi/status', Accept => 'text/html, text/plain'), $PROM,
   'text/html no higher than text/plain: the text format, as before');
is(type_of('/mqttapi/status?format=json', Accept => $CHROME), $JSON,
   '?format=json wins over a browser');
is(type_of('/mqttapi/status?format=prometheus', Accept => $CHROME), $PROM,
   '?format=prometheus wins over a browser');
is(type_of('/mqttapi/status?format=htm'), '400 text/html',
   '?format=htm: 400');

{
    # curl itself, if it is there (it is a test package)
    my $out = `curl -s -o /dev/null -w '%{content_type}' http://127.0.0.1:$port/mqttapi/status`;
    is($out, 'application/json', 'curl gets JSON');
}

# ---------------------------------------------------------------------------
# The page's headers and body
# ---------------------------------------------------------------------------

my $r = get($port, '/mqttapi/status', Accept => $CHROME);
my $body = $r->{body};

is(h($r, 'X-Content-Type-Options'), 'nosniff', 'nosniff');
is(h($r, 'Cache-Control'), 'no-store', 'Cache-Control: no-store');
is(h($r, 'Content-Length'), length $body, 'Content-Length');
cmp_ok(length $body, '<', 100 * 1024, 'under 100 KB (' . length($body) . ')');
like($body, qr/\A<!doctype html>/i, 'an HTML document');

my @scripts = $body =~ /<script\b([^>]*)>(.*?)<\/script>/gs;
my @styles = $body =~ /<style\b([^>]*)>(.*?)<\/style>/gs;
is(scalar @scripts, 2, 'one <script>');
is(scalar @styles, 2, 'one <style>');
is($scripts[0], '', 'the script is inline (no src)');

# no external asset: nothing to load but the JSON of its own location
unlike($body, qr/\b(?:src|srcset|action|background|poster)\s*=/i,
       'no src, srcset, action, poster attribute');
unlike($body, qr/<(?:link|img|iframe|object|embed|base|meta\s+http-equiv)\b/i,
       'no link, img, iframe, object, embed, base, refresh');
unlike($body, qr/\burl\(|\@import|\@font-face/i,
       'CSS: no url(), @import, @font-face');
my @urls = $body =~ m{((?:https?:)?//[\w.-]+)}g;
is_deeply([grep { $_ ne 'http://www.w3.org' } @urls], [],
          'no absolute URL but the SVG namespace');
like($body, qr/window\.location\.pathname \+ "\?format=json"/,
     'the script polls its own location');

my $csp = h($r, 'Content-Security-Policy') // '';
my %csp = map { my ($k, @v) = split ' '; ($k => "@v") } split /;\s*/, $csp;
is($csp{'default-src'}, "'none'", "CSP: default-src 'none'");
is($csp{'connect-src'}, "'self'", "CSP: connect-src 'self'");
is($csp{'script-src'}, "'sha256-" . sha256_base64($scripts[1]) . "='",
   'CSP: script-src is the hash of the script as served');
is($csp{'style-src'}, "'sha256-" . sha256_base64($styles[1]) . "='",
   'CSP: style-src is the hash of the style as served');
is($csp{'frame-ancestors'}, "'none'", "CSP: frame-ancestors 'none'");
unlike($csp, qr/unsafe|\*|https?:|data:/,
       'CSP: no unsafe-*, wildcard, scheme or host');

$r = http_request(port => $port, method => 'HEAD',
                  path => '/mqttapi/status?format=html');
is($r->{status}, 200, 'HEAD ?format=html: 200');
is($r->{body}, '', 'HEAD: no body');
is(h($r, 'Content-Type'), 'text/html; charset=utf-8', 'HEAD: the type');

# ---------------------------------------------------------------------------
# The JSON: uptime and workers
# ---------------------------------------------------------------------------

my $d = status_json($port);
like($d->{uptime}, qr/^\d+$/, 'uptime: whole seconds');
is($d->{workers}, 2, 'workers: 2');
my $up = $d->{uptime};
ok(poll_until(30, sub { (status_json($port)->{uptime} // 0) > $up }),
   'uptime grows');

# ---------------------------------------------------------------------------
# The back-offs in effect
# ---------------------------------------------------------------------------

sub open_backoff {
    my ($key, $prefix) = @_;
    my $r = get($port, ($prefix // '/') . "?Action=ApplyToken&AccessKeyId=$key"
                       . '&mqttemu_code=ApplyTokenOverFlow');
    return h($r, 'X-MQTTAPI-Error-Code') // '';
}

sub masked {
    my ($key) = @_;
    my $show = length $key >= 8 ? 4 : int(length($key) / 2);
    return substr($key, 0, $show) . "\x{2026}" . substr(md5_hex($key), 0, 6);
}

sub zone_backoffs {
    my ($d, $zone) = @_;
    my ($z) = grep { $_->{zone} eq $zone } @{ $d->{backoffs} || [] };
    return $z;
}

$d = status_json($port);
is_deeply([map { $_->{zone} } @{ $d->{backoffs} }], ['api', 'batch'],
          'backoffs: every throttle zone, in order');
is_deeply(zone_backoffs($d, 'api')->{keys}, [], 'backoffs: none yet');

# five keys first; then twenty with more time left: a back-off is 60 s
# less up to 10% of jitter, so those opened more than 6 s later have
# more time left, however long the requests take
my @first = map { sprintf 'LTAIfirst%02dSECRETsecret', $_ } 1 .. 5;
my @last = map { sprintf 'LTAIlater%02dSECRETsecret', $_ } 1 .. 20;
is(open_backoff($_), 'ApplyTokenOverFlow', "back-off opened: $_") for @first;
sleep 7;
is(open_backoff($_), 'ApplyTokenOverFlow', "back-off opened: $_") for @last;

# three local answers for the newest key
my $answered = 0;
for (1 .. 3) {
    $answered++ if local_answer(get($port, "/?Action=ApplyToken&AccessKeyId=$last[-1]"));
}
is($answered, 3, 'three local answers for the newest key');

# a short key (half shown) and one too long to keep (its digest only)
my $long = 'L' x 200;
is(open_backoff('k2', '/batch/'), 'ApplyTokenOverFlow', 'a short key');
is(open_backoff($long, '/batch/'), 'ApplyTokenOverFlow', 'a long key');

my $res = get($port, '/mqttapi/status');
$d = json_decode($res->{body});
my $bo = zone_backoffs($d, 'api');
is($bo->{in_effect}, 25, 'api: 25 in effect');
is(scalar @{ $bo->{keys} }, 20, 'api: 20 keys shown');
is_deeply([sort map { $_->{key} } @{ $bo->{keys} }],
          [sort map { masked($_) } @last],
          'api: the twenty with the most time left, masked (4 characters, '
          . '6 hex digits of MD5)');
my @left = map { $_->{seconds_left} } @{ $bo->{keys} };
is_deeply(\@left, [sort { $b <=> $a } @left], 'api: by time left, most first');
ok(!(grep { $_ <= 0 || $_ > 60 } @left),
   'api: seconds left within the back-off of 60 s');
my ($newest) = grep { $_->{key} eq masked($last[-1]) } @{ $bo->{keys} };
is($newest->{answered}, 3, 'the newest key: 3 local answers');
is($newest->{code}, 'ApplyTokenOverFlow', 'the newest key: its code');
is($newest->{origin}, 'local', 'the newest key: opened here');
is($newest->{state}, 'answering', 'the newest key: answering locally');

my $other = zone_backoffs($d, 'batch');
is($other->{in_effect}, 2, 'batch: 2 in effect');
is_deeply([sort map { $_->{key} } @{ $other->{keys} }],
          [sort(masked('k2'), "\x{2026}" . substr(md5_hex($long), 0, 6))],
          'batch: a short key shows half of it, a long one its digest only');

for my $key (@first, @last, 'k2', $long) {
    if (index($res->{body}, $key) >= 0) {
        fail("the whole key $key is in the JSON");
    }
}
unlike($res->{body}, qr/SECRET/, 'no key is whole in the JSON');

# ---------------------------------------------------------------------------
# Quotas: each action's use in the last second against its limits
# ---------------------------------------------------------------------------

my $catalog = builtin_catalog();
my $qt = $catalog->{actions}{QueryToken};
my $seen = poll_until(60, sub {
    get($port, '/?Action=QueryToken&AccessKeyId=qk&InstanceId=mqtt-cn-a'
               . '&Token=t') for 1 .. 4;
    my ($q) = grep { $_->{action} eq 'QueryToken' }
              @{ status_json($port)->{quotas} || [] };
    return ($q && $q->{used} >= 2) ? $q : 0;
});
ok($seen, 'quotas: QueryToken used in the last second');
is($seen && $seen->{limit}, $catalog->{quota}{api_ceiling},
   "quotas: against the gateway's limit per action "
   . "($catalog->{quota}{api_ceiling})");
is($seen && $seen->{key_limit}, $qt->{quota},
   "quotas: and the per-key quota of the action ($qt->{quota})");
ok(poll_until(30, sub {
    my ($q) = grep { $_->{action} eq 'QueryToken' }
              @{ status_json($port)->{quotas} || [] };
    return $q && $q->{used} == 0;
}), 'quotas: a second later, none used');

# ---------------------------------------------------------------------------
# Prometheus: the same families as before, nothing of the page
# ---------------------------------------------------------------------------

my $p = get($port, '/mqttapi/status?format=prometheus')->{body};
is_deeply([$p =~ /^# TYPE mqttapi_(\w+) /mg],
          [qw(responses_total passthrough_total local_rejects_total
              dry_run_total backoff_events_total upstream_throttles_total
              backoff_keys zone_bytes zone_keys zone_evictions_total
              build_info quota_delayed_total quota_delay_seconds)],
          'prometheus: the thirteen families of a node without mqttapi_sync');
unlike($p, qr/uptime|workers|backoffs|quotas|seconds_left|LTAI|\x{2026}|\xe2/,
       'prometheus: nothing of the page');
is_deeply([sort(status_metrics($d))],
          [sort($p =~ /^# TYPE mqttapi_(\w+) /mg)],
          'JSON: the same metrics, and the page members besides');

done_testing();
