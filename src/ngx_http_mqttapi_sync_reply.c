
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * Replies and messages of Redis, checked before anything is taken from
 * them: types, counts and ranges; a key or code that would not fit a zone
 * node is refused.  Whatever Redis sends, a parser either fills "b" with
 * values in range or returns NGX_ERROR (t/fuzz/sync_reply.c).
 */


#define NGX_HTTP_MQTTAPI_SYNC_MAX_MS  86400000

/*
 * hiredis allocates an array's elements when it reads its length: a
 * longer one is refused (the longest reply, a reconciliation's, has 5
 * elements per back-off, 4096 back-offs at most)
 */
#define NGX_HTTP_MQTTAPI_SYNC_MAX_ELEMENTS  32768


/* an array's length: an int up to hiredis 0.14, a size_t since 1.0 */

#if (HIREDIS_MAJOR >= 1)
typedef size_t  ngx_http_mqttapi_sync_elements_t;
#else
typedef int     ngx_http_mqttapi_sync_elements_t;
#endif


static void *ngx_http_mqttapi_sync_create_array(const redisReadTask *task,
    ngx_http_mqttapi_sync_elements_t elements);


static redisReplyObjectFunctions  ngx_http_mqttapi_sync_functions;
static void *(*ngx_http_mqttapi_sync_hiredis_array)(const redisReadTask *task,
    ngx_http_mqttapi_sync_elements_t elements);


static ngx_int_t ngx_http_mqttapi_sync_pair(redisReply *reply, long long *a,
    long long *b);
static ngx_int_t ngx_http_mqttapi_sync_number(u_char *p, size_t len,
    ngx_msec_int_t *n);
static ngx_int_t ngx_http_mqttapi_sync_parse_message(u_char *p, size_t len,
    ngx_http_mqttapi_sync_backoff_t *b);


/* hiredis's reader with its own reply objects, but for long arrays */

redisReader *
ngx_http_mqttapi_sync_reader(void)
{
    redisReader                *reader;
    redisReplyObjectFunctions  *fn;

    reader = redisReaderCreate();
    if (reader == NULL) {
        return NULL;
    }

    fn = &ngx_http_mqttapi_sync_functions;

    if (ngx_http_mqttapi_sync_hiredis_array == NULL) {
        *fn = *reader->fn;
        ngx_http_mqttapi_sync_hiredis_array = fn->createArray;
        fn->createArray = ngx_http_mqttapi_sync_create_array;
    }

    reader->fn = fn;

    return reader;
}


static void *
ngx_http_mqttapi_sync_create_array(const redisReadTask *task,
    ngx_http_mqttapi_sync_elements_t elements)
{
    if (elements > NGX_HTTP_MQTTAPI_SYNC_MAX_ELEMENTS) {
        /* the reader fails ("Out of memory"): the connection is closed */
        return NULL;
    }

    return ngx_http_mqttapi_sync_hiredis_array(task, elements);
}


ngx_int_t
ngx_http_mqttapi_sync_integer(redisReply *r, long long *n)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        *n = r->integer;
        return NGX_OK;
    }

    return NGX_ERROR;
}


/* count, left, delay, code: the reply of the "open" script */

ngx_int_t
ngx_http_mqttapi_sync_parse_backoff(redisReply **e,
    ngx_http_mqttapi_sync_backoff_t *b)
{
    long long  count, left, delay;

    if (ngx_http_mqttapi_sync_integer(e[0], &count) != NGX_OK
        || ngx_http_mqttapi_sync_integer(e[1], &left) != NGX_OK
        || ngx_http_mqttapi_sync_integer(e[2], &delay) != NGX_OK
        || e[3]->type != REDIS_REPLY_STRING
        || e[3]->len == 0 || e[3]->len > NGX_HTTP_MQTTAPI_CODE_MAX_LEN
        || count < 1 || count > 31
        || delay < 0 || delay > NGX_HTTP_MQTTAPI_SYNC_MAX_MS
        || left < -NGX_HTTP_MQTTAPI_SYNC_MAX_MS
        || left > NGX_HTTP_MQTTAPI_SYNC_MAX_MS)
    {
        return NGX_ERROR;
    }

    b->count = (uint32_t) count;
    b->left = (ngx_msec_int_t) left;
    b->delay = (ngx_msec_t) delay;
    b->code.data = (u_char *) e[3]->str;
    b->code.len = e[3]->len;
    b->close = 0;
    ngx_str_null(&b->zone);

    /* "-": the node that opened it had no room to keep the code */

    if (b->code.len == 1 && b->code.data[0] == '-') {
        b->code.len = 0;
    }

    return NGX_OK;
}


/* key, count, left, delay, code: an entry of the "pull" script */

ngx_int_t
ngx_http_mqttapi_sync_parse_entry(redisReply **e,
    ngx_http_mqttapi_sync_backoff_t *b)
{
    if (e[0]->type != REDIS_REPLY_STRING
        || e[0]->len == 0 || e[0]->len > NGX_HTTP_MQTTAPI_KEY_MAX_LEN
        || ngx_http_mqttapi_sync_parse_backoff(&e[1], b) != NGX_OK)
    {
        return NGX_ERROR;
    }

    b->key.data = (u_char *) e[0]->str;
    b->key.len = e[0]->len;

    return NGX_OK;
}


/* ["message", channel, "O Z count left delay code K" or "C ..."] */

ngx_int_t
ngx_http_mqttapi_sync_parse_event(redisReply *reply,
    ngx_http_mqttapi_sync_backoff_t *b)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[2]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0)
    {
        return NGX_ERROR;
    }

    return ngx_http_mqttapi_sync_parse_message(
               (u_char *) reply->element[2]->str, reply->element[2]->len, b);
}


static ngx_int_t
ngx_http_mqttapi_sync_parse_message(u_char *p, size_t len,
    ngx_http_mqttapi_sync_backoff_t *b)
{
    u_char          *last, *f[6];
    size_t           flen[6];
    ngx_uint_t       i;
    ngx_msec_int_t   n;

    /* six fields separated by one space, then the key (any bytes) */

    last = p + len;

    for (i = 0; i < 6; i++) {
        f[i] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        if (p == last) {
            return NGX_ERROR;
        }

        flen[i] = p - f[i];
        p++;
    }

    if (flen[0] != 1 || (f[0][0] != 'O' && f[0][0] != 'C')
        || flen[1] == 0 || flen[5] == 0
        || flen[5] > NGX_HTTP_MQTTAPI_CODE_MAX_LEN
        || p == last || (size_t) (last - p) > NGX_HTTP_MQTTAPI_KEY_MAX_LEN)
    {
        return NGX_ERROR;
    }

    b->close = (f[0][0] == 'C');

    b->zone.data = f[1];
    b->zone.len = flen[1];

    if (ngx_http_mqttapi_sync_number(f[2], flen[2], &n) != NGX_OK
        || n < 1 || n > 31)
    {
        return NGX_ERROR;
    }

    b->count = (uint32_t) n;

    if (ngx_http_mqttapi_sync_number(f[3], flen[3], &b->left) != NGX_OK
        || b->left > NGX_HTTP_MQTTAPI_SYNC_MAX_MS
        || b->left < -NGX_HTTP_MQTTAPI_SYNC_MAX_MS)
    {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_sync_number(f[4], flen[4], &n) != NGX_OK
        || n < 0 || n > NGX_HTTP_MQTTAPI_SYNC_MAX_MS)
    {
        return NGX_ERROR;
    }

    b->delay = (ngx_msec_t) n;

    b->code.data = f[5];
    b->code.len = flen[5];

    if (b->code.len == 1 && b->code.data[0] == '-') {
        b->code.len = 0;
    }

    b->key.data = p;
    b->key.len = last - p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_sync_number(u_char *p, size_t len, ngx_msec_int_t *n)
{
    ngx_int_t  neg, v;

    if (len == 0 || len > 12) {
        return NGX_ERROR;
    }

    neg = (len > 1 && p[0] == '-');

    v = ngx_atoi(p + neg, len - neg);

    if (v == NGX_ERROR) {
        return NGX_ERROR;
    }

    *n = neg ? -v : v;

    return NGX_OK;
}


/* ["subscribe", channel, count]: the reply to SUBSCRIBE channel */

ngx_int_t
ngx_http_mqttapi_sync_parse_subscribe(redisReply *reply, ngx_str_t *channel)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 9
        || ngx_strncmp(reply->element[0]->str, "subscribe", 9) != 0
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[1]->len != channel->len
        || ngx_memcmp(reply->element[1]->str, channel->data, channel->len)
           != 0
        || reply->element[2]->type != REDIS_REPLY_INTEGER
        || reply->element[2]->integer < 1)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a reply of two integers */

static ngx_int_t
ngx_http_mqttapi_sync_pair(redisReply *reply, long long *a, long long *b)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || ngx_http_mqttapi_sync_integer(reply->element[0], a) != NGX_OK
        || ngx_http_mqttapi_sync_integer(reply->element[1], b) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the nodes alive and Redis's time in ms: the "beat" script */

ngx_int_t
ngx_http_mqttapi_sync_parse_beat(redisReply *reply, ngx_uint_t *nodes,
    ngx_msec_t *now)
{
    long long  n, t;

    if (ngx_http_mqttapi_sync_pair(reply, &n, &t) != NGX_OK
        || n < 1 || n > 100000 || t <= 0)
    {
        return NGX_ERROR;
    }

    *nodes = (ngx_uint_t) n;
    *now = (ngx_msec_t) t;

    return NGX_OK;
}


/* tokens granted, ms left in the second, the second: the "lease" script */

ngx_int_t
ngx_http_mqttapi_sync_parse_lease(redisReply *reply, ngx_uint_t *granted,
    ngx_msec_t *second)
{
    long long  g, l, w;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || ngx_http_mqttapi_sync_integer(reply->element[0], &g) != NGX_OK
        || ngx_http_mqttapi_sync_integer(reply->element[1], &l) != NGX_OK
        || ngx_http_mqttapi_sync_integer(reply->element[2], &w) != NGX_OK
        || g < 0 || g > NGX_HTTP_MQTTAPI_QUOTA_MAX
        || l < 0 || l > 1000 || w <= 0)
    {
        return NGX_ERROR;
    }

    *granted = (ngx_uint_t) g;
    *second = (ngx_msec_t) w;

    return NGX_OK;
}


/* the next second and the nodes that share it: the "share" script */

ngx_int_t
ngx_http_mqttapi_sync_parse_share(redisReply *reply, ngx_msec_t *second,
    ngx_uint_t *nodes)
{
    long long  w, n;

    if (ngx_http_mqttapi_sync_pair(reply, &w, &n) != NGX_OK
        || w <= 0 || n < 0 || n > 100000)
    {
        return NGX_ERROR;
    }

    *second = (ngx_msec_t) w;
    *nodes = (ngx_uint_t) n;

    return NGX_OK;
}


/*
 * HELLO's reply (RESP2: a flat list of names and values): the server's
 * name ("redis", "valkey"), version, mode and role, each a short string;
 * the version's major and minor numbers (0 when it has none)
 */

ngx_int_t
ngx_http_mqttapi_sync_parse_hello(redisReply *reply,
    ngx_http_mqttapi_sync_hello_t *h)
{
    size_t       i;
    u_char      *p, *last;
    ngx_str_t    name, *v;
    ngx_uint_t   n, *part;
    redisReply  *e;

    ngx_memzero(h, sizeof(ngx_http_mqttapi_sync_hello_t));

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2
        || reply->elements > 64)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < reply->elements; i += 2) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_STRING) {
            return NGX_ERROR;
        }

        name.data = (u_char *) e->str;
        name.len = e->len;

        e = reply->element[i + 1];

        if (name.len == 6 && ngx_strncmp(name.data, "server", 6) == 0) {
            v = &h->server;

        } else if (name.len == 7 && ngx_strncmp(name.data, "version", 7) == 0)
        {
            v = &h->version;

        } else if (name.len == 4 && ngx_strncmp(name.data, "mode", 4) == 0) {
            v = &h->mode;

        } else if (name.len == 4 && ngx_strncmp(name.data, "role", 4) == 0) {
            v = &h->role;

        } else {
            continue;
        }

        if (e->type != REDIS_REPLY_STRING || e->len > 64) {
            return NGX_ERROR;
        }

        v->data = (u_char *) e->str;
        v->len = e->len;
    }

    /* "7.0.15": 7 and 0 */

    if (h->version.len == 0) {
        return NGX_OK;
    }

    p = h->version.data;
    last = p + h->version.len;
    part = &h->major;

    for (n = 0; p < last && n < 2; p++) {
        if (*p >= '0' && *p <= '9') {
            if (*part >= 100000) {
                return NGX_ERROR;
            }

            *part = *part * 10 + (*p - '0');
            continue;
        }

        if (*p != '.') {
            break;
        }

        part = &h->minor;
        n++;
    }

    return NGX_OK;
}
