package MqttapiSentinel;

# A redis-sentinel of the test's own (Debian's redis-sentinel), on a free
# loopback port, watching the master "mymaster" at 127.0.0.1:<port>
# (quorum 2, down after 1 s): start(args => [$master_port]).  The rest is
# MqttapiRedis's: cmd(), freeze, stop at the end of the test.

use strict;
use warnings;
use parent -norequire, 'MqttapiRedis';
use MqttapiRedis ();

sub _command {
    my ($self) = @_;
    my $mport = $self->{args}[0];
    my $conf = "$self->{dir}/sentinel.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh <<"EOF";
port $self->{port}
bind 127.0.0.1
daemonize no
dir $self->{dir}
sentinel monitor mymaster 127.0.0.1 $mport 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 10000
sentinel parallel-syncs mymaster 1
EOF
    close $fh;
    return ('redis-sentinel', $conf);
}

# the master's port as this sentinel tells it
sub master_port {
    my ($self) = @_;
    my $a = eval { $self->cmd('SENTINEL', 'get-master-addr-by-name',
                              'mymaster') };
    return ref $a eq 'ARRAY' ? $a->[1] : undef;
}

1;
