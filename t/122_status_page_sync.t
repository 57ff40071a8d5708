#!/usr/bin/perl
# The status page of a node with mqttapi_sync, in headless Chromium (the
# location opened as a browser asks for it, refreshed by default): the
# fleet section shows whether Redis is connected (in words), the nodes,
# the roundtrip and the errors by operation, as the JSON has them; when
# Redis goes away it says "disconnected", and "connected" again when it
# is back; a Redis that refuses writes is "disconnected: Redis refuses
# writes".  A node without mqttapi_sync shows no fleet section
# (t/121_status_page_browser.t: its #sync section stays hidden).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MqttapiTest;
use MqttapiStatus;
use MqttapiRedis;
use MqttapiChrome;

my $DEADLINE = 60;

ok(MqttapiChrome::available(), 'chromium is installed')
    or BAIL_OUT('no chromium (Debian package chromium, a test dependency)');

my $redis = MqttapiRedis->start;
my $rport = $redis->port;

my $node = start_nginx(workers => 1, http => emulator_http() . <<"EOF");
    mqttapi_sync redis=127.0.0.1:$rport interval=100ms timeout=300ms;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=api:1m sync;

    server {
        listen 127.0.0.1:%%PORT0%%;

        location = /mqttapi/status {
            mqttapi_status;
        }

        location / {
            mqttapi on;
            mqttapi_throttle zone=api;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }
EOF
my $port = $node->port(0);

ok(poll_until($DEADLINE, sub {
    status_value(status_json($port), 'sync_up') == 1
}), 'the node is connected to Redis');

my $c = MqttapiChrome->new;
ok($c, 'chromium started') or BAIL_OUT("chromium: $@");
# the location itself, as a browser asks for it (its own Accept), and the
# default refresh
ok(eval { $c->load("http://127.0.0.1:$port/mqttapi/status"); 1 },
   'the page loads') or diag $@;
is($c->js('document.contentType'), 'text/html',
   "the browser's own request gets the page");
ok(poll_until($DEADLINE, sub {
    $c->js('document.getElementById("refresh").textContent') eq 'every 2 s'
}), 'by default every 2 s');

sub text { $c->js("document.getElementById('$_[0]').textContent") }

ok(poll_until($DEADLINE, sub {
    $c->js('!document.getElementById("sync").hidden')
}), 'with mqttapi_sync: the fleet section is shown');
ok(poll_until($DEADLINE, sub { text('sync-up') eq 'connected' }),
   'Redis: "connected"');
ok(poll_until($DEADLINE, sub {
    text('sync-nodes') eq status_value(status_json($port), 'sync_nodes')
}), 'nodes: as the JSON (' . text('sync-nodes') . ')');
is(text('sync-nodes'), '1', 'one node');
ok(poll_until($DEADLINE, sub { text('sync-rtt') =~ /^[\d.]+k? ms/ }),
   'roundtrip in ms: ' . text('sync-rtt'));

# the errors by operation: "op=count" as the page shows them, and as the
# JSON has them
sub shown_ops {
    return [sort @{ $c->js('Array.prototype.map.call(document.querySelectorAll('
                           . '"#sync-errors tbody tr[data-op]"), function (tr) '
                           . '{ return tr.dataset.op + "=" '
                           . '+ tr.cells[1].textContent; })') }];
}

sub json_ops {
    return [sort map { "$_->{op}=$_->{value}" }
                 @{ status_json($port)->{sync_errors_total} || [] }];
}

is_deeply(shown_ops(), json_ops(), 'errors by operation: those of the JSON');

# Redis away: the page says so in words
$redis->stop;
ok(poll_until($DEADLINE, sub { text('sync-up') eq 'disconnected' }),
   'Redis stopped: "disconnected"');
is($c->js('document.getElementById("sync-up").className'), 'word bad',
   'and marked as bad (besides the word)');

# back: the errors counted meanwhile stop growing, and the page has them
$redis->restart;
ok(poll_until($DEADLINE, sub { text('sync-up') eq 'connected' }),
   'Redis back: "connected" again');
my $errors = 0;
ok(poll_until($DEADLINE, sub {
    my $shown = shown_ops();
    $errors = 0;
    $errors += (split /=/)[1] for @$shown;
    return $errors > 0 && join(' ', @$shown) eq join(' ', @{ json_ops() });
}), "the errors counted while Redis was away ($errors), as in the JSON");

# Redis that answers but refuses writes (maxmemory under noeviction): the
# page says why the node is on its own
is($redis->cmd('CONFIG', 'SET', 'maxmemory', '1'), 'OK',
   'Redis refuses writes');
ok(poll_until($DEADLINE, sub {
    text('sync-up') eq 'disconnected: Redis refuses writes'
}), 'Redis refusing writes: "disconnected: Redis refuses writes"');
is($redis->cmd('CONFIG', 'SET', 'maxmemory', '0'), 'OK',
   'Redis accepts writes again');
ok(poll_until($DEADLINE, sub { text('sync-up') eq 'connected' }),
   'Redis accepting writes: "connected" again');

is_deeply([grep { !/^http:\/\/127\.0\.0\.1:$port\/mqttapi\/status(\?format=json)?$/ }
           $c->requests], [], 'nothing requested but its own location');
is_deeply([$c->problems], [], 'no console error');

$c->quit;
done_testing();
