
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_quota.h"
#include "ngx_http_mqttapi_sync.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * A synced zone's quota on the request path (shared memory only, no
 * request waits on Redis).  While Redis is reachable a key's node spends,
 * in each second of Redis's clock, what the fleet granted it for that
 * second (u.grant.g[0]); the task asks for the grants by the node's
 * demand (ngx_http_mqttapi_sync_quota.c).  A key's first two seconds on
 * the node may spend up to c = ceil(L / N) without a grant (credit: a
 * floor, not an addition), and a key that has no grant left sets the
 * zone's "ask" flag, which the task polls every few milliseconds: it asks
 * Redis at once rather than at its next tick.  Every request, admitted or
 * not, counts in the node's arrivals, from which the task tells the
 * demand.
 *
 * Requests within NGX_HTTP_MQTTAPI_SYNC_BAND ms of a second's boundary
 * (on the node's reckoning of Redis's clock) must fit in both seconds and
 * count in both: the node stays in the earlier second until the band is
 * over, and what it spends there for the next one is carried (in the
 * node's "carry", with the slots that delay= books in the next second).
 *
 * While Redis is away "fail=local" counts in the node's own window at the
 * limit divided by the nodes last seen alive (rounded up; what the node
 * spent of the current second stays counted), "open" does not limit,
 * "closed" spends what is left of the grants and then answers locally; a
 * shared per-API ceiling is divided as with "local" in every mode.
 */


static ngx_uint_t ngx_http_mqttapi_quota_sync_may(
    ngx_http_mqttapi_sync_sh_t *sh, ngx_http_mqttapi_quota_node_t *q,
    ngx_uint_t limit, ngx_uint_t next);
static ngx_uint_t ngx_http_mqttapi_quota_sync_edge(
    ngx_http_mqttapi_sync_sh_t *sh, ngx_http_mqttapi_quota_node_t *q,
    ngx_msec_t now);
static void ngx_http_mqttapi_quota_sync_arrival(
    ngx_http_mqttapi_quota_node_t *q, ngx_msec_t now);
static void ngx_http_mqttapi_quota_sync_ask(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_quota_node_t *q, u_char flags);


/*
 * With the zone locked.  NGX_OK: admitted (then counted with
 * ngx_http_mqttapi_quota_sync_count); NGX_BUSY: none left, "left" set;
 * NGX_DONE: not limited; NGX_DECLINED: the node's own window, at "limit"
 * divided by the nodes last seen alive.
 */

ngx_int_t
ngx_http_mqttapi_quota_sync(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_http_mqttapi_node_t *node,
    ngx_str_t *key, ngx_uint_t *limit, ngx_msec_t now, ngx_msec_t *left)
{
    uint32_t                        second, spent;
    ngx_uint_t                      nodes, i, may;
    ngx_msec_t                      rnow;
    ngx_http_mqttapi_sync_sh_t     *sh;
    ngx_http_mqttapi_sync_conf_t   *scf;
    ngx_http_mqttapi_quota_node_t  *q;

    scf = zone->sync;
    sh = scf->sh;
    q = &node->u.quota;

    rnow = now + (sh->clocked ? sh->clock : 0);
    second = ngx_http_mqttapi_quota_sync_second(sh, now);

    /*
     * Without Redis the per-API ceiling (the zone without a key) is
     * divided whatever "fail" says: past it the upstream blocks the
     * egress address, and refusing everything would stop the gateway
     */

    if (!sh->up
        && (scf->fail != NGX_HTTP_MQTTAPI_SYNC_FAIL_CLOSED
            || zone->key.value.len == 0))
    {
        if (scf->fail == NGX_HTTP_MQTTAPI_SYNC_FAIL_OPEN
            && zone->key.value.len)
        {
            return NGX_DONE;
        }

        if (q->mode != NGX_HTTP_MQTTAPI_QUOTA_WINDOW) {

            /* what was spent of this second's grant stays counted */

            spent = 0;

            if (q->u.grant.second == second) {
                spent = q->u.grant.spent + q->carry;

            } else if (q->u.grant.second + 1 == second) {
                /* booked or spent at the boundary for this second */
                spent = q->carry;
            }

            ngx_memzero(&q->u, sizeof(q->u));
            q->mode = NGX_HTTP_MQTTAPI_QUOTA_WINDOW;
            q->flags = 0;
            q->carry = 0;
            q->bucket = (uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);
            q->u.buckets[q->bucket % NGX_HTTP_MQTTAPI_BUCKETS] =
                              (uint16_t) ngx_min(spent,
                                                 NGX_HTTP_MQTTAPI_QUOTA_MAX);
        }

        nodes = ngx_max(sh->nodes, 1);
        *limit = ngx_max((*limit + nodes - 1) / nodes, 1);

        return NGX_DECLINED;
    }

    if (q->mode != NGX_HTTP_MQTTAPI_QUOTA_GRANT) {

        /*
         * The key's first request on this node, or the first since Redis
         * came back: what the window counted stays counted, the key has
         * credit, and the task asks for its grant at once
         */

        spent = 0;

        for (i = 0; i < NGX_HTTP_MQTTAPI_BUCKETS; i++) {
            spent += q->u.buckets[i];
        }

        ngx_memzero(&q->u, sizeof(q->u));
        q->mode = NGX_HTTP_MQTTAPI_QUOTA_GRANT;
        q->flags = 0;
        q->age = 0;
        q->sent = 0;
        q->carry = 0;
        q->u.grant.second = second;
        q->u.grant.spent = (uint16_t) ngx_min(spent,
                                              NGX_HTTP_MQTTAPI_QUOTA_MAX);

        ngx_http_mqttapi_quota_sync_ask(zone, q, 0);

    } else {
        ngx_http_mqttapi_quota_sync_roll(q, second);
    }

    /*
     * a worker whose time lags another's (each caches its own) may find
     * the node already in the next second: it counts in the node's second
     */

    second = q->u.grant.second;

    q->u.grant.limit = (uint16_t) ngx_min(*limit, NGX_HTTP_MQTTAPI_QUOTA_MAX);

    ngx_http_mqttapi_quota_sync_arrival(q, now);

    may = ngx_http_mqttapi_quota_sync_may(sh, q, *limit, 0);

    if (q->u.grant.spent < may) {

        if (!ngx_http_mqttapi_quota_sync_edge(sh, q, now)) {
            return NGX_OK;
        }

        /* at a boundary: the next second too */

        if (q->carry < ngx_http_mqttapi_quota_sync_may(sh, q, *limit, 1)) {
            return NGX_OK;
        }
    }

    if (!(q->flags & NGX_HTTP_MQTTAPI_GRANT_OUT)) {
        ngx_http_mqttapi_quota_sync_ask(zone, q, NGX_HTTP_MQTTAPI_GRANT_OUT);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi sync: \"%V\" spent its %ui of second %uD",
                   key, may, second);

    *left = 1000 - rnow % 1000;

    return NGX_BUSY;
}


/*
 * The second a node counts in: Redis's, on its reckoning, but the earlier
 * one while within NGX_HTTP_MQTTAPI_SYNC_BAND ms of a boundary
 */

uint32_t
ngx_http_mqttapi_quota_sync_second(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_msec_t now)
{
    ngx_msec_t  rnow;

    rnow = now + (sh->clocked ? sh->clock : 0);

    return (uint32_t) ((rnow - NGX_HTTP_MQTTAPI_SYNC_BAND) / 1000);
}


/* what the node may spend in its second (next: in the one after) */

static ngx_uint_t
ngx_http_mqttapi_quota_sync_may(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_http_mqttapi_quota_node_t *q, ngx_uint_t limit, ngx_uint_t next)
{
    ngx_uint_t  may;

    may = q->u.grant.g[next];

    /* credit: the key's first second on the node and the next */

    if (q->age + next < 2 && sh->up) {
        may = ngx_max(may, ngx_http_mqttapi_quota_sync_credit(sh, limit));
    }

    return may;
}


/* a new second (the request path's or the task's): the next one's grant */

void
ngx_http_mqttapi_quota_sync_roll(ngx_http_mqttapi_quota_node_t *q,
    uint32_t second)
{
    if ((int32_t) (second - q->u.grant.second) <= 0) {
        /* the same, or another worker's lagging clock */
        return;
    }

    if (second == q->u.grant.second + 1) {
        q->u.grant.g[0] = q->u.grant.g[1];
        q->u.grant.spent = q->carry;
        q->age += (q->age < 2);

    } else {
        q->u.grant.g[0] = 0;
        q->u.grant.spent = 0;
        q->age = 2;
    }

    q->u.grant.g[1] = 0;
    q->u.grant.second = second;
    q->flags &= ~NGX_HTTP_MQTTAPI_GRANT_OUT;
    q->carry = 0;
}


/* c = ceil(L / N) */

ngx_uint_t
ngx_http_mqttapi_quota_sync_credit(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_uint_t limit)
{
    ngx_uint_t  nodes;

    nodes = ngx_http_mqttapi_quota_sync_nodes(sh);

    return (limit + nodes - 1) / nodes;
}


/* N, the nodes alive (2 before the first heartbeat) */

ngx_uint_t
ngx_http_mqttapi_quota_sync_nodes(ngx_http_mqttapi_sync_sh_t *sh)
{
    return sh->clocked ? ngx_max(sh->nodes, 1) : 2;
}


/* one more arrival in the slot of 4 buckets of "now" */

static void
ngx_http_mqttapi_quota_sync_arrival(ngx_http_mqttapi_quota_node_t *q,
    ngx_msec_t now)
{
    uint32_t   bucket, slot, last, n;
    uint16_t  *s;

    bucket = (uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);
    slot = bucket / NGX_HTTP_MQTTAPI_SLOT_BUCKETS;
    last = q->bucket / NGX_HTTP_MQTTAPI_SLOT_BUCKETS;

    /* another worker's time may lag a little: its slot is the latest */

    if ((int32_t) (slot - last) > 0) {
        for (n = 1; n <= NGX_HTTP_MQTTAPI_SLOTS && last + n != slot + 1; n++) {
            q->u.grant.slots[(last + n) % NGX_HTTP_MQTTAPI_SLOTS] = 0;
        }

        q->bucket = bucket;

    } else if ((int32_t) (bucket - q->bucket) > 0) {
        q->bucket = bucket;
    }

    s = &q->u.grant.slots[(q->bucket / NGX_HTTP_MQTTAPI_SLOT_BUCKETS)
                          % NGX_HTTP_MQTTAPI_SLOTS];

    if (*s < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        (*s)++;
    }
}


static void
ngx_http_mqttapi_quota_sync_ask(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_quota_node_t *q, u_char flags)
{
    ngx_http_mqttapi_sync_conf_t  *scf = zone->sync;

    q->flags |= NGX_HTTP_MQTTAPI_GRANT_ASK | flags;

    /* the task polls it (ngx_http_mqttapi_sync_quota.c) */

    scf->sh->ask = 1;
}


void
ngx_http_mqttapi_quota_sync_count(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_quota_node_t *q)
{
    ngx_http_mqttapi_sync_conf_t  *scf = zone->sync;

    if (q->u.grant.spent >= q->u.grant.g[0]) {
        /* beyond the grant: on credit */
        (void) ngx_atomic_fetch_add(&scf->sh->credit, 1);
    }

    if (q->u.grant.spent < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        q->u.grant.spent++;
    }

    /* at a boundary: counted in the next second too (checked, see above) */

    if (ngx_http_mqttapi_quota_sync_edge(scf->sh, q, ngx_current_msec)
        && q->carry < NGX_HTTP_MQTTAPI_QUOTA_MAX)
    {
        q->carry++;
    }
}


/*
 * Within NGX_HTTP_MQTTAPI_SYNC_BAND ms of the end of the node's second
 * (or past it, the node not rolled on yet): a request counts in the next
 * second too
 */

static ngx_uint_t
ngx_http_mqttapi_quota_sync_edge(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_http_mqttapi_quota_node_t *q, ngx_msec_t now)
{
    uint32_t  second;

    second = (uint32_t) ((now + (sh->clocked ? sh->clock : 0)
                          + NGX_HTTP_MQTTAPI_SYNC_BAND) / 1000);

    return (int32_t) (second - q->u.grant.second) > 0;
}


/*
 * delay= (ngx_http_mqttapi_quota_delay.c): the next second of Redis's
 * clock, its start in local ms, and what the node may book in it ahead:
 * its grant for it (or its credit), up to NGX_HTTP_MQTTAPI_QUOTA_MAX;
 * 0 when it has none (Redis away, the node's state of another second)
 */

ngx_uint_t
ngx_http_mqttapi_quota_sync_next(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_quota_node_t *q, ngx_msec_t now, ngx_uint_t limit,
    ngx_msec_t *start)
{
    uint32_t                       second;
    ngx_msec_t                     clock;
    ngx_http_mqttapi_sync_sh_t    *sh;
    ngx_http_mqttapi_sync_conf_t  *scf;

    scf = zone->sync;
    sh = scf->sh;
    clock = sh->clocked ? sh->clock : 0;

    second = ngx_http_mqttapi_quota_sync_second(sh, now);

    if (q->mode == NGX_HTTP_MQTTAPI_QUOTA_GRANT
        && (int32_t) (q->u.grant.second - second) > 0)
    {
        /* rolled on by a worker whose time is ahead of this one's */
        second = q->u.grant.second;
    }

    second++;
    *start = (ngx_msec_t) second * 1000 - clock;

    if (!sh->up || !sh->clocked || q->mode != NGX_HTTP_MQTTAPI_QUOTA_GRANT
        || q->u.grant.second + 1 != second)
    {
        return 0;
    }

    return ngx_http_mqttapi_quota_sync_may(sh, q, limit, 1);
}


ngx_uint_t
ngx_http_mqttapi_quota_sync_booked(ngx_http_mqttapi_quota_node_t *q)
{
    return q->carry;
}


void
ngx_http_mqttapi_quota_sync_book(ngx_http_mqttapi_quota_node_t *q)
{
    if (q->carry < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        q->carry++;
    }
}


/* a waiting request gone: its slot in the next second, or in this one */

void
ngx_http_mqttapi_quota_sync_give_back(ngx_http_mqttapi_quota_node_t *q)
{
    if (q->carry) {
        q->carry--;

    } else if (q->u.grant.spent) {
        q->u.grant.spent--;
    }
}
