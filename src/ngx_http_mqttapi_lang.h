
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_LANG_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_LANG_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"


ngx_uint_t ngx_http_mqttapi_negotiate_lang(ngx_http_request_t *r,
    ngx_http_mqttapi_catalog_t *catalog);


#endif /* _NGX_HTTP_MQTTAPI_LANG_H_INCLUDED_ */
