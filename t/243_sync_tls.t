#!/usr/bin/perl
# mqttapi_sync over TLS (mqttapi_sync_ssl*, nginx's own OpenSSL), against
# `redis-server --tls-port` on loopback with certificates this test makes
# with `openssl`: a CA and a server certificate for "localhost", a client
# certificate of the same CA, and a second CA that signed nothing here;
# a CRL of the CA that revokes the server's certificate.
#
#   * nginx -t: verify without a trusted certificate, a certificate
#     without its key, an unknown protocol, verify with Sentinel and no
#     name;
#   * the good CA, verified, the name "localhost": two nodes connect over
#     TLS and share a back-off; after Redis drops the connections, the
#     reconnection reuses the TLS session;
#   * an untrusted CA, a revoked certificate (mqttapi_sync_ssl_crl), a
#     wrong name: one clear line naming the reason, the
#     node stays in fail= (mqttapi_sync_up 0), requests as without sync;
#   * a Redis that requires client certificates: refused without one,
#     connected with one, and with one whose key is encrypted
#     (mqttapi_sync_ssl_password_file);
#   * a Redis frozen (SIGSTOP) during the handshake: the handshake times
#     out in the background, requests are answered meanwhile.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp ();
use MqttapiTest;
use MqttapiRedis;
use MqttapiFleet;

my $dir = File::Temp::tempdir('mqttapi-tls-XXXXXX', TMPDIR => 1,
                              CLEANUP => 1);

sub openssl {
    my $out = `openssl @_ 2>&1`;
    die "openssl @_: $out" if $?;
}

sub cert {
    my ($name, $cn, $ca, %a) = @_;
    openssl("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
            . " -keyout $dir/$name.key -subj '/CN=$cn'"
            . ($ca ? " -out $dir/$name.csr"
                   : " -x509 -days 2 -out $dir/$name.crt"));
    return unless $ca;
    open my $fh, '>', "$dir/$name.ext" or die;
    print $fh $a{ext} // "subjectAltName=DNS:$cn\n";
    close $fh;
    openssl("x509 -req -in $dir/$name.csr -CA $dir/$ca.crt"
            . " -CAkey $dir/$ca.key -CAcreateserial -days 2"
            . " -extfile $dir/$name.ext -out $dir/$name.crt");
}

cert('ca', 'mqttapi test CA');
cert('other', 'another CA');
cert('server', 'localhost', 'ca');
cert('client', 'gateway', 'ca', ext => "extendedKeyUsage=clientAuth\n");

# the server's certificate revoked, in a CRL of the CA; the client's key
# encrypted, its passphrase in a file
{
    open my $fh, '>', "$dir/ca.cnf" or die;
    print $fh "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = $dir/index.txt\n"
            . "crlnumber = $dir/crlnumber\ndefault_md = sha256\n"
            . "default_crl_days = 2\n";
    close $fh;
    open $fh, '>', "$dir/index.txt" or die;
    close $fh;
    open $fh, '>', "$dir/crlnumber" or die;
    print $fh "01\n";
    close $fh;
    my $ca = "ca -config $dir/ca.cnf -keyfile $dir/ca.key -cert $dir/ca.crt";
    openssl("$ca -revoke $dir/server.crt");
    openssl("$ca -gencrl -out $dir/revoked.crl");
    openssl("ec -in $dir/client.key -aes256 -passout pass:Key-pass-3e1"
            . " -out $dir/client.enc.key");
    open $fh, '>', "$dir/passwords" or die;
    print $fh "not this one\nKey-pass-3e1\n";
    close $fh;
}

# --- nginx -t ----------------------------------------------------------------

{
    my $sync = 'mqttapi_sync redis=127.0.0.1:1;';
    my $rest = ' mqttapi_throttle_zone $arg_AccessKeyId zone=f:1m sync;'
             . ' server { listen 127.0.0.1:%%PORT0%%; location / {'
             . ' mqttapi on; mqttapi_throttle zone=f; return 204; } }';
    for my $c (
        [ 'verify without a trusted certificate',
          'mqttapi_sync_ssl on; mqttapi_sync_ssl_verify on;',
          qr/no "mqttapi_sync_ssl_trusted_certificate" is defined for the "mqttapi_sync_ssl_verify" directive/ ],
        [ 'a certificate without its key',
          "mqttapi_sync_ssl on; mqttapi_sync_ssl_certificate $dir/client.crt;",
          qr/no "mqttapi_sync_ssl_certificate_key" is defined for certificate/ ],
        [ 'an unknown protocol',
          'mqttapi_sync_ssl on; mqttapi_sync_ssl_protocols TLSv9;',
          qr/invalid value "TLSv9"/ ],
        [ 'verify with Sentinel and no name',
          'mqttapi_sync_ssl on; mqttapi_sync_ssl_verify on; '
          . "mqttapi_sync_ssl_trusted_certificate $dir/ca.crt;"
          . ' mqttapi_sync sentinel=127.0.0.1:2 master=m;',
          qr/"mqttapi_sync_ssl_verify" with "sentinel" needs "mqttapi_sync_ssl_name"/ ],
        [ 'a file that is not there',
          'mqttapi_sync_ssl on; mqttapi_sync_ssl_verify on; '
          . "mqttapi_sync_ssl_trusted_certificate $dir/none.crt;",
          qr/none\.crt/ ],
    ) {
        my ($name, $ssl, $re) = @$c;
        $ssl .= " $sync" unless $ssl =~ /mqttapi_sync /;
        my ($rc, $out) = nginx_test_config("$ssl $rest");
        isnt($rc, 0, "nginx -t fails: $name");
        like($out, $re, "nginx -t: $name: message") or diag $out;
    }
    my ($rc, $out) = nginx_test_config(
        "mqttapi_sync_ssl on; mqttapi_sync_ssl_verify on;"
        . " mqttapi_sync_ssl_verify_depth 2;"
        . " mqttapi_sync_ssl_trusted_certificate $dir/ca.crt;"
        . " mqttapi_sync_ssl_name localhost; mqttapi_sync_ssl_server_name on;"
        . " mqttapi_sync_ssl_certificate $dir/client.crt;"
        . " mqttapi_sync_ssl_certificate_key $dir/client.key;"
        . " mqttapi_sync_ssl_protocols TLSv1.2 TLSv1.3;"
        . " mqttapi_sync_ssl_ciphers HIGH:!aNULL;"
        . " mqttapi_sync_ssl_crl $dir/revoked.crl;"
        . " mqttapi_sync_ssl_password_file $dir/passwords;"
        . " mqttapi_sync_ssl_session_reuse on; $sync $rest");
    is($rc, 0, 'nginx -t: every mqttapi_sync_ssl directive') or diag $out;
}

# --- Redis over TLS -------------------------------------------------------------

sub tls_redis {
    my ($auth) = @_;
    my $tport = free_port();
    my $r = MqttapiRedis->start(args => [
        '--tls-port', $tport, '--tls-cert-file', "$dir/server.crt",
        '--tls-key-file', "$dir/server.key",
        '--tls-ca-cert-file', "$dir/ca.crt",
        '--tls-auth-clients', $auth]);
    return ($r, $tport);
}

sub tls_node {
    my ($tport, $ssl, %a) = @_;
    return fleet_node("redis=127.0.0.1:$tport interval=100ms timeout=1s",
                      extra => "mqttapi_sync_ssl on; $ssl", %a);
}

my $VERIFY = "mqttapi_sync_ssl_verify on;"
           . " mqttapi_sync_ssl_trusted_certificate $dir/ca.crt;"
           . " mqttapi_sync_ssl_name localhost;"
           . " mqttapi_sync_ssl_server_name on;";

my ($redis, $tport) = tls_redis('optional');

my @nodes = map { tls_node($tport, $VERIFY) } 1 .. 2;
my ($A, $B) = @nodes;
for my $n (0, 1) {
    ok(poll_until(10, sub { $nodes[$n]->error_log
                            =~ /sync: connected to \S+ \(redis [\d.]+, TLSv1\.[23]\)/ }),
       "node $n connects over TLS, the certificate verified")
        or diag $nodes[$n]->error_log;
}
is(throttle($A, 'AK-tls')->{status}, 400, 'A relays the upstream\'s throttle');
ok(poll_until(5, sub { answers_locally($B, 'AK-tls') }),
   'B answers the key locally: the back-off went through Redis over TLS');
is(sync_up($B), 1, 'B: sync_up 1');

my $mark = $A->error_log_mark;
ok($redis->cmd('CLIENT', 'KILL', 'TYPE', 'normal') >= 1,
   'Redis drops the nodes\' command connections');
ok(poll_until(10, sub { $A->error_log($mark)
                        =~ /sync: connected to .*, TLSv1\.[23], session reused\)/ }),
   'A reconnects and reuses its TLS session') or diag $A->error_log($mark);
$_->stop for @nodes;

# --- what does not verify ----------------------------------------------------------

for my $c (
    [ 'an untrusted CA',
      "mqttapi_sync_ssl_verify on; mqttapi_sync_ssl_name localhost;"
      . " mqttapi_sync_ssl_trusted_certificate $dir/other.crt;",
      qr/sync: TLS: the certificate of 127\.0\.0\.1:\d+ does not verify: \(\d+:[^)]*(?:issuer|self.signed)[^)]*\)/ ],
    [ 'a revoked certificate',
      "mqttapi_sync_ssl_verify on; mqttapi_sync_ssl_name localhost;"
      . " mqttapi_sync_ssl_trusted_certificate $dir/ca.crt;"
      . " mqttapi_sync_ssl_crl $dir/revoked.crl;",
      qr/sync: TLS: the certificate of 127\.0\.0\.1:\d+ does not verify: \(23:certificate revoked\)/ ],
    [ 'a wrong name',
      "mqttapi_sync_ssl_verify on; mqttapi_sync_ssl_name other.example;"
      . " mqttapi_sync_ssl_trusted_certificate $dir/ca.crt;",
      qr/sync: TLS: the certificate of 127\.0\.0\.1:\d+ does not match "other\.example"/ ],
) {
    my ($name, $ssl, $re) = @$c;
    my $n = tls_node($tport, $ssl);
    ok(poll_until(10, sub { $n->error_log =~ $re }), "$name: the line")
        or diag $n->error_log;
    sleep 1;
    is(sync_up($n), 0, "$name: sync_up 0");
    unlike($n->error_log, qr/sync: connected to/, "$name: never connected");
    is(get($n->port(0), '/f/?AccessKeyId=AK-v')->{status}, 200,
       "$name: requests as without sync");
    is(throttle($n, 'AK-v')->{status}, 400, "$name: a throttle");
    ok(answers_locally($n, 'AK-v'), "$name: backs off on its own (fail=)");
    $n->stop;
}

# --- client certificates ---------------------------------------------------------

my ($strict, $sport) = tls_redis('yes');
{
    my $n = tls_node($sport, $VERIFY);
    ok(poll_until(10, sub { $n->error_log
                            =~ /certificate required|handshake.*failed|closed the command connection/ }),
       'client certificate required, none given: refused')
        or diag $n->error_log;
    like($n->error_log, qr/alert certificate required|handshake failure|peer did not return a certificate/,
         'nginx names OpenSSL\'s reason');
    unlike($n->error_log, qr/sync: connected to/, 'never connected');
    is(sync_up($n), 0, 'sync_up 0');
    $n->stop;

    $n = tls_node($sport, $VERIFY
                  . " mqttapi_sync_ssl_certificate $dir/client.crt;"
                  . " mqttapi_sync_ssl_certificate_key $dir/client.key;");
    ok(poll_until(10, sub { $n->error_log =~ /sync: connected to/ }),
       'with a client certificate: connected') or diag $n->error_log;
    $n->stop;

    $n = tls_node($sport, $VERIFY
                  . " mqttapi_sync_ssl_certificate $dir/client.crt;"
                  . " mqttapi_sync_ssl_certificate_key $dir/client.enc.key;"
                  . " mqttapi_sync_ssl_password_file $dir/passwords;");
    ok(poll_until(10, sub { $n->error_log =~ /sync: connected to/ }),
       'with a client certificate whose key needs a passphrase: connected')
        or diag $n->error_log;
    $n->stop;
}

# --- a frozen Redis: the handshake does not block ------------------------------------

$strict->freeze;
{
    my $n = fleet_node("redis=127.0.0.1:$sport interval=100ms timeout=300ms",
                    extra => "mqttapi_sync_ssl on;");
    ok(poll_until(10, sub { $n->error_log
                            =~ /sync: TLS: the handshake with \S+ on the \w+ connection timed out/ }),
       'frozen Redis: the handshake times out') or diag $n->error_log;
    my @s = map { get($n->port(0), "/f/?AccessKeyId=AK-f$_")->{status} } 1 .. 5;
    is("@s", '200 200 200 200 200', 'frozen Redis: requests answered');
    $n->stop;
}
$strict->thaw;

done_testing();
