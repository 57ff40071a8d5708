
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include <ngx_md5.h>
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_status.h"
#include "ngx_http_mqttapi_sync.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * The JSON members of the status page beyond the metrics (SPEC 7): the
 * uptime and the workers, the back-offs in effect per zone (at most
 * NGX_HTTP_MQTTAPI_STATUS_TOP keys each, those with the most time left,
 * masked) and the use of each action's gateway-wide quota in the last
 * second.  Each member is written by a function of its own and appended
 * after the metrics; none of them is in the Prometheus output.
 *
 * The back-offs are gathered by ngx_http_mqttapi_status_gauges() in the
 * walk over a zone it makes under the zone's lock anyway: a node in
 * effect is copied into a fixed array of the request when it has more
 * time left than the least of those kept, nothing else; the keys are
 * masked and hashed, and the codes looked up, after the lock is released.
 */


#define NGX_HTTP_MQTTAPI_STATUS_KEY   4          /* characters shown */
#define NGX_HTTP_MQTTAPI_STATUS_HASH  6          /* hex digits of MD5 */


typedef struct {
    ngx_msec_int_t               left;
    uint32_t                     rejected;
    u_char                       code;
    u_char                       peer;
    u_char                       probing;
    u_short                      len;
    u_char                       key[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_top_t;


typedef struct {
    ngx_uint_t                   total;       /* in effect */
    ngx_uint_t                   n;           /* kept */
    ngx_uint_t                   least;       /* the least time left */
    ngx_http_mqttapi_top_t       top[NGX_HTTP_MQTTAPI_STATUS_TOP];
} ngx_http_mqttapi_zone_top_t;


struct ngx_http_mqttapi_tops_s {
    ngx_uint_t                   nzones;
    ngx_http_mqttapi_zone_top_t *zones;       /* by stats zone index */
};


/* an action's requests in the window of the gateway-wide quota */

typedef struct {
    u_char                       name[NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
    size_t                       len;
    ngx_uint_t                   used;
} ngx_http_mqttapi_use_t;


static ngx_int_t ngx_http_mqttapi_status_uptime(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_str_t *out);
static ngx_int_t ngx_http_mqttapi_status_backoffs(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_http_mqttapi_tops_t *tops,
    ngx_str_t *out);
static u_char *ngx_http_mqttapi_status_mask(u_char *p, u_char *key,
    size_t len);
static ngx_int_t ngx_http_mqttapi_top_cmp(const void *one, const void *two);
static ngx_int_t ngx_http_mqttapi_status_quotas(ngx_http_request_t *r,
    ngx_str_t *out);
static ngx_uint_t ngx_http_mqttapi_status_window(
    ngx_http_mqttapi_quota_node_t *node, ngx_msec_t now);


ngx_http_mqttapi_tops_t *
ngx_http_mqttapi_status_tops(ngx_pool_t *pool, ngx_uint_t zones)
{
    ngx_http_mqttapi_tops_t  *tops;

    tops = ngx_palloc(pool, sizeof(ngx_http_mqttapi_tops_t));
    if (tops == NULL) {
        return NULL;
    }

    tops->nzones = zones;
    tops->zones = ngx_pcalloc(pool,
                              (zones ? zones : 1)
                              * sizeof(ngx_http_mqttapi_zone_top_t));
    if (tops->zones == NULL) {
        return NULL;
    }

    return tops;
}


/* the back-offs of a zone, for ngx_http_mqttapi_zone_backoffs() */

void *
ngx_http_mqttapi_status_tops_zone(ngx_http_mqttapi_tops_t *tops,
    ngx_uint_t zone)
{
    return (zone < tops->nzones) ? &tops->zones[zone] : NULL;
}


/* under the zone's lock: a back-off in effect, kept if among the top */

void
ngx_http_mqttapi_status_top(void *data, ngx_http_mqttapi_node_t *node,
    ngx_msec_t now)
{
    ngx_http_mqttapi_zone_top_t *zt = data;

    ngx_uint_t                        i;
    ngx_msec_int_t                    left;
    ngx_http_mqttapi_top_t           *t;
    ngx_http_mqttapi_backoff_node_t  *b;

    b = ngx_http_mqttapi_node_backoff(node);

    if (zt == NULL || b == NULL) {
        return;
    }

    zt->total++;

    left = (ngx_msec_int_t) (b->until - now);

    if (left < 0) {
        left = 0;
    }

    if (zt->n < NGX_HTTP_MQTTAPI_STATUS_TOP) {
        t = &zt->top[zt->n++];

    } else {
        /* replaces the one with the least time left, if less than this */

        t = &zt->top[zt->least];

        if (t->left >= left) {
            return;
        }
    }

    t->left = left;
    t->rejected = node->rejected;
    t->code = b->code;
    t->peer = (b->flags & NGX_HTTP_MQTTAPI_SYNC_PEER) ? 1 : 0;
    t->probing = b->probe ? 1 : 0;
    t->len = ngx_min(node->len, NGX_HTTP_MQTTAPI_KEY_MAX_LEN);
    ngx_memcpy(t->key, node->data, t->len);

    /* once full, the next to replace: found again only after a change */

    if (zt->n == NGX_HTTP_MQTTAPI_STATUS_TOP) {
        zt->least = 0;

        for (i = 1; i < NGX_HTTP_MQTTAPI_STATUS_TOP; i++) {
            if (zt->top[i].left < zt->top[zt->least].left) {
                zt->least = i;
            }
        }
    }
}


ngx_int_t
ngx_http_mqttapi_status_extra(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_http_mqttapi_tops_t *tops,
    ngx_str_t *extra)
{
    u_char      *p;
    ngx_uint_t   i, n;
    ngx_str_t    part[3];

    if (ngx_http_mqttapi_status_uptime(r, st, &part[0]) != NGX_OK
        || ngx_http_mqttapi_status_backoffs(r, st, tops, &part[1]) != NGX_OK
        || ngx_http_mqttapi_status_quotas(r, &part[2]) != NGX_OK)
    {
        return NGX_ERROR;
    }

    n = sizeof(part) / sizeof(part[0]);
    extra->len = 0;

    for (i = 0; i < n; i++) {
        extra->len += part[i].len;
    }

    extra->data = ngx_pnalloc(r->pool, extra->len);
    if (extra->data == NULL) {
        return NGX_ERROR;
    }

    p = extra->data;

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, part[i].data, part[i].len);
    }

    return NGX_OK;
}


/* ,"uptime":<seconds since nginx started>,"workers":<worker_processes> */

static ngx_int_t
ngx_http_mqttapi_status_uptime(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_str_t *out)
{
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    out->data = ngx_pnalloc(r->pool, 64 + 2 * NGX_TIME_T_LEN);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_sprintf(out->data, ",\n\"uptime\":%T,\n\"workers\":%i",
                           ngx_http_mqttapi_stats_uptime(st),
                           ccf->worker_processes)
               - out->data;

    return NGX_OK;
}


/*
 * ,"backoffs":[{"zone":"z","in_effect":N,"keys":[{"key":"abcd...1f2e3d",
 * "code":"Throttling","seconds_left":12.3,"answered":4,"origin":"local",
 * "state":"answering"}, ...]}, ...]
 */

static ngx_int_t
ngx_http_mqttapi_status_backoffs(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_http_mqttapi_tops_t *tops,
    ngx_str_t *out)
{
    u_char                        *p;
    size_t                         len;
    ngx_str_t                     *name, code;
    ngx_uint_t                     i, k, comma;
    ngx_http_mqttapi_top_t        *t;
    ngx_http_mqttapi_zone_t      **zones;
    ngx_http_mqttapi_zone_top_t   *zt;

    zones = st->zones.elts;
    name = st->zone_names.names.elts;

    /* at most: escaped names and codes six times their size */

    len = sizeof(",\n\"backoffs\":[]") - 1;

    for (i = 1; i < tops->nzones; i++) {
        len += 64 + 6 * name[i].len + NGX_INT_T_LEN;
        len += tops->zones[i].n
               * (160 + 6 * NGX_HTTP_MQTTAPI_STATUS_KEY
                  + NGX_HTTP_MQTTAPI_STATUS_HASH
                  + 6 * NGX_HTTP_MQTTAPI_CODE_MAX_LEN + 2 * NGX_INT_T_LEN);
    }

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out->data, ",\n\"backoffs\":[", 14);
    comma = 0;

    for (i = 1; i < tops->nzones; i++) {
        zt = &tops->zones[i];

        if (zones[i]->sh == NULL) {
            continue;
        }

        p = ngx_sprintf(p, "%s{\"zone\":\"", comma++ ? "," : "");
        p = ngx_http_mqttapi_status_escape(p, &name[i], 1);
        p = ngx_sprintf(p, "\",\"in_effect\":%ui,\"keys\":[", zt->total);

        ngx_sort(zt->top, zt->n, sizeof(ngx_http_mqttapi_top_t),
                 ngx_http_mqttapi_top_cmp);

        for (k = 0; k < zt->n; k++) {
            t = &zt->top[k];

            p = ngx_sprintf(p, "%s{\"key\":\"", k ? "," : "");
            p = ngx_http_mqttapi_status_mask(p, t->key, t->len);

            ngx_http_mqttapi_zone_code(zones[i], t->code, &code);

            p = ngx_cpymem(p, "\",\"code\":\"", 10);
            p = ngx_http_mqttapi_status_escape(p, &code, 1);
            p = ngx_sprintf(p, "\",\"seconds_left\":%M.%M,\"answered\":%uD,"
                            "\"origin\":\"%s\",\"state\":\"%s\"}",
                            (ngx_msec_t) t->left / 1000,
                            (ngx_msec_t) t->left % 1000 / 100,
                            t->rejected, t->peer ? "peer" : "local",
                            t->probing ? "probing" : "answering");
        }

        *p++ = ']';
        *p++ = '}';
    }

    *p++ = ']';

    out->len = p - out->data;

    return NGX_OK;
}


/*
 * A back-off's key ("b:" and the key, or "b:#" and the MD5 of a key too
 * long to keep) as its first characters, never more than half of it, an
 * ellipsis and the first hex digits of its MD5
 */

static u_char *
ngx_http_mqttapi_status_mask(u_char *p, u_char *key, size_t len)
{
    u_char     digest[16];
    ngx_str_t  start;
    ngx_md5_t  md5;

    if (len >= 2 && key[0] == 'b' && key[1] == ':') {
        key += 2;
        len -= 2;
    }

    start.data = key;
    start.len = 0;

    if (len && key[0] == '#') {
        /* only the digest is kept: its first digits */
        p = ngx_cpymem(p, "\xe2\x80\xa6", 3);
        return ngx_cpymem(p, key + 1,
                          ngx_min(len - 1, NGX_HTTP_MQTTAPI_STATUS_HASH));
    }

    start.len = ngx_min(NGX_HTTP_MQTTAPI_STATUS_KEY, len / 2);

    /* not in the middle of a UTF-8 character */

    while (start.len && (key[start.len] & 0xc0) == 0x80) {
        start.len--;
    }

    p = ngx_http_mqttapi_status_escape(p, &start, 1);
    p = ngx_cpymem(p, "\xe2\x80\xa6", 3);

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, key, len);
    ngx_md5_final(digest, &md5);

    return ngx_hex_dump(p, digest, NGX_HTTP_MQTTAPI_STATUS_HASH / 2);
}


static ngx_int_t
ngx_http_mqttapi_top_cmp(const void *one, const void *two)
{
    const ngx_http_mqttapi_top_t  *a = one;
    const ngx_http_mqttapi_top_t  *b = two;

    return (a->left < b->left) - (a->left > b->left);
}


/*
 * ,"quotas":[{"action":"Publish","used":12,"limit":500,"key_limit":100}]:
 * each action's requests in the last second through the whole gateway
 * (the ceiling zone, one node per action) against the gateway-wide limit
 * of the status location's catalog, and the per-key quota beside it
 */

static ngx_int_t
ngx_http_mqttapi_status_quotas(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char                        *p;
    size_t                         len;
    ngx_str_t                      name;
    ngx_uint_t                     i, limit;
    ngx_msec_t                     now;
    ngx_array_t                   *uses;
    ngx_queue_t                   *q;
    ngx_http_mqttapi_use_t        *u;
    ngx_http_mqttapi_node_t       *n;
    ngx_http_mqttapi_zone_t       *zone;
    ngx_http_mqttapi_action_t     *action;
    ngx_http_mqttapi_quota_node_t *qn;
    ngx_http_mqttapi_catalog_t    *catalog;
    ngx_http_mqttapi_loc_conf_t   *lcf;
    ngx_http_mqttapi_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_mqttapi_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mqttapi_module);

    catalog = lcf->catalog ? lcf->catalog : mcf->catalog;

    uses = ngx_array_create(r->pool, 64, sizeof(ngx_http_mqttapi_use_t));
    if (uses == NULL) {
        return NGX_ERROR;
    }

    zone = mcf->ceiling ? mcf->ceiling->data : NULL;

    if (zone && zone->sh && catalog) {
        now = ngx_current_msec;

        ngx_shmtx_lock(&zone->shpool->mutex);

        for (q = ngx_queue_head(&zone->sh->queue);
             q != ngx_queue_sentinel(&zone->sh->queue);
             q = ngx_queue_next(q))
        {
            n = ngx_queue_data(q, ngx_http_mqttapi_node_t, queue);
            qn = ngx_http_mqttapi_node_quota(n);

            if (qn == NULL || qn->mode != NGX_HTTP_MQTTAPI_QUOTA_WINDOW
                || n->len < 3 || n->data[0] != 'a' || n->data[1] != ':'
                || n->data[2] == '#')
            {
                continue;
            }

            u = ngx_array_push(uses);
            if (u == NULL) {
                break;
            }

            u->len = ngx_min((size_t) n->len - 2,
                             NGX_HTTP_MQTTAPI_KEY_MAX_LEN);
            ngx_memcpy(u->name, n->data + 2, u->len);
            u->used = ngx_http_mqttapi_status_window(qn, now);
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    len = sizeof(",\n\"quotas\":[]") - 1
          + uses->nelts * (64 + 6 * NGX_HTTP_MQTTAPI_KEY_MAX_LEN
                           + 3 * NGX_INT_T_LEN);

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out->data, ",\n\"quotas\":[", 12);

    u = uses->elts;

    for (i = 0; i < uses->nelts; i++) {
        name.data = u[i].name;
        name.len = u[i].len;

        action = ngx_http_mqttapi_catalog_action(catalog, &name);

        limit = (action && action->quota) ? action->quota
                                          : catalog->default_quota;

        p = ngx_sprintf(p, "%s{\"action\":\"", i ? "," : "");
        p = ngx_http_mqttapi_status_escape(p, &name, 1);
        p = ngx_sprintf(p, "\",\"used\":%ui,\"limit\":%ui,\"key_limit\":%ui}",
                        u[i].used, catalog->api_ceiling, limit);
    }

    *p++ = ']';

    out->len = p - out->data;

    return NGX_OK;
}


/* the sum of a quota node's buckets that are still in the window */

static ngx_uint_t
ngx_http_mqttapi_status_window(ngx_http_mqttapi_quota_node_t *node,
    ngx_msec_t now)
{
    uint32_t    bucket, n, first;
    ngx_uint_t  sum;

    bucket = (uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC);

    /* another worker's clock may be a little ahead of this one's */

    if ((int32_t) (node->bucket - bucket) > 0) {
        bucket = node->bucket;
    }

    first = bucket - (NGX_HTTP_MQTTAPI_BUCKETS - 1);
    sum = 0;

    for (n = first; (int32_t) (node->bucket - n) >= 0; n++) {
        sum += node->u.buckets[n % NGX_HTTP_MQTTAPI_BUCKETS];
    }

    return sum;
}
