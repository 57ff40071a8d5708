
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_quota_delay.h"
#include "ngx_http_mqttapi_request.h"
#include "ngx_http_mqttapi_variables.h"


/*
 * $mqttapi_error_code, $mqttapi_error_category, $mqttapi_retryable,
 * $mqttapi_retry_after and $mqttapi_error_parameter: what the gateway
 * said about the error of this request, empty ("not found") for responses
 * it did not annotate; $mqttapi_throttle: the rate limiting verdict.
 * They are evaluated from the context kept in a pool cleanup, so they work
 * in the log phase and after error_page.  $mqttapi_action: the API action
 * the request names, in either of its places, whatever the gateway did.
 * $mqttapi_quota_delay: the milliseconds the request waited for its
 * quota's slot (delay=), empty when it did not wait.
 */


#define NGX_HTTP_MQTTAPI_VAR_CODE         0
#define NGX_HTTP_MQTTAPI_VAR_CATEGORY     1
#define NGX_HTTP_MQTTAPI_VAR_RETRYABLE    2
#define NGX_HTTP_MQTTAPI_VAR_RETRY_AFTER  3
#define NGX_HTTP_MQTTAPI_VAR_PARAMETER    4


static ngx_int_t ngx_http_mqttapi_error_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mqttapi_throttle_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mqttapi_action_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mqttapi_delay_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mqttapi_variable_value(ngx_http_variable_value_t *v,
    ngx_str_t *value);


static ngx_http_variable_t  ngx_http_mqttapi_vars[] = {

    { ngx_string("mqttapi_error_code"), NULL,
      ngx_http_mqttapi_error_variable, NGX_HTTP_MQTTAPI_VAR_CODE,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mqttapi_error_category"), NULL,
      ngx_http_mqttapi_error_variable, NGX_HTTP_MQTTAPI_VAR_CATEGORY,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mqttapi_retryable"), NULL,
      ngx_http_mqttapi_error_variable, NGX_HTTP_MQTTAPI_VAR_RETRYABLE,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mqttapi_retry_after"), NULL,
      ngx_http_mqttapi_error_variable, NGX_HTTP_MQTTAPI_VAR_RETRY_AFTER,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mqttapi_error_parameter"), NULL,
      ngx_http_mqttapi_error_variable, NGX_HTTP_MQTTAPI_VAR_PARAMETER,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mqttapi_throttle"), NULL,
      ngx_http_mqttapi_throttle_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mqttapi_action"), NULL,
      ngx_http_mqttapi_action_variable, 0, 0, 0 },

    { ngx_string("mqttapi_quota_delay"), NULL,
      ngx_http_mqttapi_delay_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_mqttapi_throttle_states[] = {
    ngx_null_string,
    ngx_string("pass"),
    ngx_string("rejected"),
    ngx_string("dry_run"),
    ngx_string("probe")
};


ngx_int_t
ngx_http_mqttapi_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_mqttapi_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_error_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                    *p;
    ngx_str_t                  value;
    ngx_http_mqttapi_ctx_t    *ctx;
    ngx_http_mqttapi_error_t  *err;

    ctx = ngx_http_mqttapi_get_ctx(r);

    if (ctx == NULL || !ctx->annotated) {
        v->not_found = 1;
        return NGX_OK;
    }

    err = &ctx->error;

    switch (data) {

    case NGX_HTTP_MQTTAPI_VAR_CODE:
        value = err->code;
        break;

    case NGX_HTTP_MQTTAPI_VAR_CATEGORY:
        value = err->category;
        break;

    case NGX_HTTP_MQTTAPI_VAR_RETRYABLE:
        if (err->retryable) {
            ngx_str_set(&value, "true");

        } else {
            ngx_str_set(&value, "false");
        }

        break;

    case NGX_HTTP_MQTTAPI_VAR_RETRY_AFTER:
        if (!err->retryable || err->retry_after < 0) {
            ngx_str_null(&value);
            break;
        }

        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        value.data = p;
        value.len = ngx_sprintf(p, "%i", err->retry_after) - p;
        break;

    default: /* NGX_HTTP_MQTTAPI_VAR_PARAMETER */
        value = err->param;
        break;
    }

    return ngx_http_mqttapi_variable_value(v, &value);
}


static ngx_int_t
ngx_http_mqttapi_throttle_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t               *state;
    ngx_http_mqttapi_ctx_t  *ctx;

    ctx = ngx_http_mqttapi_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    /* NGX_HTTP_MQTTAPI_THROTTLE_NONE: the empty string, not found */

    state = &ngx_http_mqttapi_throttle_states[ctx->throttle];

    return ngx_http_mqttapi_variable_value(v, state);
}


/*
 * The x-acs-action header, else the Action query argument, when it is a
 * name (letters, digits, '-' and '_', as every OpenAPI action is): what
 * a client sends there may end up in a log line or a header, anything
 * else is not found.
 */

static ngx_int_t
ngx_http_mqttapi_action_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t  action;

    if (ngx_http_mqttapi_request_action_name(r, &action) != NGX_OK) {
        ngx_str_null(&action);

    } else if (ngx_http_mqttapi_valid_name(&action) != NGX_OK) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: the request's action is not a name");
        ngx_str_null(&action);
    }

    return ngx_http_mqttapi_variable_value(v, &action);
}


/* a value, or "not found" for an empty one */

static ngx_int_t
ngx_http_mqttapi_variable_value(ngx_http_variable_value_t *v,
    ngx_str_t *value)
{
    if (value->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = value->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = value->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_delay_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p;
    ngx_http_mqttapi_ctx_t   *ctx;
    ngx_http_mqttapi_wait_t  *w;

    ctx = ngx_http_mqttapi_get_ctx(r);

    if (ctx == NULL || ctx->wait == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    w = ctx->wait;

    if (!w->done) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%M", w->waited) - p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}
