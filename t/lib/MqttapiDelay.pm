package MqttapiDelay;

# Helpers of the tests of quotas that wait (mqttapi_quota ... delay=,
# t/092-t/094, t/225):
#
#   read_in_order(@socks)          the answers in the order they arrive:
#                                  each http_read_response's hash with
#                                  {i} (the request's index) and {seq}
#                                  (its place in the order of arrival)
#   burst_ordered($port, @paths)   both: the answers, by request index
#   one_per_second()               a user catalog (its path) that gives
#                                  RevokeToken a quota of 1/s: a second's
#                                  slot is one request
#   admitted_upstream()            ($up, $log): an upstream nginx that
#                                  answers 200 and logs "key|action|m|
#                                  X-Admitted" (MqttapiLimit's
#                                  upstream_log reads it); nodes set
#                                  X-Admitted to their $msec, so that a
#                                  request counts in the second the node
#                                  sent it on

use strict;
use warnings;

use Exporter 'import';
use File::Temp ();
use IO::Select;
use Time::HiRes ();
use MqttapiTest qw(http_read_response start_nginx);
use MqttapiLimit qw(open_requests upstream_log);

our @EXPORT = qw(read_in_order burst_ordered one_per_second
                 admitted_upstream);

# Answers in their order of arrival: a socket is read once select says it
# has data (an answer of the gateway is small and written at once)
sub read_in_order {
    my (@socks) = @_;
    my %idx = map { (0 + fileno($socks[$_])) => $_ } 0 .. $#socks;
    my $sel = IO::Select->new(@socks);
    my (@r, $seq);
    my $deadline = Time::HiRes::time() + 30;
    while ($sel->count && Time::HiRes::time() < $deadline) {
        for my $s ($sel->can_read(1)) {
            my $i = $idx{ fileno $s };
            $sel->remove($s);
            my $resp = http_read_response($s, timeout => 10);
            $resp->{i} = $i;
            $resp->{seq} = $seq++;
            $r[$i] = $resp;
        }
    }
    return @r;
}

sub burst_ordered {
    my ($port, @paths) = @_;
    return read_in_order(open_requests($port, @paths));
}

sub one_per_second {
    my $dir = File::Temp::tempdir('mqttapi-delay-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    chmod 0755, $dir;
    open my $fh, '>', "$dir/one.json" or die $!;
    print $fh '{"actions":{"RevokeToken":{"quota":1}}}';
    close $fh;
    return "$dir/one.json";
}

sub admitted_upstream {
    my $up = start_nginx(workers => 1, http => <<'EOF');
    # the time is the node's when it sent the request on (X-Admitted, the
    # second the node counted it in): its arrival here can be a few ms
    # later on a loaded machine, past the end of that second
    log_format up '$arg_AccessKeyId|$arg_Action|$arg_m|$http_x_admitted';
    server {
        listen 127.0.0.1:%%PORT0%%;
        access_log %%PREFIX%%/up.log up;
        keepalive_requests 1000000;
        default_type application/json;
        location / { return 200 '{"RequestId":"UP-$request_id"}'; }
    }
EOF
    return ($up, upstream_log($up->prefix . '/up.log'));
}

1;
