
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>


#define NGX_HTTP_MQTTAPI_CODE_MAX_LEN    128
#define NGX_HTTP_MQTTAPI_NAME_MAX_LEN    64     /* actions, categories */

/*
 * The highest quota (requests a second) the catalog takes: the zone
 * counts requests in 16-bit buckets (ngx_http_mqttapi_zone.h), exactly up
 * to this.
 */
#define NGX_HTTP_MQTTAPI_QUOTA_MAX       65535


#define NGX_HTTP_MQTTAPI_BODY_OFF      0
#define NGX_HTTP_MQTTAPI_BODY_AUGMENT  1
#define NGX_HTTP_MQTTAPI_BODY_PROBLEM  2


typedef struct ngx_http_mqttapi_catalog_s  ngx_http_mqttapi_catalog_t;
typedef struct ngx_http_mqttapi_entry_s    ngx_http_mqttapi_entry_t;


typedef struct {
    ngx_http_mqttapi_catalog_t  *catalog;     /* the built-in catalog */
    ngx_shm_zone_t              *ceiling;     /* with any mqttapi_quota */
    ngx_array_t                 *zone_refs;   /* of pointers to zone
                                                 references */
    ngx_flag_t                   enabled;     /* mqttapi on somewhere */
    void                        *stats;       /* with mqttapi_status */
    void                        *sync;        /* mqttapi_sync, or NULL */
    void                        *sync_ssl;    /* mqttapi_sync_ssl*, or NULL */
} ngx_http_mqttapi_main_conf_t;


typedef struct {
    ngx_flag_t                   enable;
    ngx_uint_t                   body;
    ngx_flag_t                   normalize_status;
    size_t                       max_body_size;
    ngx_str_t                    problem_base_uri;
    ngx_http_complex_value_t    *host_id;

    ngx_array_t                 *catalog_files;  /* of ngx_str_t */
    ngx_http_mqttapi_catalog_t  *catalog;

    ngx_shm_zone_t              *throttle_zone;
    ngx_shm_zone_t              *quota_zone;
    ngx_msec_t                   quota_delay;     /* mqttapi_quota delay= */
    void                        *throttle_ref;    /* where they were set */
    void                        *quota_ref;
    ngx_uint_t                   throttle_status;
    ngx_flag_t                   throttle_dry_run;
    ngx_uint_t                   throttle_log_level;
    ngx_array_t                 *throttle_codes;  /* NULL: the catalog's */
} ngx_http_mqttapi_loc_conf_t;


/* what the gateway knows about one error response */

typedef struct {
    ngx_str_t                    code;        /* validated, or empty */
    ngx_http_mqttapi_entry_t    *entry;       /* catalog entry, or NULL */
    void                        *action;      /* the request's catalog
                                                 action, or NULL */
    ngx_str_t                    param;       /* pattern capture */
    ngx_str_t                    category;
    ngx_uint_t                   status;      /* sent status */
    ngx_uint_t                   upstream_status;
    ngx_int_t                    retry_after; /* seconds, -1: none */
    ngx_int_t                    upstream_delay;  /* its Retry-After, s */
    ngx_msec_t                   retry_after_ms;  /* local rejects */
    ngx_uint_t                   lang;        /* catalog language index */
    unsigned                     retryable:1;
    unsigned                     throttle:1;
    unsigned                     gateway:1;
    unsigned                     upstream_retry_after:1;
    unsigned                     local:1;     /* answered by the gateway */
} ngx_http_mqttapi_error_t;


#define NGX_HTTP_MQTTAPI_STATE_NONE     0
#define NGX_HTTP_MQTTAPI_STATE_COLLECT  1    /* buffering an error body */
#define NGX_HTTP_MQTTAPI_STATE_PASS     2    /* passed through unchanged */
#define NGX_HTTP_MQTTAPI_STATE_DONE     3    /* annotated or answered */


#define NGX_HTTP_MQTTAPI_THROTTLE_NONE     0
#define NGX_HTTP_MQTTAPI_THROTTLE_PASS     1
#define NGX_HTTP_MQTTAPI_THROTTLE_REJECTED 2
#define NGX_HTTP_MQTTAPI_THROTTLE_DRY_RUN  3
#define NGX_HTTP_MQTTAPI_THROTTLE_PROBE    4


typedef struct ngx_http_mqttapi_zone_s  ngx_http_mqttapi_zone_t;


typedef struct {
    ngx_uint_t                   state;

    u_char                      *buf;         /* the collected body */
    size_t                       len;
    size_t                       size;

    ngx_http_mqttapi_error_t     error;
    ngx_uint_t                   origin;      /* NGX_HTTP_MQTTAPI_GW_* */

    /* the upstream's own finalizer, watched while the body is collected */
    void                       (*upstream_finalize)(ngx_http_request_t *r,
                                                    ngx_int_t rc);

    unsigned                     json:1;      /* JSON content type */
    unsigned                     annotated:1;
    unsigned                     upstream_timedout:1;

    /* client-side rate limiting */

    ngx_http_mqttapi_zone_t     *zone;
    ngx_str_t                    key;         /* back-off node key */
    uint32_t                     hash;
    ngx_msec_t                   probe;       /* probe stamp, 0: none */
    ngx_uint_t                   throttle;    /* NGX_HTTP_MQTTAPI_THROTTLE_* */
    void                        *wait;        /* delay=: the request's slot */
    unsigned                     checked:1;
    unsigned                     observed:1;
} ngx_http_mqttapi_ctx_t;


ngx_http_mqttapi_ctx_t *ngx_http_mqttapi_get_ctx(ngx_http_request_t *r);
ngx_http_mqttapi_ctx_t *ngx_http_mqttapi_create_ctx(ngx_http_request_t *r);


extern ngx_module_t  ngx_http_mqttapi_module;


#endif /* _NGX_HTTP_MQTTAPI_H_INCLUDED_ */
