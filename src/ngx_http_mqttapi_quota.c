
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_quota.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * Quotas: requests per second per key and action at the upstream's
 * published per-account limits (catalog "actions" quota, else the
 * catalog's default), and per action for the whole gateway at the
 * upstream's per-source-IP ceiling, so that the gateway's egress address
 * is never blocked.  Each limit is a sliding one-second window: the
 * requests of the current window plus those of the previous one weighted
 * by how much of it still overlaps the last second.  A request is counted
 * only when it passes both limits; one over a limit is answered locally
 * at once with the action's throttle code.
 */


typedef struct {
    ngx_http_mqttapi_node_t  *node;
    ngx_uint_t                limit;
} ngx_http_mqttapi_window_t;


static ngx_int_t ngx_http_mqttapi_window(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *key, ngx_uint_t limit,
    ngx_msec_t now, ngx_http_mqttapi_window_t *w, ngx_msec_t *left);


static ngx_str_t  ngx_http_mqttapi_other = ngx_string("*");


ngx_int_t
ngx_http_mqttapi_quota_check(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_str_t *code, ngx_msec_t *left)
{
    ngx_int_t                   rc, rc2;
    uint32_t                    hash;
    ngx_str_t                   name, key, api;
    ngx_msec_t                  now;
    ngx_uint_t                  limit;
    ngx_http_mqttapi_zone_t    *zone;
    ngx_http_mqttapi_action_t  *action;
    ngx_http_mqttapi_window_t   wk, wa;

    zone = lcf->quota_zone->data;

    action = NULL;

    if (ngx_http_mqttapi_action(r, &name) == NGX_OK) {
        action = ngx_http_mqttapi_catalog_action(lcf->catalog, &name);
    }

    if (action == NULL) {
        name = ngx_http_mqttapi_other;
    }

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
    wk.node = NULL;
    wa.node = NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* the per-key quota, unless the key is empty */

    rc2 = NGX_OK;

    if (rc == NGX_OK) {
        rc2 = ngx_http_mqttapi_window(r, zone, &key, limit, now, &wk, left);
    }

    /* the per-action ceiling of the whole gateway */

    if (rc2 == NGX_OK) {
        rc2 = ngx_http_mqttapi_window(r, zone, &api,
                                      lcf->catalog->api_ceiling, now, &wa,
                                      left);
    }

    if (rc2 == NGX_OK) {
        if (wk.node) {
            wk.node->count++;
        }

        if (wa.node) {
            wa.node->count++;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (rc2 == NGX_OK) {
        return NGX_DECLINED;
    }

    if (action && action->throttle_code.len) {
        *code = action->throttle_code;

    } else {
        *code = lcf->catalog->quota_code;
    }

    return NGX_BUSY;
}


static ngx_int_t
ngx_http_mqttapi_window(ngx_http_request_t *r, ngx_http_mqttapi_zone_t *zone,
    ngx_str_t *key, ngx_uint_t limit, ngx_msec_t now,
    ngx_http_mqttapi_window_t *w, ngx_msec_t *left)
{
    uint32_t                  hash;
    ngx_msec_t                elapsed;
    ngx_uint_t                estimate;
    ngx_http_mqttapi_node_t  *node;

    hash = ngx_crc32_short(key->data, key->len);

    node = ngx_http_mqttapi_zone_lookup(zone, key, hash);

    if (node == NULL) {
        node = ngx_http_mqttapi_zone_alloc(zone, NGX_HTTP_MQTTAPI_NODE_QUOTA,
                                           key, hash, r->connection->log);
        if (node == NULL) {
            /* no room even after eviction: not limited */
            return NGX_OK;
        }

        node->until = now;
    }

    /* move the window: "until" is the start of the current second */

    elapsed = now - node->until;

    if ((ngx_msec_int_t) elapsed < 0) {
        /*
         * each worker caches its own time (timer_resolution makes it lag
         * by up to that much): a window that another worker opened a
         * little "later" is the current one, not one to reset
         */
        elapsed = 0;

    } else if (elapsed >= 2000) {
        node->prev = 0;
        node->count = 0;
        node->until = now;
        elapsed = 0;

    } else if (elapsed >= 1000) {
        node->prev = node->count;
        node->count = 0;
        node->until += 1000;
        elapsed -= 1000;
    }

    estimate = node->count
               + (ngx_uint_t) node->prev * (1000 - elapsed) / 1000;

    w->node = node;
    w->limit = limit;

    if (estimate + 1 > limit) {
        *left = 1000 - elapsed;
        return NGX_BUSY;
    }

    return NGX_OK;
}
