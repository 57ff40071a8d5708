
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_QUOTA_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_QUOTA_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_throttle.h"


ngx_int_t ngx_http_mqttapi_quota_check(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_verdict_t *v);


#endif /* _NGX_HTTP_MQTTAPI_QUOTA_H_INCLUDED_ */
