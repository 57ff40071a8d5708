package MqttapiLimit;

# Helpers of the rate-limiting tests (t/080_throttle.t, t/090_quota.t):
#
#   burst($port, @paths)     several requests at once: connect all, send
#                            all, then read the answers (in order); a path
#                            may be [path, header lines...]
#   open_requests($port, @paths)  the same, connected and sent: the sockets
#   max_per_second(@ms)      the most of these times (ms) in any window of
#                            a second (990 ms)
#   upstream_log($file)      the access log of the test's upstream server,
#                            one "field|field|..." line per request it saw:
#       ->lines                  each line split on "|"
#       ->count($v, $field)      lines whose field $field (default 0) is $v
#       ->arrivals($v, $field)   the times (ms, the upstream's clock) of
#                                those lines, sorted (the last field: msec)
#       ->count_settled($v, $want, $field)
#                                the same, waiting up to a second for it to
#                                reach $want (the upstream logs a request
#                                after answering it)

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use Time::HiRes ();
use MqttapiTest qw(http_read_response);

our @EXPORT = qw(burst open_requests max_per_second upstream_log);

sub open_requests {
    my ($port, @paths) = @_;
    my @socks;
    for (@paths) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp')
            or die "connect: $!";
        push @socks, $s;
    }
    for my $i (0 .. $#paths) {
        my ($p, @h) = ref $paths[$i] ? @{ $paths[$i] } : ($paths[$i]);
        syswrite($socks[$i], "GET $p HTTP/1.1\r\nHost: localhost\r\n"
                           . join('', map { "$_\r\n" } @h)
                           . "Connection: close\r\n\r\n");
    }
    return @socks;
}

sub burst {
    my ($port, @paths) = @_;
    return map { http_read_response($_, timeout => 10) }
           open_requests($port, @paths);
}

# the most arrivals in any window of a second; the times are the
# upstream's, each worker's cached clock, so a window of 990 ms leaves room
# for a few ms of clock noise between the gateway's decisions and them
sub max_per_second {
    my (@t) = @_;
    my ($max, $j) = (0, 0);
    for my $i (0 .. $#t) {
        $j++ while $j <= $#t && $t[$j] < $t[$i] + 990;
        $max = $j - $i if $j - $i > $max;
    }
    return $max;
}

sub upstream_log {
    my ($file) = @_;
    return bless { file => $file }, 'MqttapiLimit::UpstreamLog';
}

package MqttapiLimit::UpstreamLog;

sub lines {
    my ($self) = @_;
    open my $fh, '<', $self->{file} or return ();
    my @l = <$fh>;
    chomp @l;
    return map { [split /\|/, $_, -1] } @l;
}

sub arrivals {
    my ($self, $v, $field) = @_;
    return sort { $a <=> $b }
           map { int($_->[-1] * 1000 + 0.5) }
           grep { ($_->[$field // 0] // '') eq $v } $self->lines;
}

sub count {
    my ($self, $v, $field) = @_;
    return scalar grep { ($_->[$field // 0] // '') eq $v } $self->lines;
}

sub count_settled {
    my ($self, $v, $want, $field) = @_;
    my $deadline = Time::HiRes::time() + 1;
    my $n;
    while (1) {
        $n = $self->count($v, $field);
        return $n if $n >= $want || Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

1;
