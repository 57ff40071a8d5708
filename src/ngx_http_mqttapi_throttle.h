
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_THROTTLE_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_THROTTLE_H_INCLUDED_


#include "ngx_http_mqttapi.h"


/* why a request is answered locally, by the back-off or a quota check */

typedef struct {
    ngx_str_t                    code;
    ngx_msec_t                   left;
    ngx_uint_t                   reason;      /* NGX_HTTP_MQTTAPI_LOCAL_* */
    unsigned                     quiet:1;     /* not the window's first */
} ngx_http_mqttapi_verdict_t;


ngx_int_t ngx_http_mqttapi_throttle_init(ngx_conf_t *cf);
void ngx_http_mqttapi_throttle_observe(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_http_mqttapi_error_t *err);
ngx_uint_t ngx_http_mqttapi_throttle_code(ngx_http_mqttapi_loc_conf_t *lcf,
    ngx_http_mqttapi_error_t *err);
ngx_int_t ngx_http_mqttapi_throttle_reject(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_str_t *code, ngx_msec_t left);


#endif /* _NGX_HTTP_MQTTAPI_THROTTLE_H_INCLUDED_ */
