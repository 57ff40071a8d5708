package MqttapiTest;

# Test harness for the ngx_http_mqttapi_module.
#
# Core Perl only (no Test::Nginx, no CPAN).  Provides:
#   * start_nginx / nginx_test_config   - run a private nginx instance
#   * http_request / get / h / ...      - byte-exact raw-socket HTTP client
#   * mock_upstream                     - scriptable raw TCP upstream
#   * json_decode / json_top_keys / ... - JSON helpers (key order aware)
#
# Environment:
#   MQTTAPI_NGINX   nginx binary            (default /usr/sbin/nginx)
#   MQTTAPI_MODULE  module .so to load      (default <repo>/build/ngx_http_mqttapi_module.so;
#                   "none": the module is compiled into MQTTAPI_NGINX, e.g.
#                   build/nginx of "make NGINX_SRC=... STATIC=1")
#   MQTTAPI_KEEP    keep temp dirs after the test (their paths are printed)

use strict;
use warnings;
use feature 'current_sub';

use Exporter 'import';
use Cwd ();
use File::Basename ();
use File::Path ();
use File::Spec;
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Scalar::Util ();
use Time::HiRes ();
use Errno ();

our @EXPORT = qw(
    start_nginx nginx_test_config
    http_request http_read_response get h headers_all
    mock_upstream
    json_decode json_decode_ordered json_top_keys
    free_port dead_port repo_dir emulator_http emulator_gateway
    debug_events builtin_catalog local_answer poll_until
);
our @EXPORT_OK = @EXPORT;

# ---------------------------------------------------------------------------
# Globals
# ---------------------------------------------------------------------------

# Repository root: t/lib/MqttapiTest.pm -> ../..  (computed at load time,
# before any test could chdir away).
our $REPO = Cwd::abs_path(
    File::Spec->catdir(File::Basename::dirname(Cwd::abs_path(__FILE__)), '..', '..'));

our $NGINX  = $ENV{MQTTAPI_NGINX}  || '/usr/sbin/nginx';
our $MODULE = $ENV{MQTTAPI_MODULE} || "$REPO/build/ngx_http_mqttapi_module.so";

my $MAIN_PID = $$;      # only this process cleans up / stops things
my @TEMP_DIRS;          # temp dirs to remove at END
my @LIVE;               # weak refs to live nginx / mock objects
my %USED_PORTS;         # ports already handed out by free_port()

sub repo_dir { $REPO }

# The built-in catalog, conf/mqttapi_catalog.json, decoded; in list
# context also its entries by code (or regex): ($catalog, \%entry).
sub builtin_catalog {
    my $file = "$REPO/conf/mqttapi_catalog.json";
    open my $fh, '<:raw', $file or die "cannot read $file: $!";
    my $catalog = JSON::PP->new->utf8->decode(do { local $/; <$fh> });
    return $catalog unless wantarray;
    my %entry = map { (($_->{code} // $_->{regex}) => $_) } @{ $catalog->{errors} };
    return ($catalog, \%entry);
}

# The bundled OpenAPI emulator (conf/emulator*.conf) as the server on
# %%PORT1%%: the text to start an http block with.
sub emulator_http {
    return <<'EOF';
    include %%REPO%%/conf/emulator_http.conf;

    server {
        listen 127.0.0.1:%%PORT1%%;
        include %%REPO%%/conf/emulator.conf;
    }
EOF
}

# The emulator behind the gateway, wired as conf/gateway.conf does: the
# gateway (`mqttapi on`, proxy_pass to the emulator) on %%PORT0%%, the
# emulator on %%PORT1%%.
sub emulator_gateway {
    return emulator_http() . <<'EOF';

    server {
        listen 127.0.0.1:%%PORT0%%;

        location / {
            mqttapi on;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }
    }
EOF
}

# ---------------------------------------------------------------------------
# Small internal helpers
# ---------------------------------------------------------------------------

sub _now { Time::HiRes::time() }

sub _tempdir {
    my ($tag) = @_;
    my $dir = File::Temp::tempdir("mqttapi-$tag-XXXXXX", TMPDIR => 1, CLEANUP => 0);
    chmod 0755, $dir;
    push @TEMP_DIRS, $dir;
    return $dir;
}

sub _slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return undef;
    local $/;
    my $s = <$fh>;
    return defined $s ? $s : '';
}

sub _spew {
    my ($file, $data) = @_;
    open my $fh, '>:raw', $file or die "cannot write $file: $!";
    print {$fh} $data;
    close $fh or die "cannot write $file: $!";
}

sub _tail {
    my ($text, $n) = @_;
    return '' unless defined $text;
    my @l = split /\n/, $text;
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", @l) . "\n";
}

# Run a command, stdin from /dev/null, stdout+stderr captured via a temp
# file (not a pipe: a daemonizing nginx would keep a pipe open forever).
# Returns (exit_code, output).
sub _run_cmd {
    my (@cmd) = @_;
    my ($fh, $out) = File::Temp::tempfile('mqttapi-cmd-XXXXXX', TMPDIR => 1, UNLINK => 0);
    close $fh;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN,  '<',  '/dev/null';
        open STDOUT, '>>', $out;
        open STDERR, '>&', \*STDOUT;
        { no warnings "exec"; exec { $cmd[0] } @cmd; }
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    my $text = _slurp($out);
    unlink $out;
    return ($rc, $text);
}

# Is a process alive?  Zombies count as dead (PID 1 in containers does not
# always reap orphans, e.g. a daemonized nginx master).
sub _alive {
    my ($pid) = @_;
    return 0 unless $pid;
    return 0 unless kill(0, $pid) || $!{EPERM};
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $s = <$fh>;
        return 0 if defined $s && $s =~ /\)\s+Z\s/;
    }
    return 1;
}

# Children of $ppid by scanning /proc: list of [pid, cmdline].
sub _children {
    my ($ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = _slurp("/proc/$p/stat");
        # a process that exits meanwhile leaves an empty file
        next unless defined $stat && index($stat, ')') >= 0;
        my $rest = substr($stat, rindex($stat, ')') + 2);
        my (undef, $pp) = split / /, $rest;
        next unless defined $pp && $pp == $ppid;
        next unless _alive($p);
        my $cmd = _slurp("/proc/$p/cmdline");
        $cmd = '' unless defined $cmd;
        $cmd =~ s/\0+/ /g;
        $cmd =~ s/\s+$//;
        push @kids, [$p, $cmd];
    }
    closedir $dh;
    return @kids;
}

# A TCP port on 127.0.0.1 where nothing listens, for as long as this test
# process runs: a socket bound to it without SO_REUSEADDR and never put to
# listen, so that connecting is refused and no other process (a parallel
# test's nginx, which binds with SO_REUSEADDR) can take the port.  A port
# of free_port() is only free when it is handed out.
my @DEAD_SOCKETS;

sub dead_port {
    my $s = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
    ) or die "cannot bind a port: $!";
    push @DEAD_SOCKETS, $s;
    $USED_PORTS{ $s->sockport } = 1;
    return $s->sockport;
}

# A free TCP port on 127.0.0.1 (bind port 0, close).  Never returns the same
# port twice within one test process.
sub free_port {
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1,
        ) or die "cannot bind a free port: $!";
        my $port = $s->sockport;
        close $s;
        next if $USED_PORTS{$port}++;
        return $port;
    }
    die "cannot find a free port";
}

# Ports currently in LISTEN state (from /proc/net/tcp{,6}); undef if /proc
# is not readable.
sub _listening_ports {
    my %ports;
    my $seen = 0;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        $seen++;
        while (<$fh>) {
            my (undef, $local, undef, $st) = split ' ';
            next unless defined $st && $st eq '0A';     # TCP_LISTEN
            my ($hexport) = $local =~ /:([0-9A-Fa-f]+)$/ or next;
            $ports{hex $hexport} = 1;
        }
    }
    return $seen ? \%ports : undef;
}

sub _port_listening {
    my ($port) = @_;
    my $l = _listening_ports();
    return $l->{$port} if $l;
    # Fallback: try to connect.
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}

# Substitute %%PORTn%%, %%PREFIX%%, %%REPO%%.
sub _subst {
    my ($text, $ports, $prefix) = @_;
    return '' unless defined $text;
    $text =~ s/%%PORT(\d)%%/$ports->[$1]/g;
    $text =~ s/%%PREFIX%%/$prefix/g;
    $text =~ s/%%REPO%%/$REPO/g;
    return $text;
}

# Build the full nginx.conf text.
#   %a: http, main, events, workers, load_module
sub _build_config {
    my ($prefix, $ports, %a) = @_;
    my $workers = $a{workers} // 1;
    my $load    = ($a{load_module} // 1) && $MODULE ne 'none';
    my $main    = _subst($a{main}, $ports, $prefix);
    my $http    = _subst($a{http}, $ports, $prefix);
    my $events  = _subst($a{events}, $ports, $prefix);

    my $conf = '';
    $conf .= "load_module $MODULE;\n" if $load;
    # As root nginx would switch workers to "nobody", who cannot enter our
    # 0700 temp dirs; keep root unless the caller sets "user" explicitly.
    $conf .= "user root;\n" if $> == 0 && $main !~ /^\s*user\s/m;
    $conf .= <<"EOF";
daemon on;
master_process on;
worker_processes $workers;
pid $prefix/nginx.pid;
lock_file $prefix/nginx.lock;
error_log $prefix/error.log info;
$main
events {
    worker_connections 1024;
$events
}

http {
    access_log $prefix/access.log;
    client_body_temp_path $prefix/client_body_temp;
    proxy_temp_path $prefix/proxy_temp;
    fastcgi_temp_path $prefix/fastcgi_temp;
    uwsgi_temp_path $prefix/uwsgi_temp;
    scgi_temp_path $prefix/scgi_temp;

$http
}
EOF
    return $conf;
}

# Which %%PORTn%% are used in "listen" directives (these are waited for).
sub _listen_port_indexes {
    my (@texts) = @_;
    my %idx;
    for my $t (grep { defined } @texts) {
        while ($t =~ /\blisten\s+([^;]*);/g) {
            my $args = $1;
            $idx{$1} = 1 while $args =~ /%%PORT(\d)%%/g;
        }
    }
    return sort keys %idx;
}

# ---------------------------------------------------------------------------
# nginx -t on a throwaway config
# ---------------------------------------------------------------------------

# nginx_test_config($http_text, %args) -> ($exit_code, $output)
#   %args: main, events, workers, load_module (as start_nginx)
sub nginx_test_config {
    my ($http, %a) = @_;
    my $prefix = _tempdir('t');
    mkdir "$prefix/conf";
    my @ports = map { free_port() } 0 .. 9;
    _spew("$prefix/conf/nginx.conf", _build_config($prefix, \@ports, %a, http => $http));
    return _run_cmd($NGINX, '-t', '-p', $prefix, '-e', "$prefix/error.log",
                    '-c', 'conf/nginx.conf');
}

# ---------------------------------------------------------------------------
# Running nginx
# ---------------------------------------------------------------------------

# start_nginx(http => $text, workers => 1, main => '', events => '',
#             load_module => 1, timeout => 10) -> MqttapiTest::Nginx
sub start_nginx {
    my (%a) = @_;
    die "start_nginx: http => ... is required" unless defined $a{http};
    my $last_err;
    for my $attempt (1 .. 3) {
        my $self = bless {
            args   => {%a},
            owner  => $$,
            ports  => [map { free_port() } 0 .. 9],
            prefix => _tempdir('nginx'),
        }, 'MqttapiTest::Nginx';
        mkdir "$self->{prefix}/conf" or die "mkdir: $!";
        $self->_write_config;

        my ($rc, $out) = _run_cmd($NGINX, '-p', $self->{prefix}, '-e', $self->error_log_file,
                                  '-c', 'conf/nginx.conf');
        if ($rc != 0) {
            $last_err = "nginx failed to start (exit $rc):\n$out\n--- error.log tail:\n"
                      . _tail($self->error_log, 30);
            # Port race with some other process: retry with fresh ports.
            next if "$out" =~ /Address already in use/ && $attempt < 3;
            die $last_err;
        }
        push @LIVE, $self;
        Scalar::Util::weaken($LIVE[-1]);
        $self->_wait_started($a{timeout} // 10);
        return $self;
    }
    die $last_err;
}

package MqttapiTest::Nginx;

use strict;
use warnings;

sub port   { $_[0]{ports}[$_[1] // 0] }
sub ports  { @{ $_[0]{ports} } }
sub prefix { $_[0]{prefix} }
sub pid    { $_[0]{pid} }
sub conf_file      { "$_[0]{prefix}/conf/nginx.conf" }
sub error_log_file { "$_[0]{prefix}/error.log" }

# Text of the error log (optionally starting at a byte offset, see
# error_log_mark).
sub error_log {
    my ($self, $from) = @_;
    my $t = MqttapiTest::_slurp($self->error_log_file);
    $t = '' unless defined $t;
    return $from ? substr($t, $from < length($t) ? $from : length($t)) : $t;
}

# Current size of the error log; pass to error_log() to see only new lines.
sub error_log_mark { -s $_[0]->error_log_file || 0 }

sub access_log {
    my $t = MqttapiTest::_slurp("$_[0]{prefix}/access.log");
    return defined $t ? $t : '';
}

# The nginx.conf text as written.
sub config { MqttapiTest::_slurp($_[0]->conf_file) }

# Rewrite conf/nginx.conf; %a overrides the start_nginx args (e.g. http =>).
# Same ports / prefix are used.
sub write_config {
    my ($self, %a) = @_;
    $self->{args} = { %{ $self->{args} }, %a };
    $self->_write_config;
}

sub _write_config {
    my ($self) = @_;
    MqttapiTest::_spew($self->conf_file,
        MqttapiTest::_build_config($self->{prefix}, $self->{ports}, %{ $self->{args} }));
}

# Worker pids (not the ones shutting down after a reload).
sub worker_pids {
    my ($self) = @_;
    return () unless $self->{pid};
    return map { $_->[0] }
           grep { $_->[1] =~ /worker process/ && $_->[1] !~ /shutting down/ }
           MqttapiTest::_children($self->{pid});
}

sub _die_startup {
    my ($self, $msg) = @_;
    my $log = MqttapiTest::_tail($self->error_log, 30);
    $self->stop;
    die "$msg\n--- error.log tail:\n$log";
}

sub _wait_started {
    my ($self, $timeout) = @_;
    my $deadline = MqttapiTest::_now() + $timeout;
    my $pidfile  = "$self->{prefix}/nginx.pid";

    # 1. the daemonized master writes its pid file
    until (($self->{pid}) = (MqttapiTest::_slurp($pidfile) // '') =~ /(\d+)/) {
        $self->_die_startup("nginx: no pid file after ${timeout}s")
            if MqttapiTest::_now() > $deadline;
        Time::HiRes::sleep(0.01);
    }

    # 2. every %%PORTn%% used in a listen directive is listening
    my @idx = MqttapiTest::_listen_port_indexes($self->{args}{http}, $self->{args}{main});
    for my $i (@idx) {
        until (MqttapiTest::_port_listening($self->{ports}[$i])) {
            $self->_die_startup("nginx: port $self->{ports}[$i] (PORT$i) not listening")
                if MqttapiTest::_now() > $deadline || !MqttapiTest::_alive($self->{pid});
            Time::HiRes::sleep(0.01);
        }
    }

    # 3. all worker processes are up
    my $want = $self->{args}{workers} // 1;
    until ($self->worker_pids >= $want) {
        $self->_die_startup("nginx: workers did not start")
            if MqttapiTest::_now() > $deadline || !MqttapiTest::_alive($self->{pid});
        Time::HiRes::sleep(0.01);
    }
}

# Graceful reload.  Optional %a as for write_config (e.g. http => $new_text)
# rewrites the config first.  Sends HUP and waits (max 10s) until the old
# workers are gone and the new ones are up.  Returns 1 on success, 0 when the
# reload failed ([emerg] logged, e.g. bad config) or timed out.
sub reload {
    my ($self, %a) = @_;
    return 0 unless $self->{pid} && MqttapiTest::_alive($self->{pid});
    $self->write_config(%a) if %a;
    my $timeout = 10;
    my @old  = $self->worker_pids;
    my %old  = map { $_ => 1 } @old;
    my $mark = $self->error_log_mark;
    kill 'HUP', $self->{pid};
    my $want = $self->{args}{workers} // 1;
    my $deadline = MqttapiTest::_now() + $timeout;
    while (MqttapiTest::_now() < $deadline) {
        return 0 if $self->error_log($mark) =~ /\[emerg\]/;
        my @new = grep { !$old{$_} } $self->worker_pids;
        return 1 if @new >= $want && !grep { MqttapiTest::_alive($_) } @old;
        Time::HiRes::sleep(0.02);
    }
    return 0;
}

# nginx -t on the current config file -> ($exit_code, $output)
sub nginx_t {
    my ($self) = @_;
    return MqttapiTest::_run_cmd($MqttapiTest::NGINX, '-t', '-p', $self->{prefix},
                                 '-e', $self->error_log_file, '-c', 'conf/nginx.conf');
}

# Stop: QUIT (graceful), TERM after 3s, KILL (master + children) after 5s.
sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $$ == $self->{owner};
    my $pid = delete $self->{pid};
    my @kids = map { $_->[0] } MqttapiTest::_children($pid);
    kill 'QUIT', $pid;
    my $start = MqttapiTest::_now();
    my $termed;
    while (MqttapiTest::_alive($pid)) {
        my $el = MqttapiTest::_now() - $start;
        if ($el > 5) {
            push @kids, map { $_->[0] } MqttapiTest::_children($pid);
            kill 'KILL', $pid, @kids;
            last;
        }
        if ($el > 3 && !$termed++) {
            kill 'TERM', $pid;
        }
        Time::HiRes::sleep(0.01);
    }
    # Leftover children (only possible after KILL of the master).
    my @left = grep { MqttapiTest::_alive($_) } @kids;
    kill 'KILL', @left if @left;
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    $self->stop if $self->{owner} && $$ == $self->{owner};
}

package MqttapiTest;

# ---------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------

# Normalize headers: arrayref of [n, v] pairs, or flat list / arrayref of
# n, v, n, v.
sub _pairs {
    my @in = @_;
    # a single arrayref: either [[n, v], ...] or [n, v, ...]
    @in = @{ $in[0] } if @in == 1 && ref $in[0] eq 'ARRAY';
    return @in if !@in || ref $in[0];           # already pairs
    my @p;
    push @p, [splice(@in, 0, 2)] while @in;     # flat list
    return @p;
}

# Write all bytes with a deadline.  Returns undef or an error string.
sub _write_all {
    my ($sock, $data, $deadline) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $sel = IO::Select->new($sock);
    my $off = 0;
    while ($off < length $data) {
        my $left = $deadline - _now();
        return 'timeout while sending request' if $left <= 0;
        next unless $sel->can_write($left);
        my $n = syswrite($sock, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            return "write error: $!";
        }
        $off += $n;
    }
    return undef;
}

# Read more bytes into $$buf.  Returns >0 bytes read, 0 on EOF, undef on
# timeout/error (error string in $$err).
sub _fill {
    my ($sock, $buf, $deadline, $err) = @_;
    my $sel = IO::Select->new($sock);
    while (1) {
        my $left = $deadline - _now();
        if ($left <= 0) { $$err = 'timeout'; return undef }
        next unless $sel->can_read($left);
        my $n = sysread($sock, $$buf, 65536, length $$buf);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            $$err = "read error: $!";
            return undef;
        }
        return $n;
    }
}

# http_request(port => N, method => 'GET', path => '/', headers => [[n, v]],
#              body => $bytes, sock => $sock, keepalive => 0, timeout => 10,
#              host => '127.0.0.1', http_version => '1.1', raw => $bytes)
# -> response hashref (see http_read_response).  Never dies.
#   raw: send these exact bytes instead of building a request.
sub http_request {
    my (%a) = @_;
    my $timeout  = $a{timeout} // 10;
    my $deadline = _now() + $timeout;
    my $method   = $a{method} // 'GET';
    my $path     = $a{path} // '/';

    my $sock = $a{sock};
    unless ($sock) {
        $sock = IO::Socket::INET->new(
            PeerAddr => $a{host} // '127.0.0.1',
            PeerPort => $a{port},
            Proto    => 'tcp',
            Timeout  => $timeout,
        ) or return _resp_error("connect to port " . ($a{port} // '?') . " failed: $@");
    }

    my $req;
    if (defined $a{raw}) {
        $req = $a{raw};
        ($method) = $req =~ /^(\S+)/ if !defined $a{method};
        $method //= 'GET';
    } else {
        my @h = _pairs($a{headers} // []);
        my %has = map { lc($_->[0]) => 1 } @h;
        unshift @h, ['Host', 'localhost'] unless $has{host};
        push @h, ['Content-Length', length $a{body}]
            if defined $a{body} && !$has{'content-length'} && !$has{'transfer-encoding'};
        push @h, ['Connection', 'close'] if !$a{keepalive} && !$has{connection};
        my $ver = $a{http_version} // '1.1';
        $req = "$method $path HTTP/$ver\r\n"
             . join('', map { "$_->[0]: $_->[1]\r\n" } @h)
             . "\r\n"
             . ($a{body} // '');
    }

    if (my $err = _write_all($sock, $req, $deadline)) {
        close $sock;
        return _resp_error($err);
    }
    return http_read_response($sock, method => $method, keepalive => $a{keepalive},
                              deadline => $deadline);
}

sub _resp_error {
    my ($err) = @_;
    return { status => undef, reason => undef, headers => [], header => {},
             body => '', raw_body => '', chunked => 0, error => $err };
}

# http_read_response($sock, method => 'GET', keepalive => 0, timeout => 10)
# Reads one response from $sock.  Returns hashref:
#   status, reason, version, headers ([n, v] in order), header ({lc n => v},
#   repeated headers joined with ", "), body (decoded), raw_body, chunked,
#   chunks (arrayref of chunk sizes), trailers ([n, v]), head (raw head text),
#   sock (when keepalive and the connection stays open), error.
sub http_read_response {
    my ($sock, %a) = @_;
    my $deadline = $a{deadline} // _now() + ($a{timeout} // 10);
    my $method   = uc($a{method} // 'GET');
    my $buf = delete(${*$sock}{mqttapi_buf}) // '';
    my $err;
    my $r = _resp_error(undef);

    my $fail = sub {
        my ($msg) = @_;
        $r->{error} = $msg;
        close $sock;
        return $r;
    };

    # --- status line + headers (skipping interim 1xx responses)
    my $hend;
    while (1) {
        until (($hend = index($buf, "\r\n\r\n")) >= 0) {
            my $n = _fill($sock, \$buf, $deadline, \$err);
            return $fail->($err) unless defined $n;
            return $fail->(length $buf ? 'connection closed in response head'
                                       : 'connection closed before response') if $n == 0;
        }
        my $head = substr($buf, 0, $hend + 4, '');
        $r->{head} = $head;
        my ($sl, @lines) = split /\r\n/, $head;
        my ($ver, $code, $reason) = $sl =~ m{^HTTP/(\d+\.\d+) (\d{3})(?: (.*))?$}
            or return $fail->("bad status line: $sl");
        next if $code >= 100 && $code < 200 && $code != 101;
        @$r{qw(version status reason)} = ($ver, 0 + $code, $reason // '');
        for my $l (@lines) {
            my ($n, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
            push @{ $r->{headers} }, [$n, $v];
            my $k = lc $n;
            $r->{header}{$k} = exists $r->{header}{$k} ? "$r->{header}{$k}, $v" : $v;
        }
        last;
    }

    my $hdr = $r->{header};
    my $conn_close = ($hdr->{connection} // '') =~ /\bclose\b/i
        || ($r->{version} eq '1.0' && ($hdr->{connection} // '') !~ /keep-alive/i);
    my $code = $r->{status};

    # --- body
    if ($method eq 'HEAD' || $code == 204 || $code == 304 || $code == 101) {
        # no body
    } elsif (($hdr->{'transfer-encoding'} // '') =~ /chunked/i) {
        $r->{chunked} = 1;
        $r->{chunks} = [];
        $r->{trailers} = [];
        my $raw = '';
        my $body = '';
        my $need = sub {            # ensure $buf has >= $_[0] bytes or a CRLF
            my ($cond) = @_;
            until ($cond->()) {
                my $n = _fill($sock, \$buf, $deadline, \$err);
                $err = 'connection closed in chunked body' if defined $n && $n == 0;
                return 0 unless $n;
            }
            return 1;
        };
        my $ok = 0;
        CHUNK: while (1) {
            $need->(sub { index($buf, "\r\n") >= 0 }) or last;
            my $line = substr($buf, 0, index($buf, "\r\n") + 2, '');
            $raw .= $line;
            my ($hex) = $line =~ /^([0-9a-fA-F]+)/;
            if (!defined $hex) { $err = "bad chunk size line: $line"; last }
            my $size = hex $hex;
            if ($size == 0) {
                while (1) {     # trailers up to the empty line
                    $need->(sub { index($buf, "\r\n") >= 0 }) or last CHUNK;
                    my $tl = substr($buf, 0, index($buf, "\r\n") + 2, '');
                    $raw .= $tl;
                    if ($tl eq "\r\n") { $ok = 1; last CHUNK }
                    push @{ $r->{trailers} }, [$1, $2] if $tl =~ /^([^:]+):[ \t]*(.*?)\s*$/;
                }
            }
            $need->(sub { length($buf) >= $size + 2 }) or do {
                $body .= substr($buf, 0, $size); $raw .= $buf; $buf = ''; last;
            };
            my $chunk = substr($buf, 0, $size + 2, '');
            $raw .= $chunk;
            if (substr($chunk, -2) ne "\r\n") { $err = 'chunk not terminated by CRLF'; last }
            $body .= substr($chunk, 0, $size);
            push @{ $r->{chunks} }, $size;
        }
        @$r{qw(body raw_body)} = ($body, $raw);
        return $fail->($err // 'bad chunked body') unless $ok;
    } elsif (defined $hdr->{'content-length'}) {
        my ($len) = $hdr->{'content-length'} =~ /^(\d+)/;
        $len //= 0;
        while (length($buf) < $len) {
            my $n = _fill($sock, \$buf, $deadline, \$err);
            if (!$n) {
                @$r{qw(body raw_body)} = ($buf, $buf);
                return $fail->($err // 'connection closed before end of body ('
                                     . length($buf) . " of $len bytes)");
            }
        }
        my $body = substr($buf, 0, $len, '');
        @$r{qw(body raw_body)} = ($body, $body);
    } else {
        # body delimited by connection close
        while (1) {
            my $n = _fill($sock, \$buf, $deadline, \$err);
            if (!defined $n) {
                @$r{qw(body raw_body)} = ($buf, $buf);
                return $fail->($err);
            }
            last if $n == 0;
        }
        @$r{qw(body raw_body)} = ($buf, $buf);
        $buf = '';
        $conn_close = 1;
    }

    if ($a{keepalive} && !$conn_close) {
        ${*$sock}{mqttapi_buf} = $buf if length $buf;   # pipelined leftovers
        $r->{sock} = $sock;
    } else {
        close $sock;
    }
    return $r;
}

# get($port, $path, @headers) -> response.  @headers: flat name => value
# list or [name, value] pairs.
sub get {
    my ($port, $path, @h) = @_;
    return http_request(port => $port, path => $path, headers => [_pairs(@h)]);
}

# h($resp, $name) -> header value (case-insensitive; repeated ones joined
# with ", ") or undef.
sub h {
    my ($r, $name) = @_;
    return undef unless $r && $r->{header};
    return $r->{header}{lc $name};
}

# local_answer($resp) -> true when the gateway answered the request itself
# (a back-off or quota reject: 429 with X-MQTTAPI-Throttled: gateway).
sub local_answer {
    my ($r) = @_;
    return ($r->{status} // 0) == 429
           && (h($r, 'X-MQTTAPI-Throttled') // '') eq 'gateway';
}

# poll_until($timeout, $cond) -> $cond's first true value, checked every
# 50 ms, or 0 when it has not held within $timeout seconds.
sub poll_until {
    my ($timeout, $cond) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    while (Time::HiRes::time() < $deadline) {
        my $v = $cond->();
        return $v if $v;
        Time::HiRes::sleep(0.05);
    }
    return 0;
}

# headers_all($resp, $name) -> list of all values of that header, in order.
sub headers_all {
    my ($r, $name) = @_;
    return () unless $r && $r->{headers};
    return map { $_->[1] } grep { lc($_->[0]) eq lc $name } @{ $r->{headers} };
}

# debug_events($file, $re) -> ([$request_line, $match], ...): the lines of
# an nginx debug log (error_log ... debug) that match $re, each with the
# request line its connection read last ("GET /a/?x=1 HTTP/1.1"): debug
# lines name no request, only their connection ("*12").
sub debug_events {
    my ($file, $re) = @_;
    my (%line, @ev);
    open my $fh, '<', $file or return ();
    while (my $l = <$fh>) {
        my ($c) = $l =~ /\] \d+#\d+: \*(\d+) / or next;
        if ($l =~ /: \*\d+ http request line: "(.*)"$/) {
            $line{$c} = $1;
        } elsif ($l =~ /($re)/) {
            push @ev, [$line{$c} // '', $1];
        }
    }
    return @ev;
}

# ---------------------------------------------------------------------------
# Mock upstream
# ---------------------------------------------------------------------------

# mock_upstream(script => [[send => $bytes], [sleep => $s], [close => 1],
#               [hang => 1]], per_request => sub { ($head, $body, $n) -> [steps] },
#               port => N) -> MqttapiTest::Mock
#
# A forked server on 127.0.0.1; each connection is handled by its own
# process.  For every request (head up to CRLFCRLF plus a Content-Length or
# chunked body) the steps are run; if the connection is still open after
# the steps, the next request on it is read (keepalive upstream).
# Default script: 200 "ok" and close.
sub mock_upstream {
    my (%a) = @_;
    my $dir = _tempdir('mock');
    _spew("$dir/count", "0 0\n");
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $a{port} // 0,
        Proto     => 'tcp',
        Listen    => 128,
        ReuseAddr => 1,
    ) or die "mock_upstream: cannot listen: $!";
    my $port = $listen->sockport;
    $USED_PORTS{$port} = 1;
    my $script = $a{script} // [
        [send => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"],
        [close => 1],
    ];

    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        # Acceptor process.  Never return into the test code; never run
        # END blocks / destructors of the parent's objects (POSIX::_exit).
        eval {
            setpgrp(0, 0);
            open STDIN,  '<', '/dev/null';
            open STDOUT, '>', '/dev/null';
            $SIG{CHLD} = 'IGNORE';      # auto-reap connection handlers
            $SIG{PIPE} = 'IGNORE';
            $SIG{TERM} = sub { POSIX::_exit(0) };
            while (1) {
                my $c = $listen->accept;
                next unless $c;
                my $h = fork;
                if (defined $h && $h == 0) {
                    close $listen;
                    eval { _mock_conn($c, $dir, $script, $a{per_request}) };
                    print STDERR "mock_upstream: $@" if $@;
                    POSIX::_exit(0);
                }
                close $c;
            }
        };
        print STDERR "mock_upstream acceptor: $@" if $@;
        POSIX::_exit(0);
    }
    close $listen;
    my $self = bless { pid => $pid, port => $port, dir => $dir, owner => $$ },
                     'MqttapiTest::Mock';
    push @LIVE, $self;
    Scalar::Util::weaken($LIVE[-1]);
    return $self;
}

# Atomically bump the connection (idx 0) or request (idx 1) counter; returns
# the new value.
sub _mock_bump {
    my ($dir, $idx) = @_;
    open my $lk, '>>', "$dir/lock" or die "lock: $!";
    flock($lk, 2) or die "flock: $!";
    my @c = split ' ', (_slurp("$dir/count") // '0 0');
    $c[$idx]++;
    _spew("$dir/count.tmp", "@c\n");
    rename "$dir/count.tmp", "$dir/count";
    close $lk;
    return $c[$idx];
}

# Handle one mock connection (runs in its own process).
sub _mock_conn {
    my ($c, $dir, $script, $per_request) = @_;
    _mock_bump($dir, 0);
    my $buf = '';
    my $far = _now() + 86400;
    my $err;
    my $fill = sub { my $n = _fill($c, \$buf, $far, \$err); return $n };

    while (1) {
        # request head
        my $i;
        until (($i = index($buf, "\r\n\r\n")) >= 0) {
            return unless $fill->();
        }
        my $head = substr($buf, 0, $i + 4, '');

        # request body
        my $body = '';
        if ($head =~ /^Content-Length:\s*(\d+)/mi) {
            my $len = $1;
            while (length($buf) < $len) { return unless $fill->() }
            $body = substr($buf, 0, $len, '');
        } elsif ($head =~ /^Transfer-Encoding:.*chunked/mi) {
            while (1) {
                until (index($buf, "\r\n") >= 0) { return unless $fill->() }
                my $line = substr($buf, 0, index($buf, "\r\n") + 2, '');
                my $size = hex(($line =~ /^([0-9a-fA-F]+)/)[0] // 0);
                if ($size == 0) {
                    while (1) {
                        until (index($buf, "\r\n") >= 0) { return unless $fill->() }
                        last if substr($buf, 0, index($buf, "\r\n") + 2, '') eq "\r\n";
                    }
                    last;
                }
                while (length($buf) < $size + 2) { return unless $fill->() }
                $body .= substr($buf, 0, $size);
                substr($buf, 0, $size + 2, '');
            }
        }

        # record the request
        my $n = _mock_bump($dir, 1);
        _spew("$dir/req.$n.head", $head);
        _spew("$dir/req.$n.body", $body);

        my $steps = $per_request ? $per_request->($head, $body, $n) : $script;
        for my $st (@{ $steps || [] }) {
            my ($op, $arg) = @$st;
            if ($op eq 'send') {
                return if _write_all($c, $arg, $far);
            } elsif ($op eq 'sleep') {
                Time::HiRes::sleep($arg);
            } elsif ($op eq 'close') {
                shutdown($c, 2);
                close $c;
                return;
            } elsif ($op eq 'hang') {
                # keep the connection open, without answering, until the
                # peer closes it (or we are killed)
                $buf = '';
                1 while $fill->();
                return;
            } else {
                die "mock_upstream: unknown step '$op'";
            }
        }
    }
}

package MqttapiTest::Mock;

use strict;
use warnings;

sub port { $_[0]{port} }

sub _counts { split ' ', (MqttapiTest::_slurp("$_[0]{dir}/count") // '0 0') }

# Number of requests received so far.
sub count { ($_[0]->_counts)[1] + 0 }

# Number of connections accepted so far.
sub connections { ($_[0]->_counts)[0] + 0 }

# Received requests, in order: list of { method, path, head, body }.
sub requests {
    my ($self) = @_;
    my @r;
    for my $n (1 .. $self->count) {
        my $head = MqttapiTest::_slurp("$self->{dir}/req.$n.head") // next;
        my ($m, $p) = $head =~ /^(\S+)\s+(\S+)/;
        push @r, { method => $m, path => $p, head => $head,
                   body => MqttapiTest::_slurp("$self->{dir}/req.$n.body") // '' };
    }
    return @r;
}

# Last request (hashref as in requests) or undef.
sub last_request { my @r = $_[0]->requests; $r[-1] }

# Kill the acceptor and all connection handlers (one process group).
sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $$ == $self->{owner};
    my $pid = delete $self->{pid};
    kill 'KILL', -$pid;     # whole group: acceptor + handlers
    kill 'KILL', $pid;      # in case setpgrp had not run yet
    waitpid($pid, 0);
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    $self->stop if $self->{owner} && $$ == $self->{owner};
}

package MqttapiTest;

# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------

sub _json_coder {
    my ($text) = @_;
    my $j = JSON::PP->new->allow_nonref;
    $j->utf8 unless $text =~ /[^\x00-\xff]/;    # bytes in -> decode UTF-8
    return $j;
}

# json_decode($text) -> data, or undef on invalid JSON (never dies).
sub json_decode {
    my ($text) = @_;
    return undef unless defined $text;
    my $d = eval { _json_coder($text)->decode($text) };
    return $@ ? undef : $d;
}

# Order-preserving key scan.  Returns an "order tree":
#   object -> { keys => [k...], sub => { k => tree } }
#   array  -> { items => [tree...] }
#   scalar -> undef
# Dies on syntax errors.
sub _json_order_tree {
    my ($text) = @_;
    my $coder = _json_coder($text);
    pos($text) = 0;
    my $ws = sub { $text =~ /\G[ \t\r\n]*/gc };
    my $str_re = qr/"(?:[^"\\]|\\.)*"/s;
    my $value = sub {
        $ws->();
        if ($text =~ /\G\{/gc) {
            my $t = { keys => [], sub => {} };
            $ws->();
            return $t if $text =~ /\G\}/gc;
            while (1) {
                $ws->();
                $text =~ /\G($str_re)/gc or die "JSON: key expected at " . pos($text);
                my $k = $coder->decode($1);
                $ws->();
                $text =~ /\G:/gc or die "JSON: ':' expected at " . pos($text);
                push @{ $t->{keys} }, $k;
                $t->{sub}{$k} = __SUB__->();
                $ws->();
                next if $text =~ /\G,/gc;
                last if $text =~ /\G\}/gc;
                die "JSON: ',' or '}' expected at " . pos($text);
            }
            return $t;
        }
        if ($text =~ /\G\[/gc) {
            my $t = { items => [] };
            $ws->();
            return $t if $text =~ /\G\]/gc;
            while (1) {
                push @{ $t->{items} }, __SUB__->();
                $ws->();
                next if $text =~ /\G,/gc;
                last if $text =~ /\G\]/gc;
                die "JSON: ',' or ']' expected at " . pos($text);
            }
            return $t;
        }
        return undef if $text =~ /\G$str_re/gc;
        return undef if $text =~ /\G(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)/gc;
        die "JSON: value expected at " . (pos($text) // 0);
    };
    my $tree = $value->();
    $ws->();
    die "JSON: trailing garbage at " . pos($text) if pos($text) < length $text;
    return $tree;
}

# json_top_keys($text, @path) -> keys of the top-level object in document
# order; with @path (object keys / array indexes) the keys of the nested
# object at that path.  Empty list on invalid JSON / not an object.
sub json_top_keys {
    my ($text, @path) = @_;
    my $t = eval { _json_order_tree($text) } or return ();
    for my $p (@path) {
        $t = $t->{sub} ? $t->{sub}{$p} : $t->{items} ? $t->{items}[$p] : undef;
        return () unless $t;
    }
    return $t->{keys} ? @{ $t->{keys} } : ();
}

# json_decode_ordered($text) -> ($data, \@top_level_keys_in_order);
# (undef, undef) on invalid JSON.  In scalar context returns $data.
sub json_decode_ordered {
    my ($text) = @_;
    my $data = json_decode($text);
    return wantarray ? (undef, undef) : undef unless defined $data;
    my @keys = json_top_keys($text);
    return wantarray ? ($data, \@keys) : $data;
}

# ---------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------

END {
    if ($$ == $MAIN_PID) {
        local ($?, $@, $!);
        # mocks first: closes hanging upstream connections nginx may wait on
        for my $o (grep { defined($_) && $_->isa('MqttapiTest::Mock') } @LIVE) { $o->stop }
        for my $o (grep { defined($_) && $_->isa('MqttapiTest::Nginx') } @LIVE) { $o->stop }
        if ($ENV{MQTTAPI_KEEP}) {
            print STDERR "# MQTTAPI_KEEP: kept $_\n" for grep { -d } @TEMP_DIRS;
        } else {
            File::Path::remove_tree($_) for grep { -d } @TEMP_DIRS;
        }
    }
}

1;
