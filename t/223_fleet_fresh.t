#!/usr/bin/perl
# Quotas shared by demand (SPEC 10): no new key is refused for lack of a
# grant.  Three nodes of two workers, one Redis, interval=100ms, the
# built-in limits; new keys (each a few requests, well under its limit)
# every 0.1 s for 3 s:
#
#   * on a node just started (a fourth one, from its first request on);
#   * on a node just reloaded (nginx -s reload);
#   * on every node after Redis restarted empty (while it is away the
#     nodes count on their own, fail=local; then, for three intervals,
#     Redis grants nothing new, and new keys run on credit);
#
# and in each case none is answered locally.  A key held by all three
# nodes over the restart (100/s sent to each) stays within N x c a
# second, c = ceil(L / N) = 34, and 3 more for the seconds' edges: each
# node's own part while Redis is away (fail=local), its credit when it is
# back and Redis is learning, its fair share after (an empty heartbeat
# set must not make a node think it is alone: it would count on all of
# L); and it is admitted at its limit again after the restart.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiRedis;
use MqttapiDemand;

my $redis = MqttapiRedis->start;
my $f = fleet(redis => $redis, nodes => 3);
my @nodes = @{ $f->{nodes} };

# new keys on these nodes for 3 s: [requests, refused]
sub fresh_keys {
    my ($tag, @on) = @_;
    my ($n, $refused, $i) = (0, 0, 0);
    my $end = time + 3;
    while (time < $end) {
        my $node = $on[$i % @on];
        my ($action, $count) = $i % 2 ? ('RevokeToken', 1)
                                      : ('ApplyToken', 5);
        for (1 .. $count) {
            my $r = get($node->port(0),
                        "/q/?AccessKeyId=AK-$tag-$i&Action=$action");
            $n++;
            $refused++ unless ($r->{status} // 0) == 200;
        }
        $i++;
        sleep 0.1;
    }
    return ($n, $refused);
}

# --- a node just started ---------------------------------------------------

{
    my $D = start_node($f->{node_http});
    my ($n, $refused) = fresh_keys('start', $D);
    diag "started: $n requests, $refused refused";
    ok($n >= 20, "started: requests sent in the node's first 3 s ($n)");
    is($refused, 0, 'started: no new key refused in the first 3 s');
    ok(connected($D, $redis, 4), 'started: the node joined the fleet');
    $D->stop;
}

# --- a node just reloaded --------------------------------------------------

{
    my $mark = $nodes[0]->error_log_mark;
    $nodes[0]->reload;
    my ($n, $refused) = fresh_keys('reload', $nodes[0]);
    diag "reloaded: $n requests, $refused refused";
    ok($n >= 20, "reloaded: requests sent in the first 3 s ($n)");
    is($refused, 0, 'reloaded: no new key refused in the first 3 s');
}

# --- Redis restarted empty -------------------------------------------------

{
    # keys the nodes hold grants for, and traffic on them meanwhile
    my @pids = map { load($_, 'AK-held', 'ApplyToken', 100, 6) } @nodes;
    sleep 1.5;
    my @marks = map { $_->error_log_mark } @nodes;
    $redis->restart;
    my ($n, $refused) = fresh_keys('restart', @nodes);
    diag "Redis restarted: $n requests, $refused refused";
    ok($n >= 20, "restarted: requests sent in the first 3 s ($n)");
    is($refused, 0, 'restarted: no new key refused in the first 3 s');
    finish(@pids);
    for my $i (0 .. 2) {
        ok(connected($nodes[$i], $redis, 3, $marks[$i]),
           "restarted: node $i is back on Redis");
    }

    # the held key's claims are in Redis again, and the fleet admits no
    # more than its limit in the seconds after the learning
    my %fleet;
    for my $node (@nodes) {
        my $p = per_second($node, 'AK-held');
        $fleet{$_} += $p->{$_}[0] for keys %$p;
    }
    diag 'AK-held over the restart, admitted per second: '
         . join(' ', map { $fleet{$_} } sort keys %fleet);
    my @s = sort keys %fleet;
    my @over = grep { $fleet{$_} > 3 * 34 + 3 } @s;
    is(scalar @over, 0, 'restarted: no second over N x c (102, +3)');
    ok((grep { $fleet{$_} >= 95 } @s[1 .. $#s - 1]) >= 2,
       'restarted: the held key is still admitted at its limit');
}

done_testing;
