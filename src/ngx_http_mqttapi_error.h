
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_ERROR_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_ERROR_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_request.h"     /* its users look up the action */


ngx_int_t ngx_http_mqttapi_error_resolve(ngx_http_request_t *r,
    ngx_http_mqttapi_catalog_t *catalog, ngx_http_mqttapi_error_t *err,
    ngx_str_t *code, ngx_http_mqttapi_entry_t *entry);


#endif /* _NGX_HTTP_MQTTAPI_ERROR_H_INCLUDED_ */
