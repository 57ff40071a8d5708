package MqttapiFleet;

# Helpers of the tests of Redis as operators run it (t/240-t/249): a
# gateway node synced by the given mqttapi_sync line, with its own
# upstream (a server of the same nginx that answers a throttle code when
# asked: ?code=...), a zone "fleet" (a 30 s back-off) on /f/ and the same
# zone's quotas on /q/, and its status endpoint.
#
#   fleet_node($sync, %a)    - start one (a{extra}: more http directives,
#                              a{workers}, a{backoff}: the zone's back-off
#                              and max_backoff, 30s)
#   throttle($node, $key)    - the upstream throttles $key on $node
#   answers_locally($node, $key) - $node answers $key itself (429)
#   sync_up($node)           - the node's mqttapi_sync_up
#   timed_get($node, $path)  - [status, seconds]

use strict;
use warnings;
use Exporter 'import';
use Time::HiRes ();
use MqttapiTest;
use MqttapiStatus;

our @EXPORT = qw(fleet_node code_upstream throttle answers_locally sync_up
                 timed_get
                 $THROTTLE);

our $THROTTLE = 'ApplyTokenOverFlow';

sub fleet_node {
    my ($sync, %a) = @_;
    my $extra = $a{extra} // '';
    my $backoff = $a{backoff} // '30s';
    return start_nginx(workers => $a{workers} // 1, http => <<"EOF");
    mqttapi_sync $sync;
    $extra
    mqttapi_throttle_zone \$arg_AccessKeyId zone=fleet:1m backoff=$backoff
                          max_backoff=$backoff sync;
    server {
        listen 127.0.0.1:%%PORT0%%;
        mqttapi on;
        location /f/ {
            mqttapi_throttle zone=fleet;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location /q/ {
            mqttapi_quota zone=fleet;
            proxy_pass http://127.0.0.1:%%PORT1%%/;
        }
        location = /mqttapi/status {
            mqttapi_status;
        }
    }
@{[ code_upstream('%%PORT1%%') ]}
EOF
}

# a server block for the node's own nginx: the test's upstream, which
# answers "?code=C" with the error C and anything else with a 200
sub code_upstream {
    my ($port) = @_;
    return <<"EOF";
    server {
        listen 127.0.0.1:$port;
        access_log off;
        default_type application/json;
        location / {
            if (\$arg_code) {
                return 400 '{"RequestId":"UP","HostId":"up","Code":"\$arg_code","Message":"from the upstream"}';
            }
            return 200 '{"RequestId":"UP"}';
        }
    }
EOF
}

sub throttle {
    my ($node, $key) = @_;
    return get($node->port(0), "/f/?AccessKeyId=$key&code=$THROTTLE");
}

sub answers_locally {
    my ($node, $key) = @_;
    return local_answer(get($node->port(0), "/f/?AccessKeyId=$key"));
}

sub sync_up {
    my ($node) = @_;
    return status_value(status_json($node->port(0)), 'sync_up');
}

sub timed_get {
    my ($node, $path) = @_;
    my $t0 = Time::HiRes::time();
    my $r = get($node->port(0), $path);
    return [$r->{status} // 0, Time::HiRes::time() - $t0];
}

1;
