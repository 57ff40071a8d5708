
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"


/*
 * The request context lives in a pool cleanup as well as in r->ctx:
 * error_page and other internal redirects wipe r->ctx, but what the
 * gateway learned about the error (for variables in the log phase, for
 * the throttle's verdict) must survive them, the way realip keeps the
 * original address.
 */

static void ngx_http_mqttapi_ctx_cleanup(void *data);


ngx_http_mqttapi_ctx_t *
ngx_http_mqttapi_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_mqttapi_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_mqttapi_module);

    if (ctx == NULL && (r->main->internal || r->main->filter_finalize)) {
        for (cln = r->main->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_mqttapi_ctx_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r->main, ctx, ngx_http_mqttapi_module);

                ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "mqttapi ctx: recovered after a redirect");
                break;
            }
        }
    }

    return ctx;
}


ngx_http_mqttapi_ctx_t *
ngx_http_mqttapi_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_mqttapi_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_mqttapi_module);
    if (ctx) {
        return ctx;
    }

    if (r->main->internal || r->main->filter_finalize) {
        ctx = ngx_http_mqttapi_get_ctx(r);
        if (ctx) {
            return ctx;
        }
    }

    cln = ngx_pool_cleanup_add(r->main->pool, sizeof(ngx_http_mqttapi_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_mqttapi_ctx_t));

    ctx->error.retry_after = -1;

    cln->handler = ngx_http_mqttapi_ctx_cleanup;

    ngx_http_set_ctx(r->main, ctx, ngx_http_mqttapi_module);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi ctx: created");

    return ctx;
}


static void
ngx_http_mqttapi_ctx_cleanup(void *data)
{
    /* nothing to free: the cleanup only marks the context */
}
