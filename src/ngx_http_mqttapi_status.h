
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_STATUS_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_STATUS_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_zone.h"


#define NGX_HTTP_MQTTAPI_VERSION  "0.1.0"


/* what the status location answers */

#define NGX_HTTP_MQTTAPI_FORMAT_JSON        0
#define NGX_HTTP_MQTTAPI_FORMAT_PROMETHEUS  1
#define NGX_HTTP_MQTTAPI_FORMAT_HTML        2


/* the back-offs in effect with the most time left, at most, per zone */

#define NGX_HTTP_MQTTAPI_STATUS_TOP         20


typedef struct ngx_http_mqttapi_tops_s  ngx_http_mqttapi_tops_t;


char *ngx_http_mqttapi_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_mqttapi_status_headers(ngx_http_request_t *r,
    ngx_str_t *type, size_t len);
u_char *ngx_http_mqttapi_status_escape(u_char *p, ngx_str_t *s,
    ngx_uint_t json);

/* ngx_http_mqttapi_status_page.c */
ngx_int_t ngx_http_mqttapi_status_page(ngx_http_request_t *r);

/* ngx_http_mqttapi_status_extra.c: the JSON members of the page */
ngx_http_mqttapi_tops_t *ngx_http_mqttapi_status_tops(ngx_pool_t *pool,
    ngx_uint_t zones);
void *ngx_http_mqttapi_status_tops_zone(ngx_http_mqttapi_tops_t *tops,
    ngx_uint_t zone);
void ngx_http_mqttapi_status_top(void *data, ngx_http_mqttapi_node_t *node,
    ngx_msec_t now);
ngx_int_t ngx_http_mqttapi_status_extra(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_http_mqttapi_tops_t *tops,
    ngx_str_t *extra);


#endif /* _NGX_HTTP_MQTTAPI_STATUS_H_INCLUDED_ */
