#!/usr/bin/perl
# mqttapi_sync on Redis Cluster (what a cluster proxy, Alibaba Cloud's
# proxy mode among them, requires of a script): every key a script touches
# is passed in KEYS, and all the keys of one call share one hash tag.
# On loopback:
#
#   * one `redis-server --cluster-enabled yes` that holds every slot
#     (CLUSTER ADDSLOTSRANGE 0 16383): two nodes share a back-off that
#     opens, is probed and closes, reconcile, beat and join the shares;
#     Redis refuses nothing, and MONITOR shows every EVALSHA declaring its
#     keys, of one hash slot, and no command of a script on a key it did
#     not declare;
#   * a second cluster node that serves no slot answers MOVED: the node
#     says "Redis Cluster needs a proxy" in one line, stays in fail=, and
#     its requests are answered as without sync.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);
use File::Temp ();
use MqttapiTest;
use MqttapiRedis;
use MqttapiStatus;
use MqttapiFleet;

sub cluster_redis {
    my $dir = File::Temp::tempdir('mqttapi-cluster-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    # the bus port of its own: port + 10000 is past 65535 for a free
    # port above 55535, which redis-server then refuses
    my $bus = MqttapiTest::free_port();
    my $redis = MqttapiRedis->start(args => [
        '--cluster-enabled', 'yes',
        '--cluster-config-file', "$dir/nodes.conf",
        '--cluster-port', $bus,
        '--cluster-node-timeout', '5000']);
    $redis->{bus} = $bus;
    return $redis;
}

my $redis = cluster_redis();
is($redis->cmd('CLUSTER', 'ADDSLOTSRANGE', 0, 16383), 'OK',
   'the cluster node holds every slot');
ok(poll_until(10, sub { $redis->cmd('CLUSTER', 'INFO')
                        =~ /cluster_state:ok/ }), 'cluster_state:ok')
    or BAIL_OUT('the cluster is not up');

# MONITOR, to a file, from a child of the test's own
my $monfile = File::Temp->new;
my $mon = fork // die "fork: $!";
if ($mon == 0) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $redis->port) or POSIX::_exit(1);
    open my $out, '>', $monfile->filename or POSIX::_exit(1);
    $out->autoflush(1);
    print $s "MONITOR\r\n";
    print $out $_ while <$s>;
    POSIX::_exit(0);
}
END { local $?; if ($mon) { kill 'KILL', $mon; waitpid $mon, 0 } }
poll_until(5, sub { -s $monfile->filename });

my $sync = "redis=127.0.0.1:" . $redis->port . " interval=100ms timeout=1s";
my @nodes = map { fleet_node($sync, backoff => '1s') } 1 .. 2;
my ($A, $B) = @nodes;

for my $n (0, 1) {
    ok(poll_until(10, sub { $nodes[$n]->error_log =~ /sync: connected to/ }),
       "node $n connects to the cluster node");
}

# open on A, heard by B; the back-off's probe (1 s) closes it: open,
# close, pull (every 2 s), beat and share (every second) all run
my $k = 'AK-cluster';
is(throttle($A, $k)->{status}, 400, 'A relays the upstream\'s throttle');
ok(poll_until(5, sub { answers_locally($B, $k) }),
   'B answers the key locally: the back-off went through the cluster');
ok(poll_until(10, sub {
       get($B->port(0), "/f/?AccessKeyId=$k")->{status} == 200 }),
   'the probe closed it: B lets the key through again');
sleep 3;

for my $n (0, 1) {
    my $d = status_json($nodes[$n]->port(0));
    is(status_value($d, 'sync_up'), 1, "node $n: sync_up 1");
    is(status_value($d, 'sync_errors_total'), 0, "node $n: no error");
    unlike($nodes[$n]->error_log, qr/CROSSSLOT|Cluster|MOVED/,
           "node $n: no cluster error");
}

# --- what MONITOR saw --------------------------------------------------------

sub unquote { my $s = shift; $s =~ s/\\(.)/$1/g; $s }

my (%sha, $evals, @bad, %declared, $in_script, $lua);
my %nokey = map { $_ => 1 } qw(TIME PUBLISH);
open my $fh, '<', $monfile->filename or die;
while (my $line = <$fh>) {
    my ($who, $args) = $line =~ /^\+?\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/ or next;
    my @a = map { unquote($_) } $args =~ /"((?:[^"\\]|\\.)*)"/g;
    my $cmd = uc($a[0] // '');
    if ($who eq 'lua') {
        next if !$in_script || $nokey{$cmd};
        $lua++;
        push @bad, "$cmd $a[1] (declared: @{[sort keys %declared]})"
            unless $declared{$a[1]};
        next;
    }
    $in_script = 0;
    next unless $cmd eq 'EVALSHA';
    $evals++;
    my ($n, @rest) = @a[2 .. $#a];
    $sha{$a[1]}++;
    %declared = map { $_ => 1 } @rest[0 .. $n - 1];
    my %tags = map { (/\{([^}]*)\}/ ? $1 : $_) => 1 } keys %declared;
    push @bad, "EVALSHA $a[1] declares no key" if $n < 1;
    push @bad, "EVALSHA $a[1] keys of several tags: @{[keys %declared]}"
        if keys %tags > 1;
    $in_script = 1;
}
close $fh;
diag "monitor: " . (-s $monfile->filename) . " bytes" unless $evals;

ok($evals > 10, "MONITOR saw EVALSHA ($evals)");
ok($lua > 10, "MONITOR saw the scripts' commands ($lua)");
is(scalar(keys %sha), 5,
   'five scripts ran: open, close, pull, beat, share');
is(scalar(@bad), 0, 'every EVALSHA declares its keys, of one tag, and '
                    . 'touches no other') or diag join("\n", @bad[0 .. 9]);

# --- a cluster node that serves no slot answers MOVED ---------------------------

my $other = cluster_redis();
$other->cmd('CLUSTER', 'MEET', '127.0.0.1', $redis->port, $redis->{bus});
ok(poll_until(15, sub {
       (eval { $other->cmd('CLUSTER', 'INFO') } // '')
           =~ /cluster_state:ok/ }),
   'a second node joined the cluster, serving no slot');

my $C = fleet_node("redis=127.0.0.1:" . $other->port
                   . " interval=100ms timeout=1s fail=local");
ok(poll_until(10, sub {
       $C->error_log =~ /sync: Redis Cluster needs a proxy: 127\.0\.0\.1:\d+ answered "MOVED \d+ 127\.0\.0\.1:\d+"/ }),
   'MOVED: "Redis Cluster needs a proxy" in one line') or diag $C->error_log;
sleep 1;
is(sync_up($C), 0, 'MOVED: sync_up 0');
is(get($C->port(0), '/f/?AccessKeyId=AK-moved')->{status}, 200,
   'MOVED: requests as without sync');
is(throttle($C, 'AK-moved')->{status}, 400, 'a throttle on C');
ok(answers_locally($C, 'AK-moved'), 'C backs off on its own (fail=local)');

done_testing();
