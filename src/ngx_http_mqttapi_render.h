
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_RENDER_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_RENDER_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"


ngx_int_t ngx_http_mqttapi_render_headers(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err);
ngx_int_t ngx_http_mqttapi_render_body(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    json_t *obj, ngx_str_t *body, ngx_str_t *added);
ngx_int_t ngx_http_mqttapi_render_kept(ngx_http_request_t *r,
    ngx_http_mqttapi_error_t *err, ngx_str_t *body, ngx_str_t *members);
ngx_int_t ngx_http_mqttapi_render_envelope(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body);
ngx_int_t ngx_http_mqttapi_set_body_headers(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, size_t len, ngx_uint_t json);

#define NGX_HTTP_MQTTAPI_DELAY_NONE     0
#define NGX_HTTP_MQTTAPI_DELAY_SECONDS  1
#define NGX_HTTP_MQTTAPI_DELAY_MSEC     2

ngx_uint_t ngx_http_mqttapi_delay_header(ngx_table_elt_t *h);
u_char *ngx_http_mqttapi_write_number(u_char *p, ngx_int_t n);

ngx_int_t ngx_http_mqttapi_send_body(ngx_http_request_t *r, ngx_str_t *body,
    ngx_http_output_header_filter_pt send_header,
    ngx_http_output_body_filter_pt send_body);


#endif /* _NGX_HTTP_MQTTAPI_RENDER_H_INCLUDED_ */
