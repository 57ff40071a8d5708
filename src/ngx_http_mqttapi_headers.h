
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_HEADERS_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_HEADERS_H_INCLUDED_


#include "ngx_http_mqttapi.h"


/* ngx_http_mqttapi_header() flags */
#define NGX_HTTP_MQTTAPI_HEADER_PREFIX  0x01  /* names beginning with it */
#define NGX_HTTP_MQTTAPI_HEADER_IN      0x02  /* request headers; the name
                                                 is given in lowercase */


/*
 * Whether the "len" bytes at "p" are those at "s".  The names, codes and
 * actions a local answer is found by are short, and a call of memcmp()
 * costs more than comparing them here: a word at a time, the last word
 * read where it ends (overlapping the one before), no byte outside.
 */

static ngx_inline ngx_uint_t
ngx_http_mqttapi_eq(u_char *p, u_char *s, size_t len)
{
    uint32_t  c, d;
    uint64_t  a, b;

    if (len >= 8) {

        for ( /* void */ ; len > 8; p += 8, s += 8, len -= 8) {
            ngx_memcpy(&a, p, 8);
            ngx_memcpy(&b, s, 8);

            if (a != b) {
                return 0;
            }
        }

        ngx_memcpy(&a, p + len - 8, 8);
        ngx_memcpy(&b, s + len - 8, 8);

        return a == b;
    }

    if (len >= 4) {
        ngx_memcpy(&c, p, 4);
        ngx_memcpy(&d, s, 4);

        if (c != d) {
            return 0;
        }

        ngx_memcpy(&c, p + len - 4, 4);
        ngx_memcpy(&d, s + len - 4, 4);

        return c == d;
    }

    while (len--) {
        if (*p++ != *s++) {
            return 0;
        }
    }

    return 1;
}


/*
 * Whether the "len" bytes at "p" are those at "s", case-insensitively.
 * Clients and the upstream mostly send names as spelled in the
 * configuration or the API, so an exact comparison first and
 * ngx_strncasecmp(), which folds every byte, only when that fails.
 */

static ngx_inline ngx_uint_t
ngx_http_mqttapi_caseeq(u_char *p, u_char *s, size_t len)
{
    return ngx_http_mqttapi_eq(p, s, len)
           || ngx_strncasecmp(p, s, len) == 0;
}


ngx_table_elt_t *ngx_http_mqttapi_header(ngx_list_t *headers,
    ngx_str_t *name, ngx_table_elt_t *after, ngx_uint_t flags);


#endif /* _NGX_HTTP_MQTTAPI_HEADERS_H_INCLUDED_ */
