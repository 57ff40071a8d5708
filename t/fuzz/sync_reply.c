
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


/*
 * A fuzzer (libFuzzer) for what mqttapi_sync takes from Redis: the bytes
 * go through hiredis's reply reader as the gateway sets it up (arrays of
 * bounded length), as on the gateway's connections, and
 * every reply (and every array within) through each of the parsers of
 * src/ngx_http_mqttapi_sync_reply.c.  A parser that accepts must give
 * values in range and strings within the reply; ASan and UBSan watch the
 * rest.  Built and run by `make fuzz` (t/fuzz/run.sh).
 */


#include "ngx_http_mqttapi_sync_reply.c"

#include <stdlib.h>


/* nginx's own ngx_atoi (src/core/ngx_string.c), which is not linked here */

ngx_int_t
ngx_atoi(u_char *line, size_t n)
{
    ngx_int_t  value, cutoff, cutlim;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_INT_T_VALUE / 10;
    cutlim = NGX_MAX_INT_T_VALUE % 10;

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


static void
ngx_http_mqttapi_fuzz_within(ngx_str_t *s, redisReply *r, size_t max)
{
    if (s->len > max) {
        abort();
    }

    if (s->len && r
        && (s->data < (u_char *) r->str
            || s->data + s->len > (u_char *) r->str + r->len))
    {
        abort();
    }
}


static void
ngx_http_mqttapi_fuzz_backoff(ngx_http_mqttapi_sync_backoff_t *b)
{
    if (b->count < 1 || b->count > 31
        || b->left < -NGX_HTTP_MQTTAPI_SYNC_MAX_MS
        || b->left > NGX_HTTP_MQTTAPI_SYNC_MAX_MS
        || b->delay > NGX_HTTP_MQTTAPI_SYNC_MAX_MS)
    {
        abort();
    }
}


static void
ngx_http_mqttapi_fuzz_reply(redisReply *r, ngx_uint_t depth)
{
    size_t                           i;
    ngx_uint_t                       granted;
    ngx_msec_t                       left;
    ngx_http_mqttapi_sync_backoff_t  b;
    ngx_http_mqttapi_sync_hello_t    h;
    ngx_str_t                        channel = ngx_string("mqttapi:events");

    if (ngx_http_mqttapi_sync_parse_event(r, &b) == NGX_OK) {
        ngx_http_mqttapi_fuzz_backoff(&b);
        ngx_http_mqttapi_fuzz_within(&b.key, r->element[2],
                                     NGX_HTTP_MQTTAPI_KEY_MAX_LEN);
        ngx_http_mqttapi_fuzz_within(&b.code, r->element[2],
                                     NGX_HTTP_MQTTAPI_CODE_MAX_LEN);
        ngx_http_mqttapi_fuzz_within(&b.zone, r->element[2],
                                     r->element[2]->len);
    }

    if (ngx_http_mqttapi_sync_parse_subscribe(r, &channel) == NGX_OK
        && (r->elements != 3 || r->element[2]->integer < 1))
    {
        abort();
    }

    if (ngx_http_mqttapi_sync_parse_lease(r, &granted, &left) == NGX_OK
        && (granted > NGX_HTTP_MQTTAPI_QUOTA_MAX || left == 0))
    {
        abort();
    }

    if (ngx_http_mqttapi_sync_parse_share(r, &left, &granted) == NGX_OK
        && (granted > 100000 || left == 0))
    {
        abort();
    }

    if (ngx_http_mqttapi_sync_parse_beat(r, &granted, &left) == NGX_OK
        && (granted < 1 || granted > 100000 || left == 0))
    {
        abort();
    }

    if (ngx_http_mqttapi_sync_parse_hello(r, &h) == NGX_OK
        && (h.server.len > 64 || h.version.len > 64 || h.mode.len > 64
            || h.role.len > 64 || h.major > 1000000 || h.minor > 1000000))
    {
        abort();
    }

    if (r->type != REDIS_REPLY_ARRAY) {
        return;
    }

    for (i = 0; i < r->elements; i++) {

        if (r->elements - i >= 4
            && ngx_http_mqttapi_sync_parse_backoff(&r->element[i], &b)
               == NGX_OK)
        {
            ngx_http_mqttapi_fuzz_backoff(&b);
            ngx_http_mqttapi_fuzz_within(&b.code, r->element[i + 3],
                                         NGX_HTTP_MQTTAPI_CODE_MAX_LEN);
        }

        if (r->elements - i >= 5
            && ngx_http_mqttapi_sync_parse_entry(&r->element[i], &b)
               == NGX_OK)
        {
            ngx_http_mqttapi_fuzz_backoff(&b);
            ngx_http_mqttapi_fuzz_within(&b.key, r->element[i],
                                         NGX_HTTP_MQTTAPI_KEY_MAX_LEN);
        }

        if (depth < 8) {
            ngx_http_mqttapi_fuzz_reply(r->element[i], depth + 1);
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void         *reply;
    ngx_uint_t    n;
    redisReader  *reader;

    reader = ngx_http_mqttapi_sync_reader();
    if (reader == NULL) {
        return 0;
    }

    /* in two pieces, as a reply split across reads */

    if (redisReaderFeed(reader, (const char *) data, size / 2) == REDIS_OK
        && redisReaderFeed(reader, (const char *) data + size / 2,
                           size - size / 2)
           == REDIS_OK)
    {
        for (n = 0; n < 64; n++) {
            reply = NULL;

            if (redisReaderGetReply(reader, &reply) != REDIS_OK
                || reply == NULL)
            {
                break;
            }

            ngx_http_mqttapi_fuzz_reply(reply, 0);
            freeReplyObject(reply);
        }
    }

    redisReaderFree(reader);

    return 0;
}
