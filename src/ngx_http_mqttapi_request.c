
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_headers.h"
#include "ngx_http_mqttapi_request.h"


/*
 * What the request says of itself, read without changing it: its query
 * arguments and the API action it calls.
 */


/*
 * The value of the query argument "name", as ngx_http_arg() and $arg_name
 * give it (the first "name=" at the start or after a '&', the name
 * compared case-insensitively, the value as it stands), found one '&' at
 * a time with memchr() instead of with ngx_strlcasestrn() over the whole
 * query: the back-off key and the Action are looked up on every local
 * answer.
 */

ngx_int_t
ngx_http_mqttapi_request_arg(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
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


/*
 * The Action of the request (the x-acs-action header, else the Action
 * argument) as the catalog knows it, or NULL: an action the catalog does
 * not list is looked up no further, whatever it says.
 */

ngx_http_mqttapi_action_t *
ngx_http_mqttapi_request_action(ngx_http_request_t *r,
    ngx_http_mqttapi_catalog_t *catalog)
{
    ngx_str_t  action;

    if (ngx_http_mqttapi_request_action_name(r, &action) != NGX_OK) {
        return NULL;
    }

    return ngx_http_mqttapi_catalog_action(catalog, &action);
}


/* how the request spells its Action, if it has one a catalog could list */

ngx_int_t
ngx_http_mqttapi_request_action_name(ngx_http_request_t *r, ngx_str_t *action)
{
    ngx_table_elt_t  *h;

    static ngx_str_t  name = ngx_string("x-acs-action");
    static ngx_str_t  arg = ngx_string("Action");

    h = ngx_http_mqttapi_header(&r->headers_in.headers, &name, NULL,
                                NGX_HTTP_MQTTAPI_HEADER_IN);

    if (h) {
        *action = h->value;

    } else {
        ngx_str_null(action);
    }

    if (action->len == 0
        && ngx_http_mqttapi_request_arg(r, &arg, action) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (action->len == 0 || action->len > NGX_HTTP_MQTTAPI_NAME_MAX_LEN) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}
