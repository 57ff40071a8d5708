package MqttapiDelay;

# Helpers of the tests of quotas that wait (mqttapi_quota ... delay=,
# t/092-t/094):
#
#   read_in_order(@socks)          the answers in the order they arrive:
#                                  each http_read_response's hash with
#                                  {i} (the request's index) and {seq}
#                                  (its place in the order of arrival)
#   burst_ordered($port, @paths)   both: the answers, by request index
#   one_per_second()               a user catalog (its path) that gives
#                                  RevokeToken a quota of 1/s: a second's
#                                  slot is one request

use strict;
use warnings;

use Exporter 'import';
use File::Temp ();
use IO::Select;
use Time::HiRes ();
use MqttapiTest qw(http_read_response);
use MqttapiLimit qw(open_requests);

our @EXPORT = qw(read_in_order burst_ordered one_per_second);

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

1;
