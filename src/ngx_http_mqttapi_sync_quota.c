
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * Quotas shared by the fleet.  In each second of Redis's clock, each node
 * that joined that second's shares in Redis (two seconds ahead, see the
 * "share" script) spends the limit divided by the N nodes that joined,
 * rounded down, without asking anyone; the rest of the limit is that
 * second's budget in Redis, from which the nodes lease tokens (the
 * "lease" script, which counts the same N).  N is fixed before the second
 * begins, so nodes that come and go never make the shares and the leases
 * add up to more than the limit: the fleet never admits more than the
 * limit in a second of Redis's clock.  A node that did not join a second
 * (it just connected, or its task was late) has no share in it and only
 * leases.  A request that finds no token left is answered locally and
 * leaves an event for the task, which leases more and puts them in the
 * node.
 *
 * Without Redis there is no such bound: "fail=local" counts in the
 * node's own window (which starts with what the node spent of the
 * second's leases) at the limit divided by the nodes last seen alive
 * (rounded up), "open" does not limit, "closed" spends what is left of
 * the leases, without the share, and then answers locally; a shared
 * per-API ceiling is divided as with "local" in every mode.
 */


typedef struct {
    ngx_uint_t                    zone;
    ngx_uint_t                    limit;
    u_short                       len;
    u_char                        key[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_sync_lease_t;


static ngx_uint_t ngx_http_mqttapi_sync_share(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_msec_t second, ngx_uint_t limit);
static void ngx_http_mqttapi_sync_lease_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_share_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);


/*
 * The request path, with the zone locked.  NGX_OK: a token to spend (with
 * ngx_http_mqttapi_sync_window_count); NGX_BUSY: none, "left" set;
 * NGX_DONE: not limited; NGX_DECLINED: the node's own window, at "limit"
 * divided by the nodes last seen alive.
 */

ngx_int_t
ngx_http_mqttapi_sync_window(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_http_mqttapi_node_t *node,
    ngx_str_t *key, ngx_uint_t *limit, ngx_msec_t now, ngx_msec_t *left)
{
    uint16_t                       spent, booked;
    ngx_msec_t                     rnow, second;
    ngx_uint_t                     nodes;
    ngx_http_mqttapi_sync_conf_t  *scf;

    scf = zone->sync;

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

        if (node->code != NGX_HTTP_MQTTAPI_SYNC_WINDOW) {

            /* what was spent of this second's leases stays counted */

            spent = (node->code == NGX_HTTP_MQTTAPI_SYNC_LEASED
                     && node->u.lease.second
                        == (now + scf->sh->clock) / 1000)
                    ? node->u.lease.spent : 0;

            ngx_memzero(&node->u, sizeof(node->u));
            node->code = NGX_HTTP_MQTTAPI_SYNC_WINDOW;
            node->until = now / NGX_HTTP_MQTTAPI_BUCKET_MSEC;
            node->u.buckets[node->until % NGX_HTTP_MQTTAPI_BUCKETS] = spent;
        }

        nodes = ngx_max(scf->sh->nodes, 1);
        *limit = ngx_max((*limit + nodes - 1) / nodes, 1);

        return NGX_DECLINED;
    }

    /* Redis's current second, as all nodes count it */

    rnow = now + (scf->sh->clocked ? scf->sh->clock : 0);
    second = rnow / 1000;

    if (node->code != NGX_HTTP_MQTTAPI_SYNC_LEASED
        || node->u.lease.second != second)
    {
        /* a new second: the node's share, if it has one, then leases */

        booked = (node->code == NGX_HTTP_MQTTAPI_SYNC_LEASED
                  && node->u.lease.second + 1 == second)
                 ? node->u.lease.booked : 0;

        ngx_memzero(&node->u, sizeof(node->u));

        /* the slots booked in it by waiting requests (delay=) are spent */
        node->u.lease.spent = booked;
        node->code = NGX_HTTP_MQTTAPI_SYNC_LEASED;
        node->u.lease.second = second;
        node->u.lease.tokens = scf->sh->up
                               ? (uint16_t) ngx_min(
                                     ngx_http_mqttapi_sync_share(scf->sh,
                                                                 second,
                                                                 *limit),
                                     NGX_HTTP_MQTTAPI_QUOTA_MAX)
                               : 0;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi sync: \"%V\" in second %M: a share of %uD",
                       key, second, (uint32_t) node->u.lease.tokens);
    }

    /* for the zone's expiry, as a window's latest bucket */
    node->until = now / NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    if (node->u.lease.spent < node->u.lease.tokens) {
        return NGX_OK;
    }

    if (!node->u.lease.asked) {
        node->u.lease.asked = 1;

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

static ngx_uint_t
ngx_http_mqttapi_sync_share(ngx_http_mqttapi_sync_sh_t *sh, ngx_msec_t second,
    ngx_uint_t limit)
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
 * The node's share of the next second of Redis's clock, which it may
 * book ahead (delay=), and that second's start in local ms; 0 when it
 * has none (not joined, or Redis away)
 */

ngx_uint_t
ngx_http_mqttapi_sync_next_share(ngx_http_mqttapi_zone_t *zone,
    ngx_msec_t now, ngx_uint_t limit, ngx_msec_t *start)
{
    ngx_msec_t                     second;
    ngx_http_mqttapi_sync_conf_t  *scf;

    scf = zone->sync;

    if (!scf->sh->up || !scf->sh->clocked) {
        return 0;
    }

    second = (now + scf->sh->clock) / 1000 + 1;
    *start = second * 1000 - scf->sh->clock;

    return ngx_min(ngx_http_mqttapi_sync_share(scf->sh, second, limit),
                   NGX_HTTP_MQTTAPI_QUOTA_MAX);
}


void
ngx_http_mqttapi_sync_window_count(ngx_http_mqttapi_node_t *node)
{
    if (node->u.lease.spent < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        node->u.lease.spent++;
    }
}


/* the task, once a second of Redis's: join the shares of a later one */

void
ngx_http_mqttapi_sync_share_tick(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_str_t                      args[2];
    ngx_msec_t                     second;
    ngx_http_mqttapi_sync_sh_t    *sh;
    u_char                         prefix[NGX_HTTP_MQTTAPI_SYNC_KEY];

    sh = task->conf->sh;

    if (!sh->clocked) {
        /* the first heartbeat tells Redis's clock */
        return;
    }

    second = (ngx_current_msec + sh->clock) / 1000;

    if (second == task->shared) {
        return;
    }

    task->shared = second;

    args[0].data = prefix;
    args[0].len = ngx_snprintf(prefix, sizeof(prefix), "%Vshares:",
                               &task->conf->prefix) - prefix;

    args[1].data = sh->id;
    args[1].len = ngx_strlen(sh->id);

    (void) ngx_http_mqttapi_sync_eval(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                      NGX_HTTP_MQTTAPI_SCRIPT_SHARE, 0, 2,
                                      args, ngx_http_mqttapi_sync_share_reply,
                                      NULL);
}


static void
ngx_http_mqttapi_sync_share_reply(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_msec_t                       second;
    ngx_uint_t                       nodes;
    ngx_http_mqttapi_sync_shares_t  *slot;

    if (ngx_http_mqttapi_sync_reply_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                          reply)
        != NGX_OK)
    {
        return;
    }

    if (ngx_http_mqttapi_sync_parse_share(reply, &second, &nodes) != NGX_OK) {
        ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                    "unexpected reply to a share");
        return;
    }

    slot = &task->conf->sh->shares[second & 1];

    slot->second = 0;
    ngx_memory_barrier();
    slot->nodes = nodes;
    ngx_memory_barrier();
    slot->second = second;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, task->log, 0,
                   "mqttapi sync: second %M shared by %ui nodes",
                   second, nodes);
}


/* the task: lease tokens of the second's budget */

void
ngx_http_mqttapi_sync_lease_event(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_event_t *ev)
{
    ngx_uint_t                      nodes, want;
    ngx_str_t                       args[4];
    ngx_http_mqttapi_sync_lease_t  *lease;
    u_char                          base[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                          shares[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                          w[NGX_INT_T_LEN];
    u_char                          l[NGX_INT_T_LEN];

    if (task->state != NGX_HTTP_MQTTAPI_SYNC_READY || ev->count == 0) {
        /* the request path asks again a second later */
        return;
    }

    args[0].data = base;

    if (ngx_http_mqttapi_sync_key(task, &args[0], ev->zone, "w:", ev->key,
                                  ev->len)
        != NGX_OK
        || args[0].len == NGX_HTTP_MQTTAPI_SYNC_KEY)
    {
        return;
    }

    base[args[0].len++] = ':';

    /* half a node's share at a time: what one node leases, others lack */

    nodes = ngx_max(task->conf->sh->nodes, 1);
    want = ngx_max((ev->count + 2 * nodes - 1) / (2 * nodes), 1);

    args[1].data = w;
    args[1].len = ngx_sprintf(w, "%ui", want) - w;
    args[2].data = l;
    args[2].len = ngx_sprintf(l, "%uD", ev->count) - l;
    args[3].data = shares;
    args[3].len = ngx_snprintf(shares, sizeof(shares), "%Vshares:",
                               &task->conf->prefix) - shares;

    lease = ngx_alloc(sizeof(ngx_http_mqttapi_sync_lease_t), task->log);
    if (lease == NULL) {
        return;
    }

    lease->zone = ev->zone;
    lease->limit = ev->count;
    lease->len = ev->len;
    ngx_memcpy(lease->key, ev->key, ev->len);

    if (ngx_http_mqttapi_sync_eval(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                   NGX_HTTP_MQTTAPI_SCRIPT_LEASE, 0, 4, args,
                                   ngx_http_mqttapi_sync_lease_reply, lease)
        != NGX_OK)
    {
        ngx_free(lease);
    }
}


static void
ngx_http_mqttapi_sync_lease_reply(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_http_mqttapi_sync_lease_t *lease = data;

    ngx_str_t                  key;
    ngx_uint_t                 granted;
    ngx_msec_t                 second;
    ngx_http_mqttapi_node_t   *node;
    ngx_http_mqttapi_zone_t  **zones, *zone;

    if (ngx_http_mqttapi_sync_reply_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                          reply)
        != NGX_OK)
    {
        ngx_free(lease);
        return;
    }

    if (ngx_http_mqttapi_sync_parse_lease(reply, &granted, &second)
        != NGX_OK)
    {
        ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                    "unexpected reply to a lease");
        ngx_free(lease);
        return;
    }

    zones = task->conf->zones.elts;
    zone = zones[lease->zone];

    key.data = lease->key;
    key.len = lease->len;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_http_mqttapi_zone_lookup(zone, &key,
                                        ngx_http_mqttapi_zone_hash(&key));

    if (node && node->type == NGX_HTTP_MQTTAPI_NODE_QUOTA
        && node->code == NGX_HTTP_MQTTAPI_SYNC_LEASED)
    {
        if (node->u.lease.second == second) {
            node->u.lease.tokens = (uint16_t) ngx_min(node->u.lease.tokens
                                                      + granted,
                                                NGX_HTTP_MQTTAPI_QUOTA_MAX);

            /* none left this second: ask again in the next one */
            node->u.lease.asked = (granted == 0);

        } else if ((ngx_msec_int_t) (second - node->u.lease.second) > 0) {

            /*
             * Redis is in a later second than the node's requests yet:
             * start it here, with these tokens and the node's share
             */

            ngx_memzero(&node->u, sizeof(node->u));
            node->u.lease.second = second;
            node->u.lease.tokens = (uint16_t) ngx_min(granted
                                       + ngx_http_mqttapi_sync_share(
                                             task->conf->sh, second,
                                             lease->limit),
                                       NGX_HTTP_MQTTAPI_QUOTA_MAX);
            node->u.lease.asked = (granted == 0);
        }

        /* tokens of a second already over: the fleet's slack */
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, task->log, 0,
                   "mqttapi sync: leased %ui tokens of \"%V\" in second %M",
                   granted, &key, second);

    ngx_free(lease);
}
