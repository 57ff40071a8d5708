
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"
#include "ngx_http_mqttapi_catalog.h"


/*
 * Back-offs shared by the fleet.  A request that sees a throttle opens the
 * back-off in the zone at once and leaves an event in the outbox; the task
 * tracks it and pushes it (the "open" script: key with a TTL, index,
 * PUBLISH), and adopts what the fleet holds when another node's is newer.
 * Every node applies what it hears on the channel, and what the index
 * holds on each reconnect and at least every two seconds (Pub/Sub drops
 * messages): same count, same end, relative to Redis's clock.  Ahead of a
 * back-off's end the task asks Redis for the right to probe (SET NX PX);
 * only the node that holds it lets a request through when the back-off
 * ends, and that probe's clean answer closes the back-off everywhere.
 * The task's list of back-offs is its own (process memory); a worker that
 * takes the task over rebuilds it from the zones and Redis.
 */


typedef struct {
    ngx_uint_t                    zone;
    ngx_uint_t                    seq;
    u_short                       len;
    u_char                        key[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_sync_ref_t;


/* a back-off node of a zone as the scan copies it, under the zone's lock */

typedef struct {
    uint32_t                      count;
    ngx_msec_t                    until;
    ngx_uint_t                    peer;
    u_short                       len;
    u_char                        key[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_sync_copy_t;


static void ngx_http_mqttapi_sync_meanwhile(
    ngx_http_mqttapi_sync_task_t *task, ngx_http_mqttapi_zone_t *zone,
    ngx_uint_t level, uint32_t meanwhile, char *why);
static ngx_http_mqttapi_sync_tracked_t *ngx_http_mqttapi_sync_track(
    ngx_http_mqttapi_sync_task_t *task, ngx_uint_t zone, u_char *key,
    size_t len, ngx_uint_t create);
static void ngx_http_mqttapi_sync_untrack(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_tracked_t *t);
static void ngx_http_mqttapi_sync_push(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_tracked_t *t);
static void ngx_http_mqttapi_sync_push_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_ask_right(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_tracked_t *t);
static void ngx_http_mqttapi_sync_right_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_pull_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_apply(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t zone, ngx_http_mqttapi_sync_backoff_t *b, ngx_uint_t peer);
static void ngx_http_mqttapi_sync_apply_close(
    ngx_http_mqttapi_sync_task_t *task, ngx_uint_t zone, ngx_str_t *key,
    uint32_t count);
static ngx_http_mqttapi_sync_ref_t *ngx_http_mqttapi_sync_ref(
    ngx_http_mqttapi_sync_task_t *task, ngx_uint_t zone, u_char *key,
    size_t len);
static ngx_int_t ngx_http_mqttapi_sync_check(
    ngx_http_mqttapi_sync_task_t *task, ngx_uint_t op,
    ngx_http_mqttapi_sync_backoff_t *b);
static ngx_int_t ngx_http_mqttapi_sync_zone_index(
    ngx_http_mqttapi_sync_task_t *task, ngx_str_t *name);


void
ngx_http_mqttapi_sync_backoff_event(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_event_t *ev)
{
    ngx_http_mqttapi_sync_tracked_t  *t;

    t = ngx_http_mqttapi_sync_track(task, ev->zone, ev->key, ev->len, 1);
    if (t == NULL) {
        return;
    }

    t->seq = ++task->seq;
    t->pushed = 0;

    if (ev->type == NGX_HTTP_MQTTAPI_SYNC_CLOSE) {
        t->closed = 1;
        t->count = ev->count;

    } else {
        t->closed = 0;
        t->peer = 0;
        t->right = 0;

        if (ev->count != t->count) {
            t->asking_right = 0;
            t->next_ask = 0;
        }

        t->count = ev->count;
    }

    if (task->state == NGX_HTTP_MQTTAPI_SYNC_READY && !t->asking) {
        ngx_http_mqttapi_sync_push(task, t);
    }
}


void
ngx_http_mqttapi_sync_backoff_tick(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_msec_t                        now;
    ngx_queue_t                      *q, *next;
    ngx_http_mqttapi_sync_tracked_t  *t;

    now = ngx_current_msec;

    for (q = ngx_queue_head(&task->tracked);
         q != ngx_queue_sentinel(&task->tracked);
         q = next)
    {
        next = ngx_queue_next(q);
        t = ngx_queue_data(q, ngx_http_mqttapi_sync_tracked_t, queue);

        if (!t->closed && !t->asking
            && (ngx_msec_int_t) (now - t->until)
               > NGX_HTTP_MQTTAPI_SYNC_KEEP)
        {
            /* long over, and no longer in Redis either */
            ngx_http_mqttapi_sync_untrack(task, t);
            continue;
        }

        if (!t->pushed) {
            if (!t->asking) {
                ngx_http_mqttapi_sync_push(task, t);
            }

            continue;
        }

        /* the right to probe, asked for ahead of the end */

        if (!t->closed && !t->right && !t->asking_right
            && (ngx_msec_int_t) (t->until - now)
               <= (ngx_msec_int_t) (2 * task->conf->interval)
            && (ngx_msec_int_t) (now - t->next_ask) >= 0)
        {
            ngx_http_mqttapi_sync_ask_right(task, t);
        }

        if (task->state != NGX_HTTP_MQTTAPI_SYNC_READY) {
            return;
        }
    }
}


void
ngx_http_mqttapi_sync_backoff_drop(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_queue_t                      *q;
    ngx_http_mqttapi_sync_tracked_t  *t;

    /*
     * The connection is gone: the replies under way will not come.  What
     * was pushed is checked, not pushed again: the reconnection's pull
     * tells what Redis lost (a restart) and only that is pushed, so that
     * a slow reply costs a reconnection, not a push of every back-off.
     */

    for (q = ngx_queue_head(&task->tracked);
         q != ngx_queue_sentinel(&task->tracked);
         q = ngx_queue_next(q))
    {
        t = ngx_queue_data(q, ngx_http_mqttapi_sync_tracked_t, queue);
        t->asking = 0;
        t->asking_right = 0;
        t->next_ask = 0;
        t->check = t->pushed;
    }
}


void
ngx_http_mqttapi_sync_backoff_init(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_queue_init(&task->tracked);
    ngx_rbtree_init(&task->tree, &task->tree_sentinel,
                    ngx_str_rbtree_insert_value);
}


void
ngx_http_mqttapi_sync_backoff_scan(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_uint_t                        i, j, m;
    ngx_msec_t                        now;
    ngx_queue_t                      *q;
    ngx_http_mqttapi_node_t          *n;
    ngx_http_mqttapi_zone_t         **zones, *zone;
    ngx_http_mqttapi_sync_copy_t     *copy, *c;
    ngx_http_mqttapi_sync_tracked_t  *t;
    ngx_http_mqttapi_backoff_node_t  *b;
#if (NGX_DEBUG)
    struct timeval                    tv;
    ngx_msec_int_t                    held;
#endif

    /*
     * A new owner, or events lost to a full outbox: the back-offs in the
     * zones are tracked again.  Under a zone's lock they are only copied
     * (the requests wait on that lock); tracked after it is released.  A
     * back-off new to the task is checked by a pull, sent at once; one
     * that changed since the task saw it is pushed.
     */

    copy = ngx_alloc(NGX_HTTP_MQTTAPI_SYNC_TRACKED
                     * sizeof(ngx_http_mqttapi_sync_copy_t), task->log);
    if (copy == NULL) {
        task->rescan = 1;
        return;
    }

    zones = task->conf->zones.elts;
    now = ngx_current_msec;

    for (i = 0; i < task->conf->zones.nelts; i++) {
        zone = zones[i];
        m = 0;

#if (NGX_DEBUG)
        ngx_gettimeofday(&tv);
        held = - (ngx_msec_int_t) (tv.tv_sec * 1000000 + tv.tv_usec);
#endif

        ngx_shmtx_lock(&zone->shpool->mutex);

        for (q = ngx_queue_head(&zone->sh->queue);
             q != ngx_queue_sentinel(&zone->sh->queue)
             && m < NGX_HTTP_MQTTAPI_SYNC_TRACKED;
             q = ngx_queue_next(q))
        {
            n = ngx_queue_data(q, ngx_http_mqttapi_node_t, queue);
            b = ngx_http_mqttapi_node_backoff(n);

            if (b == NULL
                || (ngx_msec_int_t) (now - b->until)
                   > NGX_HTTP_MQTTAPI_SYNC_KEEP)
            {
                continue;
            }

            c = &copy[m++];
            c->count = b->count;
            c->until = b->until;
            c->peer = (b->flags & NGX_HTTP_MQTTAPI_SYNC_PEER) != 0;
            c->len = n->len;
            ngx_memcpy(c->key, n->data, n->len);
        }

        ngx_http_mqttapi_zone_unlock(zone);

#if (NGX_DEBUG)
        ngx_gettimeofday(&tv);
        held += tv.tv_sec * 1000000 + tv.tv_usec;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, task->log, 0,
                       "mqttapi sync: %ui back-offs of zone \"%V\" copied "
                       "in %M us under its lock", m,
                       &zone->shm_zone->shm.name, held);
#endif

        for (j = 0; j < m; j++) {
            c = &copy[j];

            t = ngx_http_mqttapi_sync_track(task, i, c->key, c->len, 1);
            if (t == NULL) {
                break;
            }

            if (t->seq && t->count == c->count && t->until == c->until) {
                continue;
            }

            if (t->seq == 0) {
                t->pushed = 1;
                t->check = 1;

            } else {
                t->pushed = 0;
            }

            t->count = c->count;
            t->until = c->until;
            t->peer = c->peer;
            t->seq = ++task->seq;
        }
    }

    ngx_free(copy);

    task->reconcile_at = now;
}


static void
ngx_http_mqttapi_sync_push(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_tracked_t *t)
{
    ngx_int_t                     rc;
    ngx_str_t                     args[11], c;
    ngx_msec_t                    now;
    ngx_msec_int_t                left;
    ngx_http_mqttapi_node_t      *node;
    ngx_http_mqttapi_zone_t     **zones, *zone;
    ngx_http_mqttapi_sync_ref_t  *ref;
    u_char                        k0[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                        k1[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                        k2[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                        count[NGX_INT_T_LEN];
    u_char                        l[NGX_INT_T_LEN];
    u_char                        d[NGX_INT_T_LEN];
    u_char                        keep[NGX_INT_T_LEN];
    u_char                        code[NGX_HTTP_MQTTAPI_CODE_MAX_LEN];

    zones = task->conf->zones.elts;
    zone = zones[t->zone];
    now = ngx_current_msec;

    args[0].data = k0;
    args[1].data = k1;
    args[2].data = k2;

    if (ngx_http_mqttapi_sync_key(task, &args[0], t->zone, "b", NULL, 0)
        != NGX_OK
        || ngx_http_mqttapi_sync_key(task, &args[1], t->zone, "index", NULL, 0)
           != NGX_OK
        || ngx_http_mqttapi_sync_key(task, &args[2], t->zone, "p:", t->key,
                                     t->len)
           != NGX_OK)
    {
        ngx_http_mqttapi_sync_untrack(task, t);
        return;
    }

    args[3].data = t->key;
    args[3].len = t->len;
    args[4].data = count;
    args[4].len = ngx_sprintf(count, "%uD", t->count) - count;

    ref = ngx_http_mqttapi_sync_ref(task, t->zone, t->key, t->len);
    if (ref == NULL) {
        return;
    }

    if (t->closed) {
        args[5] = task->channel;
        args[6] = zone->shm_zone->shm.name;

        rc = ngx_http_mqttapi_sync_eval(task, NGX_HTTP_MQTTAPI_SYNC_OP_BACKOFF,
                                        NGX_HTTP_MQTTAPI_SCRIPT_CLOSE, 3, 7,
                                        args, ngx_http_mqttapi_sync_push_reply,
                                        ref);
        goto sent;
    }

    /* the back-off as the zone holds it now */

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_BACKOFF,
                                      &args[3],
                                      ngx_http_mqttapi_zone_hash(&args[3]),
                                      NULL);
    if (node == NULL) {
        ngx_http_mqttapi_zone_unlock(zone);
        ngx_free(ref);
        ngx_http_mqttapi_sync_untrack(task, t);
        return;
    }

    t->count = node->u.backoff.count;
    t->until = node->u.backoff.until;

    args[4].len = ngx_sprintf(count, "%uD", t->count) - count;

    left = (ngx_msec_int_t) (node->u.backoff.until - now);
    if (left < 0) {
        left = 0;
    }

    args[6].data = d;
    args[6].len = ngx_sprintf(d, "%uD", node->u.backoff.delay) - d;

    /* copied before the lock is released: the zone may reuse the slot */

    ngx_http_mqttapi_zone_code(zone, node->u.backoff.code, &c);

    args[7].data = code;
    args[7].len = ngx_min(c.len, sizeof(code));
    ngx_memcpy(code, c.data, args[7].len);

    ngx_http_mqttapi_zone_unlock(zone);

    args[5].data = l;
    args[5].len = ngx_sprintf(l, "%M", (ngx_msec_t) left) - l;

    if (args[7].len == 0) {
        ngx_str_set(&args[7], "-");
    }

    args[8] = task->channel;
    args[9] = zone->shm_zone->shm.name;
    args[10].data = keep;
    args[10].len = ngx_sprintf(keep, "%d", NGX_HTTP_MQTTAPI_SYNC_KEEP) - keep;

    rc = ngx_http_mqttapi_sync_eval(task, NGX_HTTP_MQTTAPI_SYNC_OP_BACKOFF,
                                    NGX_HTTP_MQTTAPI_SCRIPT_OPEN, 3, 11, args,
                                    ngx_http_mqttapi_sync_push_reply, ref);

sent:

    if (rc != NGX_OK) {
        ngx_free(ref);
        return;
    }

    ref->seq = t->seq;
    t->asking = 1;
}


static void
ngx_http_mqttapi_sync_push_reply(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_http_mqttapi_sync_ref_t *ref = data;

    ngx_http_mqttapi_sync_backoff_t   b;
    ngx_http_mqttapi_sync_tracked_t  *t;

    t = ngx_http_mqttapi_sync_track(task, ref->zone, ref->key, ref->len, 0);

    if (t) {
        t->asking = 0;
    }

    if (ngx_http_mqttapi_sync_reply_error(task,
                                          NGX_HTTP_MQTTAPI_SYNC_OP_BACKOFF,
                                          reply)
        != NGX_OK
        || t == NULL || t->seq != ref->seq)
    {
        /* pushed again on the next tick if still wanted */
        ngx_free(ref);
        return;
    }

    if (t->closed) {
        if (reply->type != REDIS_REPLY_INTEGER) {
            goto invalid;
        }

        ngx_http_mqttapi_sync_untrack(task, t);
        ngx_free(ref);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4
        || ngx_http_mqttapi_sync_parse_backoff(reply->element, &b) != NGX_OK)
    {
        goto invalid;
    }

    t->pushed = 1;

    /* the fleet's back-off, which may be another node's */

    b.key.data = ref->key;
    b.key.len = ref->len;

    if (ngx_http_mqttapi_sync_check(task, NGX_HTTP_MQTTAPI_SYNC_OP_BACKOFF,
                                    &b)
        == NGX_OK)
    {
        ngx_http_mqttapi_sync_apply(task, ref->zone, &b, 0);
    }

    ngx_free(ref);
    return;

invalid:

    ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_BACKOFF,
                                "unexpected reply to a back-off's push");
    ngx_free(ref);
}


static void
ngx_http_mqttapi_sync_ask_right(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_tracked_t *t)
{
    ngx_msec_t                    now;
    ngx_msec_int_t                ttl;
    ngx_http_mqttapi_sync_ref_t  *ref;
    const char                   *argv[6];
    size_t                        argvlen[6];
    ngx_str_t                     key;
    u_char                        k[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                        px[NGX_INT_T_LEN];

    now = ngx_current_msec;

    key.data = k;

    if (ngx_http_mqttapi_sync_key(task, &key, t->zone, "p:", t->key, t->len)
        != NGX_OK)
    {
        return;
    }

    ref = ngx_http_mqttapi_sync_ref(task, t->zone, t->key, t->len);
    if (ref == NULL) {
        return;
    }

    ref->seq = t->count;

    /* held until a while after the end, then another node may take it */

    ttl = (ngx_msec_int_t) (t->until - now);
    ttl = ngx_max(ttl, 0) + NGX_HTTP_MQTTAPI_SYNC_RIGHT_TTL;

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) key.data;
    argvlen[1] = key.len;
    argv[2] = (const char *) task->conf->sh->id;
    argvlen[2] = ngx_strlen(task->conf->sh->id);
    argv[3] = "NX";
    argvlen[3] = 2;
    argv[4] = "PX";
    argvlen[4] = 2;
    argv[5] = (const char *) px;
    argvlen[5] = ngx_sprintf(px, "%i", ttl) - px;

    if (ngx_http_mqttapi_sync_link_send(&task->cmd,
                                        NGX_HTTP_MQTTAPI_SYNC_OP_PROBE, 6,
                                        argv, argvlen,
                                        ngx_http_mqttapi_sync_right_reply,
                                        ref)
        != NGX_OK)
    {
        ngx_free(ref);
        return;
    }

    t->asking_right = 1;
    t->next_ask = now + NGX_HTTP_MQTTAPI_SYNC_RIGHT_TTL / 2;
}


static void
ngx_http_mqttapi_sync_right_reply(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_http_mqttapi_sync_ref_t *ref = data;

    ngx_str_t                         key;
    ngx_http_mqttapi_node_t          *node;
    ngx_http_mqttapi_zone_t         **zones, *zone;
    ngx_http_mqttapi_sync_tracked_t  *t;

    t = ngx_http_mqttapi_sync_track(task, ref->zone, ref->key, ref->len, 0);

    if (t) {
        t->asking_right = 0;
    }

    if (ngx_http_mqttapi_sync_reply_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_PROBE,
                                          reply)
        != NGX_OK
        || t == NULL)
    {
        ngx_free(ref);
        return;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        /* another node holds it */
        ngx_free(ref);
        return;
    }

    if (reply->type != REDIS_REPLY_STATUS || reply->len != 2
        || ngx_strncmp(reply->str, "OK", 2) != 0)
    {
        ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_PROBE,
                                    "unexpected reply to the probe's SET");
        ngx_free(ref);
        return;
    }

    zones = task->conf->zones.elts;
    zone = zones[ref->zone];

    key.data = ref->key;
    key.len = ref->len;

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_BACKOFF,
                                      &key, ngx_http_mqttapi_zone_hash(&key),
                                      NULL);

    if (node && node->u.backoff.count == ref->seq)
    {
        node->u.backoff.flags |= NGX_HTTP_MQTTAPI_SYNC_RIGHT;
        t->right = 1;
    }

    ngx_http_mqttapi_zone_unlock(zone);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, task->log, 0,
                   "mqttapi sync: this node probes \"%V\" (#%ui)", &key,
                   ref->seq);

    ngx_free(ref);
}


void
ngx_http_mqttapi_sync_backoff_reconcile(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_uint_t                    i;
    ngx_str_t                     args[2];
    ngx_http_mqttapi_sync_ref_t  *ref;
    u_char                        k0[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char                        k1[NGX_HTTP_MQTTAPI_SYNC_KEY];

    for (i = 0; i < task->conf->zones.nelts; i++) {
        args[0].data = k0;
        args[1].data = k1;

        if (ngx_http_mqttapi_sync_key(task, &args[0], i, "index", NULL, 0)
            != NGX_OK
            || ngx_http_mqttapi_sync_key(task, &args[1], i, "b", NULL, 0)
               != NGX_OK)
        {
            continue;
        }

        ref = ngx_http_mqttapi_sync_ref(task, i, NULL, 0);
        if (ref == NULL) {
            return;
        }

        ref->seq = task->seq;

        if (ngx_http_mqttapi_sync_eval(task,
                                       NGX_HTTP_MQTTAPI_SYNC_OP_RECONCILE,
                                       NGX_HTTP_MQTTAPI_SCRIPT_PULL, 2, 2,
                                       args, ngx_http_mqttapi_sync_pull_reply,
                                       ref)
            != NGX_OK)
        {
            ngx_free(ref);
            return;
        }
    }
}


static void
ngx_http_mqttapi_sync_pull_reply(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_http_mqttapi_sync_ref_t *ref = data;

    size_t                            i;
    ngx_str_t                         key;
    ngx_queue_t                      *q, *next;
    ngx_http_mqttapi_sync_backoff_t   b;
    ngx_http_mqttapi_sync_tracked_t  *t;

    if (ngx_http_mqttapi_sync_reply_error(task,
                                          NGX_HTTP_MQTTAPI_SYNC_OP_RECONCILE,
                                          reply)
        != NGX_OK)
    {
        ngx_free(ref);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 5) {
        goto invalid;
    }

    for (q = ngx_queue_head(&task->tracked);
         q != ngx_queue_sentinel(&task->tracked);
         q = ngx_queue_next(q))
    {
        t = ngx_queue_data(q, ngx_http_mqttapi_sync_tracked_t, queue);
        t->seen = 0;
    }

    for (i = 0; i < reply->elements; i += 5) {

        if (ngx_http_mqttapi_sync_parse_entry(&reply->element[i], &b)
            != NGX_OK)
        {
            /*
             * written by another hand than the open script's: dropped
             * alone, or one such entry would stop the zone's pulls
             */
            ngx_http_mqttapi_sync_error(task,
                                        NGX_HTTP_MQTTAPI_SYNC_OP_RECONCILE,
                                        "an invalid back-off from Redis "
                                        "was dropped");
            continue;
        }

        if (ngx_http_mqttapi_sync_check(task,
                                        NGX_HTTP_MQTTAPI_SYNC_OP_RECONCILE,
                                        &b)
            == NGX_OK)
        {
            ngx_http_mqttapi_sync_apply(task, ref->zone, &b, 1);
        }

        t = ngx_http_mqttapi_sync_track(task, ref->zone, b.key.data,
                                        b.key.len, 0);
        if (t) {
            t->seen = 1;

            if (t->check) {
                /* Redis has it; older than this node's: pushed */
                t->check = 0;
                t->pushed = (t->count <= b.count);
            }
        }
    }

    /*
     * a back-off the fleet had and has no more was closed by a message
     * this node missed; one changed since the pull was sent is left alone
     */

    for (q = ngx_queue_head(&task->tracked);
         q != ngx_queue_sentinel(&task->tracked);
         q = next)
    {
        next = ngx_queue_next(q);
        t = ngx_queue_data(q, ngx_http_mqttapi_sync_tracked_t, queue);

        if (t->zone == ref->zone && !t->seen && t->check) {
            /* Redis lost it (restarted empty): pushed again */
            t->check = 0;
            t->pushed = 0;
            continue;
        }

        if (t->zone == ref->zone && !t->seen && t->pushed && !t->closed
            && !t->asking && t->seq <= ref->seq)
        {
            key.data = t->key;
            key.len = t->len;

            ngx_http_mqttapi_sync_apply_close(task, t->zone, &key, t->count);
        }
    }

    ngx_free(ref);
    return;

invalid:

    ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_RECONCILE,
                                "unexpected reply to the reconciliation");
    ngx_free(ref);
}


/* a message on the channel: "O Z count left delay code K" or "C ..." */

void
ngx_http_mqttapi_sync_backoff_message(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_int_t                        zone;
    ngx_http_mqttapi_sync_backoff_t  b;

    if (ngx_http_mqttapi_sync_parse_event(reply, &b) != NGX_OK) {
        ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_PUBSUB,
                                    "unexpected message on the channel");
        return;
    }

    zone = ngx_http_mqttapi_sync_zone_index(task, &b.zone);

    if (zone == NGX_ERROR) {
        /* a zone this node does not sync (the name is not written) */

        if (!task->unknown_zone) {
            task->unknown_zone = 1;
            ngx_log_error(NGX_LOG_INFO, task->log, 0,
                          "mqttapi sync: a message for a zone this node "
                          "does not sync was dropped (logged once)");
        }

        return;
    }

    if (b.close) {
        ngx_http_mqttapi_sync_apply_close(task, zone, &b.key, b.count);
        return;
    }

    if (ngx_http_mqttapi_sync_check(task, NGX_HTTP_MQTTAPI_SYNC_OP_PUBSUB, &b)
        == NGX_OK)
    {
        ngx_http_mqttapi_sync_apply(task, zone, &b, 1);
    }
}


/*
 * What Redis says of a back-off is checked as an upstream's answer is:
 * its code (when kept) of the catalog's alphabet, or it is dropped, and
 * logged (at most once an interval); its length is capped by apply()
 */

static ngx_int_t
ngx_http_mqttapi_sync_check(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t op, ngx_http_mqttapi_sync_backoff_t *b)
{
    if (b->code.len
        && ngx_http_mqttapi_valid_code(b->code.data, b->code.len) != NGX_OK)
    {
        ngx_http_mqttapi_sync_error(task, op, "a back-off from Redis with "
                                    "an invalid code was dropped");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_mqttapi_sync_apply(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t zone_index, ngx_http_mqttapi_sync_backoff_t *b,
    ngx_uint_t peer)
{
    uint32_t                          hash, count, meanwhile, held;
    ngx_str_t                        *key, *code;
    ngx_uint_t                        level;
    ngx_msec_t                        now, until, delay, cap;
    ngx_msec_int_t                    left;
    ngx_http_mqttapi_node_t          *node;
    ngx_http_mqttapi_zone_t         **zones, *zone;
    ngx_http_mqttapi_sync_tracked_t  *t;

    zones = task->conf->zones.elts;
    zone = zones[zone_index];
    now = ngx_current_msec;

    /*
     * at most the zone's max_backoff, whatever Redis says: a node whose
     * own upstream asked for longer (Retry-After) keeps that, below
     */

    left = ngx_min(b->left, (ngx_msec_int_t) zone->max_backoff);
    delay = ngx_min(b->delay, zone->max_backoff);
    until = now + left;
    key = &b->key;
    code = &b->code;
    count = b->count;
    hash = ngx_http_mqttapi_zone_hash(key);
    meanwhile = 0;
    level = NGX_LOG_WARN;

    /* over already: nothing to answer locally unless the node has it */

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_BACKOFF,
                                      key, hash,
                                      (left <= 0 && peer) ? NULL
                                                             : task->log);
    if (node == NULL) {
        ngx_http_mqttapi_zone_unlock(zone);
        return;
    }

    /* a node made now has a count of 0 */

    if (node->u.backoff.count > count) {
        /* this node's back-off is newer: its push is under way */
        ngx_http_mqttapi_zone_unlock(zone);
        return;

    } else if (node->u.backoff.count < count) {
        node->u.backoff.flags = peer ? NGX_HTTP_MQTTAPI_SYNC_PEER : 0;
        node->u.backoff.probe = 0;
        node->u.backoff.since = (uint32_t) now;
        meanwhile = node->rejected;
        level = node->u.backoff.level;
        node->rejected = 0;
    }

    /*
     * A count is held for at most max_backoff from when this node first
     * had it, whatever Redis says later: the reconciliation finding a
     * longer one of the same count every 2 s (a hostile entry, or a peer's
     * end relayed again) would otherwise renew it at each pull, and the
     * key would never be probed.  Redis's end may still lengthen it within
     * that (the fleet's end of the count, or a push's round trip).
     */

    held = (uint32_t) now - node->u.backoff.since;
    cap = (held < zone->max_backoff) ? zone->max_backoff - held : 0;

    if ((ngx_msec_int_t) (until - now) > (ngx_msec_int_t) cap) {
        until = now + cap;
    }

    if (node->u.backoff.count == count
        && !(node->u.backoff.flags & NGX_HTTP_MQTTAPI_SYNC_PEER)
        && (ngx_msec_int_t) (node->u.backoff.until - until) > 0)
    {
        /* this node's own, longer than the zone allows a peer's */
        until = node->u.backoff.until;
        delay = node->u.backoff.delay;
    }

    node->u.backoff.count = count;
    node->u.backoff.until = until;
    node->u.backoff.delay = (uint32_t) delay;

    if (code->len) {
        node->u.backoff.code = ngx_http_mqttapi_zone_code_index(zone, code);
    }

    ngx_http_mqttapi_zone_unlock(zone);

    if (meanwhile) {
        ngx_http_mqttapi_sync_meanwhile(task, zone, level, meanwhile,
                                        "throttled again on another node");
    }

    t = ngx_http_mqttapi_sync_track(task, zone_index, key->data, key->len, 1);

    if (t) {
        if (t->count != count) {
            t->right = 0;
            t->next_ask = 0;
        }

        t->count = count;
        t->until = until;
        t->pushed = 1;
        t->closed = 0;
        t->seq = ++task->seq;
    }
}


static void
ngx_http_mqttapi_sync_apply_close(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t zone_index, ngx_str_t *key, uint32_t count)
{
    uint32_t                          meanwhile;
    ngx_uint_t                        level;
    ngx_http_mqttapi_node_t          *node;
    ngx_http_mqttapi_zone_t         **zones, *zone;
    ngx_http_mqttapi_sync_tracked_t  *t;

    zones = task->conf->zones.elts;
    zone = zones[zone_index];
    meanwhile = 0;
    level = NGX_LOG_WARN;

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_BACKOFF,
                                      key, ngx_http_mqttapi_zone_hash(key),
                                      NULL);

    if (node && node->u.backoff.count <= count)
    {
        meanwhile = node->rejected;
        level = node->u.backoff.level;
        ngx_http_mqttapi_zone_free(zone, node);
        node = NULL;
    }

    ngx_http_mqttapi_zone_unlock(zone);

    if (meanwhile) {
        ngx_http_mqttapi_sync_meanwhile(task, zone, level, meanwhile,
                                        "closed by another node");
    }

    t = ngx_http_mqttapi_sync_track(task, zone_index, key->data, key->len, 0);

    if (t && node == NULL && !t->asking) {
        ngx_http_mqttapi_sync_untrack(task, t);
    }
}


/*
 * A back-off window that another node ended: the line that tells how many
 * requests this node answered locally meanwhile, at the level of the
 * window's first line (the key is not written: no request is logged here).
 */

static void
ngx_http_mqttapi_sync_meanwhile(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_zone_t *zone, ngx_uint_t level, uint32_t meanwhile,
    char *why)
{
    ngx_log_error(level, task->log, 0,
                  "mqttapi: a back-off of zone \"%V\" was %s; %uD requests "
                  "were answered locally meanwhile",
                  &zone->shm_zone->shm.name, why, meanwhile);
}


static ngx_http_mqttapi_sync_tracked_t *
ngx_http_mqttapi_sync_track(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t zone, u_char *key, size_t len, ngx_uint_t create)
{
    uint32_t                          hash;
    ngx_str_t                         name;
    ngx_http_mqttapi_sync_tracked_t  *t;
    u_char                            zk[1 + NGX_HTTP_MQTTAPI_KEY_MAX_LEN];

    if (len > NGX_HTTP_MQTTAPI_KEY_MAX_LEN) {
        return NULL;
    }

    zk[0] = (u_char) zone;
    ngx_memcpy(zk + 1, key, len);

    name.data = zk;
    name.len = 1 + len;

    hash = ngx_crc32_short(name.data, name.len);

    t = (ngx_http_mqttapi_sync_tracked_t *)
            ngx_str_rbtree_lookup(&task->tree, &name, hash);

    if (t || !create || task->ntracked == NGX_HTTP_MQTTAPI_SYNC_TRACKED) {
        return t;
    }

    t = ngx_calloc(sizeof(ngx_http_mqttapi_sync_tracked_t), task->log);
    if (t == NULL) {
        return NULL;
    }

    ngx_memcpy(t->zk, zk, name.len);

    t->zone = zone;
    t->len = (u_short) len;
    t->key = t->zk + 1;
    t->until = ngx_current_msec;

    t->sn.node.key = hash;
    t->sn.str.data = t->zk;
    t->sn.str.len = name.len;

    ngx_rbtree_insert(&task->tree, &t->sn.node);

    ngx_queue_insert_tail(&task->tracked, &t->queue);
    task->ntracked++;

    return t;
}


static void
ngx_http_mqttapi_sync_untrack(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_tracked_t *t)
{
    ngx_rbtree_delete(&task->tree, &t->sn.node);
    ngx_queue_remove(&t->queue);
    task->ntracked--;
    ngx_free(t);
}


static ngx_http_mqttapi_sync_ref_t *
ngx_http_mqttapi_sync_ref(ngx_http_mqttapi_sync_task_t *task, ngx_uint_t zone,
    u_char *key, size_t len)
{
    ngx_http_mqttapi_sync_ref_t  *ref;

    /* what a reply's handler needs, since the entry may be gone by then */

    ref = ngx_alloc(sizeof(ngx_http_mqttapi_sync_ref_t), task->log);
    if (ref == NULL) {
        return NULL;
    }

    ref->zone = zone;
    ref->seq = 0;
    ref->len = (u_short) len;

    if (len) {
        ngx_memcpy(ref->key, key, len);
    }

    return ref;
}


static ngx_int_t
ngx_http_mqttapi_sync_zone_index(ngx_http_mqttapi_sync_task_t *task,
    ngx_str_t *name)
{
    ngx_uint_t                 i;
    ngx_http_mqttapi_zone_t  **zones;

    zones = task->conf->zones.elts;

    for (i = 0; i < task->conf->zones.nelts; i++) {
        if (zones[i]->shm_zone->shm.name.len == name->len
            && ngx_strncmp(zones[i]->shm_zone->shm.name.data, name->data,
                           name->len)
               == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}
