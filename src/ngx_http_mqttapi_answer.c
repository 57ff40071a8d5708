
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_answer.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_headers.h"
#include "ngx_http_mqttapi_id.h"
#include "ngx_http_mqttapi_lang.h"


/*
 * Prepared local answers.  While a key is backed off, every one of its
 * requests gets the same answer but for the RequestId and the delay left:
 * the first local answer of a location for a code, an action of the
 * catalog (or none: an action the catalog does not list says nothing
 * about the answer, so made-up ones take no place of their own) and a
 * language is rendered as usual, with the renderer noting in a template
 * where the RequestId and the delay stand and which headers it pushed;
 * that is kept, and the next ones are copied from it.  When mqttapi_host_id
 * has variables, answers are rendered each time.
 *
 * Prepared annotations, the same way.  An upstream error whose body the
 * fast scan read with only the OpenAPI's own members (nothing of it can
 * clash with an annotation member) and that is not retryable (no delay)
 * gets the same members and headers for a code, a language, a category
 * and an upstream status, whatever else the request and the body say.
 *
 * Both live in a table of fixed size per worker, made at the worker's
 * start.  A place, once taken, is never given up nor replaced, so that a
 * response still being sent never sees its text change; a rendering that
 * cannot be kept (too many holes or headers, no memory) takes its place
 * all the same, marked so, and that key is rendered each time from then
 * on: nothing is allocated again for it.  Past the table's size,
 * everything new is rendered each time.
 */


#define NGX_HTTP_MQTTAPI_ANSWERS   64
#define NGX_HTTP_MQTTAPI_NOTES     64

#define NGX_HTTP_MQTTAPI_KEPT_READY    1
#define NGX_HTTP_MQTTAPI_KEPT_REFUSED  2


typedef struct {
    ngx_str_t                          text;
    ngx_uint_t                         hole;      /* after the text */
} ngx_http_mqttapi_part_t;


/* a kept header whose value is a hole */

typedef struct {
    u_char                             header;    /* its index */
    u_char                             hole;
} ngx_http_mqttapi_header_hole_t;


/*
 * A kept rendering: body text with holes (a hole after every part but
 * the last), and headers as they are pushed, side by side.
 */

typedef struct {
    ngx_uint_t                         state;

    ngx_uint_t                         nparts;
    ngx_http_mqttapi_part_t            parts[NGX_HTTP_MQTTAPI_TEMPLATE_HOLES
                                             + 1];

    ngx_uint_t                         nheaders;
    ngx_table_elt_t                   *headers;

    ngx_uint_t                         nholes;    /* header holes */
    ngx_http_mqttapi_header_hole_t     holes[
                                           NGX_HTTP_MQTTAPI_TEMPLATE_HEADERS];
} ngx_http_mqttapi_kept_t;


struct ngx_http_mqttapi_answer_s {
    ngx_http_mqttapi_loc_conf_t       *conf;
    ngx_http_mqttapi_action_t         *action;
    ngx_uint_t                         lang;
    size_t                             code_len;
    u_char                             code[NGX_HTTP_MQTTAPI_CODE_MAX_LEN];

    ngx_http_mqttapi_error_t           error;
    ngx_http_mqttapi_kept_t            kept;
};


struct ngx_http_mqttapi_note_s {
    ngx_http_mqttapi_loc_conf_t       *conf;
    ngx_http_mqttapi_entry_t          *entry;
    ngx_str_t                          category;  /* the catalog's text */
    ngx_uint_t                         lang;
    ngx_uint_t                         upstream_status;
    size_t                             code_len;
    u_char                             code[NGX_HTTP_MQTTAPI_CODE_MAX_LEN];

    ngx_http_mqttapi_kept_t            kept;
};


typedef struct {
    ngx_uint_t                         nanswers;
    ngx_http_mqttapi_answer_t          answers[NGX_HTTP_MQTTAPI_ANSWERS];
    ngx_uint_t                         nnotes;
    ngx_http_mqttapi_note_t            notes[NGX_HTTP_MQTTAPI_NOTES];
} ngx_http_mqttapi_table_t;


static ngx_http_mqttapi_answer_t *ngx_http_mqttapi_answer_kept(
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_str_t *action, ngx_uint_t lang,
    ngx_str_t *code);
static ngx_int_t ngx_http_mqttapi_keep(ngx_http_request_t *r,
    ngx_http_mqttapi_kept_t *k, ngx_str_t *text,
    ngx_http_mqttapi_template_t *tpl, ngx_str_t *strs, ngx_uint_t nstrs,
    char *what, ngx_uint_t place);
static ngx_int_t ngx_http_mqttapi_keep_text(ngx_http_mqttapi_kept_t *k,
    ngx_str_t *text, ngx_http_mqttapi_template_t *tpl, ngx_str_t *strs,
    ngx_uint_t nstrs);
static void ngx_http_mqttapi_kept_free(ngx_http_mqttapi_kept_t *k);
static size_t ngx_http_mqttapi_body_len(ngx_http_mqttapi_kept_t *k,
    ngx_str_t *values);
static u_char *ngx_http_mqttapi_body_write(u_char *p,
    ngx_http_mqttapi_kept_t *k, ngx_str_t *values);
static ngx_int_t ngx_http_mqttapi_push_kept(ngx_http_request_t *r,
    ngx_http_mqttapi_kept_t *k, ngx_str_t *values);


static ngx_http_mqttapi_table_t  *ngx_http_mqttapi_table;


ngx_int_t
ngx_http_mqttapi_answer_init_process(ngx_cycle_t *cycle)
{
    ngx_http_mqttapi_table = ngx_pcalloc(cycle->pool,
                                         sizeof(ngx_http_mqttapi_table_t));
    if (ngx_http_mqttapi_table == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the worker is leaving: what its places kept is given back */

void
ngx_http_mqttapi_answer_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_http_mqttapi_table_t  *t;

    t = ngx_http_mqttapi_table;

    if (t == NULL) {
        return;
    }

    for (i = 0; i < t->nanswers; i++) {
        ngx_http_mqttapi_kept_free(&t->answers[i].kept);
    }

    for (i = 0; i < t->nnotes; i++) {
        ngx_http_mqttapi_kept_free(&t->notes[i].kept);
    }

    ngx_http_mqttapi_table = NULL;
}


static void
ngx_http_mqttapi_kept_free(ngx_http_mqttapi_kept_t *k)
{
    /* a kept rendering is one allocation, its headers first */

    if (k->state == NGX_HTTP_MQTTAPI_KEPT_READY) {
        ngx_free(k->headers);
        k->state = NGX_HTTP_MQTTAPI_KEPT_REFUSED;
    }
}


/*
 * The kept answer for this request, the free place to keep one (not
 * ready yet), or NULL: the answer must be rendered and cannot be kept.
 */

ngx_http_mqttapi_answer_t *
ngx_http_mqttapi_answer_get(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_str_t *code)
{
    ngx_str_t                    name;
    ngx_uint_t                   lang;
    ngx_http_mqttapi_table_t    *t;
    ngx_http_mqttapi_action_t   *action;
    ngx_http_mqttapi_answer_t   *a;

    t = ngx_http_mqttapi_table;

    if (t == NULL || (lcf->host_id && lcf->host_id->lengths)
        || code->len > NGX_HTTP_MQTTAPI_CODE_MAX_LEN)
    {
        /* the HostId may differ from request to request */
        return NULL;
    }

    lang = ngx_http_mqttapi_negotiate_lang(r, lcf->catalog);

    /*
     * names of the catalog's actions compare exactly: a kept answer of an
     * action is found by the request's spelling of it, without the hash;
     * an action the catalog does not list gets the answer of no Action
     */

    action = NULL;
    a = NULL;

    if (ngx_http_mqttapi_request_action_name(r, &name) == NGX_OK) {
        a = ngx_http_mqttapi_answer_kept(lcf, &name, lang, code);

        if (a == NULL) {
            action = ngx_http_mqttapi_catalog_action(lcf->catalog, &name);
        }
    }

    if (a == NULL && action == NULL) {
        a = ngx_http_mqttapi_answer_kept(lcf, NULL, lang, code);
    }

    if (a) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: kept answer #%ui is %s",
                       (ngx_uint_t) (a - t->answers),
                       a->kept.state == NGX_HTTP_MQTTAPI_KEPT_READY
                       ? "ready" : "refused");

        return (a->kept.state == NGX_HTTP_MQTTAPI_KEPT_READY) ? a : NULL;
    }

    if (t->nanswers == NGX_HTTP_MQTTAPI_ANSWERS) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: no place left to keep an answer");
        return NULL;
    }

    /* the next free place; it counts once ngx_http_mqttapi_answer_keep() */

    a = &t->answers[t->nanswers];

    a->conf = lcf;
    a->action = action;
    a->lang = lang;
    a->code_len = code->len;
    ngx_memcpy(a->code, code->data, code->len);
    a->kept.state = 0;

    return a;
}


/*
 * A kept answer of the location for the code and the language, of the
 * action so spelled or, with action NULL, of no action.
 */

static ngx_http_mqttapi_answer_t *
ngx_http_mqttapi_answer_kept(ngx_http_mqttapi_loc_conf_t *lcf,
    ngx_str_t *action, ngx_uint_t lang, ngx_str_t *code)
{
    ngx_uint_t                  i;
    ngx_http_mqttapi_table_t   *t;
    ngx_http_mqttapi_answer_t  *a;

    t = ngx_http_mqttapi_table;

    for (i = 0; i < t->nanswers; i++) {
        a = &t->answers[i];

        if (a->conf != lcf
            || a->lang != lang
            || a->code_len != code->len
            || !ngx_http_mqttapi_eq(a->code, code->data, code->len))
        {
            continue;
        }

        if (action == NULL) {
            if (a->action == NULL) {
                return a;
            }

        } else if (a->action
                   && a->action->name.len == action->len
                   && ngx_http_mqttapi_eq(a->action->name.data,
                                          action->data, action->len))
        {
            return a;
        }
    }

    return NULL;
}


ngx_uint_t
ngx_http_mqttapi_answer_ready(ngx_http_mqttapi_answer_t *a)
{
    return a->kept.state == NGX_HTTP_MQTTAPI_KEPT_READY;
}


/* the answer just rendered, with its template, kept in its free place */

void
ngx_http_mqttapi_answer_keep(ngx_http_request_t *r,
    ngx_http_mqttapi_answer_t *a, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body, ngx_http_mqttapi_template_t *tpl)
{
    ngx_str_t                  strs[2];
    ngx_http_mqttapi_table_t  *t;

    t = ngx_http_mqttapi_table;

    if (a != &t->answers[t->nanswers]) {
        return;
    }

    t->nanswers++;

    strs[0] = err->code;
    strs[1] = err->param;

    if (ngx_http_mqttapi_keep(r, &a->kept, body, tpl, strs, 2, "answer",
                              a - t->answers)
        == NGX_OK)
    {
        a->error = *err;
        a->error.code = strs[0];
        a->error.param = strs[1];
    }
}


ngx_int_t
ngx_http_mqttapi_answer_make(ngx_http_request_t *r,
    ngx_http_mqttapi_answer_t *a, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body)
{
    u_char      *p;
    size_t       len;
    ngx_int_t    retry_after;
    ngx_str_t    values[4], *v;
    ngx_msec_t   retry_after_ms;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: answer from kept answer #%ui",
                   (ngx_uint_t) (a - ngx_http_mqttapi_table->answers));

    /* the kept error, with this request's delay */

    retry_after = err->retry_after;
    retry_after_ms = err->retry_after_ms;

    *err = a->error;

    err->retry_after = retry_after;
    err->retry_after_ms = retry_after_ms;

    /*
     * what stands in the holes: the RequestId, the delay in s and in ms;
     * one allocation for the delays, each written back from the end of a
     * slot of its own where it stays, and the body, counted with the
     * delays at their longest and the RequestId as long as one made here
     */

    ngx_str_null(&values[NGX_HTTP_MQTTAPI_HOLE_NONE]);
    values[NGX_HTTP_MQTTAPI_HOLE_ID].len = NGX_HTTP_MQTTAPI_ID_LEN;
    values[NGX_HTTP_MQTTAPI_HOLE_SECONDS].len = NGX_INT_T_LEN;
    values[NGX_HTTP_MQTTAPI_HOLE_MSEC].len = NGX_INT_T_LEN;

    len = ngx_http_mqttapi_body_len(&a->kept, values);

    p = ngx_pnalloc(r->pool, 2 * NGX_INT_T_LEN + len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p += NGX_INT_T_LEN;
    v = &values[NGX_HTTP_MQTTAPI_HOLE_SECONDS];
    v->data = ngx_http_mqttapi_write_number_back(p, retry_after);
    v->len = p - v->data;

    p += NGX_INT_T_LEN;
    v = &values[NGX_HTTP_MQTTAPI_HOLE_MSEC];
    v->data = ngx_http_mqttapi_write_number_back(p,
                                                 (ngx_int_t) retry_after_ms);
    v->len = p - v->data;

    /* a RequestId made now is made where the body's first part ends */

    v = &values[NGX_HTTP_MQTTAPI_HOLE_ID];

    if (ngx_http_mqttapi_request_id(r, v,
                                    (a->kept.parts[0].hole
                                     == NGX_HTTP_MQTTAPI_HOLE_ID)
                                    ? p + a->kept.parts[0].text.len : NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (v->len > NGX_HTTP_MQTTAPI_ID_LEN) {
        /* the request's $request_id, made before and longer: more room */

        p = ngx_pnalloc(r->pool, ngx_http_mqttapi_body_len(&a->kept, values));
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    body->data = p;
    body->len = ngx_http_mqttapi_body_write(p, &a->kept, values) - p;

    return ngx_http_mqttapi_push_kept(r, &a->kept, values);
}


/*
 * The kept annotation for this error, the free place to keep one (not
 * ready yet), or NULL: the error must be annotated and cannot be kept.
 * The caller has checked that the body has only the OpenAPI's members.
 */

ngx_http_mqttapi_note_t *
ngx_http_mqttapi_note_get(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err)
{
    ngx_uint_t                 i;
    ngx_http_mqttapi_note_t   *n;
    ngx_http_mqttapi_table_t  *t;

    t = ngx_http_mqttapi_table;

    if (t == NULL
        || lcf->body != NGX_HTTP_MQTTAPI_BODY_AUGMENT
        || err->retryable || err->throttle || err->gateway || err->local)
    {
        return NULL;
    }

    for (i = 0; i < t->nnotes; i++) {
        n = &t->notes[i];

        if (n->conf == lcf
            && n->entry == err->entry
            && n->lang == err->lang
            && n->upstream_status == err->upstream_status
            && n->code_len == err->code.len
            && n->category.len == err->category.len
            && ngx_memcmp(n->code, err->code.data, err->code.len) == 0
            && ngx_memcmp(n->category.data, err->category.data,
                          err->category.len)
               == 0)
        {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "mqttapi: kept annotation #%ui is %s", i,
                           n->kept.state == NGX_HTTP_MQTTAPI_KEPT_READY
                           ? "ready" : "refused");

            return (n->kept.state == NGX_HTTP_MQTTAPI_KEPT_READY) ? n : NULL;
        }
    }

    if (t->nnotes == NGX_HTTP_MQTTAPI_NOTES) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: no place left to keep an annotation");
        return NULL;
    }

    n = &t->notes[t->nnotes];
    n->kept.state = 0;

    return n;
}


ngx_uint_t
ngx_http_mqttapi_note_ready(ngx_http_mqttapi_note_t *n)
{
    return n->kept.state == NGX_HTTP_MQTTAPI_KEPT_READY;
}


/*
 * The annotation just rendered kept in its free place: the members added
 * after the upstream's and the headers; the key is the error's, whose
 * category is the catalog's or a fixed word, as long-lived as the table.
 */

void
ngx_http_mqttapi_note_keep(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_note_t *n,
    ngx_http_mqttapi_error_t *err, ngx_http_mqttapi_template_t *tpl)
{
    ngx_http_mqttapi_table_t  *t;

    t = ngx_http_mqttapi_table;

    if (n != &t->notes[t->nnotes] || err->code.len > sizeof(n->code)) {
        return;
    }

    t->nnotes++;

    n->conf = lcf;
    n->entry = err->entry;
    n->category = err->category;
    n->lang = err->lang;
    n->upstream_status = err->upstream_status;
    n->code_len = err->code.len;
    ngx_memcpy(n->code, err->code.data, err->code.len);

    /* an annotation has nothing of its own request: no holes */

    if (tpl->nholes) {
        tpl->overflow = 1;
    }

    (void) ngx_http_mqttapi_keep(r, &n->kept, &tpl->added, tpl, NULL, 0,
                                 "annotation", n - t->notes);
}


ngx_int_t
ngx_http_mqttapi_note_make(ngx_http_request_t *r, ngx_http_mqttapi_note_t *n,
    ngx_http_mqttapi_error_t *err, ngx_str_t *body)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: annotation from kept annotation #%ui",
                   (ngx_uint_t) (n - ngx_http_mqttapi_table->notes));

    if (ngx_http_mqttapi_render_kept(r, err, body, &n->kept.parts[0].text)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_mqttapi_push_kept(r, &n->kept, NULL);
}


/*
 * Keeps "text" cut at the template's holes, the headers of the template
 * that are still live, and copies of "strs" (pointed at the copies), in
 * one allocation for the worker's lifetime; or marks the place refused.
 */

static ngx_int_t
ngx_http_mqttapi_keep(ngx_http_request_t *r, ngx_http_mqttapi_kept_t *k,
    ngx_str_t *text, ngx_http_mqttapi_template_t *tpl, ngx_str_t *strs,
    ngx_uint_t nstrs, char *what, ngx_uint_t place)
{
    ngx_int_t  rc;

    rc = ngx_http_mqttapi_keep_text(k, text, tpl, strs, nstrs);

    if (rc != NGX_OK) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: %s #%ui cannot be kept", what, place);

        k->state = NGX_HTTP_MQTTAPI_KEPT_REFUSED;
        return rc;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi: %s kept as #%ui, %ui parts", what, place,
                   k->nparts);

    k->state = NGX_HTTP_MQTTAPI_KEPT_READY;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_keep_text(ngx_http_mqttapi_kept_t *k, ngx_str_t *text,
    ngx_http_mqttapi_template_t *tpl, ngx_str_t *strs, ngx_uint_t nstrs)
{
    u_char                          *p;
    size_t                           len, at, end;
    ngx_uint_t                       i;
    ngx_table_elt_t                 *h, *kh;
    ngx_http_mqttapi_part_t         *part;

    if (tpl->overflow) {
        return NGX_DECLINED;
    }

    len = tpl->nheaders * sizeof(ngx_table_elt_t) + text->len;
    at = 0;

    for (i = 0; i < tpl->nholes; i++) {
        if (tpl->holes[i].at < at
            || tpl->holes[i].at + tpl->holes[i].len > text->len)
        {
            return NGX_DECLINED;
        }

        at = tpl->holes[i].at + tpl->holes[i].len;
    }

    for (i = 0; i < tpl->nheaders; i++) {
        h = tpl->headers[i];
        len += h->key.len + h->value.len;
    }

    for (i = 0; i < nstrs; i++) {
        len += strs[i].len;
    }

    p = ngx_alloc(len ? len : 1, ngx_cycle->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    k->headers = (ngx_table_elt_t *) p;
    p += tpl->nheaders * sizeof(ngx_table_elt_t);

    /* the text: a part before each hole, and the rest */

    at = 0;
    k->nparts = 0;

    for (i = 0; i <= tpl->nholes; i++) {
        end = (i < tpl->nholes) ? tpl->holes[i].at : text->len;

        part = &k->parts[k->nparts++];
        part->text.data = p;
        part->text.len = end - at;
        part->hole = (i < tpl->nholes) ? tpl->holes[i].hole
                                       : NGX_HTTP_MQTTAPI_HOLE_NONE;

        p = ngx_cpymem(p, text->data + at, end - at);

        if (i < tpl->nholes) {
            at = end + tpl->holes[i].len;
        }
    }

    /* the headers, but those hidden since they were pushed */

    k->nheaders = 0;
    k->nholes = 0;

    for (i = 0; i < tpl->nheaders; i++) {
        h = tpl->headers[i];

        if (h->hash == 0) {
            continue;
        }

        if (tpl->header_holes[i] != NGX_HTTP_MQTTAPI_HOLE_NONE) {
            k->holes[k->nholes].header = (u_char) k->nheaders;
            k->holes[k->nholes].hole = (u_char) tpl->header_holes[i];
            k->nholes++;
        }

        kh = &k->headers[k->nheaders++];

        ngx_memzero(kh, sizeof(ngx_table_elt_t));
        kh->hash = 1;

        kh->key.data = p;
        kh->key.len = h->key.len;
        p = ngx_cpymem(p, h->key.data, h->key.len);

        kh->value.data = p;
        kh->value.len = h->value.len;
        p = ngx_cpymem(p, h->value.data, h->value.len);
    }

    for (i = 0; i < nstrs; i++) {
        ngx_memcpy(p, strs[i].data, strs[i].len);
        strs[i].data = p;
        p += strs[i].len;
    }

    return NGX_OK;
}


static size_t
ngx_http_mqttapi_body_len(ngx_http_mqttapi_kept_t *k, ngx_str_t *values)
{
    size_t      len;
    ngx_uint_t  i;

    len = 0;

    for (i = 0; i < k->nparts; i++) {
        len += k->parts[i].text.len + values[k->parts[i].hole].len;
    }

    return len;
}


static u_char *
ngx_http_mqttapi_body_write(u_char *p, ngx_http_mqttapi_kept_t *k,
    ngx_str_t *values)
{
    ngx_uint_t                i;
    ngx_str_t                *v;
    ngx_http_mqttapi_part_t  *part;

    /* every part but the last is followed by its hole */

    part = k->parts;

    for (i = 1; i < k->nparts; i++, part++) {
        p = ngx_cpymem(p, part->text.data, part->text.len);

        v = &values[part->hole];

        if (v->data != p) {
            ngx_memcpy(p, v->data, v->len);
        }

        /* else it was made here (the RequestId) */

        p += v->len;
    }

    return ngx_cpymem(p, part->text.data, part->text.len);
}


/*
 * The kept headers pushed, with "values" in their holes.  They are copied
 * at once into the list's last part when they fit there, as
 * ngx_list_push() would have placed them one by one: a write into the
 * parts of an ngx_list_t, which the profile of the local reject showed to
 * be needed (bench/profile.sh, reject against return429_same: pushing
 * them one by one made the reject miss its target; see bench/PROFILE.md).
 */

static ngx_int_t
ngx_http_mqttapi_push_kept(ngx_http_request_t *r, ngx_http_mqttapi_kept_t *k,
    ngx_str_t *values)
{
    ngx_uint_t                       i, j;
    ngx_list_t                      *list;
    ngx_table_elt_t                 *h;
    ngx_http_mqttapi_header_hole_t  *hh;

    list = &r->headers_out.headers;

    if (list->size == sizeof(ngx_table_elt_t)
        && list->nalloc - list->last->nelts >= k->nheaders)
    {
        h = (ngx_table_elt_t *) list->last->elts + list->last->nelts;
        list->last->nelts += k->nheaders;

        ngx_memcpy(h, k->headers, k->nheaders * sizeof(ngx_table_elt_t));

        if (values) {
            for (j = 0; j < k->nholes; j++) {
                hh = &k->holes[j];
                h[hh->header].value = values[hh->hole];
            }
        }

        return NGX_OK;
    }

    hh = k->holes;
    j = 0;

    for (i = 0; i < k->nheaders; i++) {
        h = ngx_list_push(list);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = k->headers[i];

        if (j < k->nholes && hh[j].header == i) {
            if (values) {
                h->value = values[hh[j].hole];
            }

            j++;
        }
    }

    return NGX_OK;
}
