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
# nodes over the restart (100/s sent to each) stays within SPEC 10's
# slack while nodes run on their own or on credit: L + c a second for
# each node, c = ceil(L / N) = 34 (a node that holds a grant from before
# the restart spends it, the others their own part or their credit), and
# within L (and 3 for the seconds' edges) from the second after their
# credit on; it is admitted at its limit again after the restart.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timelocal);
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
            next if ($r->{status} // 0) == 200;
            $refused++;
            my ($code) = ($r->{body} // '') =~ /"Code"\s*:\s*"([^"]*)"/;
            diag sprintf '%s: AK-%s-%d %s on node port %d at %.4f: %s %s',
                         $tag, $tag, $i, $action, $node->port(0), time,
                         $r->{status} // 'no answer', $code // '';
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
    my @pids = map { load($_, 'AK-held', 'ApplyToken', 100, 8) } @nodes;
    sleep 1.5;
    my @marks = map { $_->error_log_mark } @nodes;
    my $down = int time;
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

    # the second the last node was back (its error log's clock), and the
    # next, in which its keys run on credit
    my $back = 0;
    for my $i (0 .. 2) {
        my ($y, $mo, $d, $h, $mi, $sec) = $nodes[$i]->error_log($marks[$i])
            =~ m{^(\d+)/(\d+)/(\d+) (\d+):(\d+):(\d+) .*connected to}m
            or next;
        my $t = timelocal($sec, $mi, $h, $d, $mo - 1, $y);
        $back = $t if $t > $back;
    }

    my %fleet;
    for my $node (@nodes) {
        my $p = per_second($node, 'AK-held');
        $fleet{$_} += $p->{$_}[0] for keys %$p;
    }
    my @s = sort keys %fleet;
    pop @s;     # the load's last second is partial
    diag 'AK-held over the restart, admitted per second: '
         . join(' ', map { $fleet{$_} } @s)
         . ' (Redis restarted in second ' . ($down - $s[0] + 1)
         . ', the nodes back in second ' . ($back - $s[0] + 1) . ')';

    my @slack = grep { $_ >= $down && $_ <= $back + 1 } @s;
    my @after = grep { $_ > $back + 1 } @s;
    my $per_node = sub {
        my @out;
        for my $node (@nodes) {
            my $p = per_second($node, 'AK-held');
            push @out, join ' ', map { $p->{$_} ? $p->{$_}[0] : 0 } @s;
        }
        return join ' | ', @out;
    };

    ok($back && @slack <= 4, 'restarted: the nodes were back within 3 s');
    is(scalar(grep { $fleet{$_} > 100 + 3 * 34 + 3 } @slack), 0,
       'restarted: no second over L + N x c (202, +3) while nodes count '
       . 'on their own or on credit') or diag 'per node: ' . $per_node->();
    ok(@after >= 2, 'restarted: whole seconds after the credit ('
                    . scalar(@after) . ')');
    is(scalar(grep { $fleet{$_} > 103 } @after), 0,
       'restarted: no second over L (+3) after the credit')
        or diag 'per node: ' . $per_node->();
    ok((grep { $fleet{$_} >= 95 } @after) >= 2,
       'restarted: the held key is admitted at its limit again');
}

done_testing;
