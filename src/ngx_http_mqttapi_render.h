
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_RENDER_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_RENDER_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"


/* what stands in a hole of a kept answer */

#define NGX_HTTP_MQTTAPI_HOLE_NONE     0
#define NGX_HTTP_MQTTAPI_HOLE_ID       1      /* the RequestId */
#define NGX_HTTP_MQTTAPI_HOLE_SECONDS  2      /* the delay in seconds */
#define NGX_HTTP_MQTTAPI_HOLE_MSEC     3      /* the delay in milliseconds */

#define NGX_HTTP_MQTTAPI_TEMPLATE_HOLES    4
#define NGX_HTTP_MQTTAPI_TEMPLATE_HEADERS  16


typedef struct {
    size_t                       at;          /* in the body */
    size_t                       len;
    ngx_uint_t                   hole;
} ngx_http_mqttapi_hole_t;


/*
 * What a rendering wrote, for a caller that may keep it: the headers it
 * pushed and which of them hold a delay, where the RequestId and the delay
 * stand in the body, and the members it added after the upstream's.  More
 * holes or headers than fit set "overflow": then it cannot be kept.
 */

typedef struct {
    ngx_str_t                    added;
    ngx_uint_t                   nholes;
    ngx_http_mqttapi_hole_t      holes[NGX_HTTP_MQTTAPI_TEMPLATE_HOLES];
    ngx_uint_t                   nheaders;
    ngx_table_elt_t             *headers[NGX_HTTP_MQTTAPI_TEMPLATE_HEADERS];
    ngx_uint_t                   header_holes[
                                     NGX_HTTP_MQTTAPI_TEMPLATE_HEADERS];
    unsigned                     overflow:1;
} ngx_http_mqttapi_template_t;


ngx_int_t ngx_http_mqttapi_render_headers(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    ngx_http_mqttapi_template_t *tpl);
ngx_int_t ngx_http_mqttapi_render_body(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    json_t *obj, ngx_str_t *body, ngx_http_mqttapi_template_t *tpl);
ngx_int_t ngx_http_mqttapi_render_envelope(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body, ngx_http_mqttapi_template_t *tpl);
ngx_int_t ngx_http_mqttapi_render_header(ngx_http_request_t *r,
    ngx_http_mqttapi_template_t *tpl, ngx_str_t *key, ngx_str_t *value,
    ngx_uint_t hole);
ngx_int_t ngx_http_mqttapi_render_kept(ngx_http_request_t *r,
    ngx_http_mqttapi_error_t *err, ngx_str_t *body, ngx_str_t *members);
ngx_int_t ngx_http_mqttapi_set_body_headers(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, size_t len, ngx_uint_t json);

u_char *ngx_http_mqttapi_write_number(u_char *p, ngx_int_t n);
u_char *ngx_http_mqttapi_write_number_back(u_char *last, ngx_int_t n);

ngx_int_t ngx_http_mqttapi_send_body(ngx_http_request_t *r, ngx_str_t *body,
    ngx_http_output_header_filter_pt send_header,
    ngx_http_output_body_filter_pt send_body);


#endif /* _NGX_HTTP_MQTTAPI_RENDER_H_INCLUDED_ */
