package MqttapiRedis;

# A private redis-server for the fleet tests: started on a free loopback
# port without persistence (--save '' --appendonly no), optionally with a
# password (start(password => ...)) and other options of redis-server
# (start(args => [...])), stopped at the end
# of the test even when it fails; a minimal RESP client for the test's own
# look at what Redis holds; freeze (SIGSTOP), thaw (SIGCONT) and a restart
# on the same port with nothing in it.

use strict;
use warnings;

use IO::Socket::INET;
use File::Temp ();
use POSIX ();
use Time::HiRes ();
use MqttapiTest ();

my @ALL;
my $MAIN_PID = $$;

sub start {
    my ($class, %a) = @_;
    my $self = bless {
        password => $a{password},
        args => $a{args} // [],
        port => $a{port} // MqttapiTest::free_port(),
        dir  => File::Temp::tempdir('mqttapi-redis-XXXXXX', TMPDIR => 1,
                                    CLEANUP => 1),
    }, $class;
    $self->_spawn;
    push @ALL, $self;
    return $self;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }

sub _spawn {
    my ($self) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$self->{dir}/redis.log";
        open STDERR, '>&', \*STDOUT;
        POSIX::setsid();
        { exec $self->_command; }
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $deadline = Time::HiRes::time() + 10;
    until ((eval { $self->cmd('PING') } // '') eq 'PONG') {
        die +($self->_command)[0] . " did not start:\n" . $self->log
            if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
}

# what _spawn runs (MqttapiSentinel runs a redis-sentinel)
sub _command {
    my ($self) = @_;
    return ('redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
            '--save', '', '--appendonly', 'no', '--daemonize', 'no',
            '--dir', $self->{dir},
            (defined $self->{password}
                ? ('--requirepass', $self->{password}) : ()),
            @{ $self->{args} });
}

sub log {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/redis.log" or return '';
    local $/;
    return scalar <$fh>;
}

# cmd('SET', 'k', 'v') -> the reply (arrays as array refs, errors die)
sub cmd {
    my ($self, @args) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port}, Proto => 'tcp',
                                  Timeout => 2)
        or die "connect to redis: $!";
    my $req = '*' . @args . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @args;
    if (defined $self->{password}) {
        print $s "*2\r\n\$4\r\nAUTH\r\n\$" . length($self->{password})
               . "\r\n$self->{password}\r\n";
        _read($s);
    }
    print $s $req;
    my $r = _read($s);
    close $s;
    return $r;
}

sub _line {
    my ($s) = @_;
    my $l = <$s>;
    die "redis: connection closed" unless defined $l;
    $l =~ s/\r\n\z//;
    return $l;
}

sub _read {
    my ($s) = @_;
    my $l = _line($s);
    my ($t, $v) = (substr($l, 0, 1), substr($l, 1));
    return $v if $t eq '+';
    die "redis: $v\n" if $t eq '-';
    return $v + 0 if $t eq ':';
    if ($t eq '$') {
        return undef if $v < 0;
        my $buf = '';
        while (length($buf) < $v + 2) {
            read($s, $buf, $v + 2 - length($buf), length($buf)) or die "redis: short";
        }
        return substr($buf, 0, $v);
    }
    if ($t eq '*') {
        return undef if $v < 0;
        return [map { _read($s) } 1 .. $v];
    }
    die "redis: bad reply '$l'";
}

sub freeze { kill 'STOP', $_[0]{pid} }
sub thaw   { kill 'CONT', $_[0]{pid} }

# kill and start again on the same port: empty
sub restart {
    my ($self) = @_;
    $self->stop;
    $self->_spawn;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'CONT', $pid;
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

END {
    return unless $$ == $MAIN_PID;
    local $?;
    $_->stop for @ALL;
}

1;
