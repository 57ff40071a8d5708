
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_FILTER_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_FILTER_H_INCLUDED_


#include "ngx_http_mqttapi.h"


ngx_int_t ngx_http_mqttapi_filter_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_MQTTAPI_FILTER_H_INCLUDED_ */
