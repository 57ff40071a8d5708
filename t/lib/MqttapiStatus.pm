package MqttapiStatus;

# Helpers of the status endpoint tests (t/1xx_status*.t), on top of
# MqttapiTest:
#   * status_json($port, @headers)      - the JSON document, or {}
#   * status_value($d, $metric, %l)     - the sum of the matching rows
#   * status_rows($d, $metric)          - how many rows a metric has
#   * parse_prometheus($text)           - { "name{l=v,...}" => value }
#   * json_as_prometheus($d)            - the JSON document in those terms
#   * status_metrics($d)                - the members that are metrics
#                                         (not those of the status page:
#                                         @PAGE_MEMBERS)
#   * status_page_http()                - the gateway of the status page
#                                         tests (t/12x): the emulator, a
#                                         zone "api" (back-off and quota,
#                                         /), a zone "batch" (/batch/)

use strict;
use warnings;
use Exporter 'import';
use MqttapiTest;

our @EXPORT = qw(status_json status_value status_rows status_metrics
                 status_page_http parse_prometheus json_as_prometheus);

# the JSON members that are no metric: the status page's (uptime and the
# node's workers, the back-offs in effect, the use of the quotas); they
# are not in the Prometheus output
our @PAGE_MEMBERS = qw(uptime workers backoffs quotas);
my %PAGE = map { $_ => 1 } @PAGE_MEMBERS;

sub status_metrics { grep { !$PAGE{$_} } keys %{ $_[0] } }

sub status_json {
    my ($port, @headers) = @_;
    my $r = get($port, '/mqttapi/status', @headers);
    my $d = ($r->{status} // 0) == 200 ? json_decode($r->{body}) : undef;
    return ref $d eq 'HASH' ? $d : {};
}

sub status_value {
    my ($d, $metric, %l) = @_;
    my $sum = 0;
    for my $row (@{ $d->{$metric} || [] }) {
        next if grep { !defined $row->{$_} || $row->{$_} ne $l{$_} } keys %l;
        $sum += $row->{value};
    }
    return $sum;
}

sub status_page_http {
    return MqttapiTest::emulator_http() . <<'EOF';
    mqttapi_throttle_zone $arg_AccessKeyId zone=api:1m backoff=60s
                          max_backoff=60s;
    mqttapi_throttle_zone $arg_AccessKeyId zone=batch:1m backoff=60s
                          max_backoff=60s;

    server {
        listen 127.0.0.1:%%PORT0%%;

        location = /mqttapi/status {
            mqttapi_status;
        }

        location / {
            mqttapi on;
            mqttapi_throttle zone=api;
            mqttapi_quota zone=api;
            proxy_pass http://127.0.0.1:%%PORT1%%;
        }

        location /batch/ {
            mqttapi on;
            mqttapi_throttle zone=batch;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
    }
EOF
}

sub status_rows { scalar @{ $_[0]{ $_[1] } || [] } }

sub _sample_key {
    my ($name, %l) = @_;
    return $name . '{' . join(',', map { "$_=$l{$_}" } sort keys %l) . '}';
}

sub parse_prometheus {
    my ($text) = @_;
    my %m;
    for my $line (split /\n/, $text) {
        next if $line =~ /^#/ || $line eq '';
        my ($name, $labels, $v) = $line =~ /^(\w+)(?:\{(.*)\})? (\S+)$/
            or return undef;
        my %l;
        while (($labels // '') =~ /\G(\w+)="((?:[^"\\]|\\.)*)",?/gc) {
            my ($k, $v) = ($1, $2);
            $v =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
            $l{$k} = $v;
        }
        $m{ _sample_key($name, %l) } = 0 + $v;
    }
    return \%m;
}

sub json_as_prometheus {
    my ($d) = @_;
    my %m;
    for my $metric (status_metrics($d)) {
        for my $row (@{ $d->{$metric} }) {
            my %l = %$row;
            # a histogram: {"le":..,"value":..} rows, then {"sum":..}
            # and {"count":..}
            my ($total) = grep { $_ eq 'sum' || $_ eq 'count' } keys %l;
            if (defined $total) {
                $m{ _sample_key("mqttapi_${metric}_$total") }
                    = 0 + $l{$total};
                next;
            }
            my $v = delete $l{value};
            my $name = exists $l{le} ? "mqttapi_${metric}_bucket"
                                     : "mqttapi_$metric";
            $m{ _sample_key($name, %l) } = 0 + $v;
        }
    }
    return \%m;
}

1;
