#!/usr/bin/perl
# The build: `config` (the addon script nginx's configure sources) and the
# Makefile.
#
#   config     the configure run of `make` (build/objs/configure.log) has
#              no shell error and found PCRE; `--without-pcre` stops
#              configure with the module's own message (the module uses
#              ngx_regex), before anything is generated
#   Makefile   build/ngx_http_mqttapi_module.so (build/nginx for STATIC=1)
#              is always the requested tree's, whichever tree was built
#              before; a build directory is reconfigured when its tree or
#              options change; a tree with auto/configure (a clone of the
#              nginx repository) builds like one with ./configure;
#              make test/bench/fuzz check their packages, never
#              apt-get.  Checked with throwaway nginx "trees" whose
#              configure writes an objs Makefile that produces a file
#              naming the tree, and BUILD= pointing to a temporary
#              directory: no compiler, and the real build/ is not touched.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Cwd ();
use File::Path ();
use MqttapiTest;

my $REPO = repo_dir();
my $SRC  = '/usr/share/nginx/src';

# `make test NGINX_SRC=... STATIC=1` exports its command-line variables
# (and MAKEFLAGS) to the tests: the makes below choose their own
delete @ENV{qw(NGINX_SRC STATIC EXTRA_CONFIGURE CC_OPT OPTIMIZE BUILD
               MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};

sub slurp { MqttapiTest::_slurp($_[0]) }
sub spew  { MqttapiTest::_spew(@_) }

# ---------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------

{
    my $log = slurp("$REPO/build/objs/configure.log");
    ok(defined $log, 'build/objs/configure.log exists (make has been run)')
        or BAIL_OUT('run make first');
    $log //= '';
    unlike($log, qr/unexpected operator|syntax error|command not found|: not found/,
           'configure log: no shell error from config');
    like($log, qr/^adding module in \Q$REPO\E$/m, 'configure log: the module was added');
    like($log, qr/^checking for jansson library \.\.\. found$/m, 'configure log: jansson found');
    like($log, qr/^checking for PCRE2? library \.\.\. found$/m, 'configure log: PCRE found');
}

SKIP: {
    # nginx-dev is a build dependency (make deps): its absence is a failure
    ok(-x "$SRC/configure", "$SRC/configure exists") or last SKIP;
    my $objs = MqttapiTest::_tempdir('nopcre');
    my ($rc, $out) = MqttapiTest::_run_cmd('sh', '-c',
        "cd $SRC && ./configure --with-compat --without-pcre "
        . "--add-dynamic-module=$REPO --builddir=$objs/objs");
    isnt($rc, 0, '--without-pcre: configure fails');
    like($out, qr/error: ngx_http_mqttapi_module requires the PCRE library/,
         '--without-pcre: the module says why');
    unlike($out, qr/unexpected operator/, '--without-pcre: no shell error');
    ok(!-e "$objs/objs/ngx_http_mqttapi_catalog_data.c",
       '--without-pcre: stopped before generating anything');
}

# ---------------------------------------------------------------------------
# Makefile
# ---------------------------------------------------------------------------

my $tmp = MqttapiTest::_tempdir('make');

# fake_tree($dir): a "source tree" whose configure records its arguments
# and writes an objs Makefile that builds a module / binary naming $dir
sub fake_tree {
    my ($dir) = @_;
    File::Path::make_path($dir);
    spew("$dir/configure", <<'EOF');
#!/bin/sh
tree=$(pwd -P)
for a in "$@"; do
    case "$a" in --builddir=*) objs=${a#--builddir=} ;; esac
done
mkdir -p "$objs"
n=$(cat "$objs/configure.count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$objs/configure.count"
printf '%s\n' "$@" > "$objs/configure.args"
cat > "$objs/Makefile" <<MK
modules:
	printf 'module of %s\n' '$tree' > '$objs/ngx_http_mqttapi_module.so'
binary:
	printf 'nginx of %s\n' '$tree' > '$objs/nginx'
MK
echo "configured $tree"
EOF
    chmod 0755, "$dir/configure";
    return $dir;
}

my $A  = fake_tree("$tmp/a/nginx-1.0");
my $B  = fake_tree("$tmp/b/nginx-2.0");
my $A2 = fake_tree("$tmp/other/nginx-1.0");    # same directory name as $A
my $BUILD = "$tmp/build";

sub mk {
    my (@args) = @_;
    my ($rc, $out) = MqttapiTest::_run_cmd('make', '--no-print-directory', '-C', $REPO,
                                           "BUILD=$BUILD", @args, 'module');
    return ($rc, $out);
}

sub installed { slurp($_[0] // "$BUILD/ngx_http_mqttapi_module.so") // '(none)' }

sub build_ok {
    my ($tree, $w, @extra) = @_;
    my ($rc, $out) = mk("NGINX_SRC=$tree", @extra);
    is($rc, 0, "$w: make succeeds") or diag $out;
    my $file = grep({ /^STATIC=/ } @extra) ? "$BUILD/nginx" : undef;
    my $what = $file ? 'nginx' : 'module';
    my $real = Cwd::abs_path($tree);
    is(installed($file), "$what of $real\n", "$w: the installed $what is the one of $tree");
    return $out;
}

build_ok($A, 'tree A');
build_ok($B, 'then tree B');
my $out = build_ok($A, 'then tree A again');
like($out, qr/installed \Q$BUILD\E\/ngx_http_mqttapi_module\.so \(from \Q$BUILD\E\/objs-nginx-1\.0\)/,
     'tree A again: says what it installed, from where');
is(slurp("$BUILD/objs-nginx-1.0/configure.count"), "1\n", 'tree A again: not reconfigured');

$out = build_ok($A, 'tree A, nothing changed');
unlike($out, qr/^installed /m, 'tree A, nothing changed: nothing installed');

build_ok("$A/", 'tree A with a trailing slash');
is(slurp("$BUILD/objs-nginx-1.0/configure.count"), "1\n", 'the same tree: not reconfigured');

# another tree in a directory of the same name shares objs-nginx-1.0: it
# must be reconfigured for that tree
build_ok($A2, 'another tree named nginx-1.0');
is(slurp("$BUILD/objs-nginx-1.0/configure.count"), "2\n",
   'another tree named nginx-1.0: reconfigured');
build_ok($A, 'back to tree A');
is(slurp("$BUILD/objs-nginx-1.0/configure.count"), "3\n", 'back to tree A: reconfigured');

# other options reconfigure too
build_ok($A, 'tree A with EXTRA_CONFIGURE', 'EXTRA_CONFIGURE=--with-foo');
like(slurp("$BUILD/objs-nginx-1.0/configure.args") // '', qr/^--with-foo$/m,
     'EXTRA_CONFIGURE: passed to configure');
build_ok($A, "tree A with CC_OPT containing a quote", "CC_OPT=-DX='a b'");
like(slurp("$BUILD/objs-nginx-1.0/configure.args") // '',
     qr/^--with-cc-opt=-Werror -O2 -fstack-protector-strong .* -DX='a b'$/m,
     'CC_OPT: passed to configure, after the default OPTIMIZE');
is(slurp("$BUILD/objs-nginx-1.0/configure.count"), "5\n", 'each option change reconfigured');
build_ok($A, 'tree A with OPTIMIZE empty', 'OPTIMIZE=');
like(slurp("$BUILD/objs-nginx-1.0/configure.args") // '', qr/^--with-cc-opt=-Werror\s*$/m,
     'OPTIMIZE=: only -Werror is passed');

# STATIC=1: build/nginx, same rule
build_ok($A, 'STATIC=1 tree A', 'STATIC=1');
build_ok($B, 'STATIC=1 tree B', 'STATIC=1');
build_ok($A, 'STATIC=1 tree A again', 'STATIC=1');
ok(-d "$BUILD/objs-nginx-1.0-static", 'STATIC=1: its own build directory');
is(installed(), "module of " . Cwd::abs_path($A) . "\n", 'STATIC=1 builds leave the module alone');

# a clone of the nginx repository has auto/configure, not ./configure:
# it is configured the same way, from the top of the tree
{
    my $R = fake_tree("$tmp/clone/nginx");
    File::Path::make_path("$R/auto");
    rename("$R/configure", "$R/auto/configure") or die "rename: $!";
    build_ok($R, 'a repository clone (auto/configure)');
    ok(-f "$BUILD/objs-nginx/configure.args",
       'a repository clone: configured into objs-nginx');
}

# a tree without configure: a clear message
{
    my ($rc, $o) = mk("NGINX_SRC=$tmp/none");
    isnt($rc, 0, 'no tree: make fails');
    like($o, qr/no nginx source at \Q$tmp\E\/none/, 'no tree: says so');
}

# the packages: run, test, bench and fuzz check theirs and name what is
# missing, without apt-get (that is `make deps`)
SKIP: {
    skip 'no dpkg-query (not a Debian system)', 4 unless -x '/usr/bin/dpkg-query';
    my ($rc, $o) = MqttapiTest::_run_cmd('make', '--no-print-directory', '-C', $REPO,
                                         'check-test', 'TEST_PKGS=make no-such-package-mqttapi');
    isnt($rc, 0, 'a missing package: make check-test fails');
    like($o, qr/^missing Debian packages: no-such-package-mqttapi$/m, 'it names the package');
    like($o, qr/run 'make deps'/, 'it says how to install it');
    my (undef, $n) = MqttapiTest::_run_cmd('make', '--no-print-directory', '-n', '-C', $REPO,
                                           "BUILD=$BUILD", "NGINX_SRC=$A", 'test', 'bench', 'fuzz');
    unlike($n, qr/apt-get (?:update|install)/, 'make test, bench and fuzz do not run apt-get');
}

done_testing();
