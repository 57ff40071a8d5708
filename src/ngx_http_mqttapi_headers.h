
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_HEADERS_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_HEADERS_H_INCLUDED_


#include "ngx_http_mqttapi.h"


ngx_table_elt_t *ngx_http_mqttapi_header(ngx_list_t *headers,
    ngx_str_t *name, ngx_table_elt_t *after, ngx_uint_t prefix);
ngx_int_t ngx_http_mqttapi_arg(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value);


#endif /* _NGX_HTTP_MQTTAPI_HEADERS_H_INCLUDED_ */
