
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_headers.h"


/*
 * The next live header (hash != 0) after "after" (NULL: from the start)
 * in a request or response header list whose name is "name", or, with
 * NGX_HTTP_MQTTAPI_HEADER_PREFIX, begins with it; names compare
 * case-insensitively.  Request headers (NGX_HTTP_MQTTAPI_HEADER_IN) carry
 * their name in lowercase too (lowcase_key), which a lowercase "name" is
 * compared with as it stands; in response headers lowcase_key may be
 * unset (add_header leaves it so before nginx 1.23).
 */

ngx_table_elt_t *
ngx_http_mqttapi_header(ngx_list_t *headers, ngx_str_t *name,
    ngx_table_elt_t *after, ngx_uint_t flags)
{
    ngx_uint_t        i, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    found = (after == NULL);

    part = &headers->part;
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

        if (!found) {
            found = (&h[i] == after);
            continue;
        }

        if (h[i].hash == 0
            || h[i].key.len < name->len
            || (!(flags & NGX_HTTP_MQTTAPI_HEADER_PREFIX)
                && h[i].key.len != name->len))
        {
            continue;
        }

        if ((flags & NGX_HTTP_MQTTAPI_HEADER_IN) && h[i].lowcase_key) {
            if (ngx_memcmp(h[i].lowcase_key, name->data, name->len) != 0) {
                continue;
            }

        } else if (!ngx_http_mqttapi_caseeq(h[i].key.data, name->data,
                                            name->len))
        {
            continue;
        }

        return &h[i];
    }

    return NULL;
}


/*
 * The value of the query argument "name", as ngx_http_arg() and $arg_name
 * give it (the first "name=" at the start or after a '&', the name
 * compared case-insensitively, the value as it stands), found one '&' at
 * a time with memchr() instead of with ngx_strlcasestrn() over the whole
 * query: the back-off key and the Action are looked up on every local
 * answer.
 */

ngx_int_t
ngx_http_mqttapi_arg(ngx_http_request_t *r, ngx_str_t *name, ngx_str_t *value)
{
    u_char  *p, *start, *last;

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        start = p;

        p = memchr(p, '&', last - p);
        if (p == NULL) {
            p = last;
        }

        if ((size_t) (p - start) > name->len
            && start[name->len] == '='
            && ngx_http_mqttapi_caseeq(start, name->data, name->len))
        {
            value->data = start + name->len + 1;
            value->len = p - value->data;
            return NGX_OK;
        }

        p++;
    }

    return NGX_DECLINED;
}
