
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_headers.h"
#include "ngx_http_mqttapi_lang.h"
#include "ngx_http_mqttapi_request.h"


/*
 * Resolving an error: from the code the upstream sent (or a gateway code)
 * and the request, what the gateway says about it: catalog entry, pattern
 * capture, category, retryability, delay and language.  Nothing here
 * trusts the code: it is copied only once it passed the character check.
 */


static ngx_str_t  ngx_http_mqttapi_gateway = ngx_string("gateway");
static ngx_str_t  ngx_http_mqttapi_unknown = ngx_string("unknown");


static ngx_int_t ngx_http_mqttapi_upstream_retry_after(ngx_http_request_t *r);
static ngx_uint_t ngx_http_mqttapi_retryable_status(ngx_uint_t status);


ngx_int_t
ngx_http_mqttapi_error_resolve(ngx_http_request_t *r,
    ngx_http_mqttapi_catalog_t *catalog, ngx_http_mqttapi_error_t *err,
    ngx_str_t *code, ngx_http_mqttapi_entry_t *entry)
{
    ngx_int_t                   delay, dflt;
    ngx_http_mqttapi_action_t  *action;

    err->entry = entry;
    err->action = NULL;
    err->category = ngx_http_mqttapi_unknown;
    err->retry_after = -1;
    ngx_str_null(&err->code);
    ngx_str_null(&err->param);

    if (entry) {
        err->code = entry->code;
        err->gateway = 1;

    } else if (code
               && ngx_http_mqttapi_valid_code(code->data, code->len) == NGX_OK)
    {
        err->code.len = code->len;
        err->code.data = ngx_pstrdup(r->pool, code);
        if (err->code.data == NULL) {
            return NGX_ERROR;
        }

        err->entry = ngx_http_mqttapi_catalog_find(catalog, &err->code,
                                                   &err->param, r->pool);
    }

    entry = err->entry;

    if (err->gateway) {
        err->category = ngx_http_mqttapi_gateway;

    } else {
        action = ngx_http_mqttapi_request_action(r, catalog);
        err->action = action;

        if (action && action->category.len) {
            err->category = action->category;

        } else if (entry && entry->categories
                   && entry->categories->nelts == 1)
        {
            err->category = *(ngx_str_t *) entry->categories->elts;
        }
    }

    /*
     * The upstream's Retry-After is the floor of a back-off whatever the
     * catalog says of the code (mqttapi_throttle_codes may name any code);
     * the response advertises it only for a retryable one.
     */

    delay = ngx_http_mqttapi_upstream_retry_after(r);

    err->upstream_delay = (delay >= 0) ? delay : -1;

    if (entry) {
        err->retryable = entry->retryable;
        err->throttle = entry->throttle;
        dflt = entry->retry_after;

    } else {
        /* a code the catalog does not know: what the status says */
        err->retryable = ngx_http_mqttapi_retryable_status(
                                                    r->headers_out.status);
        dflt = 1;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: code \"%V\" %s, retryable: %ui, delay: %i",
                   &err->code, entry ? "in the catalog" : "unknown",
                   (ngx_uint_t) err->retryable, delay);

    if (err->retryable) {
        err->retry_after = (delay >= 0) ? delay : dflt;

        if (delay != NGX_DECLINED) {
            err->upstream_retry_after = 1;
        }
    }

    err->lang = ngx_http_mqttapi_negotiate_lang(r, catalog);

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_upstream_retry_after(ngx_http_request_t *r)
{
    time_t            t, now;
    ngx_int_t         n;
    ngx_table_elt_t  *h;

    static ngx_str_t  name = ngx_string("Retry-After");

    h = ngx_http_mqttapi_header(&r->headers_out.headers, &name, NULL, 0);

    if (h == NULL) {
        return NGX_DECLINED;
    }

    /* delay-seconds, or an HTTP-date: the delay until then */

    n = ngx_atoi(h->value.data, h->value.len);

    if (n == NGX_ERROR) {
        t = ngx_parse_http_time(h->value.data, h->value.len);

        if (t == NGX_ERROR) {
            return NGX_ERROR;
        }

        now = ngx_time();
        n = (t > now) ? (ngx_int_t) (t - now) : 0;
    }

    return (n >= 0 && n <= 86400) ? n : NGX_ERROR;
}


/* whether an error of this status is worth retrying as it stands */

static ngx_uint_t
ngx_http_mqttapi_retryable_status(ngx_uint_t status)
{
    switch (status) {

    case NGX_HTTP_TOO_MANY_REQUESTS:
    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_SERVICE_UNAVAILABLE:
    case NGX_HTTP_GATEWAY_TIME_OUT:
        return 1;

    default:
        return 0;
    }
}
