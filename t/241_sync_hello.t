#!/usr/bin/perl
# mqttapi_sync checks the server once per connection (HELLO): the real
# redis-server is named with its version in the "connected" line; what a
# real one cannot be made to say is said by a scripted server on loopback
# that answers HELLO as told and refuses everything else:
#
#   * Redis 6.0.9: a warning that it is older than the 6.2 needed;
#   * no HELLO at all (before 6.0): the same warning;
#   * a proxy that refuses HELLO: a warning, and the setup goes on;
#     NOAUTH: the setup's error line;
#   * a Sentinel (mode sentinel) or a replica (role replica): refused
#     with a line that says so; the node stays in fail=.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use POSIX ();
use MqttapiTest;
use MqttapiRedis;
use MqttapiFleet;

my $redis = MqttapiRedis->start;
my $node = fleet_node("redis=127.0.0.1:" . $redis->port);
my $ver = (split ' ', `redis-server --version`)[2] =~ s/^v=//r;
ok(poll_until(10, sub { $node->error_log =~ /sync: connected to \S+ \(redis \Q$ver\E\)/ }),
   "the connected line names the server and its version ($ver)")
    or diag $node->error_log;
unlike($node->error_log, qr/older than/, 'no warning for it');
$node->stop;

sub bulk { '$' . length($_[0]) . "\r\n$_[0]\r\n" }

# a server that answers HELLO with $hello (raw RESP), anything else -ERR
sub scripted {
    my ($hello) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 8, ReuseAddr => 1)
        or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        while (my $c = $l->accept) {
            next if fork;
            while (defined(my $line = <$c>)) {
                next unless $line =~ /^\*(\d+)/;
                my @a;
                for (1 .. $1) {
                    my $len = <$c>;
                    $len =~ /^\$(\d+)/ or last;
                    read($c, my $arg, $1 + 2);
                    push @a, substr($arg, 0, $1);
                }
                print $c (uc($a[0] // '') eq 'HELLO' ? $hello
                          : "-ERR not this server\r\n");
            }
            POSIX::_exit(0);
        }
        POSIX::_exit(0);
    }
    my $port = $l->sockport;
    close $l;
    return ($pid, $port);
}

sub hello {
    my (%f) = (server => 'redis', version => '7.0.0', proto => undef,
               mode => 'standalone', role => 'master', @_);
    my @kv = map { ($_ => $f{$_}) } grep { defined $f{$_} }
             qw(server version mode role);
    return '*' . @kv . "\r\n" . join('', map { bulk($_) } @kv);
}

for my $c (
    [ 'Redis 6.0.9', hello(version => '6.0.9'),
      qr/\[warn\].*sync: 127\.0\.0\.1:\d+ runs redis 6\.0\.9, older than the Redis 6\.2 that mqttapi_sync needs/ ],
    [ 'no HELLO', "-ERR unknown command 'HELLO', with args beginning with: \r\n",
      qr/\[warn\].*sync: 127\.0\.0\.1:\d+ does not know HELLO: it is older than Redis 6\.2/ ],
    [ 'a proxy that refuses HELLO', "-ERR command not supported\r\n",
      qr/\[warn\].*sync: 127\.0\.0\.1:\d+ refused HELLO: "ERR command not supported"; its version is not checked.*\n(?:.*\n)*.*refused the connection's setup: "ERR not this server"/ ],
    [ 'NOAUTH', "-NOAUTH Authentication required.\r\n",
      qr/\[error\].*sync: 127\.0\.0\.1:\d+ refused the connection's setup: "NOAUTH Authentication required\."/ ],
    [ 'a Sentinel', hello(mode => 'sentinel'),
      qr/\[error\].*sync: 127\.0\.0\.1:\d+ is a Sentinel, not a Redis \(use "sentinel=" and "master="\)/ ],
    [ 'a replica', hello(role => 'replica'),
      qr/\[error\].*sync: 127\.0\.0\.1:\d+ is a replica, not a master/ ],
    [ 'Valkey 8.0.1', hello(server => 'valkey', version => '8.0.1'),
      qr/refused the connection's setup: "ERR not this server"/ ],
) {
    my ($name, $reply, $re) = @$c;
    my ($pid, $port) = scripted($reply);
    my $n = fleet_node("redis=127.0.0.1:$port");
    ok(poll_until(10, sub { $n->error_log =~ $re }), "$name: the line")
        or diag $n->error_log;
    unlike($n->error_log, qr/older than/, "$name: not old")
        if $name =~ /Valkey|Sentinel|replica|proxy|NOAUTH/;
    is(sync_up($n), 0, "$name: sync_up 0");
    is(get($n->port(0), '/f/?AccessKeyId=AK-h')->{status}, 200,
       "$name: requests as without sync");
    $n->stop;
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

done_testing();
