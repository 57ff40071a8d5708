
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_ZONE_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_ZONE_H_INCLUDED_


#include "ngx_http_mqttapi.h"


/*
 * Every node takes one slab chunk of this size, so that evicting any node
 * makes room for any other; keys that would not fit are kept as their MD5.
 */
#define NGX_HTTP_MQTTAPI_NODE_SIZE     128

#define NGX_HTTP_MQTTAPI_ZONE_CODES    15
#define NGX_HTTP_MQTTAPI_LOG_CTX_LEN   64

/*
 * The per-action ceiling is one for the whole gateway: its counters live
 * in a zone of their own, which every quota zone charges.  A ":" keeps its
 * name out of reach of mqttapi_throttle_zone; it holds one node per action
 * name of the catalogs, a few hundred at most.
 */
#define NGX_HTTP_MQTTAPI_CEILING_ZONE  "mqttapi:ceiling"
#define NGX_HTTP_MQTTAPI_CEILING_SIZE  (128 * 1024)

#define NGX_HTTP_MQTTAPI_NODE_BACKOFF  1
#define NGX_HTTP_MQTTAPI_NODE_QUOTA    2

/* the flags of a back-off node of a synced zone */

#define NGX_HTTP_MQTTAPI_SYNC_PEER     0x01  /* learnt from another node */
#define NGX_HTTP_MQTTAPI_SYNC_RIGHT    0x02  /* this node may probe */


/*
 * A quota node counts requests in NGX_HTTP_MQTTAPI_BUCKETS buckets of
 * NGX_HTTP_MQTTAPI_BUCKET_MSEC: the buckets before the current one cover
 * at least the last second (7 * 143 ms), so a limit checked against their
 * sum is never exceeded in any one-second window.
 */

#define NGX_HTTP_MQTTAPI_BUCKETS       8
#define NGX_HTTP_MQTTAPI_BUCKET_MSEC   143


/*
 * A bucket is a uint16_t (wider ones would not fit the node in
 * NGX_HTTP_MQTTAPI_NODE_SIZE).  A request is counted only while the
 * window's sum is below the limit, so no bucket ever exceeds the limit,
 * and a limit up to NGX_HTTP_MQTTAPI_QUOTA_MAX, the highest the catalog
 * takes, is enforced exactly.
 */


/*
 * A node is allocated from "color" on, as in limit_req: the rbtree key,
 * links and parent come first and the rest follows.  What a node means is
 * its "type", and only zone.c looks one up (ngx_http_mqttapi_zone_node,
 * which checks the type); the rest reaches its fields through the typed
 * accessors below.  Both kinds count in "rejected" the local answers of
 * the current window, of which only the first is logged: a back-off's
 * window is the back-off (until the probe or the next throttle), a
 * quota's the second after its first logged answer ("report", a bucket).
 */

typedef struct {
    ngx_msec_t                   until;       /* its end, local ms */
    ngx_msec_t                   probe;       /* probe start, 0: none */
    uint32_t                     delay;       /* ms */
    uint32_t                     count;       /* consecutive throttles */
    uint32_t                     since;       /* count began, local ms (low) */
    u_char                       code;        /* index into sh->codes */
    u_char                       flags;       /* NGX_HTTP_MQTTAPI_SYNC_* */
    u_char                       level;       /* of the window's first log */
} ngx_http_mqttapi_backoff_node_t;


/*
 * With "mqttapi_quota ... delay=" a window's latest bucket may lie ahead
 * of now: its buckets from now on hold the slots booked by waiting
 * requests, and u.slot is the latest slot's ms into the latest bucket,
 * plus one (0: none there).  In a zone shared with other nodes, the
 * slots booked in the next second are counted in "carry", up to the
 * grant (or credit) for that second (ngx_http_mqttapi_quota_delay.c).
 *
 * A quota node's mode: its own sliding window (u.buckets), or, in a zone
 * shared with other nodes while Redis is reachable, the grants the fleet
 * gives it for seconds of Redis's clock (u.grant): what it may spend in
 * "second" (g[0]) and in the next one (g[1]), what it spent in it, what
 * it spent or booked already in the next one ("carry": at a boundary, or
 * a waiting request's slot), and its arrivals (admitted or not) in four
 * slots of 4 buckets each (572 ms; the slot of "bucket" and the three
 * before), from which the task tells its demand
 * (ngx_http_mqttapi_quota_sync.c, ngx_http_mqttapi_sync_quota.c).
 *
 * The node's bits are counted: mode, age and the grant's flags share a
 * byte (bit-fields), so that "carry" is as wide as a grant and the node
 * still fits NGX_HTTP_MQTTAPI_NODE_SIZE with a key of
 * NGX_HTTP_MQTTAPI_KEY_MAX_LEN (checked at build time, zone.c).
 */

#define NGX_HTTP_MQTTAPI_QUOTA_WINDOW  0
#define NGX_HTTP_MQTTAPI_QUOTA_GRANT   1

#define NGX_HTTP_MQTTAPI_SLOT_BUCKETS  4
#define NGX_HTTP_MQTTAPI_SLOTS         4

/* a grant node's flags */
#define NGX_HTTP_MQTTAPI_GRANT_ASK     0x01  /* the task is to ask at once */
#define NGX_HTTP_MQTTAPI_GRANT_OUT     0x02  /* spent all it may */
#define NGX_HTTP_MQTTAPI_GRANT_SENT    0x04  /* Redis has its claims */

typedef struct {
    unsigned                     mode:1;      /* NGX_HTTP_MQTTAPI_QUOTA_* */
    unsigned                     age:2;       /* grant: seconds seen, max 2 */
    unsigned                     flags:3;     /* grant: GRANT_* */
    u_char                       sent;        /* grant: demand sent, a step */
    uint16_t                     carry;       /* grant: in the next second */
    uint32_t                     bucket;      /* the latest, now / 143 ms */
    uint32_t                     report;      /* first logged answer's */

    union {
        struct {                              /* the window (unnamed) */
            uint16_t             buckets[NGX_HTTP_MQTTAPI_BUCKETS];
            uint16_t             slot;        /* delay=: see above */
        };

        struct {
            uint32_t             second;      /* Redis's, counted in */
            uint16_t             g[2];        /* for it and the next */
            uint16_t             spent;       /* in it */
            uint16_t             limit;       /* L, for the task */
            uint16_t             slots[NGX_HTTP_MQTTAPI_SLOTS];
        } grant;
    } u;
} ngx_http_mqttapi_quota_node_t;


typedef struct {
    u_char                       color;
    u_char                       type;        /* NGX_HTTP_MQTTAPI_NODE_* */
    u_short                      len;
    uint32_t                     rejected;    /* local answers, see above */
    ngx_queue_t                  queue;

    union {
        ngx_http_mqttapi_backoff_node_t  backoff;
        ngx_http_mqttapi_quota_node_t    quota;
    } u;

    u_char                       data[1];
} ngx_http_mqttapi_node_t;


#define NGX_HTTP_MQTTAPI_KEY_MAX_LEN                                         \
    (NGX_HTTP_MQTTAPI_NODE_SIZE - offsetof(ngx_rbtree_node_t, color)          \
     - offsetof(ngx_http_mqttapi_node_t, data))


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;

    ngx_atomic_t                 nodes;
    ngx_atomic_t                 evicted;
    ngx_atomic_t                 failed;

    u_char                       log_ctx[NGX_HTTP_MQTTAPI_LOG_CTX_LEN];

    ngx_uint_t                   ncodes;
    u_char                       codes[NGX_HTTP_MQTTAPI_ZONE_CODES]
                                      [NGX_HTTP_MQTTAPI_CODE_MAX_LEN + 1];
} ngx_http_mqttapi_zone_sh_t;


struct ngx_http_mqttapi_zone_s {
    ngx_http_mqttapi_zone_sh_t  *sh;
    ngx_slab_pool_t             *shpool;
    ngx_http_complex_value_t     key;
    ngx_int_t                    index;       /* the key is one variable */
    ngx_str_t                    arg;         /* ... $arg_<arg> */
    ngx_msec_t                   backoff;
    ngx_msec_t                   max_backoff;
    ngx_shm_zone_t              *shm_zone;

    void                        *sync;        /* mqttapi_sync, if synced */
    ngx_uint_t                   sync_index;
    unsigned                     synced:1;    /* the "sync" flag */
};


/* called for each node of a walk, under the zone's lock */

typedef void (*ngx_http_mqttapi_zone_each_pt)(void *data,
    ngx_http_mqttapi_node_t *node, ngx_msec_t now);


/* where mqttapi_throttle or mqttapi_quota named a zone */

typedef struct {
    ngx_shm_zone_t               *shm_zone;
    ngx_str_t                    *directive;
    ngx_uint_t                    location;   /* given in a location */
    ngx_uint_t                    used;       /* where mqttapi is on */
    ngx_str_t                     file;
    ngx_uint_t                    line;
} ngx_http_mqttapi_zone_ref_t;


char *ngx_http_mqttapi_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_mqttapi_zone_ref(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_mqttapi_zone_merge_refs(ngx_http_mqttapi_loc_conf_t *conf,
    ngx_http_mqttapi_loc_conf_t *prev);
ngx_int_t ngx_http_mqttapi_zone_check_refs(ngx_conf_t *cf);
ngx_shm_zone_t *ngx_http_mqttapi_zone_ceiling(ngx_conf_t *cf);

ngx_int_t ngx_http_mqttapi_zone_key(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, const char *prefix, ngx_str_t *suffix,
    ngx_str_t *key, uint32_t *hash);
ngx_int_t ngx_http_mqttapi_zone_make_key(ngx_pool_t *pool, const char *prefix,
    ngx_str_t *value, ngx_str_t *suffix, ngx_str_t *key, uint32_t *hash);
uint32_t ngx_http_mqttapi_zone_hash(ngx_str_t *key);
ngx_http_mqttapi_node_t *ngx_http_mqttapi_zone_node(
    ngx_http_mqttapi_zone_t *zone, ngx_uint_t type, ngx_str_t *key,
    uint32_t hash, ngx_log_t *log);
void ngx_http_mqttapi_zone_free(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_node_t *node);
void ngx_http_mqttapi_zone_backoffs(ngx_http_mqttapi_zone_t *zone,
    ngx_uint_t *local, ngx_uint_t *peer, ngx_http_mqttapi_zone_each_pt each,
    void *data);
u_char ngx_http_mqttapi_zone_code_index(ngx_http_mqttapi_zone_t *zone,
    ngx_str_t *code);
void ngx_http_mqttapi_zone_code(ngx_http_mqttapi_zone_t *zone, u_char index,
    ngx_str_t *code);


/*
 * The typed accessors: the node's fields of that type, NULL for a node of
 * another type (or none)
 */

static ngx_inline ngx_http_mqttapi_backoff_node_t *
ngx_http_mqttapi_node_backoff(ngx_http_mqttapi_node_t *node)
{
    return (node && node->type == NGX_HTTP_MQTTAPI_NODE_BACKOFF)
           ? &node->u.backoff : NULL;
}


static ngx_inline ngx_http_mqttapi_quota_node_t *
ngx_http_mqttapi_node_quota(ngx_http_mqttapi_node_t *node)
{
    return (node && node->type == NGX_HTTP_MQTTAPI_NODE_QUOTA)
           ? &node->u.quota : NULL;
}


static ngx_inline void
ngx_http_mqttapi_zone_unlock(ngx_http_mqttapi_zone_t *zone)
{
    ngx_shmtx_unlock(&zone->shpool->mutex);
}


#endif /* _NGX_HTTP_MQTTAPI_ZONE_H_INCLUDED_ */
