package MqttapiChrome;

# Headless Chromium (Debian's `chromium`) driven over the DevTools
# protocol on a pipe (--remote-debugging-pipe: commands on its fd 3,
# replies and events on its fd 4, JSON messages ended by a NUL byte), with
# core Perl only: no node, no websocket.
#
#   my $c = MqttapiChrome->new;             # undef (and $@) if it cannot
#   $c->load($url);                         # a fresh page, loaded
#   $c->js($js);                            # the value of an expression
#   $c->requests;                           # URLs the page asked for
#   $c->problems;                           # console errors, exceptions,
#                                           # CSP violations, failed loads
#                                           # (not warnings: a browser's
#                                           # deprecation notes vary)
#   $c->viewport($width, $height);
#   $c->screenshot($file);                  # PNG
#   $c->pump($seconds);                     # read events for a while
#
# Deadlines are generous (a busy 2-core machine): 60 s to start, 30 s a
# command.  Each instance has its own profile in a temporary directory.

use strict;
use warnings;

use File::Temp ();
use IO::Handle;
use IO::Select;
use JSON::PP ();
use MIME::Base64 ();
use POSIX ();
use Time::HiRes ();

our $CHROMIUM = $ENV{MQTTAPI_CHROMIUM} || '/usr/bin/chromium';

sub available { -x $CHROMIUM }

sub new {
    my ($class, %a) = @_;

    my $self = bless {
        dir      => File::Temp->newdir('mqttapi-chrome-XXXXXX', TMPDIR => 1),
        json     => JSON::PP->new->utf8->canonical,
        id       => 0,
        buf      => '',
        events   => [],
        requests => [],
        problems => [],
        owner    => $$,
    }, $class;

    my $dir = $self->{dir}->dirname;

    pipe(my $cmd_r, my $cmd_w) or die "pipe: $!";
    pipe(my $ev_r, my $ev_w) or die "pipe: $!";

    my $pid = fork;
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        # the pipe ends at fd 3 and 4, by way of high numbers so that
        # neither is overwritten before it is copied
        POSIX::dup2(fileno($cmd_r), 20);
        POSIX::dup2(fileno($ev_w), 21);
        POSIX::dup2(20, 3);
        POSIX::dup2(21, 4);
        POSIX::close($_) for 20, 21;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/chromium.log";
        open STDERR, '>&', \*STDOUT;
        my @args = (
            '--headless', '--remote-debugging-pipe',
            "--user-data-dir=$dir/profile",
            '--disable-gpu', '--no-first-run', '--no-default-browser-check',
            '--disable-extensions', '--disable-background-networking',
            '--disable-component-update', '--disable-sync',
            '--disable-default-apps', '--disable-dev-shm-usage',
            '--disable-features=Translate,MediaRouter,OptimizationHints',
            '--metrics-recording-only', '--mute-audio',
            '--hide-scrollbars', '--window-size=1280,900',
            ($> == 0 ? ('--no-sandbox') : ()),
            'about:blank',
        );
        { exec $CHROMIUM, @args; }
        POSIX::_exit(127);
    }

    close $cmd_r;
    close $ev_w;
    $cmd_w->autoflush(1);
    $self->{pid} = $pid;
    $self->{out} = $cmd_w;
    $self->{in} = $ev_r;
    $self->{sel} = IO::Select->new($ev_r);

    my $r = eval { $self->command('Target.getTargets', {}, undef, 60) };
    unless ($r) {
        $@ = "chromium did not answer: " . ($@ || '') . $self->output;
        $self->quit;
        return undef;
    }

    return $self;
}

sub output {
    my ($self) = @_;
    open my $fh, '<', $self->{dir}->dirname . '/chromium.log' or return '';
    local $/;
    my $log = <$fh> // '';
    return length $log > 4000 ? substr($log, -4000) : $log;
}

# send a command, pump events until its reply; die on an error reply
sub command {
    my ($self, $method, $params, $session, $timeout) = @_;
    my $id = ++$self->{id};
    my %msg = (id => $id, method => $method, params => $params || {});
    $msg{sessionId} = $session if defined $session;
    my $data = $self->{json}->encode(\%msg) . "\0";

    while (length $data) {
        my $n = syswrite $self->{out}, $data;
        die "write to chromium: $!" unless defined $n;
        substr($data, 0, $n) = '';
    }

    my $deadline = Time::HiRes::time() + ($timeout // 30);
    while (Time::HiRes::time() < $deadline) {
        for my $m ($self->_read($deadline - Time::HiRes::time())) {
            if (defined $m->{id} && $m->{id} == $id) {
                die "$method: $m->{error}{message}\n" if $m->{error};
                return $m->{result} || {};
            }
            $self->_event($m);
        }
    }
    die "$method: no reply within " . ($timeout // 30) . "s\n";
}

# read what is there (waiting up to $wait seconds for the first byte)
sub _read {
    my ($self, $wait) = @_;
    my @msgs;
    $wait = 0 if $wait < 0;
    if ($self->{sel}->can_read($wait > 0.2 ? 0.2 : $wait)) {
        my $n = sysread $self->{in}, my $chunk, 1 << 20;
        die "chromium closed its pipe\n" . $self->output unless $n;
        $self->{buf} .= $chunk;
    }
    while ((my $i = index $self->{buf}, "\0") >= 0) {
        my $text = substr $self->{buf}, 0, $i;
        substr($self->{buf}, 0, $i + 1) = '';
        push @msgs, $self->{json}->decode($text);
    }
    return @msgs;
}

sub pump {
    my ($self, $seconds) = @_;
    my $deadline = Time::HiRes::time() + $seconds;
    while (Time::HiRes::time() < $deadline) {
        $self->_event($_) for $self->_read($deadline - Time::HiRes::time());
    }
}

sub _event {
    my ($self, $m) = @_;
    my $method = $m->{method} // return;
    my $p = $m->{params} || {};

    if ($method eq 'Network.requestWillBeSent') {
        push @{ $self->{requests} }, $p->{request}{url};

    } elsif ($method eq 'Runtime.consoleAPICalled') {
        my $text = join ' ', map { $_->{value} // $_->{description} // '' }
                             @{ $p->{args} || [] };
        push @{ $self->{problems} }, "console.$p->{type}: $text"
            if $p->{type} =~ /^(error|assert)$/;

    } elsif ($method eq 'Runtime.exceptionThrown') {
        my $d = $p->{exceptionDetails} || {};
        push @{ $self->{problems} }, 'exception: '
            . ($d->{exception}{description} // $d->{text} // '?');

    } elsif ($method eq 'Log.entryAdded') {
        my $e = $p->{entry} || {};
        push @{ $self->{problems} }, "log.$e->{level} ($e->{source}): "
            . ($e->{text} // '') . ' ' . ($e->{url} // '')
            if ($e->{level} // '') eq 'error';

    } elsif ($method eq 'Network.loadingFailed') {
        push @{ $self->{problems} }, "load failed: "
            . ($p->{errorText} // '') . ' ' . ($p->{blockedReason} // '');
    }
}

# a fresh page target, its domains enabled, navigated to $url and loaded
sub load {
    my ($self, $url) = @_;
    my $t = $self->command('Target.createTarget', { url => 'about:blank' });
    my $a = $self->command('Target.attachToTarget',
                           { targetId => $t->{targetId}, flatten => JSON::PP::true });
    my $s = $self->{session} = $a->{sessionId};

    $self->command($_, {}, $s) for qw(Runtime.enable Log.enable
                                      Network.enable Page.enable);
    $self->{requests} = [];
    $self->{problems} = [];

    my $nav = $self->command('Page.navigate', { url => $url }, $s, 60);
    die "navigate: $nav->{errorText}\n" if $nav->{errorText};

    # loaded: the document is complete
    my $deadline = Time::HiRes::time() + 60;
    while (Time::HiRes::time() < $deadline) {
        return 1 if ($self->js('document.readyState') // '') eq 'complete';
        $self->pump(0.1);
    }
    die "the page did not load within 60s\n";
}

# the value of a JavaScript expression in the page (JSON-able values)
sub js {
    my ($self, $expr) = @_;
    my $r = $self->command('Runtime.evaluate',
                           { expression => $expr,
                             returnByValue => JSON::PP::true },
                           $self->{session});
    die "eval: $r->{exceptionDetails}{text}: $expr\n" if $r->{exceptionDetails};
    return $r->{result}{value};
}

sub viewport {
    my ($self, $w, $h) = @_;
    $self->command('Emulation.setDeviceMetricsOverride',
                   { width => $w, height => $h, deviceScaleFactor => 1,
                     mobile => ($w < 600 ? JSON::PP::true : JSON::PP::false) },
                   $self->{session});
}

sub screenshot {
    my ($self, $file, %a) = @_;
    my $r = $self->command('Page.captureScreenshot',
                           { format => 'png',
                             captureBeyondViewport => $a{full}
                                 ? JSON::PP::true : JSON::PP::false },
                           $self->{session}, 60);
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh MIME::Base64::decode_base64($r->{data});
    close $fh;
    return -s $file;
}

sub requests { @{ $_[0]{requests} } }
sub problems { @{ $_[0]{problems} } }

sub quit {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    return unless $$ == $self->{owner};
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 5;
        $self->command('Browser.close', {}, undef, 5);
        alarm 0;
    };
    alarm 0;
    close $self->{out};
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline) {
        return if waitpid($pid, POSIX::WNOHANG()) == $pid;
        Time::HiRes::sleep(0.05);
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    $self->quit;
}

1;
