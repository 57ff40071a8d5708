
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_ANSWER_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_ANSWER_H_INCLUDED_


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_render.h"


typedef struct ngx_http_mqttapi_answer_s  ngx_http_mqttapi_answer_t;
typedef struct ngx_http_mqttapi_note_s    ngx_http_mqttapi_note_t;


ngx_int_t ngx_http_mqttapi_answer_init_process(ngx_cycle_t *cycle);
void ngx_http_mqttapi_answer_exit_process(ngx_cycle_t *cycle);

ngx_http_mqttapi_answer_t *ngx_http_mqttapi_answer_get(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_str_t *code);
ngx_uint_t ngx_http_mqttapi_answer_ready(ngx_http_mqttapi_answer_t *a);
void ngx_http_mqttapi_answer_keep(ngx_http_request_t *r,
    ngx_http_mqttapi_answer_t *a, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body, ngx_http_mqttapi_template_t *tpl);
ngx_int_t ngx_http_mqttapi_answer_make(ngx_http_request_t *r,
    ngx_http_mqttapi_answer_t *a, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body);

ngx_http_mqttapi_note_t *ngx_http_mqttapi_note_get(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err);
ngx_uint_t ngx_http_mqttapi_note_ready(ngx_http_mqttapi_note_t *n);
void ngx_http_mqttapi_note_keep(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_note_t *n,
    ngx_http_mqttapi_error_t *err, ngx_http_mqttapi_template_t *tpl);
ngx_int_t ngx_http_mqttapi_note_make(ngx_http_request_t *r,
    ngx_http_mqttapi_note_t *n, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body);


#endif /* _NGX_HTTP_MQTTAPI_ANSWER_H_INCLUDED_ */
