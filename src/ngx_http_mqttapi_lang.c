
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_headers.h"
#include "ngx_http_mqttapi_lang.h"


/*
 * Accept-Language negotiation (RFC 9110 12.5.4, RFC 4647 3.4 lookup):
 * each language range is matched against the aliases of every catalog
 * language, dropping subtags from the end ("zh-Hant-TW" -> "zh-Hant") until
 * one matches; the range with the highest q-value wins, the first one on a
 * tie; "q=0" excludes a language, "*" stands for the default language.  A
 * range whose weight is not one (";q=abc", ";q=1.5", ";level=1") is
 * ignored: it neither chooses nor excludes a language.
 */


#define NGX_HTTP_MQTTAPI_LANG_MAX_RANGES  32
#define NGX_HTTP_MQTTAPI_LANG_MAX_LEN     64


/* what the ranges said so far */

typedef struct {
    ngx_int_t                    best;        /* language, -1: none */
    ngx_int_t                    best_q;      /* in thousandths */
    ngx_int_t                    wildcard_q;
    uint64_t                     excluded;    /* by q=0, the first 64 */
    ngx_uint_t                   ranges;
} ngx_http_mqttapi_lang_choice_t;


static void ngx_http_mqttapi_lang_range(ngx_http_mqttapi_catalog_t *catalog,
    ngx_http_mqttapi_lang_choice_t *c, u_char *start, u_char *end);
static ngx_int_t ngx_http_mqttapi_lang_lookup(
    ngx_http_mqttapi_catalog_t *catalog, u_char *range, size_t len);
static ngx_int_t ngx_http_mqttapi_lang_qvalue(u_char *p, u_char *last);


ngx_uint_t
ngx_http_mqttapi_negotiate_lang(ngx_http_request_t *r,
    ngx_http_mqttapi_catalog_t *catalog)
{
    u_char                          *p, *last, *end;
    ngx_int_t                        lang;
    ngx_uint_t                       i;
    ngx_table_elt_t                 *h;
    ngx_http_mqttapi_lang_choice_t   c;

    static ngx_str_t  name = ngx_string("accept-language");

#if (NGX_HTTP_HEADERS)

    /*
     * nginx keeps the first Accept-Language header at hand: without one
     * the answer is the default language, with no walk over the headers
     */

    if (r->headers_in.accept_language == NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi lang: no Accept-Language, the default");
        return catalog->default_lang;
    }

#endif

    c.best = -1;
    c.best_q = 0;
    c.wildcard_q = 0;
    c.excluded = 0;
    c.ranges = 0;

    for (h = ngx_http_mqttapi_header(&r->headers_in.headers, &name, NULL,
                                     NGX_HTTP_MQTTAPI_HEADER_IN);
         h;
         h = ngx_http_mqttapi_header(&r->headers_in.headers, &name, h,
                                     NGX_HTTP_MQTTAPI_HEADER_IN))
    {
        p = h->value.data;
        last = p + h->value.len;

        while (p < last && c.ranges++ < NGX_HTTP_MQTTAPI_LANG_MAX_RANGES) {

            end = ngx_strlchr(p, last, ',');
            if (end == NULL) {
                end = last;
            }

            ngx_http_mqttapi_lang_range(catalog, &c, p, end);

            p = end + 1;
        }
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi lang: %ui ranges, best %i (q=%i), \"*\" q=%i",
                   c.ranges, c.best, c.best_q, c.wildcard_q);

    if (c.best >= 0 && c.best_q >= c.wildcard_q) {
        return c.best;
    }

    /* "*", or nothing acceptable: the default language unless excluded */

    lang = catalog->default_lang;

    if (lang >= 64 || !(c.excluded & ((uint64_t) 1 << lang))) {
        return lang;
    }

    for (i = 0; i < catalog->langs.nelts && i < 64; i++) {
        if (!(c.excluded & ((uint64_t) 1 << i))) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "mqttapi lang: the default is excluded, %ui", i);
            return i;
        }
    }

    return lang;
}


/* one language range, "zh-TW;q=0.8", between "start" and "end" */

static void
ngx_http_mqttapi_lang_range(ngx_http_mqttapi_catalog_t *catalog,
    ngx_http_mqttapi_lang_choice_t *c, u_char *start, u_char *end)
{
    u_char     *semi;
    ngx_int_t   q, lang;

    semi = ngx_strlchr(start, end, ';');

    q = (semi == NULL) ? 1000 : ngx_http_mqttapi_lang_qvalue(semi + 1, end);

    if (q == NGX_ERROR) {
        return;
    }

    if (semi) {
        end = semi;
    }

    while (start < end && (*start == ' ' || *start == '\t')) {
        start++;
    }

    while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    if (start == end) {
        return;
    }

    if (end - start == 1 && *start == '*') {
        if (q > c->wildcard_q) {
            c->wildcard_q = q;
        }

        return;
    }

    lang = ngx_http_mqttapi_lang_lookup(catalog, start, end - start);
    if (lang < 0) {
        return;
    }

    if (q == 0) {
        if (lang < 64) {
            c->excluded |= (uint64_t) 1 << lang;
        }

        if (c->best == lang) {
            c->best = -1;
            c->best_q = 0;
        }

        return;
    }

    if (lang < 64 && (c->excluded & ((uint64_t) 1 << lang))) {
        return;
    }

    if (q > c->best_q) {
        c->best = lang;
        c->best_q = q;
    }
}


static ngx_int_t
ngx_http_mqttapi_lang_lookup(ngx_http_mqttapi_catalog_t *catalog,
    u_char *range, size_t len)
{
    u_char                   *dash;
    ngx_str_t                *alias;
    ngx_uint_t                i, j;
    ngx_http_mqttapi_lang_t  *lang;

    if (len > NGX_HTTP_MQTTAPI_LANG_MAX_LEN) {
        return -1;
    }

    lang = catalog->langs.elts;

    for ( ;; ) {

        for (i = 0; i < catalog->langs.nelts; i++) {
            alias = lang[i].aliases->elts;

            for (j = 0; j < lang[i].aliases->nelts; j++) {
                if (alias[j].len == len
                    && ngx_strncasecmp(alias[j].data, range, len) == 0)
                {
                    return i;
                }
            }
        }

        /* RFC 4647 lookup: drop the last subtag, and a singleton before it */

        dash = NULL;

        for (i = len; i > 0; i--) {
            if (range[i - 1] == '-') {
                dash = &range[i - 1];
                break;
            }
        }

        if (dash == NULL) {
            return -1;
        }

        len = dash - range;

        if (len >= 2 && range[len - 2] == '-') {
            len -= 2;
        }
    }
}


/*
 * The weight after the ";" (RFC 9110 12.4.2): OWS "q=" qvalue OWS, where
 * qvalue is "0" [ "." 0*3DIGIT ] or "1" [ "." 0*3"0" ]; in thousandths.
 * Anything else is not a weight: NGX_ERROR.
 */

static ngx_int_t
ngx_http_mqttapi_lang_qvalue(u_char *p, u_char *last)
{
    ngx_int_t  q, scale;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    if (last - p < 3 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=') {
        return NGX_ERROR;
    }

    p += 2;

    if (*p != '0' && *p != '1') {
        return NGX_ERROR;
    }

    q = (*p++ - '0') * 1000;

    if (p < last) {
        if (*p++ != '.') {
            return NGX_ERROR;
        }

        for (scale = 100; p < last; p++, scale /= 10) {
            if (scale == 0 || *p < '0' || *p > '9') {
                return NGX_ERROR;
            }

            q += (*p - '0') * scale;
        }
    }

    return (q <= 1000) ? q : NGX_ERROR;
}
