
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_quota.h"
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
    ngx_http_mqttapi_node_t  *node;
    ngx_uint_t                limit;
    uint32_t                  report;     /* the last second's answers */
    unsigned                  quiet:1;
} ngx_http_mqttapi_window_t;


static ngx_int_t ngx_http_mqttapi_window(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *key, ngx_uint_t limit,
    ngx_msec_t now, ngx_http_mqttapi_window_t *w, ngx_msec_t *left);
static void ngx_http_mqttapi_window_quiet(ngx_http_mqttapi_node_t *node,
    uint32_t bucket, ngx_http_mqttapi_window_t *w, ngx_uint_t over);
static void ngx_http_mqttapi_window_count(ngx_http_mqttapi_node_t *node);
static void ngx_http_mqttapi_window_report(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_window_t *w,
    const char *what, ngx_str_t *name);


static ngx_str_t  ngx_http_mqttapi_other = ngx_string("*");


ngx_int_t
ngx_http_mqttapi_quota_check(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_verdict_t *v)
{
    ngx_int_t                      rc, rc2;
    uint32_t                       hash;
    ngx_str_t                      name, key, api;
    ngx_msec_t                     now;
    ngx_uint_t                     limit;
    ngx_http_mqttapi_zone_t       *zone, *ceiling;
    ngx_http_mqttapi_action_t     *action;
    ngx_http_mqttapi_window_t      wk, wa;
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

    now = ngx_current_msec;
    ngx_memzero(&wk, sizeof(ngx_http_mqttapi_window_t));
    ngx_memzero(&wa, sizeof(ngx_http_mqttapi_window_t));

    /* the per-key quota, unless the key is empty (its zone stays locked) */

    rc2 = NGX_OK;

    if (rc == NGX_OK) {
        rc2 = ngx_http_mqttapi_window(r, zone, &key, limit, now, &wk,
                                      &v->left);
    }

    v->reason = (rc2 == NGX_OK) ? NGX_HTTP_MQTTAPI_LOCAL_CEILING
                                : NGX_HTTP_MQTTAPI_LOCAL_QUOTA;
    v->quiet = wk.quiet;

    /* the per-action ceiling of the whole gateway */

    if (rc2 == NGX_OK) {
        rc2 = ngx_http_mqttapi_window(r, ceiling, &api,
                                      lcf->catalog->api_ceiling, now, &wa,
                                      &v->left);

        if (rc2 != NGX_OK) {
            v->quiet = wa.quiet;

        } else {
            ngx_http_mqttapi_window_count(wk.node);
            ngx_http_mqttapi_window_count(wa.node);
        }

        ngx_http_mqttapi_zone_unlock(ceiling);
    }

    if (rc == NGX_OK) {
        ngx_http_mqttapi_zone_unlock(zone);
    }

    ngx_http_mqttapi_window_report(r, lcf, &wk, "quota", &name);
    ngx_http_mqttapi_window_report(r, lcf, &wa, "ceiling", &name);

    if (rc2 == NGX_OK) {
        return NGX_DECLINED;
    }

    if (action && action->throttle_code.len) {
        v->code = action->throttle_code;

    } else {
        v->code = lcf->catalog->quota_code;
    }

    return NGX_BUSY;
}


/* the zone is left locked, whatever the result */

static ngx_int_t
ngx_http_mqttapi_window(ngx_http_request_t *r, ngx_http_mqttapi_zone_t *zone,
    ngx_str_t *key, ngx_uint_t limit, ngx_msec_t now,
    ngx_http_mqttapi_window_t *w, ngx_msec_t *left)
{
    uint32_t                        bucket, n;
    ngx_int_t                       rc;
    ngx_uint_t                      i, sum;
    ngx_http_mqttapi_node_t        *node;
    ngx_http_mqttapi_quota_node_t  *q;

    bucket = (uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_QUOTA, key,
                                      ngx_http_mqttapi_zone_hash(key),
                                      r->connection->log);
    if (node == NULL) {
        /* no room even after eviction: not limited */
        return NGX_OK;
    }

    q = &node->u.quota;

    if (zone->sync) {
        rc = ngx_http_mqttapi_quota_sync(r, zone, node, key, &limit, now,
                                         left);

        if (rc == NGX_DONE) {
            /* not limited while Redis is away ("fail=open") */
            w->node = NULL;
            return NGX_OK;
        }

        if (rc != NGX_DECLINED) {
            w->node = node;
            w->limit = limit;
            ngx_http_mqttapi_window_quiet(node, bucket, w, rc == NGX_BUSY);
            return rc;
        }
    }

    /*
     * Move to the current bucket, emptying the ones it passes.  Each
     * worker caches its own time (timer_resolution makes it lag by up to
     * that much): a bucket another worker opened a little "later" is the
     * current one.
     */

    if ((int32_t) (bucket - q->bucket) > 0) {

        for (n = q->bucket + 1, i = 0;
             (int32_t) (bucket - n) >= 0 && i < NGX_HTTP_MQTTAPI_BUCKETS;
             n++, i++)
        {
            q->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS] = 0;
        }

        q->bucket = bucket;
    }

    sum = 0;

    for (i = 0; i < NGX_HTTP_MQTTAPI_BUCKETS; i++) {
        sum += q->u.buckets[i];
    }

    w->node = node;
    w->limit = limit;

    ngx_http_mqttapi_window_quiet(node, bucket, w, sum + 1 > limit);

    if (sum + 1 <= limit) {
        return NGX_OK;
    }

    /* full: until the oldest bucket with requests leaves the window */

    for (n = q->bucket - (NGX_HTTP_MQTTAPI_BUCKETS - 1); n != q->bucket; n++) {
        if (q->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS]) {
            break;
        }
    }

    *left = (ngx_msec_t) (n + NGX_HTTP_MQTTAPI_BUCKETS)
            * NGX_HTTP_MQTTAPI_BUCKET_MSEC - now;

    if ((ngx_msec_int_t) *left <= 0
        || *left > NGX_HTTP_MQTTAPI_BUCKETS * NGX_HTTP_MQTTAPI_BUCKET_MSEC)
    {
        *left = NGX_HTTP_MQTTAPI_BUCKET_MSEC;
    }

    return NGX_BUSY;
}


static void
ngx_http_mqttapi_window_quiet(ngx_http_mqttapi_node_t *node,
    uint32_t bucket, ngx_http_mqttapi_window_t *w, ngx_uint_t over)
{
    ngx_http_mqttapi_quota_node_t  *q;

    q = &node->u.quota;

    /* the second of the first logged local answer is over: report it */

    if (node->rejected
        && (int32_t) (bucket - q->report) >= NGX_HTTP_MQTTAPI_BUCKETS)
    {
        w->report = node->rejected;
        node->rejected = 0;
    }

    if (!over) {
        return;
    }

    if (node->rejected++ == 0) {
        q->report = bucket;

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


static void
ngx_http_mqttapi_window_count(ngx_http_mqttapi_node_t *node)
{
    uint16_t                       *b;
    ngx_http_mqttapi_quota_node_t  *q;

    q = ngx_http_mqttapi_node_quota(node);

    if (q == NULL) {
        return;
    }

    if (q->mode == NGX_HTTP_MQTTAPI_QUOTA_LEASED) {
        ngx_http_mqttapi_quota_sync_count(q);
        return;
    }

    b = &q->u.buckets[q->bucket % NGX_HTTP_MQTTAPI_BUCKETS];

    if (*b < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        (*b)++;
    }
}
