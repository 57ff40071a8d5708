
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_STATS_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_STATS_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_zone.h"


/* the counters, in the order the status endpoint lists them */

#define NGX_HTTP_MQTTAPI_STAT_RESPONSES     1
#define NGX_HTTP_MQTTAPI_STAT_PASSTHROUGH   2
#define NGX_HTTP_MQTTAPI_STAT_REJECTS       3
#define NGX_HTTP_MQTTAPI_STAT_DRY_RUN       4
#define NGX_HTTP_MQTTAPI_STAT_BACKOFF       5
#define NGX_HTTP_MQTTAPI_STAT_THROTTLES     6
#define NGX_HTTP_MQTTAPI_STAT_DELAY         7     /* see below */
#define NGX_HTTP_MQTTAPI_STAT_METRICS       8

/*
 * Requests that waited for their quota's slot (delay=): counted by zone,
 * action and the bucket of quota_delay_seconds they fall in (word 1 to
 * NGX_HTTP_MQTTAPI_DELAY_LE), and the milliseconds waited (word 15)
 */

#define NGX_HTTP_MQTTAPI_DELAY_LE           12
#define NGX_HTTP_MQTTAPI_DELAY_SUM          15


/* passthrough_total{reason} */

#define NGX_HTTP_MQTTAPI_PASS_HEAD          1
#define NGX_HTTP_MQTTAPI_PASS_ENCODED       2
#define NGX_HTTP_MQTTAPI_PASS_TOO_LARGE     3
#define NGX_HTTP_MQTTAPI_PASS_NOT_IN_MEMORY 4
#define NGX_HTTP_MQTTAPI_PASS_UNPARSABLE    5
#define NGX_HTTP_MQTTAPI_PASS_NO_CODE       6
#define NGX_HTTP_MQTTAPI_PASS_NOT_JSON      7

/* local_rejects_total{reason} and dry_run_total{reason} */

#define NGX_HTTP_MQTTAPI_LOCAL_BACKOFF      1
#define NGX_HTTP_MQTTAPI_LOCAL_QUOTA        2
#define NGX_HTTP_MQTTAPI_LOCAL_CEILING      3

/* backoff_events_total{event} */

#define NGX_HTTP_MQTTAPI_EVENT_OPEN         1
#define NGX_HTTP_MQTTAPI_EVENT_REOPEN       2
#define NGX_HTTP_MQTTAPI_EVENT_PROBE        3
#define NGX_HTTP_MQTTAPI_EVENT_CLOSE        4


/* the label dimensions */

#define NGX_HTTP_MQTTAPI_DIM_CODES          0
#define NGX_HTTP_MQTTAPI_DIM_ACTIONS        1
#define NGX_HTTP_MQTTAPI_DIM_CATEGORIES     2
#define NGX_HTTP_MQTTAPI_DIM_ZONES          3
#define NGX_HTTP_MQTTAPI_DIMS               4


/* a dimension's values in the configuration: index 0 is "other" */

typedef struct {
    ngx_array_t                  names;       /* of ngx_str_t */
    ngx_hash_t                   hash;        /* name: index + 1 */
    ngx_uint_t                  *ids;         /* their ids in the zone */
    ngx_uint_t                   dim;
    ngx_uint_t                   max;
} ngx_http_mqttapi_labels_t;


typedef struct {
    ngx_uint_t                   metric;
    ngx_uint_t                   a;           /* zone, or category */
    ngx_uint_t                   action;
    ngx_uint_t                   code;
    ngx_uint_t                   word;        /* source, reason, event */
    ngx_atomic_uint_t            value;
} ngx_http_mqttapi_sample_t;


typedef struct ngx_http_mqttapi_stats_sh_s  ngx_http_mqttapi_stats_sh_t;


/* a worker's last lookup of a name through a catalog, and its label id */

typedef struct {
    void                        *catalog;
    ngx_uint_t                   id;
    size_t                       len;
    u_char                       name[NGX_HTTP_MQTTAPI_CODE_MAX_LEN];
} ngx_http_mqttapi_memo_t;


/*
 * The label index of catalog objects by their address: entries (their
 * code), actions (their name), category strings (their data)
 */

typedef struct {
    void                        *key;
    ngx_uint_t                  *id;
} ngx_http_mqttapi_ptr_t;


typedef struct {
    ngx_array_t                  pending;     /* while configuring */
    ngx_http_mqttapi_ptr_t      *slots;
    ngx_uint_t                   mask;
} ngx_http_mqttapi_ptrs_t;


typedef struct {
    ngx_array_t                  catalogs;    /* seen while merging */
    ngx_array_t                  codes_conf;  /* mqttapi_throttle_codes */

    ngx_http_mqttapi_labels_t    codes;
    ngx_http_mqttapi_labels_t    actions;
    ngx_http_mqttapi_labels_t    categories;
    ngx_http_mqttapi_labels_t    zone_names;
    ngx_array_t                  zones;       /* zone pointers, from 1 */
    ngx_http_mqttapi_ptrs_t      ptrs;
    ngx_http_mqttapi_memo_t      last_action; /* per worker */
    ngx_http_mqttapi_memo_t      last_code;

    ngx_uint_t                   nslots;      /* a power of two */
    size_t                       slot_size;

    ngx_shm_zone_t              *shm_zone;
    ngx_http_mqttapi_stats_sh_t *sh;
    u_char                      *slots;
} ngx_http_mqttapi_stats_t;


ngx_http_mqttapi_stats_t *ngx_http_mqttapi_stats_create(ngx_conf_t *cf);
ngx_int_t ngx_http_mqttapi_stats_merge(ngx_conf_t *cf,
    ngx_http_mqttapi_loc_conf_t *lcf);
ngx_int_t ngx_http_mqttapi_stats_init(ngx_conf_t *cf);

void ngx_http_mqttapi_stats_response(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err);
void ngx_http_mqttapi_stats_pass(ngx_http_request_t *r, ngx_uint_t reason);
void ngx_http_mqttapi_stats_local(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *code, ngx_uint_t reason,
    ngx_uint_t dry_run);
void ngx_http_mqttapi_stats_backoff(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_uint_t event);
void ngx_http_mqttapi_stats_delayed(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_msec_t waited);

ngx_array_t *ngx_http_mqttapi_stats_collect(ngx_http_mqttapi_stats_t *st,
    ngx_pool_t *pool);
ngx_str_t *ngx_http_mqttapi_stats_label(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_sample_t *s, ngx_uint_t field);
const char *ngx_http_mqttapi_stats_word(ngx_uint_t metric, ngx_uint_t word);
time_t ngx_http_mqttapi_stats_uptime(ngx_http_mqttapi_stats_t *st);

extern ngx_msec_t  ngx_http_mqttapi_delay_le[];
extern const char  *ngx_http_mqttapi_delay_le_names[];


/* ngx_http_mqttapi_stats_label() fields */

#define NGX_HTTP_MQTTAPI_LABEL_ZONE         0
#define NGX_HTTP_MQTTAPI_LABEL_CATEGORY     1
#define NGX_HTTP_MQTTAPI_LABEL_ACTION       2
#define NGX_HTTP_MQTTAPI_LABEL_CODE         3


#endif /* _NGX_HTTP_MQTTAPI_STATS_H_INCLUDED_ */
