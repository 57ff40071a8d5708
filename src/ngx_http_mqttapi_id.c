
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_id.h"

#if (NGX_OPENSSL)
#include <openssl/rand.h>
#endif

#if (defined __SSE2__)
#include <emmintrin.h>
#endif


/*
 * The RequestId of the errors the gateway writes is $request_id.  nginx
 * makes that variable with RAND_bytes() per request, which costs more
 * than the whole rest of a local reject.  So when the request has not
 * evaluated $request_id yet, the module makes the 32 hex digits itself,
 * from a per-worker generator seeded once from RAND_bytes(), and stores
 * them as the variable's value: $request_id in a log format or a header
 * then gives the same id, as it would have.  The ids are unique, not
 * secret (nginx built without OpenSSL uses random() for them).
 *
 * Writing the variable's value into r->variables is what a benchmark
 * showed to be needed: the local reject's profile with bench/profile.sh,
 * before and after, is in bench/PROFILE.md (section 1).
 */


static uint64_t   ngx_http_mqttapi_id_state;
static ngx_int_t  ngx_http_mqttapi_id_index = NGX_ERROR;


static uint64_t ngx_http_mqttapi_id_next(void);
static ngx_inline void ngx_http_mqttapi_id_hex(u_char *p, uint64_t n0,
    uint64_t n1);
#if !(defined __SSE2__)
static ngx_inline uint64_t ngx_http_mqttapi_id_digits(uint32_t n);
#endif


ngx_int_t
ngx_http_mqttapi_id_init(ngx_conf_t *cf)
{
    static ngx_str_t  name = ngx_string("request_id");

    ngx_http_mqttapi_id_index = ngx_http_get_variable_index(cf, &name);

    if (ngx_http_mqttapi_id_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_mqttapi_id_init_process(ngx_cycle_t *cycle)
{
    uint64_t  seed;
#if (NGX_OPENSSL)
    uint64_t  rnd;
#endif

    seed = ((uint64_t) ngx_pid << 32) ^ (uint64_t) ngx_time()
           ^ ((uint64_t) ngx_random() << 16) ^ (uint64_t) (uintptr_t) cycle;

#if (NGX_OPENSSL)
    if (RAND_bytes((u_char *) &rnd, sizeof(rnd)) == 1) {
        seed ^= rnd;
    }
#endif

    ngx_http_mqttapi_id_state = seed;

    return NGX_OK;
}


/*
 * $request_id of the request: the value it has, or a new one, made at
 * "buf" (NGX_HTTP_MQTTAPI_ID_LEN bytes that live as long as the request:
 * a local answer makes it where it stands in the body) or, with buf NULL,
 * in the request's pool.
 */

ngx_int_t
ngx_http_mqttapi_request_id(ngx_http_request_t *r, ngx_str_t *id,
    u_char *buf)
{
    uint64_t                    n0, n1;
    ngx_http_variable_value_t  *vv;

    vv = &r->variables[ngx_http_mqttapi_id_index];

    if (!vv->valid && !vv->not_found) {

        if (buf == NULL) {
            buf = ngx_pnalloc(r->pool, NGX_HTTP_MQTTAPI_ID_LEN);
            if (buf == NULL) {
                return NGX_ERROR;
            }
        }

        vv->len = NGX_HTTP_MQTTAPI_ID_LEN;
        vv->valid = 1;
        vv->no_cacheable = 0;
        vv->not_found = 0;
        vv->data = buf;

        n0 = ngx_http_mqttapi_id_next();
        n1 = ngx_http_mqttapi_id_next();
        ngx_http_mqttapi_id_hex(buf, n0, n1);

        id->data = buf;
        id->len = NGX_HTTP_MQTTAPI_ID_LEN;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: request id \"%V\" made", id);

        return NGX_OK;
    }

    vv = ngx_http_get_indexed_variable(r, ngx_http_mqttapi_id_index);

    if (vv == NULL || vv->not_found) {
        return NGX_ERROR;
    }

    id->data = vv->data;
    id->len = vv->len;

    return NGX_OK;
}


static uint64_t
ngx_http_mqttapi_id_next(void)
{
    uint64_t  z;

    /* splitmix64: a 2^64 period, every output of one worker distinct */

    z = (ngx_http_mqttapi_id_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


#if (defined __SSE2__)

/*
 * The 32 lowercase hex digits of "n0" and "n1" (their bytes as they stand
 * in memory), sixteen at a time: each byte's high and low nibbles
 * interleaved, then 0-9 and 10-15 moved to '0'-'9' and 'a'-'f' in every
 * byte at once.
 */

static ngx_inline void
ngx_http_mqttapi_id_hex(u_char *p, uint64_t n0, uint64_t n1)
{
    __m128i  x, hi, lo, nib, nine, skip, zero;

    x = _mm_set_epi64x((long long) n1, (long long) n0);
    nib = _mm_set1_epi8(0x0f);
    nine = _mm_set1_epi8(9);
    zero = _mm_set1_epi8('0');
    skip = _mm_set1_epi8('a' - '0' - 10);

    hi = _mm_and_si128(_mm_srli_epi16(x, 4), nib);
    lo = _mm_and_si128(x, nib);

    x = _mm_unpacklo_epi8(hi, lo);
    x = _mm_add_epi8(_mm_add_epi8(x, zero),
                     _mm_and_si128(_mm_cmpgt_epi8(x, nine), skip));
    _mm_storeu_si128((__m128i *) p, x);

    x = _mm_unpackhi_epi8(hi, lo);
    x = _mm_add_epi8(_mm_add_epi8(x, zero),
                     _mm_and_si128(_mm_cmpgt_epi8(x, nine), skip));
    _mm_storeu_si128((__m128i *) (p + 16), x);
}

#else

/* the 32 lowercase hex digits of "n0" and "n1", eight at a time */

static ngx_inline void
ngx_http_mqttapi_id_hex(u_char *p, uint64_t n0, uint64_t n1)
{
    uint64_t  x[4];

    x[0] = ngx_http_mqttapi_id_digits((uint32_t) n0);
    x[1] = ngx_http_mqttapi_id_digits((uint32_t) (n0 >> 32));
    x[2] = ngx_http_mqttapi_id_digits((uint32_t) n1);
    x[3] = ngx_http_mqttapi_id_digits((uint32_t) (n1 >> 32));

    ngx_memcpy(p, x, sizeof(x));
}


/*
 * Eight lowercase hex digits of "n", eight at a time: its nibbles spread
 * one a byte, then 0-9 and 10-15 moved to '0'-'9' and 'a'-'f' in every
 * byte at once.  The digits stand in the byte order of the machine, which
 * does not matter for a random id.
 */

static ngx_inline uint64_t
ngx_http_mqttapi_id_digits(uint32_t n)
{
    uint64_t  x, letters;

    x = n;
    x = (x | (x << 16)) & 0x0000ffff0000ffffULL;
    x = (x | (x << 8)) & 0x00ff00ff00ff00ffULL;
    x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0fULL;

    /* 1 in every byte whose nibble is 10 or more */

    letters = ((x + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;

    return x + 0x3030303030303030ULL + letters * ('a' - '0' - 10);
}

#endif
