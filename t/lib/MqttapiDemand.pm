package MqttapiDemand;

# Helpers of the quota-by-demand fleet tests (t/220-t/229), on top of
# MqttapiTest and MqttapiRedis:
#   * fleet(redis => $r, nodes => 3, interval => '100ms', extra => '')
#       an upstream nginx (200 with a JSON body) and that many gateway
#       nodes of two workers, each with a synced quota zone on /q/, an
#       access log q.log "key|status|start" (start: $msec less
#       $request_time: the second a request began in) and the status
#       endpoint; waits until every node is connected and heard by Redis.
#       Returns { up => nginx, nodes => [nginx, ...], node_http => text }
#   * load($node, $key, $action, $rate, $seconds) -> pid
#       a child process with one keep-alive connection to the node (the
#       pinned client of a load balancer) sending $rate requests a second
#       for $seconds; it sends nothing within 5 ms of a whole second, so
#       that a request's second is the same at the node and in its log
#   * finish(@pids): waits for them
#   * per_second($node, $key) -> { second => [admitted, answered locally] }
#   * started($node, $key) -> the first second the key reached the node
#   * credit_total($node) -> the node's sync_credit_total

use strict;
use warnings;
use Exporter 'import';
use POSIX ();
use Time::HiRes qw(time sleep);
use MqttapiTest;
use MqttapiStatus;

our @EXPORT = qw(fleet node_http start_node load finish per_second started
                 credit_total connected);

sub node_http {
    my (%a) = @_;
    my $rport = $a{redis}->port;
    my $uport = $a{uport};
    my $interval = $a{interval} // '100ms';
    my $fail = $a{fail} // 'local';
    return <<"EOF";
    mqttapi_sync redis=127.0.0.1:$rport interval=$interval timeout=2s
                 fail=$fail;

    log_format q '\$arg_AccessKeyId|\$status|\$msec|\$request_time';

    mqttapi_throttle_zone \$arg_AccessKeyId zone=quota:4m sync;

    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        keepalive_requests 1000000;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /q/ {
            access_log %%PREFIX%%/q.log q;
            mqttapi_quota zone=quota;
            proxy_pass http://127.0.0.1:$uport/;
        }
        location = /mqttapi/status {
            mqttapi_status;
        }
    }
EOF
}

sub start_node {
    my ($http) = @_;
    return start_nginx(workers => 2, http => $http);
}

# connected to Redis, in its heartbeat set with the others (the nodes
# alive), and knows of them all (its sync_nodes, which its credit
# counts)
sub connected {
    my ($node, $redis, $n, $since) = @_;
    return poll_until(15, sub {
               $node->error_log($since) =~ /mqttapi sync: connected to/ })
           && poll_until(10, sub {
                  my $z = eval { $redis->cmd('ZCARD', 'mqttapi:nodes') };
                  defined $z && $z >= $n })
           && poll_until(10, sub {
                  status_value(status_json($node->port(0)), 'sync_nodes')
                  >= $n });
}

sub fleet {
    my (%a) = @_;
    my $n = $a{nodes} // 3;

    my $up = start_nginx(workers => 2, http => <<'EOF');
    server {
        listen 127.0.0.1:%%PORT0%%;
        access_log off;
        keepalive_requests 1000000;
        default_type application/json;
        location / { return 200 '{"RequestId":"UP"}'; }
    }
EOF

    my $http = node_http(%a, uport => $up->port(0));
    my @nodes = map { start_node($http) } 1 .. $n;

    for my $i (0 .. $#nodes) {
        die "node $i did not connect to Redis, or did not hear of the "
            . "others" unless connected($nodes[$i], $a{redis}, $n);
    }

    return { up => $up, nodes => \@nodes, node_http => $http };
}

sub load {
    my ($node, $key, $action, $rate, $seconds) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    return $pid if $pid;

    my $port = $node->port(0);
    my $path = "/q/?AccessKeyId=$key&Action=$action";
    my $gap = 1 / $rate;
    my $end = time + $seconds;
    my $next = time;
    my $sock;

    while ((my $now = time) < $end) {
        if ($now < $next) {
            sleep($next - $now);
            next;
        }
        $next += $gap;
        $next = $now if $next < $now - 0.5;

        my $f = $now - int($now);
        if ($f < 0.005 || $f > 0.995) {
            next;
        }

        my $r = http_request(port => $port, path => $path, keepalive => 1,
                             sock => $sock, timeout => 5);
        $sock = $r->{sock};
    }

    POSIX::_exit(0);
}

sub finish { waitpid $_, 0 for @_ }

sub _lines {
    my ($node) = @_;
    open my $fh, '<', $node->prefix . '/q.log' or return ();
    my @l;
    while (<$fh>) {
        chomp;
        push @l, [split /\|/];
    }
    return @l;
}

sub per_second {
    my ($node, $key) = @_;
    my %per;
    for my $l (_lines($node)) {
        my ($k, $status, $msec, $rt) = @$l;
        next unless defined $rt && $k eq $key;
        my $s = int($msec - $rt);
        $per{$s} ||= [0, 0];
        if ($status == 200) { $per{$s}[0]++ }
        elsif ($status == 429) { $per{$s}[1]++ }
    }
    return \%per;
}

sub started {
    my ($node, $key) = @_;
    my ($first) = sort { $a <=> $b } keys %{ per_second($node, $key) };
    return $first;
}

sub credit_total {
    my ($node) = @_;
    return status_value(status_json($node->port(0)), 'sync_credit_total');
}

1;
