
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


/*
 * A differential fuzzer (libFuzzer) for the fast scan of error bodies,
 * src/ngx_http_mqttapi_json.c, against jansson: every body the scan takes
 * must be one json_loadb(JSON_REJECT_DUPLICATES) takes, an object whose
 * "Code" is the same string, and whose members other than the OpenAPI's
 * own are the ones the scan reports.  Also the quoting of strings the
 * gateway writes into bodies: whatever the bytes, jansson reads the
 * literal back as a string, the very bytes when they were valid UTF-8.
 * Built and run by `make fuzz` (clang), once as compiled for this machine
 * and once without SSE2.
 */


#include "ngx_http_mqttapi_json.c"


/* the scan's only allocations: names of members, freed after each run */

#define NGX_HTTP_MQTTAPI_FUZZ_ALLOCS  (NGX_HTTP_MQTTAPI_FAST_MEMBERS + 1)

static void        *ngx_http_mqttapi_fuzz_allocs[NGX_HTTP_MQTTAPI_FUZZ_ALLOCS];
static ngx_uint_t   ngx_http_mqttapi_fuzz_nallocs;


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    if (ngx_http_mqttapi_fuzz_nallocs == NGX_HTTP_MQTTAPI_FUZZ_ALLOCS) {
        return NULL;
    }

    p = malloc(size);

    ngx_http_mqttapi_fuzz_allocs[ngx_http_mqttapi_fuzz_nallocs++] = p;

    return p;
}


static void
ngx_http_mqttapi_fuzz_free(void)
{
    while (ngx_http_mqttapi_fuzz_nallocs) {
        free(ngx_http_mqttapi_fuzz_allocs[--ngx_http_mqttapi_fuzz_nallocs]);
    }
}


/*
 * nginx's JSON escaping, for the quoting (the harness links no nginx
 * object): '"' and '\\' after a backslash, controls as \uXXXX; with no
 * "dst" the number of bytes the escapes add.
 */

uintptr_t
ngx_escape_json(u_char *dst, u_char *src, size_t size)
{
    u_char      ch;
    ngx_uint_t  n;

    static u_char  hex[] = "0123456789abcdef";

    if (dst == NULL) {
        n = 0;

        while (size--) {
            ch = *src++;

            if (ch == '"' || ch == '\\') {
                n++;

            } else if (ch < 0x20) {
                n += 5;
            }
        }

        return n;
    }

    while (size--) {
        ch = *src++;

        if (ch == '"' || ch == '\\') {
            *dst++ = '\\';
            *dst++ = ch;

        } else if (ch < 0x20) {
            *dst++ = '\\';
            *dst++ = 'u';
            *dst++ = '0';
            *dst++ = '0';
            *dst++ = hex[ch >> 4];
            *dst++ = hex[ch & 0xf];

        } else {
            *dst++ = ch;
        }
    }

    return (uintptr_t) dst;
}


static void
ngx_http_mqttapi_fuzz_quote(const uint8_t *data, size_t size)
{
    json_t        *doc, *valid;
    ngx_str_t      src, dst;
    json_error_t   error;

    src.data = (u_char *) data;
    src.len = size;

    if (ngx_http_mqttapi_json_quote(NULL, &src, &dst) != NGX_OK) {
        return;
    }

    doc = json_loadb((const char *) dst.data, dst.len,
                     JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);

    if (doc == NULL || !json_is_string(doc)) {
        abort();    /* a literal jansson refuses */
    }

    /* jansson's own UTF-8 check: valid input comes back unchanged */

    valid = json_stringn((const char *) data, size);

    if (valid
        && (json_string_length(doc) != size
            || memcmp(json_string_value(doc), data, size) != 0))
    {
        abort();    /* valid text changed */
    }

    json_decref(valid);
    json_decref(doc);

    ngx_http_mqttapi_fuzz_free();
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char              *copy;
    ngx_int_t            rc;
    ngx_uint_t           i;
    ngx_str_t            body, code;
    const char          *key;
    json_t              *obj, *doc, *v;
    json_error_t         error;
    ngx_http_request_t   r;

    static const char  *own[] = {
        "Code", "Message", "RequestId", "HostId", "Recommend", NULL
    };

    /* a copy of its own size, so that a read past the end is caught */

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    ngx_http_mqttapi_fuzz_quote(copy, size);

    ngx_memzero(&r, sizeof(ngx_http_request_t));

    body.data = copy;
    body.len = size;
    obj = NULL;

    rc = ngx_http_mqttapi_json_fast(&r, &body, &code, &obj);

    ngx_http_mqttapi_fuzz_free();

    if (rc != NGX_OK) {
        free(copy);
        return 0;
    }

    doc = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES,
                     &error);

    if (doc == NULL || !json_is_object(doc)) {
        abort();    /* taken by the scan, refused by jansson */
    }

    v = json_object_get(doc, "Code");

    if (!json_is_string(v)
        || json_string_length(v) != code.len
        || memcmp(json_string_value(v), code.data, code.len) != 0)
    {
        abort();    /* another Code */
    }

    /* the members beyond the OpenAPI's own, on both sides */

    json_object_foreach(doc, key, v) {
        for (i = 0; own[i]; i++) {
            if (strcmp(key, own[i]) == 0) {
                break;
            }
        }

        if (own[i] == NULL && (obj == NULL || !json_object_get(obj, key))) {
            abort();    /* a member the scan did not report */
        }
    }

    if (obj) {
        json_object_foreach(obj, key, v) {
            if (json_object_get(doc, key) == NULL) {
                abort();    /* a member jansson did not see */
            }
        }

        json_decref(obj);
    }

    json_decref(doc);
    free(copy);

    return 0;
}
