
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_json.h"

#if (defined __SSE2__)
#include <emmintrin.h>
#endif


#if !(defined __SSE2__)
/* a 64-bit word with every byte set to b */
#define NGX_HTTP_MQTTAPI_BYTES(b)  ((uint64_t) (b) * 0x0101010101010101ULL)
#endif


static u_char *ngx_http_mqttapi_json_fast_string(u_char *p, u_char *last,
    ngx_uint_t *escaped);
static ngx_inline u_char *ngx_http_mqttapi_json_skip_ws(u_char *p,
    u_char *last);
static ngx_inline u_char *ngx_http_mqttapi_json_plain(u_char *p,
    u_char *last);
static size_t ngx_http_mqttapi_utf8_len(u_char *p, u_char *last);


/*
 * The common error body without jansson, whose per-byte lexer costs
 * several times the rest of the annotation.  Understood here: a flat JSON
 * object whose members are ASCII strings (two-character escapes only),
 * integers of up to 18 digits or decimals without exponent, true, false
 * and null, with a string "Code" without escapes, and no duplicate
 * member.  Anything else (nested values, \u escapes, bytes over 0x7f,
 * exponents, long numbers, more than NGX_HTTP_MQTTAPI_FAST_MEMBERS
 * members, any syntax error) is declined and goes to json_loadb(): every
 * body accepted here is one that jansson accepts with the same "Code",
 * and whatever is annotated or passed through is decided as jansson
 * would have it.
 *
 * *obj is what the rendering checks "never overwrite an upstream member"
 * against: NULL when the members are only the OpenAPI's own (RequestId,
 * HostId, Code, Message, Recommend), which are never annotation members;
 * else an object with the names of the other members (null values).
 */

#define NGX_HTTP_MQTTAPI_FAST_MEMBERS  32

#define ngx_http_mqttapi_json_key_is(key, name)                               \
    ((key)->len == sizeof(name) - 1                                           \
     && ngx_memcmp((key)->data, name, sizeof(name) - 1) == 0)


ngx_int_t
ngx_http_mqttapi_json_fast(ngx_http_request_t *r, ngx_str_t *body,
    ngx_str_t *code, json_t **obj)
{
    u_char      *p, *last, *start, *name;
    size_t       digits;
    ngx_str_t    keys[NGX_HTTP_MQTTAPI_FAST_MEMBERS], *key;
    ngx_uint_t   n, i, escaped, other;

    *obj = NULL;
    code->data = NULL;
    code->len = 0;

    p = body->data;
    last = p + body->len;

    p = ngx_http_mqttapi_json_skip_ws(p, last);

    if (p == last || *p++ != '{') {
        return NGX_DECLINED;
    }

    n = 0;
    other = 0;

    for ( ;; ) {

        /* the member's name: a string without escapes, not seen before */

        p = ngx_http_mqttapi_json_skip_ws(p, last);

        if (p == last || *p != '"' || n == NGX_HTTP_MQTTAPI_FAST_MEMBERS) {
            return NGX_DECLINED;
        }

        start = ++p;

        p = ngx_http_mqttapi_json_fast_string(p, last, &escaped);
        if (p == NULL || escaped) {
            return NGX_DECLINED;
        }

        key = &keys[n];
        key->data = start;
        key->len = p++ - start;

        for (i = 0; i < n; i++) {
            if (keys[i].len == key->len
                && ngx_memcmp(keys[i].data, key->data, key->len) == 0)
            {
                return NGX_DECLINED;
            }
        }

        n++;

        if (!ngx_http_mqttapi_json_key_is(key, "Code")
            && !ngx_http_mqttapi_json_key_is(key, "Message")
            && !ngx_http_mqttapi_json_key_is(key, "RequestId")
            && !ngx_http_mqttapi_json_key_is(key, "HostId")
            && !ngx_http_mqttapi_json_key_is(key, "Recommend"))
        {
            other++;
        }

        p = ngx_http_mqttapi_json_skip_ws(p, last);

        if (p == last || *p++ != ':') {
            return NGX_DECLINED;
        }

        p = ngx_http_mqttapi_json_skip_ws(p, last);

        if (p == last) {
            return NGX_DECLINED;
        }

        /* the value: a scalar; "Code" a string without escapes */

        if (*p == '"') {
            start = ++p;

            p = ngx_http_mqttapi_json_fast_string(p, last, &escaped);
            if (p == NULL) {
                return NGX_DECLINED;
            }

            if (ngx_http_mqttapi_json_key_is(key, "Code")) {
                if (escaped) {
                    return NGX_DECLINED;
                }

                code->data = start;
                code->len = p - start;
            }

            p++;

        } else if (ngx_http_mqttapi_json_key_is(key, "Code")) {
            return NGX_DECLINED;

        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {

            if (*p == '-') {
                p++;
            }

            start = p;

            while (p < last && *p >= '0' && *p <= '9') {
                p++;
            }

            digits = p - start;

            /* jansson refuses "01" and integers beyond long long */

            if (digits == 0 || digits > 18 || (digits > 1 && *start == '0')) {
                return NGX_DECLINED;
            }

            if (p < last && *p == '.') {
                start = ++p;

                while (p < last && *p >= '0' && *p <= '9') {
                    p++;
                }

                if (p == start) {
                    return NGX_DECLINED;
                }
            }

            if (p < last && (*p == 'e' || *p == 'E')) {
                return NGX_DECLINED;
            }

        } else {
            name = (*p == 't') ? (u_char *) "true"
                   : (*p == 'f') ? (u_char *) "false"
                   : (*p == 'n') ? (u_char *) "null" : NULL;

            if (name == NULL
                || (size_t) (last - p) < ngx_strlen(name)
                || ngx_strncmp(p, name, ngx_strlen(name)) != 0)
            {
                return NGX_DECLINED;
            }

            p += ngx_strlen(name);

            if (p < last
                && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            {
                return NGX_DECLINED;
            }
        }

        /* "," and the next member, or "}" */

        p = ngx_http_mqttapi_json_skip_ws(p, last);

        if (p == last) {
            return NGX_DECLINED;
        }

        if (*p == ',') {
            p++;
            continue;
        }

        if (*p++ != '}') {
            return NGX_DECLINED;
        }

        break;
    }

    p = ngx_http_mqttapi_json_skip_ws(p, last);

    if (p != last || code->data == NULL) {
        return NGX_DECLINED;
    }

    if (other == 0) {
        return NGX_OK;
    }

    *obj = json_object();
    if (*obj == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        name = ngx_pnalloc(r->pool, keys[i].len + 1);
        if (name == NULL) {
            goto failed;
        }

        ngx_memcpy(name, keys[i].data, keys[i].len);
        name[keys[i].len] = '\0';

        if (json_object_set_new_nocheck(*obj, (char *) name, json_null())
            != 0)
        {
            goto failed;
        }
    }

    return NGX_OK;

failed:

    json_decref(*obj);
    *obj = NULL;

    return NGX_ERROR;
}


/*
 * The end of a string (its closing quote), or NULL to decline.  The
 * characters that stand for themselves are skipped many at a time: 16
 * with SSE2 (every x86-64), else 8 in a 64-bit word; the first one that
 * does not, a '"', a '\\', a control or a non-ASCII byte, is then looked
 * at alone.
 */

static u_char *
ngx_http_mqttapi_json_fast_string(u_char *p, u_char *last,
    ngx_uint_t *escaped)
{
    *escaped = 0;

    while (p < last) {

        p = ngx_http_mqttapi_json_plain(p, last);

        if (p == last) {
            break;
        }

        if (*p == '"') {
            return p;
        }

        if (*p == '\\') {
            if (last - p < 2) {
                return NULL;
            }

            switch (p[1]) {
            case '"': case '\\': case '/': case 'b':
            case 'f': case 'n': case 'r': case 't':
                *escaped = 1;
                p += 2;
                continue;

            default:
                /* \u escapes and invalid ones: jansson decides */
                return NULL;
            }
        }

        /* controls are invalid, non-ASCII needs UTF-8 checks: jansson */

        return NULL;
    }

    return NULL;
}


/* the first byte from p on that is not plain ASCII text of a string */

static ngx_inline u_char *
ngx_http_mqttapi_json_plain(u_char *p, u_char *last)
{
#if (defined __SSE2__)
    int       mask;
    __m128i   v, quote, backslash, space, m;
#else
    uint64_t  w, q, b;
#endif

    /* 1: a character that stands for itself in a JSON string, in ASCII */

    static const u_char  plain[256] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* controls */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,   /* '"' */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,   /* '\\' */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
        /* 0x80-0xff: 0, UTF-8 is left to jansson */
    };

#if (defined __SSE2__)

    quote = _mm_set1_epi8('"');
    backslash = _mm_set1_epi8('\\');
    space = _mm_set1_epi8(' ');

    while (last - p >= 16) {
        v = _mm_loadu_si128((const __m128i *) p);

        /* '"', '\\', and below ' ' as signed bytes: controls, 0x80-0xff */

        m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                      _mm_cmpeq_epi8(v, backslash)),
                         _mm_cmplt_epi8(v, space));

        mask = _mm_movemask_epi8(m);

        if (mask) {
            return p + __builtin_ctz(mask);
        }

        p += 16;
    }

#else

    /*
     * "has a byte equal to (less than) n" as in the bit twiddling hacks:
     * a zero byte of w ^ n, of w - n
     */

    while (last - p >= 8) {
        ngx_memcpy(&w, p, 8);

        q = w ^ NGX_HTTP_MQTTAPI_BYTES('"');
        b = w ^ NGX_HTTP_MQTTAPI_BYTES('\\');

        w = (((q - NGX_HTTP_MQTTAPI_BYTES(1)) & ~q)
             | ((b - NGX_HTTP_MQTTAPI_BYTES(1)) & ~b)
             | ((w - NGX_HTTP_MQTTAPI_BYTES(0x20)) & ~w)
             | w)
            & NGX_HTTP_MQTTAPI_BYTES(0x80);

        if (w) {
#if (NGX_HAVE_LITTLE_ENDIAN && defined __GNUC__)
            /* the lowest flag is exact: go straight to that byte */
            return p + __builtin_ctzll(w) / 8;
#else
            break;
#endif
        }

        p += 8;
    }

#endif

    while (p < last && plain[*p]) {
        p++;
    }

    return p;
}


/* past the JSON whitespace from p on */

static ngx_inline u_char *
ngx_http_mqttapi_json_skip_ws(u_char *p, u_char *last)
{
    while (p < last
           && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    {
        p++;
    }

    return p;
}


/*
 * "src" as a JSON string literal, quotes included, for any bytes: '"',
 * '\\' and controls escaped as ngx_escape_json() does, and every byte
 * that does not begin a valid UTF-8 sequence written as U+FFFD, so that
 * what a client or a variable supplied never makes a body that strict
 * parsers refuse.
 */

ngx_int_t
ngx_http_mqttapi_json_quote(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    u_char  *p, *s, *run, *last;
    size_t   n;

    static u_char  replacement[] = "\xef\xbf\xbd";

    /* at most six bytes a byte: "\u001f" */

    p = ngx_pnalloc(pool, 2 + 6 * src->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dst->data = p;
    *p++ = '"';

    s = src->data;
    last = s + src->len;

    while (s < last) {

        for (run = s; s < last; s += n) {
            n = ngx_http_mqttapi_utf8_len(s, last);
            if (n == 0) {
                break;
            }
        }

        p = (u_char *) ngx_escape_json(p, run, s - run);

        if (s < last) {
            p = ngx_cpymem(p, replacement, sizeof(replacement) - 1);
            s++;
        }
    }

    *p++ = '"';
    dst->len = p - dst->data;

    return NGX_OK;
}


/*
 * The length of the valid UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0.
 */

static size_t
ngx_http_mqttapi_utf8_len(u_char *p, u_char *last)
{
    size_t  n, i;
    u_char  c, lo, hi;

    c = *p;

    if (c < 0x80) {
        return 1;
    }

    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = (c == 0xe0) ? 0xa0 : 0x80;
        hi = (c == 0xed) ? 0x9f : 0xbf;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = (c == 0xf0) ? 0x90 : 0x80;
        hi = (c == 0xf4) ? 0x8f : 0xbf;

    } else {
        return 0;
    }

    if ((size_t) (last - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}
