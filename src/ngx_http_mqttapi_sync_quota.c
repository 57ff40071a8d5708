
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * Quotas shared by the fleet.  Each second, each of the N nodes alive may
 * spend its share of a quota, the limit divided by N rounded down,
 * without asking anyone; the rest of the limit is a budget in Redis, from
 * which the nodes lease tokens (the "lease" script), so that the fleet
 * never admits more than the limit in a second.  A request that finds no
 * token left is answered locally and leaves an event for the task, which
 * leases more and puts them in the node.  Without Redis, "fail=local"
 * counts in the node's own window at the limit divided by the nodes last
 * seen alive (rounded up), "open" does not limit, "closed" spends what is
 * left of the leases, without the share, and then answers locally; a
 * shared per-API ceiling is divided as with "local" in every mode.
 */


typedef struct {
    ngx_uint_t                    zone;
    u_short                       len;
    u_char                        key[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_sync_lease_t;


static void ngx_http_mqttapi_sync_lease_reply(
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
            ngx_memzero(&node->u, sizeof(node->u));
            node->code = NGX_HTTP_MQTTAPI_SYNC_WINDOW;
            node->until = now / NGX_HTTP_MQTTAPI_BUCKET_MSEC;
        }

        nodes = ngx_max(scf->sh->nodes, 1);
        *limit = ngx_max((*limit + nodes - 1) / nodes, 1);

        return NGX_DECLINED;
    }

    if (node->code != NGX_HTTP_MQTTAPI_SYNC_LEASED) {
        ngx_memzero(&node->u, sizeof(node->u));
        node->code = NGX_HTTP_MQTTAPI_SYNC_LEASED;
        node->u.lease.end = now;
    }

    /* for the zone's expiry, as a window's latest bucket */
    node->until = now / NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    if ((ngx_msec_int_t) (now - node->u.lease.end) >= 0) {

        /* a new second: the node's share, until a lease aligns it */

        nodes = ngx_max(scf->sh->nodes, 1);

        node->u.lease.tokens = scf->sh->up
                               ? (uint16_t) ngx_min(*limit / nodes,
                                                NGX_HTTP_MQTTAPI_QUOTA_MAX)
                               : 0;
        node->u.lease.spent = 0;
        node->u.lease.asked = 0;

        /* the end of Redis's current second, as all nodes count it */

        node->u.lease.end = now + 1000;

        if (scf->sh->clocked) {
            node->u.lease.end -= (now + scf->sh->clock) % 1000;
        }
    }

    if (node->u.lease.spent < node->u.lease.tokens) {
        return NGX_OK;
    }

    if (!node->u.lease.asked) {
        /* the answer sets the second's real end */
        node->u.lease.asked = 1;
        node->u.lease.end = now + 1000;

        ngx_http_mqttapi_sync_notify(zone, NGX_HTTP_MQTTAPI_SYNC_LEASE, key,
                                     (uint32_t) *limit);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi sync: no token for \"%V\" (limit %ui)",
                   key, *limit);

    *left = node->u.lease.end - now;

    if ((ngx_msec_int_t) *left <= 0 || *left > 1000) {
        *left = 1000;
    }

    return NGX_BUSY;
}


void
ngx_http_mqttapi_sync_window_count(ngx_http_mqttapi_node_t *node)
{
    if (node->u.lease.spent < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        node->u.lease.spent++;
    }
}


/* the task: lease a share of the second's budget */

void
ngx_http_mqttapi_sync_lease_event(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_event_t *ev)
{
    ngx_uint_t                      nodes, want, shares, budget;
    ngx_str_t                       args[4];
    ngx_http_mqttapi_sync_lease_t  *lease;
    u_char                          base[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                          w[NGX_INT_T_LEN];
    u_char                          l[NGX_INT_T_LEN];
    u_char                          sh[NGX_INT_T_LEN];

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

    nodes = task->conf->sh->nodes;
    nodes = ngx_max(nodes, 1);

    /* what the nodes spend without asking, and the rest */

    shares = (ev->count / nodes) * nodes;
    budget = ev->count - shares;

    if (budget == 0) {
        return;
    }

    want = (budget + nodes - 1) / nodes;

    args[1].data = w;
    args[1].len = ngx_sprintf(w, "%ui", want) - w;
    args[2].data = l;
    args[2].len = ngx_sprintf(l, "%uD", ev->count) - l;
    args[3].data = sh;
    args[3].len = ngx_sprintf(sh, "%ui", shares) - sh;

    lease = ngx_alloc(sizeof(ngx_http_mqttapi_sync_lease_t), task->log);
    if (lease == NULL) {
        return;
    }

    lease->zone = ev->zone;
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
    ngx_msec_t                 now, left;
    ngx_http_mqttapi_node_t   *node;
    ngx_http_mqttapi_zone_t  **zones, *zone;

    if (ngx_http_mqttapi_sync_reply_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                          reply)
        != NGX_OK)
    {
        ngx_free(lease);
        return;
    }

    if (ngx_http_mqttapi_sync_parse_lease(reply, &granted, &left) != NGX_OK) {
        ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                    "unexpected reply to a lease");
        ngx_free(lease);
        return;
    }

    zones = task->conf->zones.elts;
    zone = zones[lease->zone];
    now = ngx_current_msec;

    key.data = lease->key;
    key.len = lease->len;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_http_mqttapi_zone_lookup(zone, &key,
                                        ngx_http_mqttapi_zone_hash(&key));

    if (node && node->type == NGX_HTTP_MQTTAPI_NODE_QUOTA
        && node->code == NGX_HTTP_MQTTAPI_SYNC_LEASED)
    {
        /* the tokens of this second, which ends "left" from now */

        if (node->u.lease.asked) {
            node->u.lease.tokens = node->u.lease.spent;
        }

        node->u.lease.tokens = (uint16_t) ngx_min(node->u.lease.tokens
                                                  + granted,
                                                  NGX_HTTP_MQTTAPI_QUOTA_MAX);
        node->u.lease.end = now + left;

        /* none left this second: ask again in the next one */
        node->u.lease.asked = (granted == 0);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, task->log, 0,
                   "mqttapi sync: leased %ui tokens of \"%V\" for %M ms",
                   granted, &key, left);

    ngx_free(lease);
}
