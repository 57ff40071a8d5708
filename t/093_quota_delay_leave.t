#!/usr/bin/perl
# Quotas that wait (delay=), when the waiting ends otherwise than by its
# timer, through a real nginx whose upstream is another nginx:
#
#   * a client that closes its connection while it waits sends nothing
#     upstream, and its slot goes to the next request that books (which
#     would have been refused without it); the debug log has a line for
#     each decision and for how each wait ended;
#   * "nginx -s quit" with requests waiting: they are let go and answered
#     from the upstream, and nginx is gone soon after the delay;
#   * a reload with requests waiting: the same, the old worker exits.
#
# RevokeToken is given a quota of 1/s, so that a second's slot is one
# request: the first request passes, the next one's slot is about 1.1 s on
# (when the first leaves the one-second window), the one after that about
# 2.3 s on.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiLimit;
use MqttapiDelay;

my $one = one_per_second();

my $up = start_nginx(workers => 1, http => <<"EOF");
    log_format up '\$arg_AccessKeyId|\$arg_Action|\$arg_m|\$msec';
    server {
        listen 127.0.0.1:%%PORT0%%;
        access_log %%PREFIX%%/up.log up;
        default_type application/json;
        location / { return 200 '{"RequestId":"UP-\$request_id"}'; }
    }
EOF
my $UP = upstream_log($up->prefix . '/up.log');
my $upport = $up->port(0);

sub gateway {
    my ($delay) = @_;
    return start_nginx(workers => 1, http => <<"EOF");
    mqttapi_throttle_zone \$arg_AccessKeyId zone=dl:1m;
    server {
        listen 127.0.0.1:%%PORT0%%;
        error_log %%PREFIX%%/debug.log debug;
        mqttapi on;
        add_header X-Delay \$mqttapi_quota_delay always;
        location / {
            mqttapi_quota zone=dl delay=$delay;
            mqttapi_catalog $one;
            proxy_pass http://127.0.0.1:$upport;
        }
    }
EOF
}

sub path {
    my ($key, $m) = @_;
    return "/?Action=RevokeToken&AccessKeyId=$key&m=$m";
}

sub passed { ($_[0]{status} // 0) == 200 && !h($_[0], 'X-MQTTAPI-Throttled') }
sub waited { defined h($_[0], 'X-Delay') }

# ---------------------------------------------------------------------------
# a client that closes while it waits
# ---------------------------------------------------------------------------

{
    my $ng = gateway('1500ms');
    my $port = $ng->port(0);
    my $k = 'leave';

    ok(passed(get($port, path($k, 'first'))), 'leave: the first passes');

    # its slot about 1.1 s on; it leaves before that
    my ($s) = open_requests($port, path($k, 'gone'));
    sleep 0.3;
    close $s;
    sleep 0.1;

    # the next request to book takes that slot (about 1.1 s on, within
    # its 1.5 s); without it, the next slot is about 2.3 s on: refused
    my $r = get($port, path($k, 'next'));
    ok(passed($r) && waited($r),
       'leave: the next request takes the slot given back, and waits')
        or diag "status $r->{status}, "
                . (h($r, 'X-MQTTAPI-Error-Code') // 'no code');
    is($UP->count_settled('next', 1, 2), 1,
       'leave: the next one went upstream');
    sleep 0.3;
    is($UP->count('gone', 2), 0,
       'leave: the client that closed sent nothing upstream');
    unlike($ng->error_log, qr/\[(?:alert|crit|emerg)\]|signal \d+/,
           'leave: no crit/alert/emerg, no crash');

    # a debug line per decision, and for the end of each wait
    my %ev;
    for my $e (debug_events($ng->prefix . '/debug.log',
                            qr/mqttapi quota: .*/)) {
        my ($m) = $e->[0] =~ /[?&]m=(\w+)/ or next;
        my ($what) = grep { index($e->[1], $_) >= 0 }
                     ('slot given back', 'let go', 'admitted now',
                      'booked a slot', 'refused', 'waiting');
        push @{ $ev{$m} }, $what // $e->[1];
    }
    is_deeply(\%ev, { first => ['admitted now'],
                      gone  => ['booked a slot', 'waiting', 'slot given back'],
                      next  => ['booked a slot', 'waiting', 'let go'] },
              'debug log: each decision and how each wait ended')
        or diag explain \%ev;
    $ng->stop;
}

# ---------------------------------------------------------------------------
# quit and reload with requests waiting (delay=3s)
# ---------------------------------------------------------------------------

for my $how ('quit', 'reload') {
    my $ng = gateway('3s');
    my $port = $ng->port(0);
    my $k = "end-$how";

    ok(passed(get($port, path($k, 'first'))), "$how: the first passes");
    my @s = open_requests($port, map { path($k, "$how$_") } 1 .. 2);
    sleep 0.3;

    my $start = time;
    my @old = $ng->worker_pids;
    kill($how eq 'quit' ? 'QUIT' : 'HUP', $ng->pid);

    my @r = read_in_order(@s);
    is(scalar(grep { passed($_) && waited($_) } @r), 2,
       "$how: both waiting requests let go and answered from the upstream")
        or diag join ', ', map { ($_->{status} // 'none')
                                 . ' ' . ($_->{error} // '') } @r;
    is($UP->count_settled("$how$_", 1, 2), 1,
       "$how: waiting request $_ went upstream") for 1 .. 2;

    # the waits end within 3 s; a generous deadline for a busy machine
    my $gone = poll_until(15, sub {
        !grep { MqttapiTest::_alive($_) }
              ($how eq 'quit' ? ($ng->pid, @old) : @old) });
    ok($gone, $how eq 'quit' ? 'quit: nginx exits after the waits'
                             : 'reload: the old worker exits after the waits');
    note sprintf "%s: done %.2f s after the signal", $how, time - $start;

    if ($how eq 'reload') {
        ok(passed(get($port, path("$k-after", 'x'))),
           'reload: the new worker answers');
    }
    $ng->stop;
}

done_testing();
