
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
 * Whether the "len" bytes at "p" are those at "s", case-insensitively.
 * Clients and the upstream mostly send names as spelled in the
 * configuration or the API, so a memcmp() first and ngx_strncasecmp(),
 * which folds every byte, only when that fails.
 */

static ngx_inline ngx_uint_t
ngx_http_mqttapi_caseeq(u_char *p, u_char *s, size_t len)
{
    return ngx_memcmp(p, s, len) == 0 || ngx_strncasecmp(p, s, len) == 0;
}


ngx_table_elt_t *ngx_http_mqttapi_header(ngx_list_t *headers,
    ngx_str_t *name, ngx_table_elt_t *after, ngx_uint_t flags);


#endif /* _NGX_HTTP_MQTTAPI_HEADERS_H_INCLUDED_ */
