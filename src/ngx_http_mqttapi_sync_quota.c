
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
 *
 * This file is the task's side; what a request does with the tokens is
 * ngx_http_mqttapi_quota_sync.c.
 */


typedef struct {
    ngx_uint_t                    zone;
    ngx_uint_t                    limit;
    u_short                       len;
    u_char                        key[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_sync_lease_t;


static void ngx_http_mqttapi_sync_lease_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_share_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);


/* the task, once a second of Redis's: join the shares of a later one */

void
ngx_http_mqttapi_sync_share_tick(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_str_t                      args[4];
    ngx_msec_t                     second;
    ngx_http_mqttapi_sync_sh_t    *sh;
    u_char                         join[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                         next[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                         s[NGX_INT_T_LEN];

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

    args[0].data = join;
    args[0].len = ngx_snprintf(join, sizeof(join), "%V{shares}:%M",
                               &task->conf->prefix, second + 2) - join;
    args[1].data = next;
    args[1].len = ngx_snprintf(next, sizeof(next), "%V{shares}:%M",
                               &task->conf->prefix, second + 1) - next;

    args[2].data = sh->id;
    args[2].len = ngx_strlen(sh->id);
    args[3].data = s;
    args[3].len = ngx_sprintf(s, "%M", second) - s;

    (void) ngx_http_mqttapi_sync_eval(task, NGX_HTTP_MQTTAPI_SYNC_OP_LEASE,
                                      NGX_HTTP_MQTTAPI_SCRIPT_SHARE, 2, 4,
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
    args[3].len = ngx_snprintf(shares, sizeof(shares), "%V{shares}:",
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
    ngx_http_mqttapi_node_t        *node;
    ngx_http_mqttapi_zone_t       **zones, *zone;
    ngx_http_mqttapi_quota_node_t  *q;

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

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_QUOTA,
                                      &key, ngx_http_mqttapi_zone_hash(&key),
                                      NULL);
    q = ngx_http_mqttapi_node_quota(node);

    if (q && q->mode == NGX_HTTP_MQTTAPI_QUOTA_LEASED) {
        if (q->u.lease.second == second) {
            q->u.lease.tokens = (uint16_t) ngx_min(q->u.lease.tokens
                                                      + granted,
                                                NGX_HTTP_MQTTAPI_QUOTA_MAX);

            /* none left this second: ask again in the next one */
            q->u.lease.asked = (granted == 0);

        } else if ((ngx_msec_int_t) (second - q->u.lease.second) > 0) {

            /*
             * Redis is in a later second than the node's requests yet:
             * start it here, with these tokens and the node's share
             */

            ngx_memzero(&q->u, sizeof(q->u));
            q->u.lease.second = (uint32_t) second;
            q->u.lease.tokens = (uint16_t) ngx_min(granted
                                       + ngx_http_mqttapi_quota_sync_share(
                                             task->conf->sh, second,
                                             lease->limit),
                                       NGX_HTTP_MQTTAPI_QUOTA_MAX);
            q->u.lease.asked = (granted == 0);
        }

        /* tokens of a second already over: the fleet's slack */
    }

    ngx_http_mqttapi_zone_unlock(zone);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, task->log, 0,
                   "mqttapi sync: leased %ui tokens of \"%V\" in second %M",
                   granted, &key, second);

    ngx_free(lease);
}
