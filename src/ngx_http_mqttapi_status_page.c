
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_render.h"
#include "ngx_http_mqttapi_status.h"


/*
 * The status page (SPEC 7): src/ngx_http_mqttapi_status.html, compiled in
 * by config with the Content-Security-Policy that allows its inline style
 * and script by their hashes and nothing else but requests to the page's
 * own origin (the JSON it polls).  It is the same for every request.
 */


extern const unsigned char  ngx_http_mqttapi_status_page_data[];
extern const size_t         ngx_http_mqttapi_status_page_len;
extern const char           ngx_http_mqttapi_status_page_csp[];


static ngx_str_t  ngx_http_mqttapi_status_html_type =
    ngx_string("text/html; charset=utf-8");


ngx_int_t
ngx_http_mqttapi_status_page(ngx_http_request_t *r)
{
    ngx_str_t   body;
    ngx_uint_t  i;

    static ngx_str_t  headers[][2] = {
        { ngx_string("Content-Security-Policy"), ngx_null_string },
        { ngx_string("X-Content-Type-Options"), ngx_string("nosniff") },
        { ngx_string("Referrer-Policy"), ngx_string("no-referrer") }
    };

    headers[0][1].data = (u_char *) ngx_http_mqttapi_status_page_csp;
    headers[0][1].len = ngx_strlen(ngx_http_mqttapi_status_page_csp);

    body.data = (u_char *) ngx_http_mqttapi_status_page_data;
    body.len = ngx_http_mqttapi_status_page_len;

    if (ngx_http_mqttapi_status_headers(r, &ngx_http_mqttapi_status_html_type,
                                        body.len)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        if (ngx_http_mqttapi_render_header(r, NULL, &headers[i][0],
                                           &headers[i][1], 0)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_mqttapi_send_body(r, &body, ngx_http_send_header,
                                      ngx_http_output_filter);
}
