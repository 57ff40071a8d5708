
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_quota_delay.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_sync.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * "mqttapi_quota zone=NAME delay=TIME": a request over the quota books
 * the first slot that still has room, if it starts within TIME, and
 * waits for it on a timer (the connection's write event, as limit_req
 * waits), then goes on through the phases.
 *
 * Booking.  A quota node's window is NGX_HTTP_MQTTAPI_BUCKETS buckets of
 * NGX_HTTP_MQTTAPI_BUCKET_MSEC that end with its latest bucket; with
 * bookings that bucket lies ahead of now, and the buckets from now on
 * hold the slots taken, counted when taken.  A slot is a time t whose
 * bucket b has room: the buckets b - 7 .. b hold fewer than the limit, so
 * that every window of eight buckets, and so every one-second window,
 * admits at most the limit (a timer fires at its time or a little after
 * it, by the worker's lag).  Slots are taken in arrival order: a request
 * books after the latest slot ("booked" in the node), at least 1000 /
 * limit ms after it, so that the requests of a second are let go spread
 * over it, not all at its first millisecond.  Nothing is kept per second
 * or per waiting request in the zone: the node's eight buckets and the
 * time of its latest slot.
 *
 * With mqttapi_sync a node books only what its share of the next second
 * of Redis's clock covers, slot j of a share of s at j/s into that
 * second, so its waits end with that second whatever TIME says; booked
 * slots are counted as spent when the second comes
 * (ngx_http_mqttapi_sync_window).
 *
 * A client that closes its connection while it waits gives its slot
 * back: its bucket counts one less, so the windows that hold it have
 * that room again, and if it was the latest slot, the next request to
 * book takes that very slot.  On "nginx -s quit" or a reload the worker waits for
 * the timers (they are not cancelable), so it is done within TIME.
 */


#define NGX_HTTP_MQTTAPI_DELAY_BUCKETS  12


static void ngx_http_mqttapi_wait_handler(ngx_http_request_t *r);
static void ngx_http_mqttapi_wait_cleanup(void *data);
static void ngx_http_mqttapi_slot_give_back(ngx_http_mqttapi_zone_t *zone,
    ngx_str_t *key, ngx_msec_t at, uint32_t prev);


/* the latest bucket of the node's window moved to "b" (no further back) */

static void
ngx_http_mqttapi_slot_move(ngx_http_mqttapi_node_t *node, ngx_msec_t b)
{
    ngx_msec_t  n;
    ngx_uint_t  i;

    if ((ngx_msec_int_t) (b - node->until) <= 0) {
        return;
    }

    for (n = node->until + 1, i = 0;
         n <= b && i < NGX_HTTP_MQTTAPI_BUCKETS;
         n++, i++)
    {
        node->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS] = 0;
    }

    node->until = b;
}


/*
 * No slot ahead, even for a worker whose cached time lags (and none for
 * weeks as the 32-bit time wraps, unless the node is left alone that long)
 */

void
ngx_http_mqttapi_slot_clear(ngx_http_mqttapi_node_t *node, ngx_msec_t now)
{
    node->booked = (uint32_t) now - 0x40000000;
}


/*
 * The earliest time at or after "t" at which the node's window admits
 * one more request, or NGX_HTTP_MQTTAPI_SLOT_NONE.  A node whose slots
 * lie ahead admits nothing before its latest slot.
 */

ngx_msec_t
ngx_http_mqttapi_slot_find(ngx_http_mqttapi_node_t *node, ngx_uint_t limit,
    ngx_msec_t now, ngx_msec_t t)
{
    ngx_msec_t      b, c, n, first;
    ngx_uint_t      sum;
    ngx_msec_int_t  ahead;

    /* each worker caches its own time: a bucket a little "later" is now */

    ngx_http_mqttapi_slot_move(node, now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    if (limit == 0) {
        return NGX_HTTP_MQTTAPI_SLOT_NONE;
    }

    /* after the latest slot, if one lies ahead ("booked" is 32-bit) */

    ahead = (int32_t) (node->booked - (uint32_t) now);

    if (ahead > 0 && ahead <= NGX_HTTP_MQTTAPI_QUOTA_DELAY_MAX + 1000) {
        t = ngx_max(t, now + ahead + 1000 / limit);

    } else {
        ngx_http_mqttapi_slot_clear(node, now);
    }

    b = t / NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    /*
     * The window keeps the buckets up to its latest one only: nothing is
     * booked before it, but for the bucket of a worker whose cached time
     * lags (counted in the latest then, as it sums the whole window)
     */

    if ((ngx_msec_int_t) (node->until - b) > 1) {
        b = node->until;
        t = ngx_max(t, b * NGX_HTTP_MQTTAPI_BUCKET_MSEC);
    }

    for (c = b; /* void */; c++) {

        /* the window's buckets c - 7 .. c, and any later one held */

        first = node->until - (NGX_HTTP_MQTTAPI_BUCKETS - 1);

        if ((ngx_msec_int_t) (c - (NGX_HTTP_MQTTAPI_BUCKETS - 1) - first)
            > 0)
        {
            first = c - (NGX_HTTP_MQTTAPI_BUCKETS - 1);
        }

        sum = 0;

        for (n = first; (ngx_msec_int_t) (n - node->until) <= 0; n++) {
            sum += node->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS];
        }

        if (sum < limit) {
            return (c == b) ? t : c * NGX_HTTP_MQTTAPI_BUCKET_MSEC;
        }

        if ((ngx_msec_int_t) (c - node->until) > NGX_HTTP_MQTTAPI_BUCKETS) {
            /* not reached: a window past the latest bucket is empty */
            return NGX_HTTP_MQTTAPI_SLOT_NONE;
        }
    }
}


void
ngx_http_mqttapi_slot_take(ngx_http_mqttapi_node_t *node, ngx_msec_t now,
    ngx_msec_t t)
{
    uint16_t    *bucket;
    ngx_msec_t   b;

    b = t / NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    ngx_http_mqttapi_slot_move(node, b);

    if ((ngx_msec_int_t) (node->until - b) >= NGX_HTTP_MQTTAPI_BUCKETS
        || (ngx_msec_int_t) (b - node->until) > 0)
    {
        b = node->until;
    }

    bucket = &node->u.buckets[b % NGX_HTTP_MQTTAPI_BUCKETS];

    if (*bucket < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        (*bucket)++;
    }

    if ((ngx_msec_int_t) (t - now) > 0) {
        node->booked = (uint32_t) t;
    }
}


/*
 * A node counting leased tokens (mqttapi_sync): a slot in the next
 * second of Redis's clock, within the node's share of it, at or after
 * "t"; slot j of a share of s at j/s into it.
 */

ngx_msec_t
ngx_http_mqttapi_slot_next(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_node_t *node, ngx_uint_t limit, ngx_msec_t now,
    ngx_msec_t t)
{
    ngx_msec_t  start, at;
    ngx_uint_t  share;

    share = ngx_http_mqttapi_sync_next_share(zone, now, limit, &start);

    if (share == 0 || node->u.lease.booked >= share) {
        return NGX_HTTP_MQTTAPI_SLOT_NONE;
    }

    at = start + node->u.lease.booked * 1000 / share;
    at = ngx_max(at, t);

    return (at < start + 1000) ? at : NGX_HTTP_MQTTAPI_SLOT_NONE;
}


void
ngx_http_mqttapi_slot_take_next(ngx_http_mqttapi_node_t *node)
{
    node->u.lease.booked++;
}


ngx_http_mqttapi_wait_t *
ngx_http_mqttapi_wait_create(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_mqttapi_wait_t  *w;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_mqttapi_wait_t));
    if (cln == NULL) {
        return NULL;
    }

    w = cln->data;
    ngx_memzero(w, sizeof(ngx_http_mqttapi_wait_t));

    w->request = r;

    cln->handler = ngx_http_mqttapi_wait_cleanup;

    return w;
}


/*
 * The preaccess handler's: wait "delay" ms for the slot booked in
 * ctx->wait, watching the connection (a client that closes ends the
 * request and gives the slot back).
 */

ngx_int_t
ngx_http_mqttapi_wait(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx,
    ngx_msec_t delay)
{
    ngx_http_mqttapi_wait_t  *w;

    w = ctx->wait;

    w->start = ngx_current_msec;
    w->waiting = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi quota: waiting %M ms for a slot of \"%V\"",
                   delay, w->key.len ? &w->key : &w->api);

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_mqttapi_wait_handler;

    r->connection->write->delayed = 1;
    ngx_add_timer(r->connection->write, delay);

    return NGX_AGAIN;
}


static void
ngx_http_mqttapi_wait_handler(ngx_http_request_t *r)
{
    ngx_event_t              *wev;
    ngx_http_mqttapi_ctx_t   *ctx;
    ngx_http_mqttapi_wait_t  *w;

    wev = r->connection->write;

    if (wev->delayed) {

        /* a write event before the timer's */

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    ctx = ngx_http_mqttapi_get_ctx(r);

    if (ctx && ctx->wait) {
        w = ctx->wait;

        w->waiting = 0;
        w->released = 1;
        w->done = 1;
        w->waited = ngx_current_msec - w->start;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi quota: let go after %M ms", w->waited);

        ngx_http_mqttapi_stats_delayed(r, w->zone ? w->zone : w->ceiling,
                                       w->waited);
    }

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


/*
 * The preaccess handler, running again for a request let go:
 * NGX_OK once, for its back-off to be checked again (a key backed off
 * meanwhile is answered locally), NGX_DECLINED otherwise
 */

ngx_int_t
ngx_http_mqttapi_wait_released(ngx_http_mqttapi_ctx_t *ctx)
{
    ngx_http_mqttapi_wait_t  *w;

    w = ctx->wait;

    if (w == NULL || !w->released) {
        return NGX_DECLINED;
    }

    w->released = 0;

    return NGX_OK;
}


/* the request ends while it waits (its client closed): give the slot back */

static void
ngx_http_mqttapi_wait_cleanup(void *data)
{
    ngx_http_mqttapi_wait_t *w = data;

    ngx_log_t  *log;

    if (!w->waiting) {
        return;
    }

    w->waiting = 0;
    log = w->request->connection->log;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "mqttapi quota: left after %M ms of waiting, slot given "
                   "back", ngx_current_msec - w->start);

    if (w->zone) {
        ngx_http_mqttapi_slot_give_back(w->zone, &w->key, w->at, w->kprev);
    }

    if (w->ceiling) {
        ngx_http_mqttapi_slot_give_back(w->ceiling, &w->api, w->at, w->aprev);
    }
}


static void
ngx_http_mqttapi_slot_give_back(ngx_http_mqttapi_zone_t *zone, ngx_str_t *key,
    ngx_msec_t at, uint32_t prev)
{
    uint16_t                 *bucket;
    ngx_msec_t                b;
    ngx_http_mqttapi_node_t  *node;

    b = at / NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_http_mqttapi_zone_lookup(zone, key,
                                        ngx_http_mqttapi_zone_hash(key));

    if (node == NULL || node->type != NGX_HTTP_MQTTAPI_NODE_QUOTA) {
        goto done;
    }

    if (zone->sync && node->code == NGX_HTTP_MQTTAPI_SYNC_LEASED) {

        /* a slot in the next second, or already in the current one */

        if (node->u.lease.booked) {
            node->u.lease.booked--;

        } else if (node->u.lease.spent) {
            node->u.lease.spent--;
        }

        goto done;
    }

    if ((ngx_msec_int_t) (node->until - b) < NGX_HTTP_MQTTAPI_BUCKETS
        && (ngx_msec_int_t) (b - node->until) <= 0)
    {
        bucket = &node->u.buckets[b % NGX_HTTP_MQTTAPI_BUCKETS];

        if (*bucket) {
            (*bucket)--;
        }
    }

    /* the latest slot: the next request to book takes this very one */

    if (node->booked == (uint32_t) at) {
        node->booked = prev;
    }

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
