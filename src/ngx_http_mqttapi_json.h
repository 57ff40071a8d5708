
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_JSON_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_JSON_H_INCLUDED_


#include "ngx_http_mqttapi.h"


ngx_int_t ngx_http_mqttapi_json_fast(ngx_http_request_t *r, ngx_str_t *body,
    ngx_str_t *code, json_t **obj);
ngx_int_t ngx_http_mqttapi_json_quote(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);


#endif /* _NGX_HTTP_MQTTAPI_JSON_H_INCLUDED_ */
