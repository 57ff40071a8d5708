#!/usr/bin/perl
# The Debian package of `make deb` (pkg/build-deb.sh), installed into this
# machine with dpkg as Debian's own libnginx-mod-* packages are:
#
#   * the package: its name and version, the files (the module in
#     /usr/lib/nginx/modules, mod-http-mqttapi.conf in
#     /usr/share/nginx/modules-available), the dependencies (the exact
#     nginx ABI of nginx-dev, libjansson4, libhiredis);
#   * `dpkg -i`: the link in /etc/nginx/modules-enabled; the packaged
#     nginx's `nginx -t` of its own configuration (which includes
#     modules-enabled) and of one that uses the module; a private nginx
#     that loads the installed module annotates an error of the emulator;
#   * `dpkg -r` keeps the link as *.removed, `dpkg -P` removes everything;
#   * the packaged nginx is never started (its dpkg trigger only reloads a
#     running one, and this test does not run while it runs).
#
# It needs root (CI runs as root) and the build for the packaged nginx
# (not MQTTAPI_MODULE=none); it leaves a package of the same name that was
# installed before it alone, and runs one at a time on the machine (a lock
# in /run/lock).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes ();
use Fcntl ();
use MqttapiTest;

my $REPO = repo_dir();
my $NAME = 'libnginx-mod-http-mqttapi';
my $LINK = '/etc/nginx/modules-enabled/50-mod-http-mqttapi.conf';
my $AVAILABLE = '/usr/share/nginx/modules-available/mod-http-mqttapi.conf';
my $SO = '/usr/lib/nginx/modules/ngx_http_mqttapi_module.so';
my $ABI_FILE = '/usr/share/nginx/src/debian/libnginx-mod.abisubstvars';

sub slurp { MqttapiTest::_slurp($_[0]) }
sub run { MqttapiTest::_run_cmd(@_) }

sub status {
    my ($rc, $out) = run('dpkg-query', '-W', '-f=${Status}', $NAME);
    return $rc == 0 ? $out : 'not known';
}

# the packaged nginx runs: its pid file names a live /usr/sbin/nginx
sub packaged_nginx_running {
    my ($pid) = (slurp('/run/nginx.pid') // '') =~ /(\d+)/;
    return 0 unless $pid && MqttapiTest::_alive($pid);
    return (readlink("/proc/$pid/exe") // '') eq '/usr/sbin/nginx';
}

plan skip_all => 'installing a package needs root (CI runs as root)'
    unless $> == 0;
plan skip_all => 'no dpkg (not a Debian system)'
    unless -x '/usr/bin/dpkg' && -x '/usr/bin/dpkg-deb';
plan skip_all => 'the package is the module for the packaged nginx: '
               . 'not with MQTTAPI_MODULE=none'
    if $MqttapiTest::MODULE eq 'none';

# One run at a time on this machine (other checkouts may run their suites
# at the same time): the rest holds a lock, waited for with a deadline.
my $LOCK_FILE = '/run/lock/mqttapi-t096_deb.lock';
open my $lock, '>>', $LOCK_FILE or die "cannot open $LOCK_FILE: $!";
{
    my $deadline = Time::HiRes::time() + 600;
    until (flock($lock, Fcntl::LOCK_EX() | Fcntl::LOCK_NB())) {
        die "another t/096_deb.t held $LOCK_FILE for 600 s\n"
            if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.2);
    }
}
plan skip_all => "$NAME is installed on this machine already: left alone"
    if status() =~ /\binstalled\b/;
plan skip_all => 'the packaged nginx is running: installing the package '
               . 'would reload it'
    if packaged_nginx_running();

# ---------------------------------------------------------------------------
# the package
# ---------------------------------------------------------------------------

my $tmp = MqttapiTest::_tempdir('deb');
my ($rc, $out) = run('env', "DEB_OUT=$tmp", "MODULE=$MqttapiTest::MODULE",
                     'bash', "$REPO/pkg/build-deb.sh");
is($rc, 0, 'pkg/build-deb.sh builds the package') or diag $out;
chomp(my $version = slurp("$REPO/pkg/VERSION") // '');
chomp(my $arch = (run('dpkg', '--print-architecture'))[1]);
my $deb = "$tmp/${NAME}_${version}_$arch.deb";
ok(-f $deb, "it is named ${NAME}_<version>_<arch>.deb")
    or BAIL_OUT("no package: $out");
like($out, qr/\Q$deb\E$/m, 'and says where it is');

my (undef, $control) = run('dpkg-deb', '-f', $deb);
like($control, qr/^Package: \Q$NAME\E$/m, 'control: Package');
like($control, qr/^Version: \Q$version\E$/m, 'control: Version (pkg/VERSION)');
my ($abi) = (slurp($ABI_FILE) // '') =~ /^nginx:abi=(\S+)$/m;
ok($abi, "nginx-dev names its ABI ($ABI_FILE)");
my ($depends) = $control =~ /^Depends: (.*)$/m;
like($depends // '', qr/(?:^|, )\Q$abi\E(?:,|$)/,
     "control: depends on the exact nginx ABI ($abi)") if $abi;
like($depends // '', qr/(?:^|, )libjansson4\b/, 'control: depends on libjansson4');
like($depends // '', qr/(?:^|, )libhiredis[0-9.]+\b/,
     'control: depends on libhiredis (mqttapi_sync)');

my (undef, $list) = run('dpkg-deb', '-c', $deb);
like($list, qr{ \./usr/lib/nginx/modules/ngx_http_mqttapi_module\.so$}m,
     'the module in /usr/lib/nginx/modules');
like($list, qr{ \./usr/share/nginx/modules-available/mod-http-mqttapi\.conf$}m,
     'mod-http-mqttapi.conf in /usr/share/nginx/modules-available');
unlike($list, qr{ \./etc/}m, 'nothing in /etc (the link is the postinst\'s)');

# ---------------------------------------------------------------------------
# dpkg -i
# ---------------------------------------------------------------------------

# dpkg(args): dpkg, waiting for its lock if another dpkg holds it
sub dpkg {
    my (@args) = @_;
    my $deadline = Time::HiRes::time() + 120;
    while (1) {
        my ($rc, $out) = run('dpkg', @args);
        return ($rc, $out)
            if $rc == 0 || $out !~ /lock/i || Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.5);
    }
}

# the system's own configuration, before: is it valid at all?
my ($sys_rc_before) = run('/usr/sbin/nginx', '-t', '-q');

# whatever happens below, the package does not outlive the test
my $installed = 0;
my $main_pid = $$;
END { dpkg('--purge', $NAME) if $installed && $$ == $main_pid }

($rc, $out) = dpkg('-i', $deb);
$installed = 1;
is($rc, 0, 'dpkg -i installs it') or diag $out;
like(status(), qr/^install ok installed$/, 'dpkg: installed');
ok(-f $SO, "$SO");
is(readlink($LINK), $AVAILABLE, "$LINK links modules-available");
is(slurp($AVAILABLE), "load_module modules/ngx_http_mqttapi_module.so;\n",
   'mod-http-mqttapi.conf loads the module');
ok(!packaged_nginx_running(), 'the packaged nginx was not started');

SKIP: {
    skip 'the system\'s nginx configuration was invalid before the package', 1
        if $sys_rc_before != 0;
    my ($rc, $out) = run('/usr/sbin/nginx', '-t');
    is($rc, 0, 'nginx -t of /etc/nginx/nginx.conf with the module enabled')
        or diag $out;
}

# a configuration that uses the module, loaded the packaged way
{
    my $port = free_port();
    my $conf = "$tmp/nginx.conf";
    MqttapiTest::_spew($conf, <<"EOF");
include $LINK;
pid $tmp/nginx.pid;
error_log stderr;
events { }
http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    mqttapi_throttle_zone \$arg_AccessKeyId zone=deb:1m;
    server {
        listen 127.0.0.1:$port;
        location / {
            mqttapi on;
            mqttapi_body problem;
            mqttapi_throttle zone=deb;
            proxy_pass http://127.0.0.1:1;
        }
    }
}
EOF
    my ($rc, $out) = run('/usr/sbin/nginx', '-t', '-e', 'stderr', '-c', $conf);
    is($rc, 0, 'nginx -t of a configuration with mqttapi directives') or diag $out;
    like($out, qr/test is successful/, 'nginx -t: test is successful');
}

# the installed module at work (a private nginx, not the packaged one)
{
    local $MqttapiTest::MODULE = $SO;
    my $ng = start_nginx(http => emulator_gateway());
    my $r = get($ng->port(0), '/?Action=CreateGroupId&InstanceId=mqtt-cn-demo'
                              . '&GroupId=GID_existing');
    is($r->{status}, 400, 'the installed module: the emulator\'s 400');
    is(h($r, 'X-MQTTAPI-Error-Code'), 'GroupIdAlreadyExsited',
       'the installed module annotates it');
    $ng->stop;
}

# ---------------------------------------------------------------------------
# dpkg -r, dpkg -P
# ---------------------------------------------------------------------------

($rc, $out) = dpkg('-r', $NAME);
is($rc, 0, 'dpkg -r removes it') or diag $out;
ok(!-e $SO && !-e $AVAILABLE, 'removed: the module and its .conf are gone');
ok(!-e $LINK && -l "$LINK.removed", 'removed: the link is kept as .removed');
($rc, $out) = dpkg('-P', $NAME);
is($rc, 0, 'dpkg -P purges it') or diag $out;
$installed = 0;
ok(!-e $LINK && !-l $LINK && !-l "$LINK.removed", 'purged: no link left');
unlike(status(), qr/\binstalled\b|config-files/,
       'purged: not installed, no configuration files left') or diag status();
ok(!packaged_nginx_running(), 'the packaged nginx is still stopped');

done_testing();
