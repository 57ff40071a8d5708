
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_QUOTA_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_QUOTA_H_INCLUDED_


#include "ngx_http_mqttapi.h"


ngx_int_t ngx_http_mqttapi_quota_check(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_str_t *code, ngx_msec_t *left,
    ngx_uint_t *reason);


#endif /* _NGX_HTTP_MQTTAPI_QUOTA_H_INCLUDED_ */
