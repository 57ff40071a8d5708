
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
            if (!ngx_http_mqttapi_eq(h[i].lowcase_key, name->data,
                                     name->len))
            {
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
