
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * Quotas shared by the fleet, by demand: the task's side (what a request
 * does is ngx_http_mqttapi_quota_sync.c).  A grant is what a node may
 * spend of a key's limit L in one second of Redis's clock: the current
 * one or the next.  On each tick, for each synced zone, the task sends
 * Redis in ONE script call (the "grant" script) the keys of that zone
 * that it must: those whose demand changed by a tenth or more, new ones
 * and those that spent their grant (flagged by the request path), those
 * it gives back (no demand any more), those that have no grant for the
 * next second in its last two intervals, and every key with a claim once
 * a second (from the tick of the second its hash picks until it is sent:
 * a tick that finds a call under way is owed to the call after it, and
 * a full batch leaves the rest to the next tick).  For each it says its
 * demand and what it may spend now and in the next second (its claims,
 * credit included); Redis answers with its grants for its current second
 * and the next, apportioned by max-min fairness over the demands
 * (YouTube's Doorman, adapted: wants = demand, has = claims, gets =
 * grants), and the task writes them into the nodes.  One call per zone is
 * under way at a time.
 *
 * A node's demand for a key is its arrival rate, the larger of its rates
 * over the last slot and a half and the last three slots and a half (a
 * slot is 4 buckets, 572 ms), times 1.5, plus 2, at most L; it is 0 after
 * a silence of max(0.7 s, three mean gaps), and the node then gives back
 * what it has not spent (it lowers its own claims at once, and its grant).
 * A key the request path flags (no grant, or none left) sets the
 * zone's "ask": a timer of NGX_HTTP_MQTTAPI_SYNC_WAKE in the task's
 * worker sees it and sends those keys at once, without waiting for the
 * tick (requests of several workers coalesce into one call).
 */


#define NGX_HTTP_MQTTAPI_SYNC_WAKE     10
/*
 * keys a call, about 30 ms of an idle Redis's time: 10,000 active keys
 * are about 1,000 an interval, and four times that leaves room for the
 * ticks that come late (calls of at most 1,000 left keys without their
 * next second's grant at 10,000 keys on a loaded machine)
 */
#define NGX_HTTP_MQTTAPI_SYNC_BATCH    4000

/* how far the immediate calls look down the LRU queue, ms */
#define NGX_HTTP_MQTTAPI_SYNC_STALE    300

/* a zone's state in the task */
#define NGX_HTTP_MQTTAPI_GRANTING      0x01   /* a call is under way */
#define NGX_HTTP_MQTTAPI_GRANT_AGAIN   0x02   /* keys asked meanwhile */
#define NGX_HTTP_MQTTAPI_GRANT_TICK    0x04   /* a tick came meanwhile */


typedef struct {
    uint16_t                      limit;
    uint16_t                      want;
    uint16_t                      hold[2];
    uint32_t                      second;
    u_short                       len;
    u_char                        key[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_sync_claim_t;


typedef struct {
    ngx_uint_t                    zone;
    ngx_uint_t                    n;
    ngx_http_mqttapi_sync_claim_t claims[1];
} ngx_http_mqttapi_sync_batch_t;


static void ngx_http_mqttapi_sync_wake(ngx_event_t *ev);
static void ngx_http_mqttapi_sync_grant_zone(
    ngx_http_mqttapi_sync_task_t *task, ngx_uint_t zi, ngx_uint_t scheduled);
static ngx_uint_t ngx_http_mqttapi_sync_stale(ngx_http_mqttapi_node_t *node,
    ngx_msec_t now);
static ngx_uint_t ngx_http_mqttapi_sync_claim(
    ngx_http_mqttapi_sync_task_t *task, ngx_http_mqttapi_node_t *node,
    ngx_uint_t scheduled, ngx_msec_t now, ngx_http_mqttapi_sync_claim_t *c);
static ngx_uint_t ngx_http_mqttapi_sync_demand(
    ngx_http_mqttapi_quota_node_t *q, ngx_msec_t now);
static u_char ngx_http_mqttapi_sync_step(ngx_uint_t demand);
static ngx_uint_t ngx_http_mqttapi_sync_changed(
    ngx_http_mqttapi_quota_node_t *q, ngx_uint_t demand);
static ngx_int_t ngx_http_mqttapi_sync_grant_send(
    ngx_http_mqttapi_sync_task_t *task, ngx_http_mqttapi_sync_batch_t *b);
static void ngx_http_mqttapi_sync_grant_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);


ngx_int_t
ngx_http_mqttapi_sync_grant_init(ngx_http_mqttapi_sync_task_t *task,
    ngx_pool_t *pool)
{
    task->granting = ngx_pcalloc(pool, task->conf->zones.nelts + 1);
    if (task->granting == NULL) {
        return NGX_ERROR;
    }

    task->wake.handler = ngx_http_mqttapi_sync_wake;
    task->wake.data = task;
    task->wake.log = task->log;
    task->wake.cancelable = 1;

    return NGX_OK;
}


/*
 * The task's worker polls the request path's "ask" (no worker can wake
 * another's timer): a cheap look at one word every few milliseconds
 */

static void
ngx_http_mqttapi_sync_wake(ngx_event_t *ev)
{
    ngx_http_mqttapi_sync_task_t  *task = ev->data;

    if (!task->owner || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (task->conf->sh->ask && task->state == NGX_HTTP_MQTTAPI_SYNC_READY) {
        task->conf->sh->ask = 0;
        ngx_http_mqttapi_sync_grant_tick(task, 0);
    }

    ngx_add_timer(ev, NGX_HTTP_MQTTAPI_SYNC_WAKE);
}


/* each tick (scheduled), or at once for the keys that asked */

void
ngx_http_mqttapi_sync_grant_tick(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t scheduled)
{
    ngx_uint_t  i;

    if (!task->wake.timer_set) {
        ngx_add_timer(&task->wake, NGX_HTTP_MQTTAPI_SYNC_WAKE);
    }

    if (!task->conf->sh->clocked) {
        /* the first heartbeat tells Redis's clock */
        return;
    }

    for (i = 0; i < task->conf->zones.nelts; i++) {

        if (task->granting[i] & NGX_HTTP_MQTTAPI_GRANTING) {
            /*
             * a tick that finds a call under way is owed, not lost: the
             * call after it walks the zone as the tick would have
             */
            task->granting[i] |= NGX_HTTP_MQTTAPI_GRANT_AGAIN
                                 | (scheduled ? NGX_HTTP_MQTTAPI_GRANT_TICK
                                              : 0);
            continue;
        }

        ngx_http_mqttapi_sync_grant_zone(task, i, scheduled
                      || (task->granting[i] & NGX_HTTP_MQTTAPI_GRANT_TICK));
    }
}


static void
ngx_http_mqttapi_sync_grant_zone(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t zi, ngx_uint_t scheduled)
{
    ngx_uint_t                      stale;
    ngx_msec_t                      now;
    ngx_queue_t                    *q;
    ngx_http_mqttapi_node_t        *node;
    ngx_http_mqttapi_zone_t       **zones, *zone;
    ngx_http_mqttapi_sync_batch_t  *b;

    zones = task->conf->zones.elts;
    zone = zones[zi];
    now = ngx_current_msec;

    b = ngx_alloc(sizeof(ngx_http_mqttapi_sync_batch_t)
                  + (NGX_HTTP_MQTTAPI_SYNC_BATCH - 1)
                    * sizeof(ngx_http_mqttapi_sync_claim_t),
                  task->log);
    if (b == NULL) {
        return;
    }

    b->zone = zi;
    b->n = 0;

    task->granting[zi] = 0;
    stale = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue)
         && b->n < NGX_HTTP_MQTTAPI_SYNC_BATCH;
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_mqttapi_node_t, queue);

        if (!scheduled && ngx_http_mqttapi_sync_stale(node, now)
            && ++stale > NGX_HTTP_MQTTAPI_SYNC_BATCH)
        {
            /*
             * the keys that ask were just looked up by their requests,
             * so they lead the LRU queue, behind at most a batch of keys
             * that the last reply looked up: the rest waits for the tick
             */
            break;
        }

        b->n += ngx_http_mqttapi_sync_claim(task, node, scheduled, now,
                                            &b->claims[b->n]);
    }

    ngx_http_mqttapi_zone_unlock(zone);

    if (b->n == 0 || ngx_http_mqttapi_sync_grant_send(task, b) != NGX_OK) {
        ngx_free(b);
        return;
    }

    task->granting[zi] = NGX_HTTP_MQTTAPI_GRANTING;
}


/* a quota node without a request for NGX_HTTP_MQTTAPI_SYNC_STALE ms */

static ngx_uint_t
ngx_http_mqttapi_sync_stale(ngx_http_mqttapi_node_t *node, ngx_msec_t now)
{
    ngx_http_mqttapi_quota_node_t  *q;

    q = ngx_http_mqttapi_node_quota(node);

    return q && q->mode == NGX_HTTP_MQTTAPI_QUOTA_GRANT
           && (ngx_msec_int_t) (now - (ngx_msec_t) q->bucket
                                      * NGX_HTTP_MQTTAPI_BUCKET_MSEC)
              > NGX_HTTP_MQTTAPI_SYNC_STALE;
}


/*
 * A key's claim to send, the zone locked: 1 if it is to be sent (*c is
 * filled in and the node marked), 0 if not
 */

static ngx_uint_t
ngx_http_mqttapi_sync_claim(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_node_t *node, ngx_uint_t scheduled, ngx_msec_t now,
    ngx_http_mqttapi_sync_claim_t *c)
{
    u_char                          step;
    uint32_t                        second;
    ngx_uint_t                      demand, ticks, turn, credit, send;
    ngx_msec_t                      rnow;
    ngx_rbtree_node_t              *rn;
    ngx_http_mqttapi_sync_sh_t     *sh;
    ngx_http_mqttapi_quota_node_t  *q;

    q = ngx_http_mqttapi_node_quota(node);

    if (q == NULL || q->mode != NGX_HTTP_MQTTAPI_QUOTA_GRANT) {
        return 0;
    }

    sh = task->conf->sh;
    rnow = now + sh->clock;
    second = ngx_http_mqttapi_quota_sync_second(sh, now);

    ngx_http_mqttapi_quota_sync_roll(q, second);

    demand = ngx_http_mqttapi_sync_demand(q, now);

    if ((q->flags & NGX_HTTP_MQTTAPI_GRANT_OUT)
        && q->u.grant.g[0] && q->u.grant.spent >= q->u.grant.g[0])
    {
        /*
         * it spent all of its grant: all of L, fairness cuts it down; a
         * key refused for want of any grant (its refresh late) asks for
         * its demand, not for L
         */
        demand = q->u.grant.limit;

    } else if (demand && q->age < 2) {

        /*
         * a young key's rate is not known yet (its first arrivals over
         * two seconds of slots): it wants at least its credit, which it
         * holds anyway, so that another node's grant for the next second
         * does not take it
         */

        demand = ngx_max(demand,
                         ngx_min(ngx_http_mqttapi_quota_sync_credit(sh,
                                                      q->u.grant.limit),
                                 q->u.grant.limit));
    }

    step = ngx_http_mqttapi_sync_step(demand);

    if (q->flags & NGX_HTTP_MQTTAPI_GRANT_ASK) {
        send = 1;

    } else if (!scheduled) {
        send = 0;

    } else if (demand == 0) {
        /* silent: what it has not spent goes back, once */
        send = (q->flags & NGX_HTTP_MQTTAPI_GRANT_SENT) != 0;

    } else {
        ticks = ngx_max(1000 / task->conf->interval, 1);
        rn = (ngx_rbtree_node_t *)
                 ((u_char *) node - offsetof(ngx_rbtree_node_t, color));

        /*
         * once a second: a key not sent yet in this second (it has no
         * grant for the next one) from its turn on, so that a tick
         * skipped or a batch full only delays it to the next tick
         */

        turn = ngx_min(rnow % 1000 / task->conf->interval, ticks - 1);

        send = ngx_http_mqttapi_sync_changed(q, demand)
               || !(q->flags & NGX_HTTP_MQTTAPI_GRANT_SENT)
               || (q->u.grant.g[1] == 0
                   && (rn->key % ticks <= turn
                       || rnow % 1000 >= 1000 - 2 * task->conf->interval));
    }

    if (!send) {
        return 0;
    }

    c->limit = q->u.grant.limit;
    c->want = (uint16_t) demand;
    c->second = second;

    if (demand == 0) {

        /* the node lowers its own claims at once: what it spent */

        q->u.grant.g[0] = ngx_min(q->u.grant.g[0], q->u.grant.spent);
        q->u.grant.g[1] = 0;
        q->age = 2;

        c->hold[0] = q->u.grant.spent;
        c->hold[1] = q->carry;

        q->flags &= ~NGX_HTTP_MQTTAPI_GRANT_SENT;

    } else {
        credit = ngx_http_mqttapi_quota_sync_credit(sh, q->u.grant.limit);

        /* credit in the key's first second and the next */

        c->hold[0] = q->u.grant.g[0];
        c->hold[1] = q->u.grant.g[1];

        if (q->age < 2) {
            c->hold[0] = (uint16_t) ngx_max(c->hold[0], credit);
        }

        if (q->age == 0) {
            c->hold[1] = (uint16_t) ngx_max(c->hold[1], credit);
        }

        /* what it spent already, there and at the boundary for the next */

        c->hold[0] = ngx_max(c->hold[0], q->u.grant.spent);
        c->hold[1] = ngx_max(c->hold[1], q->carry);

        q->flags |= NGX_HTTP_MQTTAPI_GRANT_SENT;
    }

    q->flags &= ~NGX_HTTP_MQTTAPI_GRANT_ASK;
    q->sent = step;

    c->len = node->len;
    ngx_memcpy(c->key, node->data, node->len);

    return 1;
}


/* the arrival rate, with headroom, at most L; 0 after a silence */

static ngx_uint_t
ngx_http_mqttapi_sync_demand(ngx_http_mqttapi_quota_node_t *q, ngx_msec_t now)
{
    uint32_t    slot, last, sn, k, sum, recent;
    ngx_uint_t  slot_ms, span, rate, gap, quiet, demand;

    slot_ms = NGX_HTTP_MQTTAPI_SLOT_BUCKETS * NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    slot = (uint32_t) (now / slot_ms);
    last = q->bucket / NGX_HTTP_MQTTAPI_SLOT_BUCKETS;

    if ((int32_t) (slot - last) >= NGX_HTTP_MQTTAPI_SLOTS) {
        return 0;
    }

    sum = 0;
    recent = 0;

    for (k = 0; k < NGX_HTTP_MQTTAPI_SLOTS; k++) {
        sn = last - k;

        if ((int32_t) (slot - sn) >= NGX_HTTP_MQTTAPI_SLOTS) {
            break;
        }

        sum += q->u.grant.slots[sn % NGX_HTTP_MQTTAPI_SLOTS];

        if ((int32_t) (slot - sn) <= 1) {
            recent += q->u.grant.slots[sn % NGX_HTTP_MQTTAPI_SLOTS];
        }
    }

    if (sum == 0) {
        return 0;
    }

    span = (NGX_HTTP_MQTTAPI_SLOTS - 1) * slot_ms + now % slot_ms;

    /* silent for max(0.7 s, three mean gaps) */

    gap = span / sum;
    quiet = now - (ngx_msec_t) q->bucket * NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    if ((ngx_msec_int_t) quiet > (ngx_msec_int_t) ngx_max(700, 3 * gap)) {
        return 0;
    }

    rate = ngx_max(sum * 1000 / span,
                   recent * 1000 / (slot_ms + now % slot_ms));

    demand = rate * 3 / 2 + 2;

    return ngx_min(demand, q->u.grant.limit);
}


/*
 * Whether a demand changed enough to be sent before its turn (within a
 * second): up by more than a tenth of what was sent, when it goes beyond
 * what the node holds or what was sent is below it (the others' fair
 * shares are cut by what Redis knows of this node's demand), or down by
 * more than half (capacity for the others; silence gives it all back at
 * once).  A demand measured over half a second is noisy: smaller changes
 * wait for the key's turn.
 */

static ngx_uint_t
ngx_http_mqttapi_sync_changed(ngx_http_mqttapi_quota_node_t *q,
    ngx_uint_t demand)
{
    ngx_uint_t  n, x, held;

    for (n = 0, x = 0; n < q->sent; n++) {
        x += x / 10 + 1;
    }

    held = ngx_max(q->u.grant.g[0], q->u.grant.g[1]);

    return (demand * 10 > x * 11 + 10 && (demand > held || x < held))
           || demand * 2 + 2 < x;
}


/* a demand on a scale of steps of a tenth (1, 2, 3, ... 10, 12, 14 ...) */

static u_char
ngx_http_mqttapi_sync_step(ngx_uint_t demand)
{
    ngx_uint_t  n, x;

    for (n = 0, x = 0; x < demand && n < 255; n++) {
        x += x / 10 + 1;
    }

    return (u_char) n;
}


static ngx_int_t
ngx_http_mqttapi_sync_grant_send(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_batch_t *b)
{
    int                             argc;
    u_char                         *buf, *p, *last;
    size_t                         *argvlen, size;
    ngx_int_t                       rc;
    ngx_str_t                       s;
    ngx_uint_t                      i, k;
    const char                    **argv;
    ngx_http_mqttapi_sync_claim_t  *c;

    /* EVALSHA sha numkeys born d:K... id interval N (L want s h0 h1)... */

    argc = 3 + 1 + (int) b->n + 3 + 5 * (int) b->n;

    size = NGX_HTTP_MQTTAPI_SYNC_KEY + NGX_INT_T_LEN * 3
           + b->n * (NGX_HTTP_MQTTAPI_SYNC_KEY + 5 * NGX_INT_T_LEN);

    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t)) + size,
                     task->log);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    argvlen = (size_t *) &argv[argc];
    buf = (u_char *) &argvlen[argc];
    last = buf + size;

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = task->sha[NGX_HTTP_MQTTAPI_SCRIPT_GRANT];
    argvlen[1] = 40;

    p = buf;
    argv[2] = (const char *) p;
    p = ngx_sprintf(p, "%ui", b->n + 1);
    argvlen[2] = p - (u_char *) argv[2];

    k = 3;

    /* KEYS: the zone's "born", then a hash per quota key */

    s.data = p;

    if (ngx_http_mqttapi_sync_key(task, &s, b->zone, "born", NULL, 0)
        != NGX_OK)
    {
        goto failed;
    }

    argv[k] = (const char *) s.data;
    argvlen[k++] = s.len;
    p += s.len;

    for (i = 0; i < b->n; i++) {
        c = &b->claims[i];
        s.data = p;

        if ((size_t) (last - p) < NGX_HTTP_MQTTAPI_SYNC_KEY
            || ngx_http_mqttapi_sync_key(task, &s, b->zone, "d:", c->key,
                                         c->len)
               != NGX_OK)
        {
            goto failed;
        }

        argv[k] = (const char *) s.data;
        argvlen[k++] = s.len;
        p += s.len;
    }

    /* ARGV */

    argv[k] = (const char *) task->conf->sh->id;
    argvlen[k++] = ngx_strlen(task->conf->sh->id);

    argv[k] = (const char *) p;
    p = ngx_sprintf(p, "%M", task->conf->interval);
    argvlen[k] = p - (u_char *) argv[k];
    k++;

    /* the nodes the credit counts: c = ceil(L / N) */

    argv[k] = (const char *) p;
    p = ngx_sprintf(p, "%ui", ngx_http_mqttapi_quota_sync_nodes(
                                                       task->conf->sh));
    argvlen[k] = p - (u_char *) argv[k];
    k++;

    for (i = 0; i < b->n; i++) {
        c = &b->claims[i];

        argv[k] = (const char *) p;
        p = ngx_sprintf(p, "%uD", (uint32_t) c->limit);
        argvlen[k] = p - (u_char *) argv[k];
        k++;

        argv[k] = (const char *) p;
        p = ngx_sprintf(p, "%uD", (uint32_t) c->want);
        argvlen[k] = p - (u_char *) argv[k];
        k++;

        argv[k] = (const char *) p;
        p = ngx_sprintf(p, "%uD", c->second);
        argvlen[k] = p - (u_char *) argv[k];
        k++;

        argv[k] = (const char *) p;
        p = ngx_sprintf(p, "%uD", (uint32_t) c->hold[0]);
        argvlen[k] = p - (u_char *) argv[k];
        k++;

        argv[k] = (const char *) p;
        p = ngx_sprintf(p, "%uD", (uint32_t) c->hold[1]);
        argvlen[k] = p - (u_char *) argv[k];
        k++;
    }

    rc = ngx_http_mqttapi_sync_link_send(&task->cmd,
                                         NGX_HTTP_MQTTAPI_SYNC_OP_GRANT,
                                         (int) k, argv, argvlen,
                                         ngx_http_mqttapi_sync_grant_reply,
                                         b);
    ngx_free(argv);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, task->log, 0,
                   "mqttapi sync: %ui quota keys sent, rc %i", b->n, rc);

    return rc;

failed:

    ngx_free(argv);

    return NGX_ERROR;
}


static void
ngx_http_mqttapi_sync_grant_reply(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_http_mqttapi_sync_batch_t *b = data;

    uint16_t                       *g;
    uint32_t                        s;
    ngx_str_t                       key;
    ngx_uint_t                      i;
    ngx_msec_t                      second;
    ngx_http_mqttapi_node_t        *node;
    ngx_http_mqttapi_zone_t       **zones, *zone;
    ngx_http_mqttapi_quota_node_t  *q;

    if (task->granting[b->zone] & NGX_HTTP_MQTTAPI_GRANT_AGAIN) {
        /* keys asked while the call was under way: the next wake */
        task->conf->sh->ask = 1;
    }

    task->granting[b->zone] &= NGX_HTTP_MQTTAPI_GRANT_TICK;

    g = NULL;

    if (ngx_http_mqttapi_sync_reply_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_GRANT,
                                          reply)
        != NGX_OK)
    {
        goto done;
    }

    g = ngx_alloc(2 * b->n * sizeof(uint16_t), task->log);
    if (g == NULL) {
        goto done;
    }

    if (ngx_http_mqttapi_sync_parse_grants(reply, b->n, &second, g)
        != NGX_OK)
    {
        ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_GRANT,
                                    "unexpected reply to the grants");
        goto done;
    }

    zones = task->conf->zones.elts;
    zone = zones[b->zone];

    /* the grants only grow what the nodes may spend */

    for (i = 0; i < b->n; i++) {
        key.data = b->claims[i].key;
        key.len = b->claims[i].len;

        node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_QUOTA,
                                          &key,
                                          ngx_http_mqttapi_zone_hash(&key),
                                          NULL);
        q = ngx_http_mqttapi_node_quota(node);

        if (q && q->mode == NGX_HTTP_MQTTAPI_QUOTA_GRANT
            && b->claims[i].want)
        {
            s = q->u.grant.second;

            if (s == second) {
                q->u.grant.g[0] = ngx_max(q->u.grant.g[0], g[2 * i]);
                q->u.grant.g[1] = ngx_max(q->u.grant.g[1], g[2 * i + 1]);

            } else if (s + 1 == second) {
                q->u.grant.g[1] = ngx_max(q->u.grant.g[1], g[2 * i]);

            } else if (s == second + 1) {
                q->u.grant.g[0] = ngx_max(q->u.grant.g[0], g[2 * i + 1]);
            }
        }

        ngx_http_mqttapi_zone_unlock(zone);

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, task->log, 0,
                       "mqttapi sync: \"%V\" granted %uD and %uD from "
                       "second %M", &key, (uint32_t) g[2 * i],
                       (uint32_t) g[2 * i + 1], second);
    }

done:

    if (g) {
        ngx_free(g);
    }

    ngx_free(b);
}
