
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
 * admits at most the limit (counting each request at its slot; a timer
 * fires at its time or a little after it, by the worker's lag).  Slots
 * are taken in arrival order: a request books after the latest slot
 * ("slot" in the node), at least 1000 / limit ms after it, so that the
 * requests of a second are let go spread over it (slot j of a full
 * second at j / limit into it), not all at its first millisecond.
 * Nothing is kept per second or per waiting request in the zone: the
 * node's eight buckets and where its latest slot is.
 *
 * With mqttapi_sync a node books only what its grant (or credit) of the
 * next second of Redis's clock covers, all of it (the node's "carry" is
 * as wide as a grant), slot j of a grant of s at j/s into that second, so
 * its waits end with that second whatever TIME says; booked slots are
 * counted as spent when the second comes (ngx_http_mqttapi_quota_sync.c).
 *
 * A client that closes its connection while it waits gives its slot
 * back: its bucket counts one less, so the windows that hold it have
 * that room again, and if it was the latest slot, the next request to
 * book may take that very slot.  On "nginx -s quit" or a reload the
 * worker waits for the timers (they are not cancelable), so it is done
 * within TIME.
 */


static void ngx_http_mqttapi_wait_handler(ngx_http_request_t *r);
static void ngx_http_mqttapi_wait_cleanup(void *data);
static void ngx_http_mqttapi_slot_give_back(ngx_http_mqttapi_zone_t *zone,
    ngx_str_t *key, ngx_msec_t at);


/*
 * The window's latest bucket moved on to "b", emptying the buckets it
 * passes (never back: a worker whose cached time lags counts in the
 * latest)
 */

static void
ngx_http_mqttapi_slot_move(ngx_http_mqttapi_quota_node_t *q, uint32_t b)
{
    uint32_t    n;
    ngx_uint_t  i;

    if ((int32_t) (b - q->bucket) <= 0) {
        return;
    }

    for (n = q->bucket + 1, i = 0;
         (int32_t) (b - n) >= 0 && i < NGX_HTTP_MQTTAPI_BUCKETS;
         n++, i++)
    {
        q->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS] = 0;
    }

    q->bucket = b;
    q->u.slot = 0;
}


/*
 * The earliest time at or after "t" at which the node's window admits
 * one more request, or NGX_HTTP_MQTTAPI_SLOT_NONE: a bucket b whose window
 * (b - 7 .. b) holds less than the limit, at least 1000 / limit ms after
 * the latest slot, and never before the latest bucket, whose window alone
 * the node knows in full
 */

ngx_msec_t
ngx_http_mqttapi_slot_find(ngx_http_mqttapi_quota_node_t *q, ngx_uint_t limit,
    ngx_msec_t now, ngx_msec_t t)
{
    uint32_t    b, c, n, first;
    ngx_uint_t  sum;

    if (limit == 0) {
        return NGX_HTTP_MQTTAPI_SLOT_NONE;
    }

    ngx_http_mqttapi_slot_move(q, (uint32_t) (now
                                              / NGX_HTTP_MQTTAPI_BUCKET_MSEC));

    if (q->u.slot) {
        t = ngx_max(t, (ngx_msec_t) q->bucket * NGX_HTTP_MQTTAPI_BUCKET_MSEC
                       + q->u.slot - 1 + 1000 / limit);
    }

    b = (uint32_t) (t / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    /* a bucket one before the latest: a worker whose time lags (sums all) */

    if ((int32_t) (q->bucket - b) > 1) {
        b = q->bucket;
        t = ngx_max(t, (ngx_msec_t) b * NGX_HTTP_MQTTAPI_BUCKET_MSEC);
    }

    for (c = b; /* void */; c++) {

        first = q->bucket - (NGX_HTTP_MQTTAPI_BUCKETS - 1);

        if ((int32_t) (c - (NGX_HTTP_MQTTAPI_BUCKETS - 1) - first) > 0) {
            first = c - (NGX_HTTP_MQTTAPI_BUCKETS - 1);
        }

        sum = 0;

        for (n = first; (int32_t) (n - q->bucket) <= 0; n++) {
            sum += q->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS];
        }

        if (sum < limit) {
            return (c == b) ? t
                            : (ngx_msec_t) c * NGX_HTTP_MQTTAPI_BUCKET_MSEC;
        }

        if ((int32_t) (c - q->bucket) > NGX_HTTP_MQTTAPI_BUCKETS) {
            /* not reached: a window past the latest bucket is empty */
            return NGX_HTTP_MQTTAPI_SLOT_NONE;
        }
    }
}


void
ngx_http_mqttapi_slot_take(ngx_http_mqttapi_quota_node_t *q, ngx_msec_t now,
    ngx_msec_t t)
{
    uint16_t  *bucket;
    uint32_t   b;

    b = (uint32_t) (t / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    ngx_http_mqttapi_slot_move(q, b);

    if ((int32_t) (q->bucket - b) >= NGX_HTTP_MQTTAPI_BUCKETS
        || (int32_t) (b - q->bucket) > 0)
    {
        b = q->bucket;
    }

    bucket = &q->u.buckets[b % NGX_HTTP_MQTTAPI_BUCKETS];

    if (*bucket < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        (*bucket)++;
    }

    if ((ngx_msec_int_t) (t - now) > 0) {

        /* a booked slot: the next one comes after it */

        q->u.slot = (b == q->bucket)
                  ? (uint16_t) (t - (ngx_msec_t) b
                                    * NGX_HTTP_MQTTAPI_BUCKET_MSEC + 1)
                  : 1;
    }
}


/*
 * A node spending grants (mqttapi_sync): a slot in the next second of
 * Redis's clock, within the node's grant of it, at or after "t"; slot j
 * of a grant of s at j/s into it; a slot waited for at j/s of the second
 * less its bands at both ends (a request let go within
 * NGX_HTTP_MQTTAPI_SYNC_BAND ms of the boundary could fall in the second
 * before on Redis's own clock, which is full), one taken at once (now
 * within the band) as before.
 */

ngx_msec_t
ngx_http_mqttapi_slot_next(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_quota_node_t *q, ngx_uint_t limit, ngx_msec_t now,
    ngx_msec_t t)
{
    ngx_msec_t  start, at;
    ngx_uint_t  share, booked;

    share = ngx_http_mqttapi_quota_sync_next(zone, q, now, limit, &start);
    booked = ngx_http_mqttapi_quota_sync_booked(q);

    if (share == 0 || booked >= share) {
        return NGX_HTTP_MQTTAPI_SLOT_NONE;
    }

    at = start + booked * 1000 / share;

    if (at > now) {
        /* a slot to wait for: clear of the second's bands */
        at = start + NGX_HTTP_MQTTAPI_SYNC_BAND
             + booked * (1000 - 2 * NGX_HTTP_MQTTAPI_SYNC_BAND) / share;
    }

    at = ngx_max(at, t);

    return (at < start + 1000) ? at : NGX_HTTP_MQTTAPI_SLOT_NONE;
}


void
ngx_http_mqttapi_slot_take_next(ngx_http_mqttapi_quota_node_t *q)
{
    ngx_http_mqttapi_quota_sync_book(q);
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

        ngx_http_mqttapi_stats_delayed(r, w->quota, w->waited);
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
        ngx_http_mqttapi_slot_give_back(w->zone, &w->key, w->at);
    }

    if (w->ceiling) {
        ngx_http_mqttapi_slot_give_back(w->ceiling, &w->api, w->at);
    }
}


static void
ngx_http_mqttapi_slot_give_back(ngx_http_mqttapi_zone_t *zone, ngx_str_t *key,
    ngx_msec_t at)
{
    uint16_t                       *bucket;
    uint32_t                        b;
    ngx_http_mqttapi_node_t        *node;
    ngx_http_mqttapi_quota_node_t  *q;

    b = (uint32_t) (at / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_QUOTA, key,
                                      ngx_http_mqttapi_zone_hash(key), NULL);

    q = ngx_http_mqttapi_node_quota(node);

    if (q == NULL) {
        goto done;
    }

    if (q->mode == NGX_HTTP_MQTTAPI_QUOTA_GRANT) {

        /* a slot in the next second, or already in the current one */

        ngx_http_mqttapi_quota_sync_give_back(q);

        goto done;
    }

    if ((int32_t) (q->bucket - b) < NGX_HTTP_MQTTAPI_BUCKETS
        && (int32_t) (b - q->bucket) <= 0)
    {
        bucket = &q->u.buckets[b % NGX_HTTP_MQTTAPI_BUCKETS];

        if (*bucket) {
            (*bucket)--;
        }
    }

    /* the latest slot: the next request to book may take this very one */

    if (b == q->bucket
        && q->u.slot == (uint16_t) (at - (ngx_msec_t) b
                                       * NGX_HTTP_MQTTAPI_BUCKET_MSEC + 1))
    {
        q->u.slot = 0;
    }

done:

    ngx_http_mqttapi_zone_unlock(zone);
}
