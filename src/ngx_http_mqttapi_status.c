
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_headers.h"
#include "ngx_http_mqttapi_render.h"
#include "ngx_http_mqttapi_request.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_status.h"
#include "ngx_http_mqttapi_sync.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * The status endpoint: "location = /mqttapi/status { mqttapi_status; }".
 * The counters of ngx_http_mqttapi_stats.c, summed over the workers, and
 * the gauges of the throttle zones, read under each zone's lock, as JSON
 * (the default) or in the Prometheus text format 0.0.4 (?format=prometheus,
 * or an Accept that prefers text/plain to application/json).  Both list
 * the same rows: in JSON each metric (without the "mqttapi_" prefix) is an
 * array of objects, the labels and a "value"; the JSON adds the members of
 * the status page (ngx_http_mqttapi_status_extra.c).  A browser gets the
 * page itself (?format=html, or an Accept that prefers text/html to both).
 */


#define NGX_HTTP_MQTTAPI_STATUS_LABELS  4


typedef struct {
    const char                  *name;
    const char                  *type;
    const char                  *help;
    const char                  *labels[NGX_HTTP_MQTTAPI_STATUS_LABELS];
} ngx_http_mqttapi_family_t;


typedef struct {
    ngx_uint_t                   family;
    ngx_str_t                    labels[NGX_HTTP_MQTTAPI_STATUS_LABELS];
    ngx_atomic_uint_t            value;
    const char                  *suffix;      /* of a histogram's sum... */
    unsigned                     micro:1;     /* value in microseconds */
} ngx_http_mqttapi_row_t;


/* the families of the counters first, in the order of their metrics */

#define NGX_HTTP_MQTTAPI_F_BACKOFF_KEYS    6
#define NGX_HTTP_MQTTAPI_F_ZONE_BYTES      7
#define NGX_HTTP_MQTTAPI_F_ZONE_KEYS       8
#define NGX_HTTP_MQTTAPI_F_EVICTIONS       9
#define NGX_HTTP_MQTTAPI_F_BUILD_INFO      10
#define NGX_HTTP_MQTTAPI_F_DELAYED         11
#define NGX_HTTP_MQTTAPI_F_DELAY_SECONDS   12
#define NGX_HTTP_MQTTAPI_F_SYNC_UP         13
#define NGX_HTTP_MQTTAPI_F_SYNC_NODES      14
#define NGX_HTTP_MQTTAPI_F_SYNC_ERRORS     15
#define NGX_HTTP_MQTTAPI_F_SYNC_RTT        16
#define NGX_HTTP_MQTTAPI_F_SYNC_REFUSED    17
#define NGX_HTTP_MQTTAPI_FAMILIES          18


static ngx_http_mqttapi_family_t  ngx_http_mqttapi_families[] = {

    { "responses_total", "counter",
      "Error responses annotated (source upstream) or normalized into a "
      "gateway code (source gateway).",
      { "action", "code", "category", "source" } },

    { "passthrough_total", "counter",
      "Error responses passed through unchanged, by reason.",
      { "reason", NULL, NULL, NULL } },

    { "local_rejects_total", "counter",
      "Requests answered locally by the gateway, without the upstream.",
      { "zone", "action", "code", "reason" } },

    { "dry_run_total", "counter",
      "Requests a dry run would have answered locally.",
      { "zone", "reason", NULL, NULL } },

    { "backoff_events_total", "counter",
      "Back-offs opened, reopened, probed and closed.",
      { "zone", "event", NULL, NULL } },

    { "upstream_throttles_total", "counter",
      "Throttling codes received from the upstream.",
      { "action", "code", NULL, NULL } },

    { "backoff_keys", "gauge",
      "Keys currently backed off (answered locally, or probing), opened "
      "here (local) or by another node (peer).",
      { "zone", "origin", NULL, NULL } },

    { "zone_bytes", "gauge",
      "Shared memory of a throttle zone, used and total.",
      { "zone", "state", NULL, NULL } },

    { "zone_keys", "gauge",
      "Keys held in a throttle zone (back-offs and quota windows).",
      { "zone", NULL, NULL, NULL } },

    { "zone_evictions_total", "counter",
      "Keys evicted from a full throttle zone.",
      { "zone", NULL, NULL, NULL } },

    { "build_info", "gauge",
      "The module's version and the nginx it runs in.",
      { "version", "nginx", NULL, NULL } },

    { "quota_delayed_total", "counter",
      "Requests over a quota that waited for a slot (delay=), then went "
      "on.",
      { "zone", "action", NULL, NULL } },

    { "quota_delay_seconds", "histogram",
      "How long requests over a quota waited for their slot (delay=).",
      { "le", NULL, NULL, NULL } },

    { "sync_up", "gauge",
      "1 while this node is connected to Redis (mqttapi_sync).",
      { NULL, NULL, NULL, NULL } },

    { "sync_nodes", "gauge",
      "Gateway nodes seen alive through Redis, this one included.",
      { NULL, NULL, NULL, NULL } },

    { "sync_errors_total", "counter",
      "Failures talking to Redis, by operation.",
      { "op", NULL, NULL, NULL } },

    { "sync_roundtrip_seconds", "histogram",
      "Time from a command to its reply from Redis.",
      { "le", NULL, NULL, NULL } },

    { "sync_refused", "gauge",
      "1 while Redis refuses writes (maxmemory, a replica): the node runs "
      "on its own state as if Redis were down.",
      { NULL, NULL, NULL, NULL } }
};


static ngx_int_t ngx_http_mqttapi_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mqttapi_status_counters(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_array_t *rows);
static ngx_int_t ngx_http_mqttapi_status_delay(ngx_http_mqttapi_stats_t *st,
    ngx_array_t *samples, ngx_array_t *rows);
static ngx_int_t ngx_http_mqttapi_status_gauges(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_array_t *rows,
    ngx_http_mqttapi_tops_t *tops);
static ngx_int_t ngx_http_mqttapi_status_sync(ngx_http_request_t *r,
    ngx_array_t *rows);
static ngx_int_t ngx_http_mqttapi_status_sync_refused(
    ngx_http_mqttapi_sync_sh_t *sh, ngx_array_t *rows);
static ngx_http_mqttapi_row_t *ngx_http_mqttapi_status_row(ngx_array_t *rows,
    ngx_uint_t family, ngx_atomic_uint_t value);
static ngx_int_t ngx_http_mqttapi_row_cmp(const void *one, const void *two);
static ngx_int_t ngx_http_mqttapi_status_format(ngx_http_request_t *r);
static ngx_int_t ngx_http_mqttapi_status_q(ngx_str_t *accept, const char *type,
    size_t slash);
static ngx_int_t ngx_http_mqttapi_status_render(ngx_http_request_t *r,
    ngx_array_t *rows, ngx_uint_t prometheus, ngx_uint_t families,
    ngx_str_t *extra, ngx_str_t *body);
static u_char *ngx_http_mqttapi_status_total(u_char *p,
    ngx_http_mqttapi_family_t *fam, ngx_http_mqttapi_row_t *row,
    ngx_uint_t comma, ngx_uint_t prometheus);


static ngx_str_t  ngx_http_mqttapi_status_json_type =
    ngx_string("application/json");
static ngx_str_t  ngx_http_mqttapi_status_text_type =
    ngx_string("text/plain; version=0.0.4");


char *
ngx_http_mqttapi_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_mqttapi_main_conf_t  *mcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_mqttapi_status_handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_mqttapi_status_handler;

    /* counting starts with the first mqttapi_status */

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);

    if (mcf->stats == NULL) {
        mcf->stats = ngx_http_mqttapi_stats_create(cf);
        if (mcf->stats == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_mqttapi_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc, format, prometheus;
    ngx_str_t                      body, extra;
    ngx_array_t                   *rows;
    ngx_http_mqttapi_tops_t       *tops;
    ngx_http_mqttapi_stats_t      *st;
    ngx_http_mqttapi_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    format = ngx_http_mqttapi_status_format(r);

    if (format == NGX_ERROR) {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (format == NGX_HTTP_MQTTAPI_FORMAT_HTML) {
        return ngx_http_mqttapi_status_page(r);
    }

    prometheus = (format == NGX_HTTP_MQTTAPI_FORMAT_PROMETHEUS);

    mcf = ngx_http_get_module_main_conf(r, ngx_http_mqttapi_module);
    st = mcf->stats;

    if (st == NULL || st->slots == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rows = ngx_array_create(r->pool, 64, sizeof(ngx_http_mqttapi_row_t));
    if (rows == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the back-offs in effect, for the JSON only */

    tops = NULL;

    if (!prometheus) {
        tops = ngx_http_mqttapi_status_tops(r->pool, st->zones.nelts);
        if (tops == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_mqttapi_status_counters(r, st, rows) != NGX_OK
        || ngx_http_mqttapi_status_gauges(r, st, rows, tops) != NGX_OK
        || ngx_http_mqttapi_status_sync(r, rows) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&extra);

    if (!prometheus
        && ngx_http_mqttapi_status_extra(r, st, tops, &extra) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the rows of a metric together (a stable sort: zones in order) */

    ngx_sort(rows->elts, rows->nelts, sizeof(ngx_http_mqttapi_row_t),
             ngx_http_mqttapi_row_cmp);

    /* the families of mqttapi_sync only when it is configured */

    if (ngx_http_mqttapi_status_render(r, rows, prometheus,
                                       mcf->sync ? NGX_HTTP_MQTTAPI_FAMILIES
                                               : NGX_HTTP_MQTTAPI_F_SYNC_UP,
                                       &extra, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi status: %ui rows, prometheus %i",
                   rows->nelts, prometheus);

    if (ngx_http_mqttapi_status_headers(r, prometheus
                                           ? &ngx_http_mqttapi_status_text_type
                                           : &ngx_http_mqttapi_status_json_type,
                                        body.len)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_mqttapi_send_body(r, &body, ngx_http_send_header,
                                      ngx_http_output_filter);
}


/* the status line and the headers of every answer: never to be cached */

ngx_int_t
ngx_http_mqttapi_status_headers(ngx_http_request_t *r, ngx_str_t *type,
    size_t len)
{
    ngx_table_elt_t  *h;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
    r->headers_out.cache_control = h;
#endif

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_status_counters(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_array_t *rows)
{
    ngx_str_t                  *l;
    ngx_uint_t                  i, n;
    ngx_array_t                *samples;
    ngx_http_mqttapi_row_t     *row;
    ngx_http_mqttapi_sample_t  *s;

    samples = ngx_http_mqttapi_stats_collect(st, r->pool);
    if (samples == NULL) {
        return NGX_ERROR;
    }

    s = samples->elts;

    for (i = 0; i < samples->nelts; i++) {

        if (s[i].metric == NGX_HTTP_MQTTAPI_STAT_DELAY) {
            continue;
        }

        row = ngx_http_mqttapi_status_row(rows, s[i].metric - 1, s[i].value);
        if (row == NULL) {
            return NGX_ERROR;
        }

        l = row->labels;
        n = 0;

        switch (s[i].metric) {

        case NGX_HTTP_MQTTAPI_STAT_RESPONSES:
            l[n++] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                             NGX_HTTP_MQTTAPI_LABEL_ACTION);
            l[n++] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                               NGX_HTTP_MQTTAPI_LABEL_CODE);
            l[n++] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                           NGX_HTTP_MQTTAPI_LABEL_CATEGORY);
            break;

        case NGX_HTTP_MQTTAPI_STAT_REJECTS:
            l[n++] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                               NGX_HTTP_MQTTAPI_LABEL_ZONE);
            /* fall through */

        case NGX_HTTP_MQTTAPI_STAT_THROTTLES:
            l[n++] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                             NGX_HTTP_MQTTAPI_LABEL_ACTION);
            l[n++] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                               NGX_HTTP_MQTTAPI_LABEL_CODE);
            break;

        case NGX_HTTP_MQTTAPI_STAT_DRY_RUN:
        case NGX_HTTP_MQTTAPI_STAT_BACKOFF:
            l[n++] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                               NGX_HTTP_MQTTAPI_LABEL_ZONE);
            break;
        }

        if (s[i].metric != NGX_HTTP_MQTTAPI_STAT_THROTTLES) {
            l[n].data = (u_char *) ngx_http_mqttapi_stats_word(s[i].metric,
                                                               s[i].word);
            l[n].len = ngx_strlen(l[n].data);
        }
    }

    return ngx_http_mqttapi_status_delay(st, samples, rows);
}


/*
 * quota_delayed_total{zone,action}, and the quota_delay_seconds histogram
 * of the whole gateway, from the samples of NGX_HTTP_MQTTAPI_STAT_DELAY
 * (sorted: those of a zone and action together)
 */

static ngx_int_t
ngx_http_mqttapi_status_delay(ngx_http_mqttapi_stats_t *st,
    ngx_array_t *samples, ngx_array_t *rows)
{
    ngx_uint_t                  i, le, a, action;
    ngx_atomic_uint_t           sum, count, buckets[NGX_HTTP_MQTTAPI_DELAY_LE];
    ngx_http_mqttapi_row_t     *row;
    ngx_http_mqttapi_sample_t  *s;

    s = samples->elts;
    row = NULL;
    sum = 0;
    a = 0;
    action = 0;
    ngx_memzero(buckets, sizeof(buckets));

    for (i = 0; i < samples->nelts; i++) {

        if (s[i].metric != NGX_HTTP_MQTTAPI_STAT_DELAY || s[i].word == 0) {
            continue;
        }

        if (s[i].word == NGX_HTTP_MQTTAPI_DELAY_SUM) {
            sum += s[i].value;
            continue;
        }

        if (s[i].word > NGX_HTTP_MQTTAPI_DELAY_LE) {
            continue;
        }

        buckets[s[i].word - 1] += s[i].value;

        if (row == NULL || s[i].a != a || s[i].action != action) {
            a = s[i].a;
            action = s[i].action;

            row = ngx_http_mqttapi_status_row(rows,
                                              NGX_HTTP_MQTTAPI_F_DELAYED, 0);
            if (row == NULL) {
                return NGX_ERROR;
            }

            row->labels[0] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                               NGX_HTTP_MQTTAPI_LABEL_ZONE);
            row->labels[1] = *ngx_http_mqttapi_stats_label(st, &s[i],
                                             NGX_HTTP_MQTTAPI_LABEL_ACTION);
        }

        row->value += s[i].value;
    }

    /* cumulative buckets, then the sum and the count */

    count = 0;

    for (le = 0; le < NGX_HTTP_MQTTAPI_DELAY_LE; le++) {
        count += buckets[le];

        row = ngx_http_mqttapi_status_row(rows,
                                          NGX_HTTP_MQTTAPI_F_DELAY_SECONDS,
                                          count);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->suffix = "_bucket";
        row->labels[0].data = (u_char *) ngx_http_mqttapi_delay_le_names[le];
        row->labels[0].len = ngx_strlen(row->labels[0].data);
    }

    row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_DELAY_SECONDS,
                                      sum * 1000);
    if (row == NULL) {
        return NGX_ERROR;
    }

    row->suffix = "_sum";
    row->micro = 1;

    row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_DELAY_SECONDS,
                                      count);
    if (row == NULL) {
        return NGX_ERROR;
    }

    row->suffix = "_count";

    return NGX_OK;
}


/* read at scrape time, under each zone's lock */

static ngx_int_t
ngx_http_mqttapi_status_gauges(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_array_t *rows,
    ngx_http_mqttapi_tops_t *tops)
{
    void                          *top;
    size_t                         total, used;
    ngx_uint_t                     i, backoff, peer, keys, evicted;
    ngx_str_t                     *name;
    ngx_http_mqttapi_row_t        *row;
    ngx_http_mqttapi_zone_t      **zones, *zone;
    ngx_http_mqttapi_zone_each_pt  each;

    zones = st->zones.elts;
    name = st->zone_names.names.elts;

    for (i = 1; i < st->zones.nelts; i++) {
        zone = zones[i];

        if (zone->sh == NULL) {
            continue;
        }

        /* the JSON's back-offs in effect, gathered in the same walk */

        each = NULL;
        top = NULL;

        if (tops) {
            each = ngx_http_mqttapi_status_top;
            top = ngx_http_mqttapi_status_tops_zone(tops, i);
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        ngx_http_mqttapi_zone_backoffs(zone, &backoff, &peer, each, top);

        keys = zone->sh->nodes;
        evicted = zone->sh->evicted;
        total = zone->shm_zone->shm.size;
        used = total - zone->shpool->pfree * ngx_pagesize;

        ngx_shmtx_unlock(&zone->shpool->mutex);

        row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_BACKOFF_KEYS,
                                          backoff);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->labels[0] = name[i];
        ngx_str_set(&row->labels[1], "local");

        row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_BACKOFF_KEYS,
                                          peer);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->labels[0] = name[i];
        ngx_str_set(&row->labels[1], "peer");

        row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_ZONE_BYTES,
                                          used);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->labels[0] = name[i];
        ngx_str_set(&row->labels[1], "used");

        row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_ZONE_BYTES,
                                          total);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->labels[0] = name[i];
        ngx_str_set(&row->labels[1], "total");

        row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_ZONE_KEYS,
                                          keys);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->labels[0] = name[i];

        row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_EVICTIONS,
                                          evicted);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->labels[0] = name[i];
    }

    row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_BUILD_INFO, 1);
    if (row == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&row->labels[0], NGX_HTTP_MQTTAPI_VERSION);
    ngx_str_set(&row->labels[1], NGINX_VERSION);

    return NGX_OK;
}


/* mqttapi_sync: the node's shared state, when it is configured */

static ngx_int_t
ngx_http_mqttapi_status_sync(ngx_http_request_t *r, ngx_array_t *rows)
{
    ngx_uint_t                     i;
    ngx_atomic_uint_t              sum;
    ngx_http_mqttapi_row_t        *row;
    ngx_http_mqttapi_sync_sh_t    *sh;
    ngx_http_mqttapi_sync_conf_t  *scf;
    ngx_http_mqttapi_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_mqttapi_module);
    scf = mcf->sync;

    if (scf == NULL || scf->sh == NULL) {
        return NGX_OK;
    }

    sh = scf->sh;

    if (ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_SYNC_UP,
                                    sh->up ? 1 : 0)
        == NULL
        || ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_SYNC_NODES,
                                       sh->nodes)
           == NULL)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_HTTP_MQTTAPI_SYNC_OPS; i++) {
        row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_SYNC_ERRORS,
                                          sh->errors[i]);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->labels[0].data = (u_char *) ngx_http_mqttapi_sync_ops[i];
        row->labels[0].len = ngx_strlen(ngx_http_mqttapi_sync_ops[i]);
    }

    /* cumulative buckets, then the sum and the count */

    sum = 0;

    for (i = 0; i < NGX_HTTP_MQTTAPI_SYNC_RTT_BUCKETS; i++) {
        sum += sh->rtt[i];

        row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_SYNC_RTT,
                                          sum);
        if (row == NULL) {
            return NGX_ERROR;
        }

        row->suffix = "_bucket";
        row->labels[0].data = (u_char *) ngx_http_mqttapi_sync_rtt_le[i];
        row->labels[0].len = ngx_strlen(ngx_http_mqttapi_sync_rtt_le[i]);
    }

    row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_SYNC_RTT,
                                      sh->rtt_sum);
    if (row == NULL) {
        return NGX_ERROR;
    }

    row->suffix = "_sum";
    row->micro = 1;

    row = ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_SYNC_RTT, sum);
    if (row == NULL) {
        return NGX_ERROR;
    }

    row->suffix = "_count";

    return ngx_http_mqttapi_status_sync_refused(sh, rows);
}


static ngx_int_t
ngx_http_mqttapi_status_sync_refused(ngx_http_mqttapi_sync_sh_t *sh,
    ngx_array_t *rows)
{
    if (ngx_http_mqttapi_status_row(rows, NGX_HTTP_MQTTAPI_F_SYNC_REFUSED,
                                    sh->refused ? 1 : 0)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_http_mqttapi_row_t *
ngx_http_mqttapi_status_row(ngx_array_t *rows, ngx_uint_t family,
    ngx_atomic_uint_t value)
{
    ngx_http_mqttapi_row_t  *row;

    row = ngx_array_push(rows);
    if (row == NULL) {
        return NULL;
    }

    ngx_memzero(row, sizeof(ngx_http_mqttapi_row_t));

    row->family = family;
    row->value = value;

    return row;
}


static ngx_int_t
ngx_http_mqttapi_row_cmp(const void *one, const void *two)
{
    const ngx_http_mqttapi_row_t  *a = one;
    const ngx_http_mqttapi_row_t  *b = two;

    return (ngx_int_t) a->family - (ngx_int_t) b->family;
}


/*
 * ?format=prometheus, json or html; else the Accept header: Prometheus
 * when it gives text/plain a higher quality than application/json (each
 * by its most specific range), the page when it gives text/html a higher
 * quality than both (a browser's), JSON otherwise (curl's any type)
 */

static ngx_int_t
ngx_http_mqttapi_status_format(ngx_http_request_t *r)
{
    ngx_int_t         json, text, html;
    ngx_str_t         format;
    ngx_table_elt_t  *h;

    static ngx_str_t  arg = ngx_string("format");
    static ngx_str_t  accept = ngx_string("accept");

    if (ngx_http_mqttapi_request_arg(r, &arg, &format) == NGX_OK) {

        if (format.len == sizeof("prometheus") - 1
            && ngx_strncmp(format.data, "prometheus", format.len) == 0)
        {
            return NGX_HTTP_MQTTAPI_FORMAT_PROMETHEUS;
        }

        if (format.len == sizeof("json") - 1
            && ngx_strncmp(format.data, "json", format.len) == 0)
        {
            return NGX_HTTP_MQTTAPI_FORMAT_JSON;
        }

        if (format.len == sizeof("html") - 1
            && ngx_strncmp(format.data, "html", format.len) == 0)
        {
            return NGX_HTTP_MQTTAPI_FORMAT_HTML;
        }

        return NGX_ERROR;
    }

    h = ngx_http_mqttapi_header(&r->headers_in.headers, &accept, NULL,
                                NGX_HTTP_MQTTAPI_HEADER_IN);

    if (h == NULL) {
        return NGX_HTTP_MQTTAPI_FORMAT_JSON;
    }

    json = ngx_http_mqttapi_status_q(&h->value, "application/json", 11);
    text = ngx_http_mqttapi_status_q(&h->value, "text/plain", 4);
    html = ngx_http_mqttapi_status_q(&h->value, "text/html", 4);

    if (html > json && html > text) {
        return NGX_HTTP_MQTTAPI_FORMAT_HTML;
    }

    return (text > json) ? NGX_HTTP_MQTTAPI_FORMAT_PROMETHEUS
                         : NGX_HTTP_MQTTAPI_FORMAT_JSON;
}


static ngx_int_t
ngx_http_mqttapi_status_q(ngx_str_t *accept, const char *type, size_t slash)
{
    u_char      *p, *last, *end, *range, *range_end, *v;
    size_t       len;
    ngx_int_t    q, best_q;
    ngx_uint_t   spec, best;

    /* the quality of "type" in thousandths: its most specific range's */

    len = ngx_strlen(type);
    best = 0;
    best_q = 0;

    p = accept->data;
    last = accept->data + accept->len;

    while (p < last) {

        end = ngx_strlchr(p, last, ',');
        if (end == NULL) {
            end = last;
        }

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        range = p;

        while (p < end && *p != ';' && *p != ' ' && *p != '\t') {
            p++;
        }

        range_end = p;

        if ((size_t) (range_end - range) == len
            && ngx_strncasecmp(range, (u_char *) type, len) == 0)
        {
            spec = 3;

        } else if ((size_t) (range_end - range) == slash + 2
                   && ngx_strncasecmp(range, (u_char *) type, slash + 1) == 0
                   && range[slash + 1] == '*')
        {
            spec = 2;

        } else if (range_end - range == 3
                   && ngx_strncmp(range, "*/*", 3) == 0)
        {
            spec = 1;

        } else {
            spec = 0;
        }

        q = 1000;

        while (p < end) {
            p = ngx_strlchr(p, end, ';');
            if (p == NULL) {
                break;
            }

            p++;

            while (p < end && (*p == ' ' || *p == '\t')) {
                p++;
            }

            if (end - p < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=') {
                continue;
            }

            p += 2;

            for (v = p; p < end && *p != ';' && *p != ' ' && *p != '\t'; p++)
            { /* void */ }

            q = ngx_atofp(v, p - v, 3);

            if (q == NGX_ERROR || q > 1000) {
                q = 0;
            }
        }

        if (spec > best) {
            best = spec;
            best_q = q;
        }

        p = end + 1;
    }

    return best_q;
}


static ngx_int_t
ngx_http_mqttapi_status_render(ngx_http_request_t *r, ngx_array_t *rows,
    ngx_uint_t prometheus, ngx_uint_t families, ngx_str_t *extra,
    ngx_str_t *body)
{
    u_char                     *p;
    size_t                      len;
    ngx_uint_t                  i, k, f, next;
    ngx_http_mqttapi_row_t     *row;
    ngx_http_mqttapi_family_t  *fam;

    /* at most: escaped labels twice (JSON \u00XX: six times) their size */

    len = 64 + extra->len;

    for (f = 0; f < families; f++) {
        fam = &ngx_http_mqttapi_families[f];
        len += 2 * ngx_strlen(fam->name) + ngx_strlen(fam->help) + 64;
    }

    row = rows->elts;

    for (i = 0; i < rows->nelts; i++) {
        fam = &ngx_http_mqttapi_families[row[i].family];
        len += ngx_strlen(fam->name) + 64 + NGX_ATOMIC_T_LEN;

        for (k = 0; k < NGX_HTTP_MQTTAPI_STATUS_LABELS && fam->labels[k]; k++) {
            len += ngx_strlen(fam->labels[k]) + 6 * row[i].labels[k].len + 8;
        }
    }

    body->data = ngx_pnalloc(r->pool, len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = body->data;
    next = 0;

    if (!prometheus) {
        *p++ = '{';
    }

    for (f = 0; f < families; f++) {
        fam = &ngx_http_mqttapi_families[f];

        if (prometheus) {
            p = ngx_sprintf(p, "# HELP mqttapi_%s %s\n# TYPE mqttapi_%s %s\n",
                            fam->name, fam->help, fam->name, fam->type);

        } else {
            p = ngx_sprintf(p, "%s\n\"%s\":[", f ? "," : "", fam->name);
        }

        for (i = next; i < rows->nelts && row[i].family == f; i++) {

            if (row[i].suffix && row[i].labels[0].data == NULL) {
                /* a histogram's sum or count: no labels */
                p = ngx_http_mqttapi_status_total(p, fam, &row[i], i > next,
                                                  prometheus);
                continue;
            }

            if (prometheus) {
                p = ngx_sprintf(p, "mqttapi_%s%s%s", fam->name,
                                row[i].suffix ? row[i].suffix : "",
                                fam->labels[0] ? "{" : "");

            } else {
                p = ngx_sprintf(p, "%s{", i > next ? "," : "");
            }

            for (k = 0;
                 k < NGX_HTTP_MQTTAPI_STATUS_LABELS && fam->labels[k];
                 k++)
            {
                p = ngx_sprintf(p, prometheus ? "%s%s=\"" : "%s\"%s\":\"",
                                k ? "," : "", fam->labels[k]);
                p = ngx_http_mqttapi_status_escape(p, &row[i].labels[k],
                                                   !prometheus);
                *p++ = '"';
            }

            if (prometheus) {
                p = ngx_sprintf(p, "%s %uA\n", fam->labels[0] ? "}" : "",
                                row[i].value);

            } else {
                p = ngx_sprintf(p, "%s\"value\":%uA}",
                                fam->labels[0] ? "," : "", row[i].value);
            }
        }

        next = i;

        if (!prometheus) {
            *p++ = ']';
        }
    }

    if (!prometheus) {
        p = ngx_cpymem(p, extra->data, extra->len);
        *p++ = '\n';
        *p++ = '}';
        *p++ = '\n';
    }

    body->len = p - body->data;

    return NGX_OK;
}


/*
 * "mqttapi_x_sum 0.012000", or in JSON {"sum":0.012000}, a value in
 * microseconds as seconds
 */

static u_char *
ngx_http_mqttapi_status_total(u_char *p, ngx_http_mqttapi_family_t *fam,
    ngx_http_mqttapi_row_t *row, ngx_uint_t comma, ngx_uint_t prometheus)
{
    if (prometheus) {
        p = ngx_sprintf(p, "mqttapi_%s%s ", fam->name, row->suffix);

    } else {
        p = ngx_sprintf(p, "%s{\"%s\":", comma ? "," : "", row->suffix + 1);
    }

    if (row->micro) {
        p = ngx_sprintf(p, "%uA.%06uA", row->value / 1000000,
                        row->value % 1000000);

    } else {
        p = ngx_sprintf(p, "%uA", row->value);
    }

    if (prometheus) {
        *p++ = LF;

    } else {
        *p++ = '}';
    }

    return p;
}


/*
 * A label value in a Prometheus or JSON string: both must be valid UTF-8.
 * Valid characters are kept, with '"', '\\' and newlines escaped (and, in
 * JSON, every control character); a byte that starts no valid character
 * (a name in the configuration may hold any) is written as the character
 * of the same number, U+0080 to U+00FF, so that the output stays valid
 * and the name readable.  At most six bytes for one byte of the value.
 */

u_char *
ngx_http_mqttapi_status_escape(u_char *p, ngx_str_t *s, ngx_uint_t json)
{
    u_char     c, *q, *start, *last;
    uint32_t   u;

    static u_char  hex[] = "0123456789abcdef";

    q = s->data;
    last = s->data + s->len;

    while (q < last) {
        c = *q;

        if (c >= 0x80) {
            start = q;
            u = ngx_utf8_decode(&q, last - q);

            if (u <= 0x10ffff && (u < 0xd800 || u > 0xdfff)) {
                p = ngx_cpymem(p, start, q - start);
                continue;
            }

            /* not UTF-8: this byte alone, as U+0080..U+00FF */

            q = start + 1;

            if (json) {
                p = ngx_cpymem(p, "\\u00", 4);
                *p++ = hex[c >> 4];
                *p++ = hex[c & 0xf];

            } else {
                *p++ = (u_char) (0xc0 | (c >> 6));
                *p++ = (u_char) (0x80 | (c & 0x3f));
            }

            continue;
        }

        q++;

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else if (c == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else if ((c < 0x20 || c == 0x7f) && json) {
            p = ngx_cpymem(p, "\\u00", 4);
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];

        } else {
            *p++ = c;
        }
    }

    return p;
}
