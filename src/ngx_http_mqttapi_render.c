
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_headers.h"
#include "ngx_http_mqttapi_id.h"
#include "ngx_http_mqttapi_json.h"
#include "ngx_http_mqttapi_render.h"


/*
 * Writing: headers and bodies for a resolved error.  Bodies are spliced,
 * never re-serialized: the upstream's bytes stay as they were, the
 * annotation members are inserted before its closing brace (and, for
 * "problem", the RFC 9457 members after its opening one).  Catalog texts
 * are JSON string literals prepared at configuration time; everything
 * that reaches a header is either catalog text checked at load time or a
 * code that passed ngx_http_mqttapi_valid_code().  A caller that may keep
 * what is rendered passes a template: the renderer notes in it, as it
 * writes, the headers it pushes and where the RequestId and the delay
 * stand (ngx_http_mqttapi_answer.c fills them in for the next requests).
 */


#define NGX_HTTP_MQTTAPI_MAX_MEMBERS  16


typedef struct {
    ngx_str_t       key;           /* "\"Cause\":" */
    ngx_str_t       value;         /* JSON text */
    ngx_uint_t      quote;         /* value needs quotes, no escaping */
    ngx_uint_t      hole;          /* NGX_HTTP_MQTTAPI_HOLE_* in the value */
    size_t          hole_at;       /* where in the value it starts */
} ngx_http_mqttapi_member_t;


typedef struct {
    ngx_uint_t                  n;
    ngx_http_mqttapi_member_t   m[NGX_HTTP_MQTTAPI_MAX_MEMBERS];
} ngx_http_mqttapi_members_t;


static ngx_http_mqttapi_member_t *ngx_http_mqttapi_add_member(
    ngx_http_mqttapi_members_t *ms, json_t *obj, char *key, size_t klen,
    ngx_str_t *value, ngx_uint_t quote);
static size_t ngx_http_mqttapi_members_len(ngx_http_mqttapi_members_t *ms);
static u_char *ngx_http_mqttapi_members_write(u_char *p,
    ngx_http_mqttapi_members_t *ms, ngx_uint_t comma, u_char *base,
    ngx_http_mqttapi_template_t *tpl);
static void ngx_http_mqttapi_annotations(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    json_t *obj, ngx_http_mqttapi_members_t *ms,
    ngx_http_mqttapi_template_t *tpl);
static ngx_int_t ngx_http_mqttapi_problem_members(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    json_t *obj, ngx_http_mqttapi_members_t *ms);
static ngx_str_t *ngx_http_mqttapi_fill(ngx_http_request_t *r,
    ngx_str_t *text, ngx_uint_t holes, ngx_str_t *param, ngx_str_t *buf);
static ngx_int_t ngx_http_mqttapi_push_number(ngx_http_request_t *r,
    ngx_http_mqttapi_template_t *tpl, ngx_str_t *key, ngx_int_t n,
    ngx_uint_t hole);
static ngx_int_t ngx_http_mqttapi_insert(ngx_http_request_t *r,
    ngx_str_t *body, ngx_http_mqttapi_members_t *head,
    ngx_http_mqttapi_members_t *tail, ngx_str_t *kept,
    ngx_http_mqttapi_template_t *tpl);
static ngx_int_t ngx_http_mqttapi_host_id(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_str_t *host);
static void ngx_http_mqttapi_hide_spoofed(ngx_http_request_t *r);
static void ngx_http_mqttapi_hide(ngx_http_request_t *r, ngx_str_t *name,
    ngx_uint_t flags);
static void ngx_http_mqttapi_set_status(ngx_http_request_t *r,
    ngx_http_mqttapi_error_t *err);


#define ngx_http_mqttapi_member(ms, obj, key, value, quote)                   \
    ngx_http_mqttapi_add_member(ms, obj, "\"" key "\":",                      \
                                sizeof("\"" key "\":") - 1, value, quote)


static ngx_str_t  ngx_http_mqttapi_h_code = ngx_string("X-MQTTAPI-Error-Code");
static ngx_str_t  ngx_http_mqttapi_h_category =
    ngx_string("X-MQTTAPI-Error-Category");
static ngx_str_t  ngx_http_mqttapi_h_cause =
    ngx_string("X-MQTTAPI-Error-Cause");
static ngx_str_t  ngx_http_mqttapi_h_solution =
    ngx_string("X-MQTTAPI-Error-Solution");
static ngx_str_t  ngx_http_mqttapi_h_retryable =
    ngx_string("X-MQTTAPI-Retryable");
static ngx_str_t  ngx_http_mqttapi_h_param =
    ngx_string("X-MQTTAPI-Invalid-Parameter");
static ngx_str_t  ngx_http_mqttapi_h_upstream_status =
    ngx_string("X-MQTTAPI-Upstream-Status");
static ngx_str_t  ngx_http_mqttapi_h_retry_after = ngx_string("Retry-After");
static ngx_str_t  ngx_http_mqttapi_h_acs_retry_after =
    ngx_string("x-acs-retry-after");
static ngx_str_t  ngx_http_mqttapi_h_content_language =
    ngx_string("Content-Language");
static ngx_str_t  ngx_http_mqttapi_h_vary = ngx_string("Vary");
static ngx_str_t  ngx_http_mqttapi_accept_language =
    ngx_string("Accept-Language");

static ngx_str_t  ngx_http_mqttapi_true = ngx_string("true");
static ngx_str_t  ngx_http_mqttapi_false = ngx_string("false");

static ngx_str_t  ngx_http_mqttapi_problem_type =
    ngx_string("application/problem+json");
static ngx_str_t  ngx_http_mqttapi_json_type =
    ngx_string("application/json;charset=utf-8");

ngx_int_t
ngx_http_mqttapi_render_headers(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    ngx_http_mqttapi_template_t *tpl)
{
    ngx_str_t                 buf, *value;
    ngx_http_mqttapi_text_t  *t;

    ngx_http_mqttapi_hide_spoofed(r);

    if (lcf->normalize_status && err->upstream_status) {
        if (ngx_http_mqttapi_push_number(r, tpl,
                                         &ngx_http_mqttapi_h_upstream_status,
                                         err->upstream_status,
                                         NGX_HTTP_MQTTAPI_HOLE_NONE)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_http_mqttapi_set_status(r, err);

    if (err->code.len
        && ngx_http_mqttapi_render_header(r, tpl, &ngx_http_mqttapi_h_code,
                                          &err->code,
                                          NGX_HTTP_MQTTAPI_HOLE_NONE)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_render_header(r, tpl, &ngx_http_mqttapi_h_category,
                                       &err->category,
                                       NGX_HTTP_MQTTAPI_HOLE_NONE)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    t = ngx_http_mqttapi_catalog_text(lcf->catalog, err->entry,
                                      lcf->catalog->default_lang);

    if (t && t->cause.len) {
        value = ngx_http_mqttapi_fill(r, &t->cause, t->cause_holes,
                                      &err->param, &buf);

        if (ngx_http_mqttapi_render_header(r, tpl, &ngx_http_mqttapi_h_cause,
                                           value, NGX_HTTP_MQTTAPI_HOLE_NONE)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (t && t->solution.len) {
        value = ngx_http_mqttapi_fill(r, &t->solution, t->solution_holes,
                                      &err->param, &buf);

        if (ngx_http_mqttapi_render_header(r, tpl,
                                           &ngx_http_mqttapi_h_solution,
                                           value, NGX_HTTP_MQTTAPI_HOLE_NONE)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_mqttapi_render_header(r, tpl, &ngx_http_mqttapi_h_retryable,
                                       err->retryable
                                       ? &ngx_http_mqttapi_true
                                       : &ngx_http_mqttapi_false,
                                       NGX_HTTP_MQTTAPI_HOLE_NONE)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (err->param.len
        && ngx_http_mqttapi_render_header(r, tpl, &ngx_http_mqttapi_h_param,
                                          &err->param,
                                          NGX_HTTP_MQTTAPI_HOLE_NONE)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the upstream's own Retry-After stays as it was */

    if (err->retryable && err->retry_after >= 0 && !err->upstream_retry_after
        && ngx_http_mqttapi_push_number(r, tpl,
                                        &ngx_http_mqttapi_h_retry_after,
                                        err->retry_after,
                                        NGX_HTTP_MQTTAPI_HOLE_SECONDS)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (err->throttle && err->retry_after >= 0
        && ngx_http_mqttapi_header(&r->headers_out.headers,
                                   &ngx_http_mqttapi_h_acs_retry_after,
                                   NULL, 0)
           == NULL
        && ngx_http_mqttapi_push_number(r, tpl,
                                        &ngx_http_mqttapi_h_acs_retry_after,
                                        err->retry_after_ms
                                        ? (ngx_int_t) err->retry_after_ms
                                        : err->retry_after * 1000,
                                        NGX_HTTP_MQTTAPI_HOLE_MSEC)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_mqttapi_render_body(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    json_t *obj, ngx_str_t *body, ngx_http_mqttapi_template_t *tpl)
{
    ngx_http_mqttapi_members_t  head, tail;

    if (lcf->body == NGX_HTTP_MQTTAPI_BODY_OFF) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: rendering the annotation of \"%V\"",
                   &err->code);

    head.n = 0;
    tail.n = 0;

    if (lcf->body == NGX_HTTP_MQTTAPI_BODY_PROBLEM
        && ngx_http_mqttapi_problem_members(r, lcf, err, obj, &head)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_mqttapi_annotations(r, lcf, err, obj, &tail, tpl);

    return ngx_http_mqttapi_insert(r, body, &head, &tail, NULL, tpl);
}


/*
 * A kept annotation (ngx_http_mqttapi_note_make()): what rendering the
 * headers and the body does to the upstream's headers, the status, and
 * the members after the upstream's; the caller pushes the kept headers.
 */

ngx_int_t
ngx_http_mqttapi_render_kept(ngx_http_request_t *r,
    ngx_http_mqttapi_error_t *err, ngx_str_t *body, ngx_str_t *members)
{
    if (err->entry) {
        ngx_http_mqttapi_hide(r, &ngx_http_mqttapi_h_content_language, 0);
    }

    ngx_http_mqttapi_hide_spoofed(r);
    ngx_http_mqttapi_set_status(r, err);

    return ngx_http_mqttapi_insert(r, body, NULL, NULL, members, NULL);
}


/*
 * The body, a valid JSON object, with the head members first and the tail
 * members (or the kept text of members) last; "added" gets what was added
 * after the upstream's members, without the comma before it.
 */

static ngx_int_t
ngx_http_mqttapi_insert(ngx_http_request_t *r, ngx_str_t *body,
    ngx_http_mqttapi_members_t *head, ngx_http_mqttapi_members_t *tail,
    ngx_str_t *kept, ngx_http_mqttapi_template_t *tpl)
{
    u_char      *p, *start, *open, *close, *last;
    size_t       len;
    ngx_uint_t   empty, nhead, ntail;

    /* find the object's braces */

    open = body->data;
    last = body->data + body->len;

    while (open < last && *open != '{') {
        open++;
    }

    close = last;

    while (close > open && close[-1] != '}') {
        close--;
    }

    if (open == last || close - open < 2) {
        return NGX_DECLINED;
    }

    close--;

    for (p = open + 1; p < close; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            break;
        }
    }

    empty = (p == close);

    nhead = head ? head->n : 0;
    ntail = tail ? tail->n : (kept->len != 0);

    len = body->len + 2;

    if (nhead) {
        len += ngx_http_mqttapi_members_len(head);
    }

    len += tail ? ngx_http_mqttapi_members_len(tail) : kept->len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* "{" head [","] original [","] tail "}" */

    start = body->data;

    body->data = p;

    p = ngx_cpymem(p, start, open + 1 - start);

    if (nhead) {
        p = ngx_http_mqttapi_members_write(p, head, 0, body->data, tpl);

        if (!empty) {
            *p++ = ',';
        }
    }

    p = ngx_cpymem(p, open + 1, close - (open + 1));

    if (ntail && (nhead || !empty)) {
        *p++ = ',';
    }

    start = p;

    if (tail) {
        p = ngx_http_mqttapi_members_write(p, tail, 0, body->data, tpl);

    } else {
        p = ngx_cpymem(p, kept->data, kept->len);
    }

    if (tpl) {
        tpl->added.data = start;
        tpl->added.len = p - start;
    }

    p = ngx_cpymem(p, close, last - close);

    body->len = p - body->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_mqttapi_render_envelope(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body, ngx_http_mqttapi_template_t *tpl)
{
    u_char                      *p;
    size_t                       len;
    ngx_str_t                    id, host, message;
    ngx_http_mqttapi_member_t   *m;
    ngx_http_mqttapi_members_t   head, own, tail;

    static ngx_str_t  generic = ngx_string("\"An error occurred.\"");

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: rendering the envelope of \"%V\"", &err->code);

    /*
     * {"RequestId":"...","HostId":"...","Code":"...","Message":"..."}, the
     * problem members before and the annotations after, written at once
     */

    if (ngx_http_mqttapi_request_id(r, &id, NULL) != NGX_OK
        || ngx_http_mqttapi_host_id(r, lcf, &host) != NGX_OK)
    {
        return NGX_ERROR;
    }

    message = (err->entry && err->entry->message_json.len)
              ? err->entry->message_json : generic;

    head.n = 0;
    own.n = 0;
    tail.n = 0;

    m = ngx_http_mqttapi_member(&own, NULL, "RequestId", &id, 1);
    m->hole = NGX_HTTP_MQTTAPI_HOLE_ID;

    (void) ngx_http_mqttapi_member(&own, NULL, "HostId", &host, 0);
    (void) ngx_http_mqttapi_member(&own, NULL, "Code", &err->code, 1);
    (void) ngx_http_mqttapi_member(&own, NULL, "Message", &message, 0);

    if (lcf->body == NGX_HTTP_MQTTAPI_BODY_PROBLEM
        && ngx_http_mqttapi_problem_members(r, lcf, err, NULL, &head)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (lcf->body != NGX_HTTP_MQTTAPI_BODY_OFF) {
        ngx_http_mqttapi_annotations(r, lcf, err, NULL, &tail, tpl);
    }

    len = sizeof("{}") - 1 + ngx_http_mqttapi_members_len(&head)
          + ngx_http_mqttapi_members_len(&own)
          + ngx_http_mqttapi_members_len(&tail);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    *p++ = '{';
    p = ngx_http_mqttapi_members_write(p, &head, 0, body->data, tpl);
    p = ngx_http_mqttapi_members_write(p, &own, head.n, body->data, tpl);
    p = ngx_http_mqttapi_members_write(p, &tail, 1, body->data, tpl);
    *p++ = '}';

    body->len = p - body->data;

    return NGX_OK;
}


/* the HostId of an envelope as a JSON string */

static ngx_int_t
ngx_http_mqttapi_host_id(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_str_t *host)
{
    ngx_str_t                  value;
    ngx_http_core_srv_conf_t  *cscf;

    if (lcf->host_id) {
        if (ngx_http_complex_value(r, lcf->host_id, &value) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
        value = cscf->server_name.len ? cscf->server_name
                                      : ngx_cycle->hostname;
    }

    return ngx_http_mqttapi_json_quote(r->pool, &value, host);
}


ngx_int_t
ngx_http_mqttapi_set_body_headers(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, size_t len, ngx_uint_t json)
{
    ngx_str_t  *type;

    if (lcf->body == NGX_HTTP_MQTTAPI_BODY_PROBLEM) {
        type = &ngx_http_mqttapi_problem_type;

    } else {
        type = &ngx_http_mqttapi_json_type;
    }

    if (lcf->body == NGX_HTTP_MQTTAPI_BODY_PROBLEM || !json) {
        r->headers_out.content_type = *type;
        r->headers_out.content_type_len = type->len;
        r->headers_out.content_type_lowcase = NULL;
        ngx_str_null(&r->headers_out.charset);
    }

    r->headers_out.content_length_n = len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    return NGX_OK;
}


static void
ngx_http_mqttapi_annotations(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    json_t *obj, ngx_http_mqttapi_members_t *ms,
    ngx_http_mqttapi_template_t *tpl)
{
    u_char                     *p;
    ngx_str_t                  *value, retry, *buf;
    ngx_http_mqttapi_member_t  *m;
    ngx_http_mqttapi_lang_t    *lang;
    ngx_http_mqttapi_text_t    *t, *dt, *ct, *st;

    t = ngx_http_mqttapi_catalog_text(lcf->catalog, err->entry, err->lang);
    dt = ngx_http_mqttapi_catalog_text(lcf->catalog, err->entry,
                                       lcf->catalog->default_lang);

    /* the members point at these until the body is written */

    buf = ngx_palloc(r->pool, 3 * sizeof(ngx_str_t));
    if (buf == NULL) {
        return;
    }

    ct = (t && t->cause_json.len) ? t
         : (dt && dt->cause_json.len) ? dt : NULL;
    st = (t && t->solution_json.len) ? t
         : (dt && dt->solution_json.len) ? dt : NULL;

    if (ct) {
        value = ngx_http_mqttapi_fill(r, &ct->cause_json, ct->cause_holes,
                                      &err->param, &buf[0]);
        ngx_http_mqttapi_member(ms, obj, "Cause", value, 0);
    }

    if (st) {
        value = ngx_http_mqttapi_fill(r, &st->solution_json,
                                      st->solution_holes, &err->param,
                                      &buf[1]);
        ngx_http_mqttapi_member(ms, obj, "Solution", value, 0);
    }

    ngx_http_mqttapi_member(ms, obj, "Category", &err->category, 1);
    ngx_http_mqttapi_member(ms, obj, "Retryable",
                            err->retryable ? &ngx_http_mqttapi_true
                                           : &ngx_http_mqttapi_false, 0);

    if (err->retryable && err->retry_after >= 0) {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p) {
            retry.data = p;
            retry.len = ngx_http_mqttapi_write_number(p, err->retry_after)
                        - p;
            m = ngx_http_mqttapi_member(ms, obj, "RetryAfter", &retry, 0);

            if (m) {
                m->hole = NGX_HTTP_MQTTAPI_HOLE_SECONDS;
            }
        }
    }

    if (err->param.len) {
        ngx_http_mqttapi_member(ms, obj, "InvalidParameter", &err->param, 1);
    }

    if (t && t->description_json.len) {
        value = ngx_http_mqttapi_fill(r, &t->description_json,
                                      t->description_holes, &err->param,
                                      &buf[2]);
        ngx_http_mqttapi_member(ms, obj, "Description", value, 0);
    }

    /* Content-Language: the language whose text the body carries */

    if (err->entry) {
        lang = lcf->catalog->langs.elts;

        if (t && (t->description.len || t->cause.len)) {
            lang = &lang[err->lang];

        } else {
            lang = &lang[lcf->catalog->default_lang];
        }

        /* one Content-Language: the upstream's said less of this body */

        ngx_http_mqttapi_hide(r, &ngx_http_mqttapi_h_content_language, 0);

        (void) ngx_http_mqttapi_render_header(r, tpl,
                                        &ngx_http_mqttapi_h_content_language,
                                        &lang->tag,
                                        NGX_HTTP_MQTTAPI_HOLE_NONE);
        (void) ngx_http_mqttapi_render_header(r, tpl,
                                        &ngx_http_mqttapi_h_vary,
                                        &ngx_http_mqttapi_accept_language,
                                        NGX_HTTP_MQTTAPI_HOLE_NONE);
    }
}


static ngx_int_t
ngx_http_mqttapi_problem_members(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err,
    json_t *obj, ngx_http_mqttapi_members_t *ms)
{
    u_char                     *p;
    size_t                      len;
    uintptr_t                   escape;
    ngx_str_t                   id, *v;
    ngx_http_mqttapi_text_t    *t;
    ngx_http_mqttapi_member_t  *m;

    static ngx_str_t          generic = ngx_string("\"An error occurred.\"");

    /* "type": the base URI and the code, escaped as a URI component */

    escape = ngx_escape_uri(NULL, err->code.data, err->code.len,
                            NGX_ESCAPE_URI_COMPONENT);

    len = lcf->problem_base_uri.len + err->code.len + 2 * escape;
    if (err->code.len == 0) {
        len += sizeof("Unknown") - 1;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v = ngx_palloc(r->pool, 4 * sizeof(ngx_str_t));
    if (v == NULL) {
        return NGX_ERROR;
    }

    v[0].data = p;
    p = ngx_cpymem(p, lcf->problem_base_uri.data, lcf->problem_base_uri.len);

    if (err->code.len == 0) {
        p = ngx_cpymem(p, "Unknown", sizeof("Unknown") - 1);

    } else if (escape) {
        p = (u_char *) ngx_escape_uri(p, err->code.data, err->code.len,
                                      NGX_ESCAPE_URI_COMPONENT);

    } else {
        p = ngx_cpymem(p, err->code.data, err->code.len);
    }

    v[0].len = p - v[0].data;

    ngx_http_mqttapi_member(ms, obj, "type", &v[0], 1);

    /* "title": the catalog message, "detail": the localized cause */

    ngx_http_mqttapi_member(ms, obj, "title",
                            (err->entry && err->entry->message_json.len)
                            ? &err->entry->message_json : &generic, 0);

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v[1].data = p;
    v[1].len = ngx_http_mqttapi_write_number(p, err->status) - p;

    ngx_http_mqttapi_member(ms, obj, "status", &v[1], 0);

    t = ngx_http_mqttapi_catalog_text(lcf->catalog, err->entry, err->lang);

    if (t == NULL || t->cause_json.len == 0) {
        t = ngx_http_mqttapi_catalog_text(lcf->catalog, err->entry,
                                          lcf->catalog->default_lang);
    }

    if (t && t->cause_json.len) {
        ngx_http_mqttapi_member(ms, obj, "detail",
                                ngx_http_mqttapi_fill(r, &t->cause_json,
                                                      t->cause_holes,
                                                      &err->param, &v[3]),
                                0);
    }

    if (ngx_http_mqttapi_request_id(r, &id, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    v[2].len = sizeof("urn:mqttapi:request:") - 1 + id.len;
    v[2].data = ngx_pnalloc(r->pool, v[2].len);
    if (v[2].data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(v[2].data, "urn:mqttapi:request:",
                   sizeof("urn:mqttapi:request:") - 1);
    ngx_memcpy(p, id.data, id.len);

    m = ngx_http_mqttapi_member(ms, obj, "instance", &v[2], 1);

    if (m) {
        m->hole = NGX_HTTP_MQTTAPI_HOLE_ID;
        m->hole_at = sizeof("urn:mqttapi:request:") - 1;
    }

    return NGX_OK;
}


static ngx_http_mqttapi_member_t *
ngx_http_mqttapi_add_member(ngx_http_mqttapi_members_t *ms, json_t *obj,
    char *key, size_t klen, ngx_str_t *value, ngx_uint_t quote)
{
    char                        name[32];
    ngx_http_mqttapi_member_t  *m;

    if (ms->n == NGX_HTTP_MQTTAPI_MAX_MEMBERS) {
        return NULL;
    }

    /* an upstream member is never overwritten nor duplicated */

    if (obj) {
        ngx_memcpy(name, key + 1, klen - 3);
        name[klen - 3] = '\0';

        if (json_object_get(obj, name)) {
            return NULL;
        }
    }

    m = &ms->m[ms->n++];

    m->key.data = (u_char *) key;
    m->key.len = klen;
    m->value = *value;
    m->quote = quote;
    m->hole = NGX_HTTP_MQTTAPI_HOLE_NONE;
    m->hole_at = 0;

    return m;
}


static size_t
ngx_http_mqttapi_members_len(ngx_http_mqttapi_members_t *ms)
{
    size_t      len;
    ngx_uint_t  i;

    len = 0;

    for (i = 0; i < ms->n; i++) {
        len += 1 + ms->m[i].key.len + ms->m[i].value.len
               + (ms->m[i].quote ? 2 : 0);
    }

    return len;
}


static u_char *
ngx_http_mqttapi_members_write(u_char *p, ngx_http_mqttapi_members_t *ms,
    ngx_uint_t comma, u_char *base, ngx_http_mqttapi_template_t *tpl)
{
    ngx_uint_t                i;
    ngx_http_mqttapi_hole_t  *hole;

    for (i = 0; i < ms->n; i++) {
        if (i || comma) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, ms->m[i].key.data, ms->m[i].key.len);

        if (ms->m[i].quote) {
            *p++ = '"';
        }

        /* where this request's own value stands, for a kept answer */

        if (tpl && ms->m[i].hole != NGX_HTTP_MQTTAPI_HOLE_NONE) {

            if (tpl->nholes == NGX_HTTP_MQTTAPI_TEMPLATE_HOLES) {
                tpl->overflow = 1;

            } else {
                hole = &tpl->holes[tpl->nholes++];
                hole->at = p - base + ms->m[i].hole_at;
                hole->len = ms->m[i].value.len - ms->m[i].hole_at;
                hole->hole = ms->m[i].hole;
            }
        }

        p = ngx_cpymem(p, ms->m[i].value.data, ms->m[i].value.len);

        if (ms->m[i].quote) {
            *p++ = '"';
        }
    }

    return p;
}


static ngx_str_t *
ngx_http_mqttapi_fill(ngx_http_request_t *r, ngx_str_t *text,
    ngx_uint_t holes, ngx_str_t *param, ngx_str_t *buf)
{
    u_char  *p, *s, *t, *last;

    /*
     * "The parameter indicated by %s is missing or invalid." names the
     * parameter of "InvalidParameter.%s"; the name passed the code check,
     * so it is safe in a header and in a JSON string as it is.  Without a
     * parameter (a regex whose first capture took no part in the match,
     * or a code that has none) "%s" stands for nothing: a text never
     * shows it.  The catalog counted the holes of each text.
     */

    if (holes == 0) {
        return text;
    }

    p = ngx_pnalloc(r->pool, text->len + holes * param->len);
    if (p == NULL) {
        return text;
    }

    buf->data = p;
    last = text->data + text->len;

    for (s = text->data; s < last; /* void */) {

        t = (s + 1 < last) ? memchr(s, '%', last - 1 - s) : NULL;

        if (t == NULL) {
            p = ngx_cpymem(p, s, last - s);
            break;
        }

        if (t[1] != 's') {
            p = ngx_cpymem(p, s, t + 1 - s);
            s = t + 1;
            continue;
        }

        p = ngx_cpymem(p, s, t - s);
        p = ngx_cpymem(p, param->data, param->len);
        s = t + 2;
    }

    buf->len = p - buf->data;

    return buf;
}


/* a response header, noted in the template (if any) */

ngx_int_t
ngx_http_mqttapi_render_header(ngx_http_request_t *r,
    ngx_http_mqttapi_template_t *tpl, ngx_str_t *key, ngx_str_t *value,
    ngx_uint_t hole)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    if (tpl) {
        if (tpl->nheaders == NGX_HTTP_MQTTAPI_TEMPLATE_HEADERS) {
            tpl->overflow = 1;

        } else {
            tpl->headers[tpl->nheaders] = h;
            tpl->header_holes[tpl->nheaders++] = hole;
        }
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_push_number(ngx_http_request_t *r,
    ngx_http_mqttapi_template_t *tpl, ngx_str_t *key, ngx_int_t n,
    ngx_uint_t hole)
{
    u_char     *p;
    ngx_str_t   value;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_http_mqttapi_write_number(p, n) - p;

    return ngx_http_mqttapi_render_header(r, tpl, key, &value, hole);
}


u_char *
ngx_http_mqttapi_write_number(u_char *p, ngx_int_t n)
{
    u_char  *d, digits[NGX_INT_T_LEN];

    d = ngx_http_mqttapi_write_number_back(digits + NGX_INT_T_LEN, n);

    return ngx_cpymem(p, d, digits + NGX_INT_T_LEN - d);
}


/*
 * ngx_sprintf("%i") without the format parsing, from the last digit,
 * ending at "last" (at most NGX_INT_T_LEN bytes before it); returns where
 * the number begins.  A hot spot of rejects (the delay in seconds and in
 * milliseconds), which write it where it is kept.
 */

u_char *
ngx_http_mqttapi_write_number_back(u_char *last, ngx_int_t n)
{
    u_char      *d;
    uint32_t     m, h;
    ngx_uint_t   u, q;

    static u_char  pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";

    u = (n < 0) ? (ngx_uint_t) 0 - (ngx_uint_t) n : (ngx_uint_t) n;

    d = last;

    /* four digits a division, split in two pairs in 32 bits */

    while (u >= 10000) {
        q = u / 10000;
        m = (uint32_t) (u - q * 10000);
        h = m / 100;

        d -= 4;
        ngx_memcpy(d, &pairs[h * 2], 2);
        ngx_memcpy(d + 2, &pairs[(m - h * 100) * 2], 2);

        u = q;
    }

    if (u >= 100) {
        q = u / 100;
        d -= 2;
        ngx_memcpy(d, &pairs[(u - q * 100) * 2], 2);
        u = q;
    }

    if (u >= 10) {
        d -= 2;
        ngx_memcpy(d, &pairs[u * 2], 2);

    } else {
        *--d = (u_char) ('0' + u);
    }

    if (n < 0) {
        *--d = '-';
    }

    return d;
}


static void
ngx_http_mqttapi_hide_spoofed(ngx_http_request_t *r)
{
    static ngx_str_t  prefix = ngx_string("X-MQTTAPI-");

    /* only the gateway speaks X-MQTTAPI-*: drop what the upstream sent */

    ngx_http_mqttapi_hide(r, &prefix, NGX_HTTP_MQTTAPI_HEADER_PREFIX);
}


static void
ngx_http_mqttapi_hide(ngx_http_request_t *r, ngx_str_t *name,
    ngx_uint_t flags)
{
    ngx_table_elt_t  *h;

    for (h = ngx_http_mqttapi_header(&r->headers_out.headers, name, NULL,
                                     flags);
         h;
         h = ngx_http_mqttapi_header(&r->headers_out.headers, name, h,
                                     flags))
    {
        h->hash = 0;
    }
}


static void
ngx_http_mqttapi_set_status(ngx_http_request_t *r,
    ngx_http_mqttapi_error_t *err)
{
    if (err->status != r->headers_out.status) {
        r->headers_out.status = err->status;
        r->headers_out.status_line.len = 0;
    }
}


/*
 * Sends the header and a complete body through the given filters: the
 * next ones from the body filter, ngx_http_send_header() and
 * ngx_http_output_filter() from a phase handler.
 */

ngx_int_t
ngx_http_mqttapi_send_body(ngx_http_request_t *r, ngx_str_t *body,
    ngx_http_output_header_filter_pt send_header,
    ngx_http_output_body_filter_pt send_body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    /* ngx_calloc_buf(), zeroed inline rather than by a call of memset() */

    b = ngx_alloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(b, sizeof(ngx_buf_t));

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = body->len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return send_body(r, &out);
}
