#!/usr/bin/perl
# mqttapi_sync with an ACL user (user= beside password=: AUTH user
# password), against a redis-server of the test's own on loopback:
#
#   * nginx -t: user= needs password=, and is not empty;
#   * the README's ACL line (an ACL user with only the commands the module
#     needs, on its own keys and channel), run as it is written: two nodes
#     synced as that user share a back-off and lease quota tokens, and
#     Redis refuses them nothing (no NOPERM, no error counted);
#   * a wrong password: the node stays in fail= (mqttapi_sync_up 0) with
#     one clear error line in Redis's words, which never holds the
#     password, and its requests are answered as without sync.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MqttapiTest;
use MqttapiRedis;
use MqttapiStatus;
use MqttapiFleet;

# --- nginx -t ---------------------------------------------------------------

{
    my $rest = 'mqttapi_throttle_zone $arg_AccessKeyId zone=f:1m sync;'
             . ' server { listen 127.0.0.1:%%PORT0%%; location / {'
             . ' mqttapi on; mqttapi_throttle zone=f; return 204; } }';

    my ($rc, $out) = nginx_test_config(
        "mqttapi_sync redis=127.0.0.1:1 user=gw; $rest");
    isnt($rc, 0, 'nginx -t: user= without password= fails');
    like($out, qr/"user" needs "password" in "mqttapi_sync"/,
         'nginx -t: user= without password=: message') or diag $out;

    ($rc, $out) = nginx_test_config(
        "mqttapi_sync redis=127.0.0.1:1 user= password=x; $rest");
    isnt($rc, 0, 'nginx -t: an empty user= fails');
    like($out, qr/invalid parameter "user=" in "mqttapi_sync"/,
         'nginx -t: an empty user=: message') or diag $out;

    ($rc, $out) = nginx_test_config(
        "mqttapi_sync redis=127.0.0.1:1 user=gw password=x; $rest");
    is($rc, 0, 'nginx -t: user= and password=') or diag $out;
}

# --- the README's ACL line ----------------------------------------------------

my $readme = MqttapiTest::_slurp(repo_dir() . '/README.md');
my ($acl) = $readme =~ /^(ACL SETUSER mqttapi .*)$/m;
ok($acl, "README has the ACL line") or BAIL_OUT('no ACL line in README');

my $PASS = 'Gw-pass-7f3a';
my @acl = split ' ', $acl;
shift @acl;                                     # ACL
@acl = map { /^>/ ? ">$PASS" : $_ } @acl;

my $redis = MqttapiRedis->start;
is($redis->cmd('ACL', @acl), 'OK', 'the README\'s ACL line, as written')
    or BAIL_OUT('ACL SETUSER refused');

my $sync = "redis=127.0.0.1:" . $redis->port
         . " user=mqttapi password=$PASS interval=100ms timeout=1s";
my @nodes = map { fleet_node($sync) } 1 .. 2;
my ($A, $B) = @nodes;

for my $n (0, 1) {
    ok(poll_until(10, sub { $nodes[$n]->error_log =~ /sync: connected to/ }),
       "node $n connects as the ACL user");
}

my $k = 'AK-acl';
is(throttle($A, $k)->{status}, 400, 'A relays the upstream\'s throttle');
ok(poll_until(5, sub { answers_locally($B, $k) }),
   'B answers the key locally: the back-off went through Redis');

# quotas: every request of a key (RevokeToken, 5/s) goes through the lease
# and share scripts; then the heartbeat and reconciliation run a while
for my $i (1 .. 8) {
    get($_->port(0), "/q/?AccessKeyId=AK-acl-q&Action=RevokeToken")
        for @nodes;
}
sleep 2.5;

for my $n (0, 1) {
    my $d = status_json($nodes[$n]->port(0));
    is(status_value($d, 'sync_up'), 1, "node $n: sync_up 1");
    is(status_value($d, 'sync_errors_total'), 0,
       "node $n: no error with the ACL user");
    unlike($nodes[$n]->error_log, qr/NOPERM|no permissions/,
           "node $n: Redis refused it nothing");
}
is(scalar @{ $redis->cmd('ACL', 'LOG') }, 0, 'ACL LOG: nothing denied')
    or diag explain $redis->cmd('ACL', 'LOG');

# --- a wrong password -----------------------------------------------------------

my $WRONG = 'Not-the-pass-91c2';
my $C = fleet_node("redis=127.0.0.1:" . $redis->port
                   . " user=mqttapi password=$WRONG interval=100ms "
                   . "timeout=1s fail=local");

ok(poll_until(10, sub { $C->error_log =~ /refused the connection's setup/ }),
   'wrong password: an error line');
my ($line) = $C->error_log =~ /^(.*refused the connection's setup.*)$/m;
like($line, qr/WRONGPASS/, 'the line gives Redis\'s words') or diag $line;
unlike($C->error_log, qr/\Q$WRONG\E/, 'the password is never logged');
unlike($C->error_log, qr/\Q$PASS\E/, 'nor the right one');

sleep 2;
is(sync_up($C), 0, 'wrong password: mqttapi_sync_up 0');
ok(status_value(status_json($C->port(0)), 'sync_errors_total',
                op => 'connect') >= 1, 'wrong password: connect errors');
my @lines = $C->error_log =~ /(refused the connection's setup)/g;
ok(@lines <= 5, 'at most one line a second (' . scalar(@lines) . ')');
unlike($C->error_log, qr/sync: connected to/, 'never connected');

my $r = get($C->port(0), "/f/?AccessKeyId=AK-c");
is($r->{status}, 200, 'requests go on as without sync');
is(throttle($C, 'AK-c')->{status}, 400, 'a throttle on C');
ok(answers_locally($C, 'AK-c'), 'C backs off on its own (fail=local)');

done_testing();
