package MqttapiDelay;

# Helpers of the tests of quotas that wait (mqttapi_quota ... delay=,
# t/092-t/094):
#
#   read_in_order(@socks)          the answers in the order they arrive:
#                                  each http_read_response's hash with
#                                  {i} (the request's index) and {seq}
#                                  (its place in the order of arrival)
#   burst_ordered($port, @paths)   both: the answers, by request index

use strict;
use warnings;

use Exporter 'import';
use IO::Select;
use Time::HiRes ();
use MqttapiTest qw(http_read_response);
use MqttapiLimit qw(open_requests);

our @EXPORT = qw(read_in_order burst_ordered);

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

1;
