
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_ID_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_ID_H_INCLUDED_


#include "ngx_http_mqttapi.h"


/* the length of a RequestId the module makes (as nginx's $request_id) */
#define NGX_HTTP_MQTTAPI_ID_LEN  32


ngx_int_t ngx_http_mqttapi_id_init(ngx_conf_t *cf);
ngx_int_t ngx_http_mqttapi_id_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_mqttapi_request_id(ngx_http_request_t *r, ngx_str_t *id,
    u_char *buf);


#endif /* _NGX_HTTP_MQTTAPI_ID_H_INCLUDED_ */
