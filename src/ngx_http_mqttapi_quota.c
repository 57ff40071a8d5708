
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_quota.h"
#include "ngx_http_mqttapi_quota_delay.h"
#include "ngx_http_mqttapi_request.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_sync.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * Quotas: requests per second per key and action at the upstream's
 * published per-account limits (catalog "actions" quota, else the
 * catalog's default), counted in the location's zone, and per action for
 * the whole gateway at the upstream's per-source-IP ceiling, so that the
 * gateway's egress address is never blocked: those counters are in the
 * module's ceiling zone, which all quota zones and workers share.  Each
 * limit is a sliding window of short buckets that together cover at
 * least the last second, so no second ever sees more than the limit.  A
 * request is counted only when it passes both limits (the ceiling zone is
 * locked inside the quota zone, never the other way round); one over a
 * limit is answered locally at once with the action's throttle code.  A
 * zone synced with other nodes counts with leased tokens instead
 * (ngx_http_mqttapi_quota_sync.c).
 *
 * Of a key's local answers only the first of each second is logged: the
 * others are counted in the node, and the count is logged with the next
 * request for the key after that second, answered locally or not.
 */


typedef struct {
    ngx_http_mqttapi_zone_t        *zone;     /* locked */
    ngx_http_mqttapi_node_t        *node;     /* NULL: not limited */
    ngx_http_mqttapi_quota_node_t  *q;
    ngx_uint_t                      limit;
    ngx_msec_t                      left;     /* refused: until room */
    uint32_t                        report;   /* the last second's answers */
    unsigned                        quiet:1;
    unsigned                        lease:1;  /* counts leased tokens */
    unsigned                        token:1;  /* one left in this second */
    unsigned                        ahead:1;  /* the slot is in the next */
} ngx_http_mqttapi_window_t;


static ngx_int_t ngx_http_mqttapi_window_open(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *key, ngx_uint_t limit,
    ngx_msec_t now, ngx_http_mqttapi_window_t *w);
static ngx_msec_t ngx_http_mqttapi_window_find(ngx_http_mqttapi_window_t *w,
    ngx_msec_t now, ngx_msec_t t);
static void ngx_http_mqttapi_window_take(ngx_http_mqttapi_window_t *w,
    ngx_msec_t now, ngx_msec_t t);
static void ngx_http_mqttapi_window_over(ngx_http_mqttapi_window_t *w,
    ngx_msec_t now);
static void ngx_http_mqttapi_window_report(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_window_t *w,
    const char *what, ngx_str_t *name);


static ngx_str_t  ngx_http_mqttapi_other = ngx_string("*");


/*
 * NGX_DECLINED: the request goes on now; NGX_AGAIN: it waits v->left ms
 * for its slot (delay=, ctx->wait filled); NGX_BUSY: answered locally
 */

ngx_int_t
ngx_http_mqttapi_quota_check(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_verdict_t *v)
{
    ngx_int_t                      rc;
    uint32_t                       hash;
    ngx_str_t                      name, key, api;
    ngx_msec_t                     now, horizon, t, t2;
    ngx_uint_t                     limit, i, over;
    ngx_http_mqttapi_zone_t       *zone, *ceiling;
    ngx_http_mqttapi_wait_t       *wait;
    ngx_http_mqttapi_action_t     *action;
    ngx_http_mqttapi_window_t      wk, wa, *wo;
    ngx_http_mqttapi_main_conf_t  *mcf;

    zone = lcf->quota_zone->data;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_mqttapi_module);
    ceiling = mcf->ceiling->data;

    action = ngx_http_mqttapi_request_action(r, lcf->catalog);

    name = action ? action->name : ngx_http_mqttapi_other;

    limit = (action && action->quota) ? action->quota
                                      : lcf->catalog->default_quota;

    rc = ngx_http_mqttapi_zone_key(r, zone, "q:", &name, &key, &hash);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_zone_make_key(r->pool, "a:", &name, NULL, &api,
                                       &hash)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        key.len = 0;
    }

    now = ngx_current_msec;

    /* a dry run never waits: it tells what refusing would do */
    horizon = now + (lcf->throttle_dry_run ? 0 : lcf->quota_delay);

    ngx_memzero(&wk, sizeof(ngx_http_mqttapi_window_t));
    ngx_memzero(&wa, sizeof(ngx_http_mqttapi_window_t));

    /*
     * The per-key quota, unless the key is empty, and the per-action
     * ceiling of the whole gateway (its zone locked inside the quota
     * zone, never the other way round): the earliest time both admit
     */

    wo = &wk;
    rc = NGX_OK;
    t = now;

    if (key.len) {
        rc = ngx_http_mqttapi_window_open(r, zone, &key, limit, now, &wk);
        t = ngx_http_mqttapi_window_find(&wk, now, now);
    }

    if (rc == NGX_OK && t <= horizon) {
        rc = ngx_http_mqttapi_window_open(r, ceiling, &api,
                                          lcf->catalog->api_ceiling, now,
                                          &wa);
    }

    if (rc != NGX_OK) {
        t = NGX_HTTP_MQTTAPI_SLOT_NONE;
    }

    for (i = 0; t <= horizon && i < 8; i++) {

        wo = &wa;
        t2 = ngx_http_mqttapi_window_find(&wa, now, t);

        if (t2 == t || t2 > horizon) {
            t = t2;
            break;
        }

        wo = &wk;
        t = ngx_http_mqttapi_window_find(&wk, now, t2);

        if (t == t2) {
            break;
        }
    }

    over = (t > horizon || i == 8);

    if (!over) {
        ngx_http_mqttapi_window_take(&wk, now, t);
        ngx_http_mqttapi_window_take(&wa, now, t);

    } else {
        ngx_http_mqttapi_window_over(wo, now);
    }

    if (wa.zone) {
        ngx_http_mqttapi_zone_unlock(ceiling);
    }

    if (wk.zone) {
        ngx_http_mqttapi_zone_unlock(zone);
    }

    ngx_http_mqttapi_window_report(r, lcf, &wk, "quota", &name);
    ngx_http_mqttapi_window_report(r, lcf, &wa, "ceiling", &name);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (!over && t == now) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi quota: \"%V\" admitted now", &name);
        return NGX_DECLINED;
    }

    if (!over) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi quota: \"%V\" booked a slot in %M ms",
                       &name, t - now);

        wait = ngx_http_mqttapi_wait_create(r);
        if (wait == NULL) {
            return NGX_ERROR;
        }

        wait->quota = zone;
        wait->zone = wk.node ? zone : NULL;
        wait->ceiling = wa.node ? ceiling : NULL;
        wait->key = key;
        wait->api = api;
        wait->at = t;

        ctx->wait = wait;
        v->left = t - now;

        return NGX_AGAIN;
    }

    v->reason = (wo == &wk) ? NGX_HTTP_MQTTAPI_LOCAL_QUOTA
                            : NGX_HTTP_MQTTAPI_LOCAL_CEILING;
    v->quiet = wo->quiet;
    v->left = (t != NGX_HTTP_MQTTAPI_SLOT_NONE && t > now) ? t - now
                                                           : wo->left;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi quota: \"%V\" refused (%s), no slot within "
                   "%M ms", &name, (wo == &wk) ? "quota" : "ceiling",
                   horizon - now);

    if (action && action->throttle_code.len) {
        v->code = action->throttle_code;

    } else {
        v->code = lcf->catalog->quota_code;
    }

    return NGX_BUSY;
}


/*
 * The node of a limit, found or made, its zone left locked whatever the
 * result; NGX_OK, or NGX_ERROR
 */

static ngx_int_t
ngx_http_mqttapi_window_open(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *key, ngx_uint_t limit,
    ngx_msec_t now, ngx_http_mqttapi_window_t *w)
{
    uint32_t                        bucket;
    ngx_int_t                       rc;
    ngx_msec_t                      left;
    ngx_http_mqttapi_node_t        *node;
    ngx_http_mqttapi_quota_node_t  *q;

    bucket = (uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    w->zone = zone;
    w->limit = limit;
    w->left = NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_QUOTA, key,
                                      ngx_http_mqttapi_zone_hash(key),
                                      r->connection->log);
    if (node == NULL) {
        /* no room even after eviction: not limited */
        return NGX_OK;
    }

    q = &node->u.quota;

    /* the second of the first logged local answer is over: report it */

    if (node->rejected
        && (int32_t) (bucket - q->report) >= NGX_HTTP_MQTTAPI_BUCKETS)
    {
        w->report = node->rejected;
        node->rejected = 0;
    }

    if (zone->sync) {
        left = 1000;
        rc = ngx_http_mqttapi_quota_sync(r, zone, node, key, &w->limit, now,
                                         &left);

        if (rc == NGX_DONE) {
            /* not limited while Redis is away ("fail=open") */
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK || rc == NGX_BUSY) {
            w->lease = 1;
            w->token = (rc == NGX_OK);
            w->left = left;
        }
    }

    w->node = node;
    w->q = q;

    return NGX_OK;
}


/* the earliest time at or after "t" the limit admits one more */

static ngx_msec_t
ngx_http_mqttapi_window_find(ngx_http_mqttapi_window_t *w, ngx_msec_t now,
    ngx_msec_t t)
{
    ngx_msec_t  start;

    if (w->node == NULL || t == NGX_HTTP_MQTTAPI_SLOT_NONE) {
        return t;
    }

    if (!w->lease) {
        return ngx_http_mqttapi_slot_find(w->q, w->limit, now, t);
    }

    /*
     * tokens of this second of Redis's, else a slot in the next; a token
     * for now holds within the band after a boundary too (the node is
     * still in the second before, and the request was checked against
     * both: ngx_http_mqttapi_quota_sync)
     */

    w->ahead = 0;

    (void) ngx_http_mqttapi_quota_sync_next(w->zone, w->q, now, w->limit,
                                            &start);

    if (w->token && (t == now || t < start)) {
        return t;
    }

    w->ahead = 1;

    return ngx_http_mqttapi_slot_next(w->zone, w->q, w->limit, now, t);
}


static void
ngx_http_mqttapi_window_take(ngx_http_mqttapi_window_t *w, ngx_msec_t now,
    ngx_msec_t t)
{
    if (w->node == NULL) {
        return;
    }

    if (!w->lease) {
        ngx_http_mqttapi_slot_take(w->q, now, t);

    } else if (w->ahead) {
        ngx_http_mqttapi_slot_take_next(w->q);

    } else {
        ngx_http_mqttapi_quota_sync_count(w->zone, w->q);
    }
}


/* a local answer: the key's first of a second is logged, the others counted */

static void
ngx_http_mqttapi_window_over(ngx_http_mqttapi_window_t *w, ngx_msec_t now)
{
    ngx_http_mqttapi_node_t  *node;

    node = w->node;

    if (node == NULL) {
        return;
    }

    if (node->rejected++ == 0) {
        w->q->report = (uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    } else {
        w->quiet = 1;
    }
}


static void
ngx_http_mqttapi_window_report(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_window_t *w,
    const char *what, ngx_str_t *name)
{
    if (w->report == 0) {
        return;
    }

    ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                  "mqttapi: %uD requests over the %s of \"%V\" %s answered "
                  "locally in a second", w->report, what, name,
                  lcf->throttle_dry_run ? "would have been" : "were");
}
