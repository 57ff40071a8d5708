
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_quota.h"
#include "ngx_http_mqttapi_request.h"
#include "ngx_http_mqttapi_stats.h"
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
 * limit is answered locally at once with the action's throttle code.
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

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* the per-key quota, unless the key is empty */

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
        ngx_shmtx_lock(&ceiling->shpool->mutex);

        rc2 = ngx_http_mqttapi_window(r, ceiling, &api,
                                      lcf->catalog->api_ceiling, now, &wa,
                                      &v->left);

        if (rc2 != NGX_OK) {
            v->quiet = wa.quiet;

        } else {
            ngx_http_mqttapi_window_count(wk.node);
            ngx_http_mqttapi_window_count(wa.node);
        }

        ngx_shmtx_unlock(&ceiling->shpool->mutex);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

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


static ngx_int_t
ngx_http_mqttapi_window(ngx_http_request_t *r, ngx_http_mqttapi_zone_t *zone,
    ngx_str_t *key, ngx_uint_t limit, ngx_msec_t now,
    ngx_http_mqttapi_window_t *w, ngx_msec_t *left)
{
    uint32_t                  hash;
    ngx_msec_t                bucket, n;
    ngx_uint_t                i, sum;
    ngx_http_mqttapi_node_t  *node;

    hash = ngx_http_mqttapi_zone_hash(key);

    bucket = now / NGX_HTTP_MQTTAPI_BUCKET_MSEC;

    node = ngx_http_mqttapi_zone_lookup(zone, key, hash);

    if (node == NULL) {
        node = ngx_http_mqttapi_zone_alloc(zone, NGX_HTTP_MQTTAPI_NODE_QUOTA,
                                           key, hash, r->connection->log);
        if (node == NULL) {
            /* no room even after eviction: not limited */
            return NGX_OK;
        }

        node->until = bucket;
    }

    /*
     * Move to the current bucket, emptying the ones it passes.  Each
     * worker caches its own time (timer_resolution makes it lag by up to
     * that much): a bucket another worker opened a little "later" is the
     * current one.
     */

    if ((ngx_msec_int_t) (bucket - node->until) > 0) {

        for (n = node->until + 1, i = 0;
             n <= bucket && i < NGX_HTTP_MQTTAPI_BUCKETS;
             n++, i++)
        {
            node->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS] = 0;
        }

        node->until = bucket;
    }

    sum = 0;

    for (i = 0; i < NGX_HTTP_MQTTAPI_BUCKETS; i++) {
        sum += node->u.buckets[i];
    }

    w->node = node;
    w->limit = limit;

    /* the second of the first logged local answer is over: report it */

    if (node->rejected
        && (int32_t) ((uint32_t) bucket - node->delay)
           >= NGX_HTTP_MQTTAPI_BUCKETS)
    {
        w->report = node->rejected;
        node->rejected = 0;
    }

    if (sum + 1 <= limit) {
        return NGX_OK;
    }

    if (node->rejected++ == 0) {
        node->delay = (uint32_t) bucket;

    } else {
        w->quiet = 1;
    }

    /* full: until the oldest bucket with requests leaves the window */

    for (n = node->until - (NGX_HTTP_MQTTAPI_BUCKETS - 1);
         n < node->until;
         n++)
    {
        if (node->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS]) {
            break;
        }
    }

    *left = (n + NGX_HTTP_MQTTAPI_BUCKETS) * NGX_HTTP_MQTTAPI_BUCKET_MSEC
            - now;

    if ((ngx_msec_int_t) *left <= 0
        || *left > NGX_HTTP_MQTTAPI_BUCKETS * NGX_HTTP_MQTTAPI_BUCKET_MSEC)
    {
        *left = NGX_HTTP_MQTTAPI_BUCKET_MSEC;
    }

    return NGX_BUSY;
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
    uint16_t  *b;

    if (node == NULL) {
        return;
    }

    b = &node->u.buckets[node->until % NGX_HTTP_MQTTAPI_BUCKETS];

    if (*b < NGX_HTTP_MQTTAPI_QUOTA_MAX) {
        (*b)++;
    }
}
