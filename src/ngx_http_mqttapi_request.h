
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_REQUEST_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_REQUEST_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"


ngx_int_t ngx_http_mqttapi_request_arg(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value);
ngx_http_mqttapi_action_t *ngx_http_mqttapi_request_action(
    ngx_http_request_t *r, ngx_http_mqttapi_catalog_t *catalog);
ngx_int_t ngx_http_mqttapi_request_action_name(ngx_http_request_t *r,
    ngx_str_t *action);


#endif /* _NGX_HTTP_MQTTAPI_REQUEST_H_INCLUDED_ */
