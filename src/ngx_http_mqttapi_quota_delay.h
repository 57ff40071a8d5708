
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_QUOTA_DELAY_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_QUOTA_DELAY_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_zone.h"


#define NGX_HTTP_MQTTAPI_QUOTA_DELAY_MAX  60000      /* delay=60s */

/* no slot: the quota's horizon is passed (ngx_http_mqttapi_slot_*) */
#define NGX_HTTP_MQTTAPI_SLOT_NONE        ((ngx_msec_t) -1)


/* a request waiting for its slot, in a cleanup of its pool */

typedef struct {
    ngx_http_request_t          *request;
    ngx_http_mqttapi_zone_t     *quota;       /* the location's */
    ngx_http_mqttapi_zone_t     *zone;        /* the key's slot, or NULL */
    ngx_http_mqttapi_zone_t     *ceiling;     /* the ceiling's, or NULL */
    ngx_str_t                    key;
    ngx_str_t                    api;
    ngx_msec_t                   at;          /* the slot, local ms */
    ngx_msec_t                   start;
    ngx_msec_t                   waited;      /* ms, once let go */
    unsigned                     waiting:1;
    unsigned                     released:1;  /* back-off not checked yet */
    unsigned                     done:1;      /* let go */
} ngx_http_mqttapi_wait_t;


/* booking, with the node's zone locked */

ngx_msec_t ngx_http_mqttapi_slot_find(ngx_http_mqttapi_quota_node_t *q,
    ngx_uint_t limit, ngx_msec_t now, ngx_msec_t t);
void ngx_http_mqttapi_slot_take(ngx_http_mqttapi_quota_node_t *q,
    ngx_msec_t now, ngx_msec_t t);
ngx_msec_t ngx_http_mqttapi_slot_next(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_quota_node_t *q, ngx_uint_t limit, ngx_msec_t now,
    ngx_msec_t t);
void ngx_http_mqttapi_slot_take_next(ngx_http_mqttapi_quota_node_t *q);

/* waiting */

ngx_http_mqttapi_wait_t *ngx_http_mqttapi_wait_create(ngx_http_request_t *r);
ngx_int_t ngx_http_mqttapi_wait(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_msec_t delay);
ngx_int_t ngx_http_mqttapi_wait_released(ngx_http_mqttapi_ctx_t *ctx);


#endif /* _NGX_HTTP_MQTTAPI_QUOTA_DELAY_H_INCLUDED_ */
