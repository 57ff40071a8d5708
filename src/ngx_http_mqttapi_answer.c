
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_answer.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_id.h"
#include "ngx_http_mqttapi_lang.h"
#include "ngx_http_mqttapi_render.h"


/*
 * Prepared local answers.  While a key is backed off, every one of its
 * requests gets the same answer but for the RequestId and the delay left:
 * the first local answer of a location for a code, an action of the
 * catalog (or none: an action the catalog does not list says nothing
 * about the answer, so made-up ones take no place of their own) and a
 * language is resolved and rendered as usual, then kept, per worker, as
 * body parts and headers with holes for those values; the next ones are
 * copied from it.  Kept answers live as long as the configuration (the
 * cycle pool) and are never replaced, so that a request still being sent
 * never sees its answer change; past NGX_HTTP_MQTTAPI_ANSWERS per location,
 * or when mqttapi_host_id has variables, answers are rendered each time.
 */


/*
 * Prepared annotations, the same way.  An upstream error whose body the
 * fast scan read with only the OpenAPI's own members (nothing of it can
 * clash with an annotation member) and that is not retryable (no delay)
 * gets the same members and headers for a code, a language, a category
 * and an upstream status, whatever else the request and the body say:
 * the first one of a location is annotated as usual and what was added
 * kept, the next ones have it added as it is.
 */


#define NGX_HTTP_MQTTAPI_ANSWERS   16
#define NGX_HTTP_MQTTAPI_NOTES     16
#define NGX_HTTP_MQTTAPI_PARTS     4
#define NGX_HTTP_MQTTAPI_HOLES     4      /* headers with a delay */

/* what stands in a hole: a delay of ngx_http_mqttapi_delay_header(), or */

#define NGX_HTTP_MQTTAPI_HOLE_NONE     NGX_HTTP_MQTTAPI_DELAY_NONE
#define NGX_HTTP_MQTTAPI_HOLE_SECONDS  NGX_HTTP_MQTTAPI_DELAY_SECONDS
#define NGX_HTTP_MQTTAPI_HOLE_MSEC     NGX_HTTP_MQTTAPI_DELAY_MSEC
#define NGX_HTTP_MQTTAPI_HOLE_ID       3


typedef struct {
    ngx_str_t                          text;
    ngx_uint_t                         hole;      /* after the text */
} ngx_http_mqttapi_part_t;


typedef struct {
    ngx_uint_t                         header;    /* its index */
    ngx_uint_t                         hole;      /* instead of the value */
} ngx_http_mqttapi_hole_t;


struct ngx_http_mqttapi_answer_s {
    ngx_str_t                          code;
    ngx_http_mqttapi_action_t         *action;
    ngx_uint_t                         lang;

    ngx_http_mqttapi_error_t           error;

    ngx_uint_t                         nparts;
    ngx_http_mqttapi_part_t            parts[NGX_HTTP_MQTTAPI_PARTS];

    /* response headers as they are pushed, and which values are holes */

    ngx_uint_t                         nheaders;
    ngx_table_elt_t                   *headers;

    ngx_uint_t                         nholes;
    ngx_http_mqttapi_hole_t            holes[NGX_HTTP_MQTTAPI_HOLES];
};


typedef struct {
    ngx_uint_t                         n;
    ngx_http_mqttapi_answer_t          a[NGX_HTTP_MQTTAPI_ANSWERS];
} ngx_http_mqttapi_answers_t;


struct ngx_http_mqttapi_note_s {
    ngx_http_mqttapi_entry_t          *entry;
    ngx_str_t                          code;
    ngx_str_t                          category;
    ngx_uint_t                         lang;
    ngx_uint_t                         upstream_status;

    ngx_str_t                          members;   /* after the upstream's */

    ngx_uint_t                         nheaders;
    ngx_table_elt_t                   *headers;   /* NULL: not ready */
};


typedef struct {
    ngx_uint_t                         n;
    ngx_http_mqttapi_note_t            a[NGX_HTTP_MQTTAPI_NOTES];
} ngx_http_mqttapi_notes_t;


static ngx_http_mqttapi_answer_t *ngx_http_mqttapi_answer_kept(
    ngx_http_mqttapi_answers_t *as, ngx_str_t *action, ngx_uint_t lang,
    ngx_str_t *code);
static ngx_int_t ngx_http_mqttapi_answer_split(ngx_http_mqttapi_answer_t *a,
    ngx_str_t *body, ngx_str_t *id, ngx_http_mqttapi_error_t *err);
static u_char *ngx_http_mqttapi_answer_find(u_char *p, u_char *last,
    u_char *s, size_t len);
static ngx_int_t ngx_http_mqttapi_answer_copy(ngx_str_t *dst, ngx_str_t *src);
static ngx_table_elt_t *ngx_http_mqttapi_keep_headers(ngx_http_request_t *r,
    ngx_uint_t first, ngx_uint_t *n, ngx_http_mqttapi_hole_t *holes,
    ngx_uint_t *nholes);
static ngx_inline ngx_int_t ngx_http_mqttapi_push_kept(ngx_http_request_t *r,
    ngx_table_elt_t *kept, ngx_uint_t n, ngx_http_mqttapi_hole_t *holes,
    ngx_uint_t nholes, ngx_table_elt_t **at);
static ngx_inline void ngx_http_mqttapi_answer_fill(ngx_table_elt_t *h,
    ngx_uint_t hole, ngx_str_t *seconds, ngx_str_t *msec);


static ngx_str_t  ngx_http_mqttapi_answer_retry_member =
    ngx_string(",\"RetryAfter\":");


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
    ngx_http_mqttapi_action_t   *action;
    ngx_http_mqttapi_answer_t   *a;
    ngx_http_mqttapi_answers_t  *as;

    if (lcf->host_id && lcf->host_id->lengths) {
        /* the HostId may differ from request to request */
        return NULL;
    }

    lang = ngx_http_mqttapi_negotiate_lang(r, lcf->catalog);

    as = lcf->answers;

    if (as == NULL) {
        as = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_http_mqttapi_answers_t));
        if (as == NULL) {
            return NULL;
        }

        lcf->answers = as;
    }

    /*
     * names of the catalog's actions compare exactly: a kept answer of an
     * action is found by the request's spelling of it, without the hash;
     * an action the catalog does not list gets the answer of no Action
     */

    action = NULL;

    if (ngx_http_mqttapi_request_action_name(r, &name) == NGX_OK) {
        a = ngx_http_mqttapi_answer_kept(as, &name, lang, code);
        if (a) {
            return a;
        }

        action = ngx_http_mqttapi_catalog_action(lcf->catalog, &name);
    }

    if (action == NULL) {
        a = ngx_http_mqttapi_answer_kept(as, NULL, lang, code);
        if (a) {
            return a;
        }
    }

    if (as->n == NGX_HTTP_MQTTAPI_ANSWERS) {
        return NULL;
    }

    /* the next free place; it counts once ngx_http_mqttapi_answer_keep() */

    a = &as->a[as->n];

    a->code = *code;
    a->action = action;
    a->lang = lang;
    a->headers = NULL;

    return a;
}


/*
 * A kept answer for the code and the language, of the action so spelled
 * or, with action NULL, of no action.
 */

static ngx_http_mqttapi_answer_t *
ngx_http_mqttapi_answer_kept(ngx_http_mqttapi_answers_t *as,
    ngx_str_t *action, ngx_uint_t lang, ngx_str_t *code)
{
    ngx_uint_t                  i;
    ngx_http_mqttapi_answer_t  *a;

    for (i = 0; i < as->n; i++) {
        a = &as->a[i];

        if (a->lang != lang
            || a->code.len != code->len
            || ngx_memcmp(a->code.data, code->data, code->len) != 0)
        {
            continue;
        }

        if (action == NULL) {
            if (a->action == NULL) {
                return a;
            }

        } else if (a->action
                   && a->action->name.len == action->len
                   && ngx_memcmp(a->action->name.data, action->data,
                                 action->len)
                      == 0)
        {
            return a;
        }
    }

    return NULL;
}


ngx_uint_t
ngx_http_mqttapi_answer_ready(ngx_http_mqttapi_answer_t *a)
{
    return a->headers != NULL;
}


/* how many response headers there are: the answer's come after them */

ngx_uint_t
ngx_http_mqttapi_answer_headers(ngx_http_request_t *r)
{
    ngx_uint_t        n;
    ngx_list_part_t  *part;

    n = 0;

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    return n;
}


void
ngx_http_mqttapi_answer_keep(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_answer_t *a,
    ngx_http_mqttapi_error_t *err, ngx_str_t *body, ngx_uint_t first)
{
    ngx_str_t                          id;
    ngx_table_elt_t                   *kh;
    ngx_http_mqttapi_answers_t        *as;

    as = lcf->answers;

    if (a != &as->a[as->n]
        || ngx_http_mqttapi_request_id(r, &id) != NGX_OK
        || id.len == 0)
    {
        return;
    }

    if (ngx_http_mqttapi_answer_split(a, body, &id, err) != NGX_OK) {
        return;
    }

    a->error = *err;

    if (ngx_http_mqttapi_answer_copy(&a->code, &a->code) != NGX_OK
        || ngx_http_mqttapi_answer_copy(&a->error.code, &err->code)
           != NGX_OK
        || ngx_http_mqttapi_answer_copy(&a->error.param, &err->param)
           != NGX_OK)
    {
        return;
    }

    kh = ngx_http_mqttapi_keep_headers(r, first, &a->nheaders, a->holes,
                                       &a->nholes);
    if (kh == NULL) {
        return;
    }

    /* ready */

    a->headers = kh;
    as->n++;
}


ngx_int_t
ngx_http_mqttapi_answer_make(ngx_http_request_t *r,
    ngx_http_mqttapi_answer_t *a, ngx_http_mqttapi_error_t *err,
    ngx_str_t *body)
{
    u_char           *p;
    size_t            len;
    ngx_int_t         retry_after;
    ngx_str_t         id, seconds, msec;
    ngx_uint_t        i;
    ngx_msec_t        retry_after_ms;
    ngx_table_elt_t  *at[NGX_HTTP_MQTTAPI_HOLES];

    /* the kept error, with this request's delay */

    retry_after = err->retry_after;
    retry_after_ms = err->retry_after_ms;

    *err = a->error;

    err->retry_after = retry_after;
    err->retry_after_ms = retry_after_ms;

    if (ngx_http_mqttapi_request_id(r, &id) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the delay in seconds (the body and Retry-After) and in ms, the body */

    len = 2 * NGX_INT_T_LEN;

    for (i = 0; i < a->nparts; i++) {
        len += a->parts[i].text.len + ngx_max(id.len, NGX_INT_T_LEN);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    seconds.data = p;
    seconds.len = ngx_http_mqttapi_write_number(p, err->retry_after) - p;
    p += seconds.len;

    msec.data = p;
    msec.len = ngx_http_mqttapi_write_number(p, (ngx_int_t) retry_after_ms)
               - p;
    p += msec.len;

    body->data = p;

    for (i = 0; i < a->nparts; i++) {
        p = ngx_cpymem(p, a->parts[i].text.data, a->parts[i].text.len);

        if (a->parts[i].hole == NGX_HTTP_MQTTAPI_HOLE_ID) {
            p = ngx_cpymem(p, id.data, id.len);

        } else if (a->parts[i].hole == NGX_HTTP_MQTTAPI_HOLE_SECONDS) {
            p = ngx_cpymem(p, seconds.data, seconds.len);
        }
    }

    body->len = p - body->data;

    /* the headers, then the delays put in their holes */

    if (ngx_http_mqttapi_push_kept(r, a->headers, a->nheaders, a->holes,
                                   a->nholes, at)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < a->nholes; i++) {
        ngx_http_mqttapi_answer_fill(at[i], a->holes[i].hole, &seconds,
                                     &msec);
    }

    return NGX_OK;
}


static ngx_inline void
ngx_http_mqttapi_answer_fill(ngx_table_elt_t *h, ngx_uint_t hole,
    ngx_str_t *seconds, ngx_str_t *msec)
{
    h->value = (hole == NGX_HTTP_MQTTAPI_HOLE_MSEC) ? *msec : *seconds;
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
    ngx_http_mqttapi_notes_t  *ns;

    if (lcf->body != NGX_HTTP_MQTTAPI_BODY_AUGMENT
        || err->retryable || err->throttle || err->gateway || err->local)
    {
        return NULL;
    }

    ns = lcf->notes;

    if (ns == NULL) {
        ns = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_http_mqttapi_notes_t));
        if (ns == NULL) {
            return NULL;
        }

        lcf->notes = ns;
    }

    for (i = 0; i < ns->n; i++) {
        n = &ns->a[i];

        if (n->entry == err->entry
            && n->lang == err->lang
            && n->upstream_status == err->upstream_status
            && n->code.len == err->code.len
            && n->category.len == err->category.len
            && ngx_memcmp(n->code.data, err->code.data, err->code.len) == 0
            && ngx_memcmp(n->category.data, err->category.data,
                          err->category.len)
               == 0)
        {
            return n;
        }
    }

    if (ns->n == NGX_HTTP_MQTTAPI_NOTES) {
        return NULL;
    }

    n = &ns->a[ns->n];
    n->headers = NULL;

    return n;
}


ngx_uint_t
ngx_http_mqttapi_note_ready(ngx_http_mqttapi_note_t *n)
{
    return n->headers != NULL;
}


/* what the annotation added: the members, the headers after "first" */

void
ngx_http_mqttapi_note_keep(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_note_t *n,
    ngx_http_mqttapi_error_t *err, ngx_str_t *members, ngx_uint_t first)
{
    ngx_table_elt_t           *kh;
    ngx_http_mqttapi_notes_t  *ns;

    ns = lcf->notes;

    if (n != &ns->a[ns->n]) {
        return;
    }

    if (ngx_http_mqttapi_answer_copy(&n->code, &err->code) != NGX_OK
        || ngx_http_mqttapi_answer_copy(&n->category, &err->category)
           != NGX_OK
        || ngx_http_mqttapi_answer_copy(&n->members, members) != NGX_OK)
    {
        return;
    }

    n->entry = err->entry;
    n->lang = err->lang;
    n->upstream_status = err->upstream_status;

    kh = ngx_http_mqttapi_keep_headers(r, first, &n->nheaders, NULL, NULL);
    if (kh == NULL) {
        return;
    }

    /* ready */

    n->headers = kh;
    ns->n++;
}


ngx_int_t
ngx_http_mqttapi_note_make(ngx_http_request_t *r, ngx_http_mqttapi_note_t *n,
    ngx_http_mqttapi_error_t *err, ngx_str_t *body)
{
    if (ngx_http_mqttapi_render_kept(r, err, body, &n->members) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_mqttapi_push_kept(r, n->headers, n->nheaders, NULL, 0,
                                      NULL);
}


/*
 * The response headers after the first "first", copied to the cycle pool,
 * and which of them are delays ("holes"; with holes NULL, a delay makes
 * them not kept).
 */

static ngx_table_elt_t *
ngx_http_mqttapi_keep_headers(ngx_http_request_t *r, ngx_uint_t first,
    ngx_uint_t *n, ngx_http_mqttapi_hole_t *holes, ngx_uint_t *nholes)
{
    ngx_uint_t        i, hole;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *kh;

    i = ngx_http_mqttapi_answer_headers(r) - first;

    kh = ngx_palloc(ngx_cycle->pool, (i ? i : 1) * sizeof(ngx_table_elt_t));
    if (kh == NULL) {
        return NULL;
    }

    *n = 0;

    if (nholes) {
        *nholes = 0;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (first) {
            first--;
            continue;
        }

        if (h[i].hash == 0) {
            continue;
        }

        hole = ngx_http_mqttapi_delay_header(&h[i]);

        if (hole != NGX_HTTP_MQTTAPI_HOLE_NONE) {
            if (holes == NULL || *nholes == NGX_HTTP_MQTTAPI_HOLES) {
                return NULL;
            }

            holes[*nholes].header = *n;
            holes[*nholes].hole = hole;
            (*nholes)++;
        }

        ngx_memzero(&kh[*n], sizeof(ngx_table_elt_t));
        kh[*n].hash = 1;

        if (ngx_http_mqttapi_answer_copy(&kh[*n].key, &h[i].key) != NGX_OK
            || ngx_http_mqttapi_answer_copy(&kh[*n].value, &h[i].value)
               != NGX_OK)
        {
            return NULL;
        }

        (*n)++;
    }

    return kh;
}


/*
 * Kept headers pushed: copied at once into the list's last part when they
 * fit there, as ngx_list_push() would have placed them, else one by one;
 * at[] gets where the holes are.
 */

static ngx_inline ngx_int_t
ngx_http_mqttapi_push_kept(ngx_http_request_t *r, ngx_table_elt_t *kept,
    ngx_uint_t n, ngx_http_mqttapi_hole_t *holes, ngx_uint_t nholes,
    ngx_table_elt_t **at)
{
    ngx_uint_t        i, j;
    ngx_list_t       *list;
    ngx_table_elt_t  *h;

    list = &r->headers_out.headers;

    if (list->size == sizeof(ngx_table_elt_t)
        && list->nalloc - list->last->nelts >= n)
    {
        h = (ngx_table_elt_t *) list->last->elts + list->last->nelts;
        list->last->nelts += n;

        ngx_memcpy(h, kept, n * sizeof(ngx_table_elt_t));

        for (j = 0; j < nholes; j++) {
            at[j] = &h[holes[j].header];
        }

        return NGX_OK;
    }

    j = 0;

    for (i = 0; i < n; i++) {
        h = ngx_list_push(list);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = kept[i];

        if (j < nholes && holes[j].header == i) {
            at[j++] = h;
        }
    }

    return NGX_OK;
}


/*
 * The body as parts: text, then the RequestId (every place it stands) or
 * the RetryAfter value.  A quote inside a JSON string is escaped, so
 * ',"RetryAfter":' stands only before the member's value.
 */

static ngx_int_t
ngx_http_mqttapi_answer_split(ngx_http_mqttapi_answer_t *a, ngx_str_t *body,
    ngx_str_t *id, ngx_http_mqttapi_error_t *err)
{
    u_char     *p, *last, *at, *retry, *q, digits[NGX_INT_T_LEN];
    size_t      len;
    ngx_str_t   text, *m;

    m = &ngx_http_mqttapi_answer_retry_member;
    len = 0;

    p = body->data;
    last = body->data + body->len;

    retry = ngx_http_mqttapi_answer_find(p, last, m->data, m->len);

    if (retry) {
        retry += m->len;

        len = ngx_http_mqttapi_write_number(digits, err->retry_after) - digits;

        if ((size_t) (last - retry) < len
            || ngx_memcmp(retry, digits, len) != 0
            || (retry + len < last && retry[len] >= '0' && retry[len] <= '9'))
        {
            return NGX_DECLINED;
        }
    }

    a->nparts = 0;

    for ( ;; ) {

        if (a->nparts == NGX_HTTP_MQTTAPI_PARTS) {
            return NGX_DECLINED;
        }

        at = ngx_http_mqttapi_answer_find(p, last, id->data, id->len);

        if (retry && retry >= p && (at == NULL || retry < at)) {
            q = retry;
            a->parts[a->nparts].hole = NGX_HTTP_MQTTAPI_HOLE_SECONDS;

        } else if (at) {
            q = at;
            a->parts[a->nparts].hole = NGX_HTTP_MQTTAPI_HOLE_ID;

        } else {
            q = last;
            a->parts[a->nparts].hole = NGX_HTTP_MQTTAPI_HOLE_NONE;
        }

        text.data = p;
        text.len = q - p;

        if (ngx_http_mqttapi_answer_copy(&a->parts[a->nparts].text, &text)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        switch (a->parts[a->nparts++].hole) {

        case NGX_HTTP_MQTTAPI_HOLE_SECONDS:
            p = q + len;
            break;

        case NGX_HTTP_MQTTAPI_HOLE_ID:
            p = q + id->len;
            break;

        default: /* NGX_HTTP_MQTTAPI_HOLE_NONE */
            return NGX_OK;
        }
    }
}


static u_char *
ngx_http_mqttapi_answer_find(u_char *p, u_char *last, u_char *s, size_t len)
{
    for ( /* void */ ; p + len <= last; p++) {
        if (*p == *s && ngx_memcmp(p, s, len) == 0) {
            return p;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_mqttapi_answer_copy(ngx_str_t *dst, ngx_str_t *src)
{
    u_char  *p;

    if (src->len == 0) {
        ngx_str_null(dst);
        return NGX_OK;
    }

    p = ngx_pnalloc(ngx_cycle->pool, src->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, src->data, src->len);

    dst->data = p;
    dst->len = src->len;

    return NGX_OK;
}
