
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_answer.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_filter.h"
#include "ngx_http_mqttapi_headers.h"
#include "ngx_http_mqttapi_json.h"
#include "ngx_http_mqttapi_render.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_throttle.h"


/*
 * Deciding: the header and body filters.  An error response of the main
 * request (status 400-599, not HEAD, not encoded, not known to be over
 * mqttapi_max_body_size) has its header held back and its body copied
 * until the last buffer; then it is annotated (a JSON object with a string
 * "Code", whatever the upstream's content type says), normalized into the
 * envelope (anything else that is not JSON by its type), or sent on
 * unchanged (unparsable JSON, or over the limit mid-stream).  Nothing
 * else is touched: success responses never reach the body collection.
 */


static ngx_int_t ngx_http_mqttapi_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_mqttapi_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_mqttapi_collect(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_http_mqttapi_loc_conf_t *lcf,
    ngx_buf_t *b);
static ngx_int_t ngx_http_mqttapi_finish(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_uint_t aborted);
static void ngx_http_mqttapi_aborted(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx);
static ngx_int_t ngx_http_mqttapi_parse(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_str_t *body, ngx_str_t *code,
    json_t **obj);
static ngx_int_t ngx_http_mqttapi_resolve(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_http_mqttapi_loc_conf_t *lcf,
    ngx_str_t *code);
static ngx_int_t ngx_http_mqttapi_annotate(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_http_mqttapi_loc_conf_t *lcf,
    json_t *obj, ngx_str_t *body);
static ngx_int_t ngx_http_mqttapi_fail(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx);
static void ngx_http_mqttapi_upstream_finalize(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_mqttapi_pass(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_chain_t *rest, const char *reason);
static ngx_int_t ngx_http_mqttapi_send(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_uint_t ngx_http_mqttapi_json_content_type(ngx_http_request_t *r);
static void ngx_http_mqttapi_json_cleanup(void *data);
static ngx_int_t ngx_http_mqttapi_error_page_handler(ngx_http_request_t *r);
static ngx_http_mqttapi_loc_conf_t *ngx_http_mqttapi_filter_conf(
    ngx_http_request_t *r);
static void ngx_http_mqttapi_error_page_cleanup(void *data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_mqttapi_filter_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_mqttapi_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_mqttapi_body_filter;

    /* added after the rewrite module's: runs before its "return" */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_mqttapi_error_page_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_header_filter(ngx_http_request_t *r)
{
    const char                   *reason;
    ngx_http_upstream_t          *u;
    ngx_http_mqttapi_ctx_t       *ctx;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    lcf = ngx_http_mqttapi_filter_conf(r);

    if (!lcf->enable) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_mqttapi_get_ctx(r);

    if (ctx && ctx->state != NGX_HTTP_MQTTAPI_STATE_NONE) {
        /* answered locally, or already seen before an internal redirect */
        return ngx_http_next_header_filter(r);
    }

    reason = NULL;

    if (r->headers_out.status < NGX_HTTP_BAD_REQUEST
        || r->headers_out.status > 599)
    {
        reason = "";

    } else if (r->method == NGX_HTTP_HEAD) {
        reason = "a HEAD response";
        ngx_http_mqttapi_stats_pass(r, NGX_HTTP_MQTTAPI_PASS_HEAD);

    } else if (r->headers_out.content_encoding
               && r->headers_out.content_encoding->value.len)
    {
        reason = "an encoded body";
        ngx_http_mqttapi_stats_pass(r, NGX_HTTP_MQTTAPI_PASS_ENCODED);

    } else if (r->headers_out.content_length_n > (off_t) lcf->max_body_size) {
        reason = "a body over mqttapi_max_body_size";
        ngx_http_mqttapi_stats_pass(r, NGX_HTTP_MQTTAPI_PASS_TOO_LARGE);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: status %ui, %s", r->headers_out.status,
                   reason ? "not inspected" : "collecting the body");

    if (reason) {
        /* not inspected: for the back-off, a clean answer */

        ngx_http_mqttapi_throttle_observe(r, ctx, NULL);

        if (reason[0]) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "mqttapi: passing through an error response: %s",
                          reason);
        }

        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_mqttapi_create_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->state = NGX_HTTP_MQTTAPI_STATE_COLLECT;
    ctx->json = ngx_http_mqttapi_json_content_type(r);

    /*
     * err_status is set when nginx itself made the response, and also
     * when error_page intercepted the upstream's error: then it is the
     * upstream's status, and the error is still the upstream's.  Without
     * r->upstream nginx made it before any upstream was used (it stays
     * set across error_page redirects).
     */

    u = r->upstream;

    if (u && u->headers_in.status_n
        && (r->err_status == 0 || r->err_status == u->headers_in.status_n))
    {
        ctx->origin = NGX_HTTP_MQTTAPI_GW_UPSTREAM;
        ctx->error.upstream_status = u->headers_in.status_n;

    } else if (u) {
        ctx->origin = NGX_HTTP_MQTTAPI_GW_NGINX;

    } else {
        /* limit_req, deny, return...: the upstream was never involved */
        ctx->origin = NGX_HTTP_MQTTAPI_GW_LOCAL;
    }

    /*
     * Why an upstream failed mid-body is known when the upstream is
     * finalized, while its connection is still there: the finalizer is
     * watched for a timed out read.
     */

    if (u && u->peer.connection && u->finalize_request
        && u->finalize_request != ngx_http_mqttapi_upstream_finalize)
    {
        ctx->upstream_finalize = u->finalize_request;
        u->finalize_request = ngx_http_mqttapi_upstream_finalize;
    }

    r->main_filter_need_in_memory = 1;
    r->allow_ranges = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t                     rc;
    ngx_buf_t                    *b;
    ngx_chain_t                  *cl;
    ngx_http_mqttapi_ctx_t       *ctx;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_mqttapi_module);

    if (ctx == NULL || ctx->state != NGX_HTTP_MQTTAPI_STATE_COLLECT) {
        return ngx_http_next_body_filter(r, in);
    }

    lcf = ngx_http_mqttapi_filter_conf(r);

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        rc = ngx_http_mqttapi_collect(r, ctx, lcf, b);

        if (rc == NGX_ERROR) {
            return ngx_http_mqttapi_fail(r, ctx);
        }

        if (rc == NGX_DECLINED) {
            ngx_http_mqttapi_stats_pass(r,
                ngx_buf_in_memory(b) ? NGX_HTTP_MQTTAPI_PASS_TOO_LARGE
                                     : NGX_HTTP_MQTTAPI_PASS_NOT_IN_MEMORY);
            return ngx_http_mqttapi_pass(r, ctx, cl,
                                         ngx_buf_in_memory(b)
                                         ? "the body is over "
                                           "mqttapi_max_body_size"
                                         : "the body is not in memory");
        }

        if (b->last_buf || b->last_in_chain) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "mqttapi: the whole body, %uz bytes", ctx->len);

            return ngx_http_mqttapi_finish(r, ctx, 0);
        }

        /*
         * An empty flush after the upstream connection is gone: the
         * upstream failed mid-body (closed, reset, timed out: see
         * ngx_http_mqttapi_upstream_finalize()), and the request is about
         * to be terminated.
         */

        if (b->flush && ngx_buf_size(b) == 0
            && r->upstream && r->upstream->peer.connection == NULL)
        {
            return ngx_http_mqttapi_finish(r, ctx, 1);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_collect(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_buf_t *b)
{
    u_char  *p;
    size_t   size, want;

    if (!ngx_buf_in_memory(b)) {
        return ngx_buf_size(b) ? NGX_DECLINED : NGX_OK;
    }

    size = b->last - b->pos;

    if (size == 0) {
        return NGX_OK;
    }

    if (ctx->len + size > lcf->max_body_size) {
        return NGX_DECLINED;
    }

    if (ctx->len + size > ctx->size) {

        if (r->headers_out.content_length_n > 0 && ctx->size == 0) {
            want = (size_t) r->headers_out.content_length_n;

        } else {
            want = ngx_max(ctx->size * 2, 4096);
        }

        want = ngx_max(want, ctx->len + size);
        want = ngx_min(want, lcf->max_body_size);

        p = ngx_pnalloc(r->pool, want);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ctx->len) {
            ngx_memcpy(p, ctx->buf, ctx->len);
        }

        ctx->buf = p;
        ctx->size = want;
    }

    ngx_memcpy(ctx->buf + ctx->len, b->pos, size);
    ctx->len += size;

    /* the copy is ours: the buffer goes back to its owner as consumed */

    b->pos = b->last;

    if (b->in_file) {
        b->file_pos = b->file_last;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_finish(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx,
    ngx_uint_t aborted)
{
    json_t                       *obj;
    ngx_int_t                     rc;
    ngx_str_t                     body, code;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    lcf = ngx_http_mqttapi_filter_conf(r);

    body.data = ctx->buf;
    body.len = ctx->len;

    if (aborted) {
        ngx_http_mqttapi_aborted(r, ctx);
    }

    rc = ngx_http_mqttapi_parse(r, ctx, &body, &code, &obj);

    if (rc == NGX_ERROR) {
        return ngx_http_mqttapi_fail(r, ctx);
    }

    if (rc == NGX_DONE) {
        return ngx_http_mqttapi_pass(r, ctx, NULL, NULL);
    }

    rc = ngx_http_mqttapi_resolve(r, ctx, lcf, (rc == NGX_OK) ? &code : NULL);

    if (rc == NGX_ERROR) {
        return ngx_http_mqttapi_fail(r, ctx);
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_mqttapi_pass(r, ctx, NULL,
                                     "no gateway code for the status");
    }

    if (ngx_http_mqttapi_annotate(r, ctx, lcf, obj, &body) != NGX_OK) {
        return ngx_http_mqttapi_fail(r, ctx);
    }

    ngx_http_mqttapi_stats_response(r, lcf, &ctx->error);

    ctx->state = NGX_HTTP_MQTTAPI_STATE_DONE;
    ctx->annotated = 1;

    return ngx_http_mqttapi_send(r, &body);
}


/*
 * What came before the upstream failed mid-body is not an answer: the
 * gateway reports it, as a timeout when the upstream's read timed out,
 * else (closed, reset) as a failed upstream.
 */

static void
ngx_http_mqttapi_aborted(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: the upstream failed mid-body, timed out: %ui",
                   (ngx_uint_t) ctx->upstream_timedout);

    r->keepalive = 0;
    r->headers_out.status = ctx->upstream_timedout
                            ? NGX_HTTP_GATEWAY_TIME_OUT
                            : NGX_HTTP_BAD_GATEWAY;
    r->headers_out.status_line.len = 0;

    ctx->origin = NGX_HTTP_MQTTAPI_GW_NGINX;
    ctx->json = 0;
}


/*
 * The collected body read: NGX_OK, an error object with a string "Code"
 * (in *code; *obj as ngx_http_mqttapi_json_fast() says); NGX_DECLINED,
 * not such an object, to be normalized into the envelope; NGX_DONE, JSON
 * by its type that is not such an object, passed through unchanged.  A
 * body of the upstream under another type (HTML, text, none) is read as
 * JSON too when it looks like an object: the SDKs read every error body
 * whatever its type.
 */

static ngx_int_t
ngx_http_mqttapi_parse(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx,
    ngx_str_t *body, ngx_str_t *code, json_t **obj)
{
    u_char              *p, *last, *near;
    json_t              *v;
    ngx_int_t            rc;
    json_error_t         jerr;
    ngx_pool_cleanup_t  *cln;

    *obj = NULL;

    last = body->data + body->len;

    for (p = body->data; p < last; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            break;
        }
    }

    /* an empty body says nothing, whatever its type */

    if (p == last
        || (!ctx->json
            && (ctx->origin != NGX_HTTP_MQTTAPI_GW_UPSTREAM || *p != '{')))
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: not a JSON error body");
        return NGX_DECLINED;
    }

    /* the common body without jansson; anything else with it */

    rc = ngx_http_mqttapi_json_fast(r, body, code, obj);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: fast scan: %i, JSON type: %ui",
                   rc, (ngx_uint_t) ctx->json);

    if (rc != NGX_DECLINED) {
        goto parsed;
    }

    *obj = json_loadb((char *) body->data, body->len,
                      JSON_REJECT_DUPLICATES, &jerr);

    if (*obj == NULL) {
        if (!ctx->json) {
            return NGX_DECLINED;
        }

        /*
         * jansson's message without the bytes it quotes ("... near
         * '<the token>'"): an error message can echo the request, its
         * AccessKeyId among it
         */

        near = (u_char *) ngx_strstr(jerr.text, " near ");
        if (near) {
            *near = '\0';
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mqttapi: passing through an unparsable error "
                      "body: %s at byte %d", jerr.text, jerr.position);
        ngx_http_mqttapi_stats_pass(r, NGX_HTTP_MQTTAPI_PASS_UNPARSABLE);
        return NGX_DONE;
    }

    v = json_object_get(*obj, "Code");

    if (json_is_string(v)) {
        code->data = (u_char *) json_string_value(v);
        code->len = json_string_length(v);
        rc = NGX_OK;

    } else if (ctx->json) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mqttapi: passing through an error response: "
                      "the error body is not an object with a string "
                      "\"Code\"");
        ngx_http_mqttapi_stats_pass(r, NGX_HTTP_MQTTAPI_PASS_NO_CODE);
        rc = NGX_DONE;

    } else {
        rc = NGX_DECLINED;
    }

parsed:

    if (*obj) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            json_decref(*obj);
            return NGX_ERROR;
        }

        cln->handler = ngx_http_mqttapi_json_cleanup;
        cln->data = *obj;
    }

    return rc;
}


/*
 * What the gateway says of the error: of the upstream's code, or (code
 * NULL) of the gateway's code for the status; NGX_DECLINED: there is none.
 */

static ngx_int_t
ngx_http_mqttapi_resolve(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_str_t *code)
{
    ngx_http_mqttapi_entry_t  *gateway;

    gateway = NULL;

    if (code == NULL) {
        gateway = ngx_http_mqttapi_catalog_gateway(lcf->catalog, ctx->origin,
                                                   r->headers_out.status);
        if (gateway == NULL) {
            ngx_http_mqttapi_stats_pass(r, NGX_HTTP_MQTTAPI_PASS_NOT_JSON);
            return NGX_DECLINED;
        }
    }

    if (ngx_http_mqttapi_error_resolve(r, lcf->catalog, &ctx->error, code,
                                       gateway)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_mqttapi_throttle_observe(r, ctx, &ctx->error);

    ctx->error.status = r->headers_out.status;

    if (lcf->normalize_status && ctx->error.entry
        && ctx->error.entry->mapped_status)
    {
        ctx->error.status = ctx->error.entry->mapped_status;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: error \"%V\", category \"%V\", status %ui",
                   &ctx->error.code, &ctx->error.category,
                   ctx->error.status);

    return NGX_OK;
}


/*
 * The headers and the body of the resolved error: an annotation kept
 * before when there is one for it, else rendered (and kept if it may be).
 * A body with only the OpenAPI's members (the fast scan left *obj NULL)
 * may have been annotated before.
 */

static ngx_int_t
ngx_http_mqttapi_annotate(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_loc_conf_t *lcf, json_t *obj, ngx_str_t *body)
{
    ngx_int_t                     rc;
    ngx_http_mqttapi_error_t     *err;
    ngx_http_mqttapi_note_t      *note;
    ngx_http_mqttapi_template_t   tpl, *t;

    err = &ctx->error;
    note = NULL;
    t = NULL;

    if (ctx->json && obj == NULL) {
        note = ngx_http_mqttapi_note_get(r, lcf, err);
    }

    if (note && ngx_http_mqttapi_note_ready(note)) {
        if (ngx_http_mqttapi_note_make(r, note, err, body) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_mqttapi_set_body_headers(r, lcf, body->len, 1);
    }

    if (note) {
        ngx_memzero(&tpl, sizeof(ngx_http_mqttapi_template_t));
        t = &tpl;
    }

    if (lcf->body != NGX_HTTP_MQTTAPI_BODY_OFF) {

        if (err->gateway) {
            rc = ngx_http_mqttapi_render_envelope(r, lcf, err, body, t);

        } else {
            rc = ngx_http_mqttapi_render_body(r, lcf, err, obj, body, t);
        }

        if (rc != NGX_OK
            || ngx_http_mqttapi_set_body_headers(r, lcf, body->len, ctx->json)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_mqttapi_render_headers(r, lcf, err, t) != NGX_OK) {
        return NGX_ERROR;
    }

    if (note) {
        ngx_http_mqttapi_note_keep(r, lcf, note, err, t);
    }

    return NGX_OK;
}


/*
 * The response cannot be made: nginx's own 500 instead, sent on as it
 * is, as the XSLT filter does.
 */

static ngx_int_t
ngx_http_mqttapi_fail(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx)
{
    ctx->state = NGX_HTTP_MQTTAPI_STATE_PASS;

    return ngx_http_filter_finalize_request(r, &ngx_http_mqttapi_module,
                                            NGX_HTTP_INTERNAL_SERVER_ERROR);
}


/*
 * Called by ngx_http_upstream_finalize_request() before it closes the
 * upstream connection.  A read that timed out mid-body finalizes with 504
 * without buffering, but with 502 through the event pipe, the same as a
 * reset; the connection's read event says which it was in both modes.
 */

static void
ngx_http_mqttapi_upstream_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t        *c;
    ngx_http_mqttapi_ctx_t  *ctx;

    /* the context survives internal redirects: it is in the pool too */

    ctx = ngx_http_mqttapi_get_ctx(r);

    c = r->upstream->peer.connection;

    if (rc == NGX_HTTP_GATEWAY_TIME_OUT || (c && c->read->timedout)) {
        ctx->upstream_timedout = 1;
    }

    ctx->upstream_finalize(r, rc);
}


static ngx_int_t
ngx_http_mqttapi_pass(ngx_http_request_t *r, ngx_http_mqttapi_ctx_t *ctx,
    ngx_chain_t *rest, const char *reason)
{
    ngx_int_t     rc;
    ngx_str_t     body;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (reason) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mqttapi: passing through an error response: %s",
                      reason);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: passing through, %uz bytes collected", ctx->len);

    ctx->state = NGX_HTTP_MQTTAPI_STATE_PASS;

    ngx_http_mqttapi_throttle_observe(r, ctx, NULL);

    body.data = ctx->buf;
    body.len = ctx->len;

    if (rest == NULL) {
        return ngx_http_mqttapi_send(r, &body);
    }

    /* over the limit mid-stream: what was copied, then the rest */

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    if (body.len == 0) {
        return ngx_http_next_body_filter(r, rest);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body.data;
    b->last = body.data + body.len;
    b->memory = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = rest;

    return ngx_http_next_body_filter(r, cl);
}


static ngx_int_t
ngx_http_mqttapi_send(ngx_http_request_t *r, ngx_str_t *body)
{
    return ngx_http_mqttapi_send_body(r, body, ngx_http_next_header_filter,
                                      ngx_http_next_body_filter);
}


static ngx_uint_t
ngx_http_mqttapi_json_content_type(ngx_http_request_t *r)
{
    u_char  *p, *last;
    size_t   len;

    /* application/json, text/json, anything/x+json; parameters allowed */

    p = r->headers_out.content_type.data;
    len = r->headers_out.content_type.len;

    if (p == NULL || len == 0) {
        return 0;
    }

    last = ngx_strlchr(p, p + len, ';');
    if (last == NULL) {
        last = p + len;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    len = last - p;

    if (len == sizeof("application/json") - 1
        && ngx_http_mqttapi_caseeq(p, (u_char *) "application/json", len))
    {
        return 1;
    }

    if (len == sizeof("text/json") - 1
        && ngx_http_mqttapi_caseeq(p, (u_char *) "text/json", len))
    {
        return 1;
    }

    if (len > sizeof("+json") - 1
        && ngx_http_mqttapi_caseeq(last - (sizeof("+json") - 1),
                                   (u_char *) "+json", sizeof("+json") - 1)
        && ngx_strlchr(p, last, '/'))
    {
        return 1;
    }

    return 0;
}


static void
ngx_http_mqttapi_json_cleanup(void *data)
{
    json_decref(data);
}


/*
 * An error of an "mqttapi on" location with error_page may be finished in
 * a location without mqttapi (a static error page, a named location): it
 * still leaves the "mqttapi on" location, and is normalized with that
 * location's configuration.  The configuration is remembered in the pool,
 * since internal redirects clear r->ctx; only where error_page can send
 * the request elsewhere, so that other requests pay nothing.
 */

static ngx_int_t
ngx_http_mqttapi_error_page_handler(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mqttapi_module);

    if (!lcf->enable) {
        return NGX_DECLINED;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->error_pages == NULL) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_mqttapi_error_page_cleanup;
    cln->data = lcf;

    return NGX_DECLINED;
}


static ngx_http_mqttapi_loc_conf_t *
ngx_http_mqttapi_filter_conf(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mqttapi_module);

    if (lcf->enable || !r->internal || (!r->error_page && !r->err_status)) {
        return lcf;
    }

    /* the latest "mqttapi on" location with error_page the request left */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_mqttapi_error_page_cleanup) {
            return cln->data;
        }
    }

    return lcf;
}


static void
ngx_http_mqttapi_error_page_cleanup(void *data)
{
    /* nothing to free: the cleanup only marks the configuration */
}
