
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_CATALOG_LOAD_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_CATALOG_LOAD_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"


ngx_http_mqttapi_catalog_t *ngx_http_mqttapi_catalog_builtin(ngx_conf_t *cf);
ngx_http_mqttapi_catalog_t *ngx_http_mqttapi_catalog_load(ngx_conf_t *cf,
    ngx_http_mqttapi_catalog_t *base, ngx_str_t *file);


#endif /* _NGX_HTTP_MQTTAPI_CATALOG_LOAD_H_INCLUDED_ */
