package MqttapiStatus;

# Helpers of the status endpoint tests (t/1xx_status*.t), on top of
# MqttapiTest:
#   * status_json($port, @headers)      - the JSON document, or {}
#   * status_value($d, $metric, %l)     - the sum of the matching rows
#   * status_rows($d, $metric)          - how many rows a metric has
#   * parse_prometheus($text)           - { "name{l=v,...}" => value }
#   * json_as_prometheus($d)            - the JSON document in those terms

use strict;
use warnings;
use Exporter 'import';
use MqttapiTest;

our @EXPORT = qw(status_json status_value status_rows
                 parse_prometheus json_as_prometheus);

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
    for my $metric (keys %$d) {
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
