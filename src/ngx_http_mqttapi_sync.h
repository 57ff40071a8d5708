
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_SYNC_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_SYNC_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_zone.h"


#define NGX_HTTP_MQTTAPI_SYNC_ZONE       "mqttapi:sync"

#define NGX_HTTP_MQTTAPI_SYNC_FAIL_LOCAL   0
#define NGX_HTTP_MQTTAPI_SYNC_FAIL_OPEN    1
#define NGX_HTTP_MQTTAPI_SYNC_FAIL_CLOSED  2

/* what the request path hands to the background task */

#define NGX_HTTP_MQTTAPI_SYNC_OPEN       1   /* a back-off opened */
#define NGX_HTTP_MQTTAPI_SYNC_CLOSE      2   /* a probe closed it */

#define NGX_HTTP_MQTTAPI_SYNC_OUTBOX     1024

/* a quota's band at a boundary of Redis's seconds, ms */
#define NGX_HTTP_MQTTAPI_SYNC_BAND       2
#define NGX_HTTP_MQTTAPI_SYNC_ID_LEN     24

/* error counters, by operation */

#define NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT  0
#define NGX_HTTP_MQTTAPI_SYNC_OP_BACKOFF  1
#define NGX_HTTP_MQTTAPI_SYNC_OP_RECONCILE 2
#define NGX_HTTP_MQTTAPI_SYNC_OP_PROBE    3
#define NGX_HTTP_MQTTAPI_SYNC_OP_GRANT    4
#define NGX_HTTP_MQTTAPI_SYNC_OP_BEAT     5
#define NGX_HTTP_MQTTAPI_SYNC_OP_PUBSUB   6
#define NGX_HTTP_MQTTAPI_SYNC_OPS         7

#define NGX_HTTP_MQTTAPI_SYNC_RTT_BUCKETS 8


/*
 * An event of the request path.  The outbox outlives a reload, and a
 * worker of the old configuration may still write to it: the zone is
 * named by "zone_id", a hash of its name that the configuration checks to
 * be unique among the synced zones, and the task turns it into "zone",
 * the zone's place in its own configuration, once it reads the event
 */

typedef struct {
    u_char                       type;
    u_char                       zone;        /* the task's, see above */
    u_short                      len;
    uint32_t                     zone_id;
    uint32_t                     count;
    u_char                       key[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_sync_event_t;


typedef struct {
    ngx_atomic_t                 owner;       /* the task's worker pid */
    ngx_atomic_t                 beat;        /* its last tick */
    ngx_atomic_t                 up;          /* Redis connected */
    ngx_atomic_t                 refused;     /* Redis refuses writes */
    ngx_atomic_t                 nodes;       /* nodes last seen alive */
    ngx_atomic_t                 clock;       /* Redis ms - local ms */
    ngx_atomic_t                 clocked;     /* "clock" is known */
    ngx_atomic_t                 ask;         /* a quota key wants a grant */
    ngx_atomic_t                 credit;      /* admitted on credit */

    ngx_atomic_t                 errors[NGX_HTTP_MQTTAPI_SYNC_OPS];
    ngx_atomic_t                 rtt[NGX_HTTP_MQTTAPI_SYNC_RTT_BUCKETS];
    ngx_atomic_t                 rtt_count;
    ngx_atomic_t                 rtt_sum;     /* microseconds */

    u_char                       id[NGX_HTTP_MQTTAPI_SYNC_ID_LEN];

    /* events of the request path, under the pool's mutex */

    ngx_uint_t                   head;
    ngx_uint_t                   n;
    ngx_uint_t                   overflow;
    ngx_http_mqttapi_sync_event_t  outbox[NGX_HTTP_MQTTAPI_SYNC_OUTBOX];
} ngx_http_mqttapi_sync_sh_t;


/* mqttapi_sync_ssl*: as proxy_ssl_* */

typedef struct {
    ngx_flag_t                   enable;
    ngx_flag_t                   verify;
    ngx_uint_t                   verify_depth;
    ngx_flag_t                   server_name;
    ngx_flag_t                   session_reuse;
    ngx_uint_t                   protocols;
    ngx_str_t                    name;
    ngx_str_t                    trusted_certificate;
    ngx_str_t                    certificate;
    ngx_str_t                    certificate_key;
    ngx_str_t                    password_file;
    ngx_str_t                    crl;
    ngx_str_t                    ciphers;
#if (NGX_SSL)
    ngx_ssl_t                   *ssl;
#endif
} ngx_http_mqttapi_sync_ssl_conf_t;


typedef struct {
    struct sockaddr             *sockaddr;
    socklen_t                    socklen;
    ngx_str_t                    name;        /* host:port, for the log */
    ngx_str_t                    host;        /* of redis= */
    ngx_array_t                 *sentinels;   /* ngx_addr_t, or NULL */
    ngx_str_t                    master;      /* its name, for Sentinel */
    ngx_str_t                    sentinel_password;
    ngx_http_mqttapi_sync_ssl_conf_t  *ssl;   /* TLS on, or NULL */
    ngx_str_t                    user;        /* an ACL user */
    ngx_str_t                    password;
    ngx_int_t                    db;
    ngx_str_t                    prefix;
    ngx_msec_t                   interval;
    ngx_msec_t                   timeout;
    ngx_uint_t                   fail;
    ngx_flag_t                   shared_egress;

    ngx_array_t                  zones;       /* ngx_http_mqttapi_zone_t * */
    ngx_array_t                  zone_ids;    /* uint32_t, as "zones" */

    ngx_shm_zone_t              *shm_zone;
    ngx_slab_pool_t             *shpool;
    ngx_http_mqttapi_sync_sh_t  *sh;
} ngx_http_mqttapi_sync_conf_t;


/* the words of the status endpoint, by operation and bucket */

extern const char  *ngx_http_mqttapi_sync_ops[];
extern const char  *ngx_http_mqttapi_sync_rtt_le[];


/* configuration, ngx_http_mqttapi_sync.c */

char *ngx_http_mqttapi_sync_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_mqttapi_sync_postconfiguration(ngx_conf_t *cf);
uint32_t ngx_http_mqttapi_sync_zone_id(ngx_http_mqttapi_zone_t *zone);
char *ngx_http_mqttapi_sync_ssl_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_mqttapi_sync_ssl_init(ngx_conf_t *cf,
    ngx_http_mqttapi_sync_conf_t *scf, void *conf);
ngx_int_t ngx_http_mqttapi_sync_init_process(ngx_cycle_t *cycle);
void ngx_http_mqttapi_sync_exit_process(ngx_cycle_t *cycle);

/* the request path: shared memory only */

void ngx_http_mqttapi_sync_notify(ngx_http_mqttapi_zone_t *zone,
    ngx_uint_t type, ngx_str_t *key, uint32_t count);


static ngx_inline ngx_uint_t
ngx_http_mqttapi_sync_up(ngx_http_mqttapi_zone_t *zone)
{
    ngx_http_mqttapi_sync_conf_t  *scf = zone->sync;

    return scf && scf->sh && scf->sh->up;
}


/* ngx_http_mqttapi_quota_sync.c: a synced quota on the request path */

ngx_int_t ngx_http_mqttapi_quota_sync(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_http_mqttapi_node_t *node,
    ngx_str_t *key, ngx_uint_t *limit, ngx_msec_t now, ngx_msec_t *left);
void ngx_http_mqttapi_quota_sync_count(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_quota_node_t *q);
ngx_uint_t ngx_http_mqttapi_quota_sync_credit(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_uint_t limit);
ngx_uint_t ngx_http_mqttapi_quota_sync_nodes(ngx_http_mqttapi_sync_sh_t *sh);
void ngx_http_mqttapi_quota_sync_roll(ngx_http_mqttapi_quota_node_t *q,
    uint32_t second);
uint32_t ngx_http_mqttapi_quota_sync_second(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_msec_t now);

/* delay= (ngx_http_mqttapi_quota_delay.c): booking in the next second */

ngx_uint_t ngx_http_mqttapi_quota_sync_next(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_quota_node_t *q, ngx_msec_t now, ngx_uint_t limit,
    ngx_msec_t *start);
ngx_uint_t ngx_http_mqttapi_quota_sync_booked(
    ngx_http_mqttapi_quota_node_t *q);
void ngx_http_mqttapi_quota_sync_book(ngx_http_mqttapi_quota_node_t *q);
void ngx_http_mqttapi_quota_sync_give_back(ngx_http_mqttapi_quota_node_t *q);


#endif /* _NGX_HTTP_MQTTAPI_SYNC_H_INCLUDED_ */
