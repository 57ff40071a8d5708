
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_quota.h"
#include "ngx_http_mqttapi_sync.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * A synced zone's quota on the request path (shared memory only): the
 * node's tokens for Redis's current second, and its own window while
 * Redis is away, as "fail=" says.  The task's side, which gets the tokens
 * from Redis, is ngx_http_mqttapi_sync_quota.c.
 */


/*
 * With the zone locked.  NGX_OK: a token to spend (with
 * ngx_http_mqttapi_quota_sync_count); NGX_BUSY: none, "left" set;
 * NGX_DONE: not limited; NGX_DECLINED: the node's own window, at "limit"
 * divided by the nodes last seen alive.
 */

ngx_int_t
ngx_http_mqttapi_quota_sync(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_http_mqttapi_node_t *node,
    ngx_str_t *key, ngx_uint_t *limit, ngx_msec_t now, ngx_msec_t *left)
{
    uint16_t                        spent, booked;
    uint32_t                        second;
    ngx_msec_t                      rnow;
    ngx_uint_t                      nodes;
    ngx_http_mqttapi_sync_conf_t   *scf;
    ngx_http_mqttapi_quota_node_t  *q;

    scf = zone->sync;
    q = &node->u.quota;

    /*
     * Without Redis the per-API ceiling (the zone without a key) is
     * divided whatever "fail" says: past it the upstream blocks the
     * egress address, and refusing everything would stop the gateway
     */

    if (!scf->sh->up
        && (scf->fail != NGX_HTTP_MQTTAPI_SYNC_FAIL_CLOSED
            || zone->key.value.len == 0))
    {
        if (scf->fail == NGX_HTTP_MQTTAPI_SYNC_FAIL_OPEN
            && zone->key.value.len)
        {
            return NGX_DONE;
        }

        if (q->mode != NGX_HTTP_MQTTAPI_QUOTA_WINDOW) {

            /*
             * What was spent of this second's leases stays counted, and
             * the slots booked for this or the next second (delay=)
             */

            second = (uint32_t) ((now + scf->sh->clock) / 1000);
            spent = 0;

            if (q->mode == NGX_HTTP_MQTTAPI_QUOTA_LEASED) {
                if (q->u.lease.second == second) {
                    spent = q->u.lease.spent + q->u.lease.booked;

                } else if (q->u.lease.second + 1 == second) {
                    spent = q->u.lease.booked;
                }
            }

            ngx_memzero(&q->u, sizeof(q->u));
            q->mode = NGX_HTTP_MQTTAPI_QUOTA_WINDOW;
            q->bucket = (uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);
            q->slot = 0;
            q->u.buckets[q->bucket % NGX_HTTP_MQTTAPI_BUCKETS] = spent;
        }

        nodes = ngx_max(scf->sh->nodes, 1);
        *limit = ngx_max((*limit + nodes - 1) / nodes, 1);

        return NGX_DECLINED;
    }

    /* Redis's current second, as all nodes count it */

    rnow = now + (scf->sh->clocked ? scf->sh->clock : 0);
    second = (uint32_t) (rnow / 1000);

    if (q->mode != NGX_HTTP_MQTTAPI_QUOTA_LEASED
        || q->u.lease.second != second)
    {
        /* a new second: the node's share, if it has one, then leases */

        booked = (q->mode == NGX_HTTP_MQTTAPI_QUOTA_LEASED
                  && q->u.lease.second + 1 == second)
                 ? q->u.lease.booked : 0;

        ngx_memzero(&q->u, sizeof(q->u));

        /* the slots booked in it by waiting requests (delay=) are spent */
        q->u.lease.spent = booked;
        q->mode = NGX_HTTP_MQTTAPI_QUOTA_LEASED;
        q->u.lease.second = second;
        q->u.lease.tokens = scf->sh->up
                            ? (uint16_t) ngx_min(
                                  ngx_http_mqttapi_quota_sync_share(scf->sh,
                                                                    second,
                                                                    *limit),
                                  NGX_HTTP_MQTTAPI_QUOTA_MAX)
                            : 0;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi sync: \"%V\" in second %uD: a share of %uD",
                       key, second, (uint32_t) q->u.lease.tokens);
    }

    /* for the zone's expiry, as a window's latest bucket */
    q->bucket = (uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    if (q->u.lease.spent < q->u.lease.tokens) {
        return NGX_OK;
    }

    if (!q->u.lease.asked) {
        q->u.lease.asked = 1;

        ngx_http_mqttapi_sync_notify(zone, NGX_HTTP_MQTTAPI_SYNC_LEASE, key,
                                     (uint32_t) *limit);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi sync: no token for \"%V\" (limit %ui)",
                   key, *limit);

    *left = 1000 - rnow % 1000;

    return NGX_BUSY;
}


/*
 * The share of "limit" this node spends without asking in Redis's
 * "second": none unless it joined that second in time.  The task writes
 * a slot's "second" last; reading it again tells a torn read.
 */

ngx_uint_t
ngx_http_mqttapi_quota_sync_share(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_msec_t second, ngx_uint_t limit)
{
    ngx_uint_t                       nodes;
    ngx_http_mqttapi_sync_shares_t  *slot;

    slot = &sh->shares[second & 1];

    if ((ngx_msec_t) slot->second != second) {
        return 0;
    }

    ngx_memory_barrier();

    nodes = slot->nodes;

    ngx_memory_barrier();

    if ((ngx_msec_t) slot->second != second || nodes == 0) {
        return 0;
    }

    return limit / nodes;
}


/*
 * The next second of Redis's clock: its start in local ms, and the
 * node's share of it, which it may book ahead (delay=); 0 when it has
 * none (not joined, or Redis away)
 */

ngx_uint_t
ngx_http_mqttapi_quota_sync_next(ngx_http_mqttapi_zone_t *zone,
    ngx_msec_t now, ngx_uint_t limit, ngx_msec_t *start)
{
    ngx_msec_t                     second, clock;
    ngx_http_mqttapi_sync_conf_t  *scf;

    scf = zone->sync;
    clock = scf->sh->clocked ? scf->sh->clock : 0;

    second = (now + clock) / 1000 + 1;
    *start = second * 1000 - clock;

    if (!scf->sh->up || !scf->sh->clocked) {
        return 0;
    }

    return ngx_min(ngx_http_mqttapi_quota_sync_share(scf->sh, second, limit),
                   NGX_HTTP_MQTTAPI_QUOTA_MAX);
}


void
ngx_http_mqttapi_quota_sync_count(ngx_http_mqttapi_quota_node_t *q)
{
    if (q->u.lease.spent < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        q->u.lease.spent++;
    }
}
