#!/usr/bin/perl
# mqttapi_sync sentinel=... master=NAME, on loopback: one master, one
# replica and three redis-sentinels (Debian's redis-sentinel) of the
# test's own, two gateway nodes.
#
#   * nginx -t: sentinel= needs master= and excludes redis=;
#   * the nodes ask the sentinels where the master is and connect to it; a
#     throttle on node A reaches node B; a sentinel that is not there is
#     passed over; a master no sentinel knows is one error line;
#   * the master is stopped (kill -STOP): the sentinels fail over to the
#     replica; requests never wait on it meanwhile (each answered well
#     within the sync timeout); the nodes move to the new master, which
#     then holds the fleet's keys (the back-off from before, pushed again,
#     and the heartbeat set), and a throttle on A reaches B again;
#   * a master that answers READONLY (made by hand a replica of a master
#     that is not there) sends the nodes back to the sentinels.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;
use MqttapiSentinel;
use MqttapiStatus;
use MqttapiFleet;

# --- nginx -t ------------------------------------------------------------------

{
    my $rest = 'mqttapi_throttle_zone $arg_AccessKeyId zone=f:1m sync;'
             . ' server { listen 127.0.0.1:%%PORT0%%; location / {'
             . ' mqttapi on; mqttapi_throttle zone=f; return 204; } }';
    for my $c (
        [ 'sentinel= without master=',
          'mqttapi_sync sentinel=127.0.0.1:26379;',
          qr/"sentinel" and "master" go together in "mqttapi_sync"/ ],
        [ 'master= without sentinel=',
          'mqttapi_sync redis=127.0.0.1:6379 master=m;',
          qr/"sentinel" and "master" go together in "mqttapi_sync"/ ],
        [ 'redis= and sentinel=',
          'mqttapi_sync redis=127.0.0.1:6379 sentinel=127.0.0.1:26379 master=m;',
          qr/must have either "redis" or "sentinel" parameter/ ],
        [ 'a bad sentinel address',
          'mqttapi_sync sentinel=127.0.0.1:1,127.0.0.1:x master=m;',
          qr/invalid address "sentinel=127\.0\.0\.1:1,127\.0\.0\.1:x"/ ],
        [ 'an empty master=',
          'mqttapi_sync sentinel=127.0.0.1:26379 master=;',
          qr/invalid parameter "master="/ ],
    ) {
        my ($name, $sync, $re) = @$c;
        my ($rc, $out) = nginx_test_config("$sync $rest");
        isnt($rc, 0, "nginx -t fails: $name");
        like($out, $re, "nginx -t: $name: message") or diag $out;
    }
    my ($rc, $out) = nginx_test_config(
        'mqttapi_sync sentinel=127.0.0.1:26379,localhost:26380,127.0.0.1'
        . ' master=mymaster sentinel_password=x password=y; ' . $rest);
    is($rc, 0, 'nginx -t: sentinel=, master=, sentinel_password=')
        or diag $out;
}

# --- one master, one replica, three sentinels --------------------------------------

my $master = MqttapiRedis->start;
my $replica = MqttapiRedis->start(
    args => ['--replicaof', '127.0.0.1', $master->port]);
my ($mport, $rport) = ($master->port, $replica->port);

ok(poll_until(15, sub { $replica->cmd('INFO', 'replication')
                        =~ /master_link_status:up/ }),
   'the replica follows the master') or BAIL_OUT('no replication');

my @sentinels = map { MqttapiSentinel->start(args => [$mport]) } 1 .. 3;
ok(poll_until(30, sub {
       !grep {
           my $s = $_;
           my $r = eval { $s->cmd('SENTINEL', 'replicas', 'mymaster') };
           my $o = eval { $s->cmd('SENTINEL', 'sentinels', 'mymaster') };
           !(ref $r eq 'ARRAY' && @$r == 1 && ref $o eq 'ARRAY' && @$o == 2)
       } @sentinels }),
   'each sentinel knows the replica and the two other sentinels')
    or BAIL_OUT('the sentinels did not meet');

my $list = join ',', map { '127.0.0.1:' . $_->port } @sentinels;
my $sync = "sentinel=$list master=mymaster interval=100ms timeout=2s";
my @nodes = map { fleet_node($sync) } 1 .. 2;
my ($A, $B) = @nodes;

for my $n (0, 1) {
    ok(poll_until(10, sub { $nodes[$n]->error_log
                            =~ /sync: sentinel 127\.0\.0\.1:\d+: master "mymaster" is at 127\.0\.0\.1:$mport/ }),
       "node $n: a sentinel names the master");
    ok(poll_until(10, sub { $nodes[$n]->error_log
                            =~ /sync: connected to 127\.0\.0\.1:$mport /m }),
       "node $n connects to the master") or diag $nodes[$n]->error_log;
}

is(throttle($A, 'AK-before')->{status}, 400, 'A relays a throttle');
ok(poll_until(5, sub { answers_locally($B, 'AK-before') }),
   'before the failover: B answers the key locally');
ok(poll_until(5, sub { defined $master->cmd('HGET', 'mqttapi:{fleet}:b',
                                            'b:AK-before') }),
   'the master holds the back-off');

# --- the sentinels asked in turn ------------------------------------------------------

{
    my $dead = dead_port();
    my $C = fleet_node("sentinel=127.0.0.1:$dead,$list master=mymaster "
                       . "interval=100ms timeout=2s");
    ok(poll_until(10, sub { $C->error_log
                            =~ /sync: connected to 127\.0\.0\.1:$mport /m }),
       'a sentinel that is not there: the next one is asked')
        or diag $C->error_log;
    $C->stop;

    my $D = fleet_node("sentinel=$list master=nosuch interval=100ms "
                       . "timeout=2s");
    ok(poll_until(10, sub { $D->error_log
                            =~ /sync: no sentinel gave the address of master "nosuch" \(the last: sentinel 127\.0\.0\.1:\d+: does not know master "nosuch"\)/ }),
       'a master no sentinel knows: one line') or diag $D->error_log;
    is(sync_up($D), 0, 'a master no sentinel knows: sync_up 0');
    is(get($D->port(0), '/f/?AccessKeyId=AK-d')->{status}, 200,
       'a master no sentinel knows: requests as without sync');
    $D->stop;
}

# --- failover ------------------------------------------------------------------------

my @marks = map { $_->error_log_mark } @nodes;
$master->freeze;
my $t0 = time;

my ($worst, $n, @bad) = (0, 0);
my $moved = 0;
while (time < $t0 + 60) {
    for my $node (@nodes) {
        my $r = timed_get($node, "/f/?AccessKeyId=AK-x" . ($n++ % 7));
        $worst = $r->[1] if $r->[1] > $worst;
        push @bad, $r->[0] unless $r->[0] == 200;
    }
    $moved = !grep { $nodes[$_]->error_log($marks[$_])
                     !~ /sync: connected to 127\.0\.0\.1:$rport / } 0, 1;
    last if $moved;
    sleep 0.05;
}
my $took = time - $t0;
diag sprintf('failover: the nodes on the new master after %.1f s, %d '
             . 'requests, the slowest %.3f s', $took, $n, $worst);

ok($moved, 'both nodes moved to the new master (the old replica)')
    or diag map { $_->error_log } @nodes;
is($sentinels[0]->master_port, $rport, 'the sentinels name the new master');
is(scalar(@bad), 0, 'every request during the failover answered 200');
ok($worst < 1, sprintf('no request waited on the frozen master (the '
                       . 'slowest %.3f s; the sync timeout is 2 s)', $worst));

ok(poll_until(10, sub { defined $replica->cmd('HGET', 'mqttapi:{fleet}:b',
                                              'b:AK-before') }),
   'the new master holds the back-off from before the failover');
ok(poll_until(10, sub { ($replica->cmd('ZCARD', 'mqttapi:nodes') // 0) == 2 }),
   'the new master holds the two nodes\' heartbeats');
ok(answers_locally($B, 'AK-before'), 'B still answers the key locally');

is(throttle($A, 'AK-after')->{status}, 400, 'A relays another throttle');
ok(poll_until(5, sub { answers_locally($B, 'AK-after') }),
   'after the failover: B answers that key locally');
is(sync_up($_), 1, 'sync_up 1') for @nodes;

# --- READONLY sends the nodes back to the sentinels -------------------------------------

# a replica of a master that is not there: read-only at once, with no
# sync from another master (its LOADING would come first)
$master->thaw;
my $mark = $A->error_log_mark;
$replica->cmd('REPLICAOF', '127.0.0.1', dead_port());
ok(poll_until(15, sub { $A->error_log($mark)
                        =~ /"READONLY[^"]*"; it is no longer the master, asking the sentinels/ }),
   'READONLY: a clear line') or diag $A->error_log($mark);
ok(poll_until(15, sub { $A->error_log($mark)
                        =~ /READONLY.*\n(?:.*\n)*.*sync: sentinel 127\.0\.0\.1:\d+: master "mymaster" is at/ }),
   'READONLY: the node asks the sentinels again') or diag $A->error_log($mark);

done_testing();
