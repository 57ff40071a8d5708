
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_throttle.h"

#include <ngx_crc32.h>


/*
 * The counters of the status endpoint.  They exist once a location has
 * mqttapi_status; without it every counting call returns at once.
 *
 * Label values are small integers into dimensions fixed at configuration
 * time: the codes, actions and categories of every catalog in use and the
 * codes of mqttapi_throttle_codes, the mqttapi_throttle_zone names, and
 * fixed words.  Index 0 of each is "other": a code, action or zone that is
 * not in them counts there, so no request grows the label set.  A counter
 * is one 32-bit key (metric and label indexes) and a count.
 *
 * Each worker counts in a slot of its own in a shared zone: an
 * open-addressing table of (key, count), claimed and added to with atomic
 * operations, so that workers never share a cache line on the request
 * path and no lock is taken; a worker still finishing its requests after
 * a reload may use the same slot as a new one, which the atomics keep
 * right.  The endpoint sums the slots.  A key that finds no room in its
 * slot's table counts in the slot's overflow counter of its metric, shown
 * with every label "other".
 *
 * The zone is named after a signature of the label dimensions and the
 * number of slots: a reload that keeps them reuses the zone and keeps the
 * counts; one that changes them (a catalog with other codes, another zone,
 * another number of workers) starts new counters in a new zone, while the
 * old workers finish with the old one.
 */


#define NGX_HTTP_MQTTAPI_STATS_ZONE       "mqttapi:status:"
#define NGX_HTTP_MQTTAPI_STATS_PAD        128     /* two cache lines */
#define NGX_HTTP_MQTTAPI_STATS_ENTRIES    2048    /* per slot */
#define NGX_HTTP_MQTTAPI_STATS_PROBES     32
#define NGX_HTTP_MQTTAPI_STATS_SLOTS_MAX  256
#define NGX_HTTP_MQTTAPI_LABEL_MAX_LEN    256

/*
 * A key: the metric in the top 3 bits, then 6 bits of zone (or category),
 * 8 of action, 11 of code and 4 of a fixed word.  A key is never 0.
 */

#define NGX_HTTP_MQTTAPI_K_METRIC         29
#define NGX_HTTP_MQTTAPI_K_A              23
#define NGX_HTTP_MQTTAPI_K_ACTION         15
#define NGX_HTTP_MQTTAPI_K_CODE           4

#define NGX_HTTP_MQTTAPI_MAX_A            63
#define NGX_HTTP_MQTTAPI_MAX_ACTIONS      255
#define NGX_HTTP_MQTTAPI_MAX_CODES        2047

#define ngx_http_mqttapi_key(m, a, action, code, word)                        \
    (((ngx_atomic_uint_t) (m) << NGX_HTTP_MQTTAPI_K_METRIC)                   \
     | ((ngx_atomic_uint_t) (a) << NGX_HTTP_MQTTAPI_K_A)                      \
     | ((ngx_atomic_uint_t) (action) << NGX_HTTP_MQTTAPI_K_ACTION)            \
     | ((ngx_atomic_uint_t) (code) << NGX_HTTP_MQTTAPI_K_CODE)                \
     | (ngx_atomic_uint_t) (word))


typedef struct {
    ngx_atomic_t                 key;
    ngx_atomic_t                 count;
} ngx_http_mqttapi_counter_t;


struct ngx_http_mqttapi_stats_sh_s {
    uint32_t                     signature;
    ngx_uint_t                   nslots;
};


typedef char  ngx_http_mqttapi_check_stats_sh[
    (sizeof(ngx_http_mqttapi_stats_sh_t) <= NGX_HTTP_MQTTAPI_STATS_PAD
     && sizeof(ngx_atomic_t) * NGX_HTTP_MQTTAPI_STAT_METRICS
        <= NGX_HTTP_MQTTAPI_STATS_PAD)
    ? 1 : -1];


static ngx_int_t ngx_http_mqttapi_labels_init(ngx_conf_t *cf,
    ngx_http_mqttapi_labels_t *l, ngx_uint_t max);
static ngx_int_t ngx_http_mqttapi_labels_add(ngx_conf_t *cf,
    ngx_http_mqttapi_labels_t *l, ngx_str_t *name, const char *what);
static ngx_int_t ngx_http_mqttapi_labels_hash(ngx_conf_t *cf,
    ngx_http_mqttapi_labels_t *l, uint32_t *crc);
static ngx_uint_t ngx_http_mqttapi_labels_find(ngx_http_mqttapi_labels_t *l,
    ngx_str_t *name);
static ngx_int_t ngx_http_mqttapi_stats_catalog(ngx_conf_t *cf,
    ngx_http_mqttapi_stats_t *st, ngx_http_mqttapi_catalog_t *catalog);
static ngx_int_t ngx_http_mqttapi_stats_entry(ngx_conf_t *cf,
    ngx_http_mqttapi_stats_t *st, ngx_http_mqttapi_entry_t *e);
static ngx_int_t ngx_http_mqttapi_stats_zones(ngx_conf_t *cf,
    ngx_http_mqttapi_stats_t *st);
static ngx_int_t ngx_http_mqttapi_stats_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_mqttapi_stats_t *ngx_http_mqttapi_stats_get(
    ngx_http_request_t *r);
static ngx_uint_t ngx_http_mqttapi_stats_code(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_error_t *err);
static ngx_uint_t ngx_http_mqttapi_stats_action(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st);
static ngx_uint_t ngx_http_mqttapi_stats_zone(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_zone_t *zone);
static void ngx_http_mqttapi_stats_count(ngx_http_mqttapi_stats_t *st,
    ngx_atomic_uint_t key);
static int ngx_libc_cdecl ngx_http_mqttapi_sample_cmp(const void *one,
    const void *two);


static ngx_str_t  ngx_http_mqttapi_stats_other = ngx_string("other");

static ngx_str_t  ngx_http_mqttapi_stats_fixed_categories[] = {
    ngx_string("unknown"),
    ngx_string("gateway"),
    ngx_null_string
};


/* the fixed words of each metric, index 0 "other" */

static const char  *ngx_http_mqttapi_stats_sources[] = {
    "other", "upstream", "gateway", NULL
};

static const char  *ngx_http_mqttapi_stats_pass_reasons[] = {
    "other", "head", "encoded", "too_large", "not_in_memory", "unparsable",
    "no_code", "not_json", NULL
};

static const char  *ngx_http_mqttapi_stats_local_reasons[] = {
    "other", "backoff", "quota", "ceiling", NULL
};

static const char  *ngx_http_mqttapi_stats_events[] = {
    "other", "open", "reopen", "probe", "close", NULL
};

static const char  *ngx_http_mqttapi_stats_none[] = {
    "other", NULL
};


ngx_http_mqttapi_stats_t *
ngx_http_mqttapi_stats_create(ngx_conf_t *cf)
{
    ngx_http_mqttapi_stats_t  *st;

    st = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_stats_t));
    if (st == NULL) {
        return NULL;
    }

    if (ngx_array_init(&st->catalogs, cf->pool, 4, sizeof(void *))
        != NGX_OK
        || ngx_array_init(&st->codes_conf, cf->pool, 4, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&st->zones, cf->pool, 4, sizeof(void *)) != NGX_OK
        || ngx_http_mqttapi_labels_init(cf, &st->codes,
                                        NGX_HTTP_MQTTAPI_MAX_CODES)
           != NGX_OK
        || ngx_http_mqttapi_labels_init(cf, &st->actions,
                                        NGX_HTTP_MQTTAPI_MAX_ACTIONS)
           != NGX_OK
        || ngx_http_mqttapi_labels_init(cf, &st->categories,
                                        NGX_HTTP_MQTTAPI_MAX_A)
           != NGX_OK
        || ngx_http_mqttapi_labels_init(cf, &st->zone_names,
                                        NGX_HTTP_MQTTAPI_MAX_A)
           != NGX_OK)
    {
        return NULL;
    }

    return st;
}


/* every location's catalog and throttle codes, while merging */

ngx_int_t
ngx_http_mqttapi_stats_merge(ngx_conf_t *cf, ngx_http_mqttapi_loc_conf_t *lcf)
{
    void                          **c;
    ngx_str_t                      *code, *s;
    ngx_uint_t                      i, k;
    ngx_http_mqttapi_stats_t       *st;
    ngx_http_mqttapi_main_conf_t   *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);
    st = mcf->stats;

    if (st == NULL) {
        return NGX_OK;
    }

    c = st->catalogs.elts;

    for (i = 0; i < st->catalogs.nelts; i++) {
        if (c[i] == lcf->catalog) {
            break;
        }
    }

    if (i == st->catalogs.nelts && lcf->catalog) {
        c = ngx_array_push(&st->catalogs);
        if (c == NULL) {
            return NGX_ERROR;
        }

        *c = lcf->catalog;
    }

    if (lcf->throttle_codes == NULL
        || lcf->throttle_codes == NGX_CONF_UNSET_PTR)
    {
        return NGX_OK;
    }

    code = lcf->throttle_codes->elts;

    for (i = 0; i < lcf->throttle_codes->nelts; i++) {

        s = st->codes_conf.elts;

        for (k = 0; k < st->codes_conf.nelts; k++) {
            if (s[k].len == code[i].len
                && ngx_strncmp(s[k].data, code[i].data, s[k].len) == 0)
            {
                break;
            }
        }

        if (k < st->codes_conf.nelts) {
            continue;
        }

        s = ngx_array_push(&st->codes_conf);
        if (s == NULL) {
            return NGX_ERROR;
        }

        *s = code[i];
    }

    return NGX_OK;
}


/* postconfiguration: the label dimensions and the zone of the counters */

ngx_int_t
ngx_http_mqttapi_stats_init(ngx_conf_t *cf)
{
    u_char                        *p;
    size_t                         size;
    uint32_t                       crc;
    ngx_str_t                      name, *s;
    ngx_uint_t                     i, n;
    ngx_core_conf_t               *ccf;
    ngx_http_mqttapi_stats_t      *st;
    ngx_http_mqttapi_catalog_t   **c;
    ngx_http_mqttapi_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);
    st = mcf->stats;

    if (st == NULL) {
        return NGX_OK;
    }

    for (s = ngx_http_mqttapi_stats_fixed_categories; s->len; s++) {
        if (ngx_http_mqttapi_labels_add(cf, &st->categories, s, "category")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_mqttapi_stats_catalog(cf, st, mcf->catalog) != NGX_OK) {
        return NGX_ERROR;
    }

    c = st->catalogs.elts;

    for (i = 0; i < st->catalogs.nelts; i++) {
        if (ngx_http_mqttapi_stats_catalog(cf, st, c[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    s = st->codes_conf.elts;

    for (i = 0; i < st->codes_conf.nelts; i++) {
        if (ngx_http_mqttapi_labels_add(cf, &st->codes, &s[i], "code")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_mqttapi_stats_zones(cf, st) != NGX_OK) {
        return NGX_ERROR;
    }

    /* one slot per worker, as far as configured yet */

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);

    n = (ccf->worker_processes == NGX_CONF_UNSET)
        ? (ngx_uint_t) ngx_ncpu : (ngx_uint_t) ccf->worker_processes;

    for (st->nslots = 1;
         st->nslots < n && st->nslots < NGX_HTTP_MQTTAPI_STATS_SLOTS_MAX;
         st->nslots <<= 1)
    { /* void */ }

    st->slot_size = NGX_HTTP_MQTTAPI_STATS_PAD
                    + NGX_HTTP_MQTTAPI_STATS_ENTRIES
                      * sizeof(ngx_http_mqttapi_counter_t);

    ngx_crc32_init(crc);

    if (ngx_http_mqttapi_labels_hash(cf, &st->codes, &crc) != NGX_OK
        || ngx_http_mqttapi_labels_hash(cf, &st->actions, &crc) != NGX_OK
        || ngx_http_mqttapi_labels_hash(cf, &st->categories, &crc) != NGX_OK
        || ngx_http_mqttapi_labels_hash(cf, &st->zone_names, &crc) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_crc32_update(&crc, (u_char *) &st->nslots, sizeof(ngx_uint_t));
    ngx_crc32_final(crc);

    st->signature = crc;

    /* the zone: the slots, and room for the slab allocator's pages */

    size = NGX_HTTP_MQTTAPI_STATS_PAD + st->nslots * st->slot_size;
    size = ngx_align(size, ngx_pagesize);
    size += 8 * ngx_pagesize + size / 64;
    size = ngx_align(size, ngx_pagesize);

    name.len = sizeof(NGX_HTTP_MQTTAPI_STATS_ZONE) - 1 + 8;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(name.data, NGX_HTTP_MQTTAPI_STATS_ZONE,
                   sizeof(NGX_HTTP_MQTTAPI_STATS_ZONE) - 1);
    ngx_sprintf(p, "%08xD", st->signature);

    st->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                         &ngx_http_mqttapi_module);
    if (st->shm_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mqttapi_status\": cannot add the shared zone "
                           "\"%V\"", &name);
        return NGX_ERROR;
    }

    if (st->shm_zone->data == NULL) {
        st->shm_zone->init = ngx_http_mqttapi_stats_zone_init;
        st->shm_zone->data = st;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "mqttapi status: %ui codes, %ui actions, %ui categories, "
                   "%ui slots, zone \"%V\"",
                   st->codes.names.nelts, st->actions.names.nelts,
                   st->categories.names.nelts, st->nslots, &name);

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_labels_init(ngx_conf_t *cf, ngx_http_mqttapi_labels_t *l,
    ngx_uint_t max)
{
    l->max = max;

    if (ngx_array_init(&l->names, cf->pool, 16, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_mqttapi_labels_add(cf, l, &ngx_http_mqttapi_stats_other,
                                       NULL);
}


static ngx_int_t
ngx_http_mqttapi_labels_add(ngx_conf_t *cf, ngx_http_mqttapi_labels_t *l,
    ngx_str_t *name, const char *what)
{
    ngx_str_t   *s;
    ngx_uint_t   i;

    if (name->len == 0 || name->len > NGX_HTTP_MQTTAPI_LABEL_MAX_LEN) {
        return NGX_OK;
    }

    s = l->names.elts;

    for (i = 0; i < l->names.nelts; i++) {
        if (s[i].len == name->len
            && ngx_memcmp(s[i].data, name->data, name->len) == 0)
        {
            return NGX_OK;
        }
    }

    if (l->names.nelts > l->max) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "mqttapi_status: more than %ui %s labels, "
                           "\"%V\" counts as \"other\"", l->max, what, name);
        return NGX_OK;
    }

    s = ngx_array_push(&l->names);
    if (s == NULL) {
        return NGX_ERROR;
    }

    *s = *name;

    return NGX_OK;
}


/*
 * The lookup table of a dimension, once it is complete; its names feed
 * the signature.  ngx_hash keeps names in lowercase: two names that
 * differ only in case find the first (and ngx_http_mqttapi_labels_find()
 * compares the spelling).
 */

static ngx_int_t
ngx_http_mqttapi_labels_hash(ngx_conf_t *cf, ngx_http_mqttapi_labels_t *l,
    uint32_t *crc)
{
    size_t            len;
    ngx_str_t        *s;
    ngx_uint_t        i;
    ngx_array_t       keys;
    ngx_hash_key_t   *hk;
    ngx_hash_init_t   hinit;

    if (ngx_array_init(&keys, cf->temp_pool, l->names.nelts,
                       sizeof(ngx_hash_key_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    len = 0;
    s = l->names.elts;

    for (i = 0; i < l->names.nelts; i++) {
        len = ngx_max(len, s[i].len);

        ngx_crc32_update(crc, s[i].data, s[i].len);
        ngx_crc32_update(crc, (u_char *) "\n", 1);

        hk = ngx_array_push(&keys);
        if (hk == NULL) {
            return NGX_ERROR;
        }

        hk->key = s[i];
        hk->key_hash = ngx_hash_key_lc(s[i].data, s[i].len);
        hk->value = (void *) (uintptr_t) (i + 1);
    }

    ngx_crc32_update(crc, (u_char *) "\n", 1);

    hinit.hash = &l->hash;
    hinit.key = ngx_hash_key_lc;
    hinit.max_size = 4096;
    hinit.bucket_size = ngx_align(ngx_max(128, len + 4 * sizeof(void *)),
                                  ngx_cacheline_size);
    hinit.name = "mqttapi_status_labels_hash";
    hinit.pool = cf->pool;
    hinit.temp_pool = NULL;

    return ngx_hash_init(&hinit, keys.elts, keys.nelts);
}


/* looked up in lowercase, compared as spelled: codes are case-sensitive */

static ngx_uint_t
ngx_http_mqttapi_labels_find(ngx_http_mqttapi_labels_t *l, ngx_str_t *name)
{
    void        *v;
    ngx_str_t   *s;
    ngx_uint_t   key, i;
    u_char       lc[NGX_HTTP_MQTTAPI_LABEL_MAX_LEN];

    if (name->len > NGX_HTTP_MQTTAPI_LABEL_MAX_LEN) {
        return 0;
    }

    key = ngx_hash_strlow(lc, name->data, name->len);

    v = ngx_hash_find(&l->hash, key, lc, name->len);

    if (v == NULL) {
        return 0;
    }

    i = (ngx_uint_t) (uintptr_t) v - 1;
    s = l->names.elts;

    if (s[i].len != name->len
        || ngx_memcmp(s[i].data, name->data, name->len) != 0)
    {
        return 0;
    }

    return i;
}


static ngx_int_t
ngx_http_mqttapi_stats_catalog(ngx_conf_t *cf, ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_catalog_t *catalog)
{
    ngx_uint_t                    i;
    ngx_http_mqttapi_entry_t    **e;
    ngx_http_mqttapi_action_t   **a;
    ngx_http_mqttapi_gateway_t   *gw;

    e = catalog->entries.elts;

    for (i = 0; i < catalog->entries.nelts; i++) {
        if (ngx_http_mqttapi_stats_entry(cf, st, e[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    e = catalog->patterns.elts;

    for (i = 0; i < catalog->patterns.nelts; i++) {
        if (ngx_http_mqttapi_stats_entry(cf, st, e[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    gw = catalog->gateway.elts;

    for (i = 0; i < catalog->gateway.nelts; i++) {
        if (gw[i].entry
            && ngx_http_mqttapi_stats_entry(cf, st, gw[i].entry) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_mqttapi_labels_add(cf, &st->codes, &catalog->quota_code,
                                    "code")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    a = catalog->actions.elts;

    for (i = 0; i < catalog->actions.nelts; i++) {
        if (ngx_http_mqttapi_labels_add(cf, &st->actions, &a[i]->name,
                                        "action")
            != NGX_OK
            || ngx_http_mqttapi_labels_add(cf, &st->categories,
                                           &a[i]->category, "category")
               != NGX_OK
            || ngx_http_mqttapi_labels_add(cf, &st->codes,
                                           &a[i]->throttle_code, "code")
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_stats_entry(ngx_conf_t *cf, ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_entry_t *e)
{
    ngx_str_t   *c;
    ngx_uint_t   i;

    if (ngx_http_mqttapi_labels_add(cf, &st->codes, &e->code, "code")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (e->categories == NULL) {
        return NGX_OK;
    }

    c = e->categories->elts;

    for (i = 0; i < e->categories->nelts; i++) {
        if (ngx_http_mqttapi_labels_add(cf, &st->categories, &c[i],
                                        "category")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The mqttapi_throttle_zone zones, in the order they were defined: the
 * zones of the module whose names have no ":" (the module's own zones
 * have one, the directive cannot give one).
 */

static ngx_int_t
ngx_http_mqttapi_stats_zones(ngx_conf_t *cf, ngx_http_mqttapi_stats_t *st)
{
    void             **z;
    ngx_uint_t         i;
    ngx_list_part_t   *part;
    ngx_shm_zone_t    *shm_zone;

    z = ngx_array_push(&st->zones);
    if (z == NULL) {
        return NGX_ERROR;
    }

    *z = NULL;                      /* "other" */

    part = &cf->cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag != &ngx_http_mqttapi_module
            || shm_zone[i].data == NULL
            || ngx_strlchr(shm_zone[i].shm.name.data,
                           shm_zone[i].shm.name.data
                           + shm_zone[i].shm.name.len, ':'))
        {
            continue;
        }

        if (st->zones.nelts > NGX_HTTP_MQTTAPI_MAX_A) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "mqttapi_status: more than %d zones, "
                               "\"%V\" counts as \"other\"",
                               NGX_HTTP_MQTTAPI_MAX_A, &shm_zone[i].shm.name);
            continue;
        }

        if (ngx_http_mqttapi_labels_add(cf, &st->zone_names,
                                        &shm_zone[i].shm.name, "zone")
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        z = ngx_array_push(&st->zones);
        if (z == NULL) {
            return NGX_ERROR;
        }

        *z = shm_zone[i].data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_stats_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_mqttapi_stats_t  *ost = data;

    u_char                    *p;
    ngx_slab_pool_t           *shpool;
    ngx_http_mqttapi_stats_t  *st;

    st = shm_zone->data;

    if (ost) {
        /* a reload with the same labels and slots (the same zone name) */

        st->sh = ost->sh;
        st->slots = ost->slots;

        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        st->sh = shpool->data;
        st->slots = (u_char *) st->sh + NGX_HTTP_MQTTAPI_STATS_PAD;

        return NGX_OK;
    }

    /* pages: the slots begin on a cache line boundary */

    p = ngx_slab_calloc(shpool, NGX_HTTP_MQTTAPI_STATS_PAD
                                + st->nslots * st->slot_size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    shpool->data = p;

    st->sh = (ngx_http_mqttapi_stats_sh_t *) p;
    st->sh->signature = st->signature;
    st->sh->nslots = st->nslots;
    st->slots = p + NGX_HTTP_MQTTAPI_STATS_PAD;

    return NGX_OK;
}


static ngx_inline ngx_http_mqttapi_stats_t *
ngx_http_mqttapi_stats_get(ngx_http_request_t *r)
{
    ngx_http_mqttapi_stats_t      *st;
    ngx_http_mqttapi_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_mqttapi_module);
    st = mcf->stats;

    return (st && st->slots) ? st : NULL;
}


/* an error annotated (upstream) or normalized into a gateway code */

void
ngx_http_mqttapi_stats_response(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_error_t *err)
{
    ngx_uint_t                 action, code, category;
    ngx_http_mqttapi_stats_t  *st;

    st = ngx_http_mqttapi_stats_get(r);

    if (st == NULL) {
        return;
    }

    action = ngx_http_mqttapi_stats_action(r, st);
    code = ngx_http_mqttapi_stats_code(st, err);
    category = ngx_http_mqttapi_labels_find(&st->categories, &err->category);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi status: response, action %ui, code %ui, "
                   "category %ui", action, code, category);

    ngx_http_mqttapi_stats_count(st,
        ngx_http_mqttapi_key(NGX_HTTP_MQTTAPI_STAT_RESPONSES, category, action,
                             code, err->gateway ? 2 : 1));

    if (!err->gateway && ngx_http_mqttapi_throttle_code(lcf, err)) {
        ngx_http_mqttapi_stats_count(st,
            ngx_http_mqttapi_key(NGX_HTTP_MQTTAPI_STAT_THROTTLES, 0, action,
                                 code, 0));
    }
}


void
ngx_http_mqttapi_stats_pass(ngx_http_request_t *r, ngx_uint_t reason)
{
    ngx_http_mqttapi_stats_t  *st;

    st = ngx_http_mqttapi_stats_get(r);

    if (st == NULL) {
        return;
    }

    ngx_http_mqttapi_stats_count(st,
        ngx_http_mqttapi_key(NGX_HTTP_MQTTAPI_STAT_PASSTHROUGH, 0, 0, 0,
                             reason));
}


/* a request answered locally, or one a dry run would have answered */

void
ngx_http_mqttapi_stats_local(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *code, ngx_uint_t reason,
    ngx_uint_t dry_run)
{
    ngx_uint_t                 z;
    ngx_http_mqttapi_stats_t  *st;

    st = ngx_http_mqttapi_stats_get(r);

    if (st == NULL) {
        return;
    }

    z = ngx_http_mqttapi_stats_zone(st, zone);

    if (dry_run) {
        ngx_http_mqttapi_stats_count(st,
            ngx_http_mqttapi_key(NGX_HTTP_MQTTAPI_STAT_DRY_RUN, z, 0, 0,
                                 reason));
        return;
    }

    ngx_http_mqttapi_stats_count(st,
        ngx_http_mqttapi_key(NGX_HTTP_MQTTAPI_STAT_REJECTS, z,
                             ngx_http_mqttapi_stats_action(r, st),
                             ngx_http_mqttapi_labels_find(&st->codes, code),
                             reason));
}


void
ngx_http_mqttapi_stats_backoff(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_uint_t event)
{
    ngx_http_mqttapi_stats_t  *st;

    st = ngx_http_mqttapi_stats_get(r);

    if (st == NULL) {
        return;
    }

    ngx_http_mqttapi_stats_count(st,
        ngx_http_mqttapi_key(NGX_HTTP_MQTTAPI_STAT_BACKOFF,
                             ngx_http_mqttapi_stats_zone(st, zone), 0, 0,
                             event));
}


/*
 * The code label: a catalog entry's code (a patterned one's pattern), or
 * a code of mqttapi_throttle_codes, else "other"
 */

static ngx_uint_t
ngx_http_mqttapi_stats_code(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_error_t *err)
{
    if (err->entry) {
        return ngx_http_mqttapi_labels_find(&st->codes, &err->entry->code);
    }

    if (err->code.len == 0) {
        return 0;
    }

    return ngx_http_mqttapi_labels_find(&st->codes, &err->code);
}


static ngx_uint_t
ngx_http_mqttapi_stats_action(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st)
{
    ngx_str_t  name;

    if (ngx_http_mqttapi_request_action_name(r, &name) != NGX_OK) {
        return 0;
    }

    return ngx_http_mqttapi_labels_find(&st->actions, &name);
}


static ngx_uint_t
ngx_http_mqttapi_stats_zone(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_zone_t *zone)
{
    void        **z;
    ngx_uint_t    i;

    z = st->zones.elts;

    for (i = 1; i < st->zones.nelts; i++) {
        if (z[i] == zone) {
            return i;
        }
    }

    return 0;
}


static void
ngx_http_mqttapi_stats_count(ngx_http_mqttapi_stats_t *st,
    ngx_atomic_uint_t key)
{
    u_char                      *slot;
    ngx_uint_t                   i, h, mask;
    ngx_atomic_t                *overflow;
    ngx_http_mqttapi_counter_t  *c;

    slot = st->slots + (ngx_worker & (st->nslots - 1)) * st->slot_size;

    overflow = (ngx_atomic_t *) slot;
    c = (ngx_http_mqttapi_counter_t *) (slot + NGX_HTTP_MQTTAPI_STATS_PAD);

    mask = NGX_HTTP_MQTTAPI_STATS_ENTRIES - 1;
    h = (ngx_uint_t) ((key * 2654435761U) >> 7) & mask;

    for (i = 0; i < NGX_HTTP_MQTTAPI_STATS_PROBES; i++) {

        if (c[h].key == key) {
            goto found;
        }

        if (c[h].key == 0) {
            if (ngx_atomic_cmp_set(&c[h].key, 0, key) || c[h].key == key) {
                goto found;
            }
        }

        h = (h + 1) & mask;
    }

    (void) ngx_atomic_fetch_add(&overflow[key >> NGX_HTTP_MQTTAPI_K_METRIC],
                                1);
    return;

found:

    (void) ngx_atomic_fetch_add(&c[h].count, 1);
}


/* the sum of the slots, sorted by metric and labels */

ngx_array_t *
ngx_http_mqttapi_stats_collect(ngx_http_mqttapi_stats_t *st,
    ngx_pool_t *pool)
{
    u_char                      *slot;
    ngx_uint_t                   s, i, n, h, mask, m;
    ngx_array_t                 *samples;
    ngx_atomic_t                *overflow;
    ngx_atomic_uint_t            key, count, *keys, *counts;
    ngx_http_mqttapi_counter_t  *c;
    ngx_http_mqttapi_sample_t   *sample;

    n = 0;

    for (s = 0; s < st->nslots; s++) {
        slot = st->slots + s * st->slot_size;
        c = (ngx_http_mqttapi_counter_t *) (slot + NGX_HTTP_MQTTAPI_STATS_PAD);

        for (i = 0; i < NGX_HTTP_MQTTAPI_STATS_ENTRIES; i++) {
            if (c[i].key) {
                n++;
            }
        }
    }

    n += st->nslots * NGX_HTTP_MQTTAPI_STAT_METRICS;

    for (mask = 16; mask < 2 * n; mask <<= 1) { /* void */ }

    keys = ngx_pcalloc(pool, mask * sizeof(ngx_atomic_uint_t));
    counts = ngx_pcalloc(pool, mask * sizeof(ngx_atomic_uint_t));
    samples = ngx_array_create(pool, 32, sizeof(ngx_http_mqttapi_sample_t));

    if (keys == NULL || counts == NULL || samples == NULL) {
        return NULL;
    }

    mask--;

    for (s = 0; s < st->nslots; s++) {
        slot = st->slots + s * st->slot_size;
        overflow = (ngx_atomic_t *) slot;
        c = (ngx_http_mqttapi_counter_t *) (slot + NGX_HTTP_MQTTAPI_STATS_PAD);

        for (i = 0; i < NGX_HTTP_MQTTAPI_STATS_ENTRIES + NGX_HTTP_MQTTAPI_STAT_METRICS;
             i++)
        {
            if (i < NGX_HTTP_MQTTAPI_STATS_ENTRIES) {
                key = c[i].key;
                count = c[i].count;

            } else {
                m = i - NGX_HTTP_MQTTAPI_STATS_ENTRIES;
                key = (ngx_atomic_uint_t) m << NGX_HTTP_MQTTAPI_K_METRIC;
                count = (m == 0) ? 0 : overflow[m];
            }

            if (key == 0 || count == 0) {
                continue;
            }

            for (h = (key * 2654435761U) & mask;
                 keys[h] && keys[h] != key;
                 h = (h + 1) & mask)
            { /* void */ }

            keys[h] = key;
            counts[h] += count;
        }
    }

    for (h = 0; h <= mask; h++) {
        if (keys[h] == 0) {
            continue;
        }

        sample = ngx_array_push(samples);
        if (sample == NULL) {
            return NULL;
        }

        key = keys[h];

        sample->metric = key >> NGX_HTTP_MQTTAPI_K_METRIC;
        sample->a = (key >> NGX_HTTP_MQTTAPI_K_A) & NGX_HTTP_MQTTAPI_MAX_A;
        sample->action = (key >> NGX_HTTP_MQTTAPI_K_ACTION)
                         & NGX_HTTP_MQTTAPI_MAX_ACTIONS;
        sample->code = (key >> NGX_HTTP_MQTTAPI_K_CODE)
                       & NGX_HTTP_MQTTAPI_MAX_CODES;
        sample->word = key & 0xf;
        sample->value = counts[h];
    }

    ngx_qsort(samples->elts, samples->nelts,
              sizeof(ngx_http_mqttapi_sample_t), ngx_http_mqttapi_sample_cmp);

    return samples;
}


static int ngx_libc_cdecl
ngx_http_mqttapi_sample_cmp(const void *one, const void *two)
{
    const ngx_http_mqttapi_sample_t  *a = one;
    const ngx_http_mqttapi_sample_t  *b = two;

    if (a->metric != b->metric) {
        return a->metric < b->metric ? -1 : 1;
    }

    if (a->a != b->a) {
        return a->a < b->a ? -1 : 1;
    }

    if (a->action != b->action) {
        return a->action < b->action ? -1 : 1;
    }

    if (a->code != b->code) {
        return a->code < b->code ? -1 : 1;
    }

    if (a->word != b->word) {
        return a->word < b->word ? -1 : 1;
    }

    return 0;
}


ngx_str_t *
ngx_http_mqttapi_stats_label(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_sample_t *s, ngx_uint_t field)
{
    ngx_uint_t                  i;
    ngx_http_mqttapi_labels_t  *l;

    switch (field) {

    case NGX_HTTP_MQTTAPI_LABEL_ZONE:
        l = &st->zone_names;
        i = s->a;
        break;

    case NGX_HTTP_MQTTAPI_LABEL_CATEGORY:
        l = &st->categories;
        i = s->a;
        break;

    case NGX_HTTP_MQTTAPI_LABEL_ACTION:
        l = &st->actions;
        i = s->action;
        break;

    default: /* NGX_HTTP_MQTTAPI_LABEL_CODE */
        l = &st->codes;
        i = s->code;
        break;
    }

    if (i >= l->names.nelts) {
        i = 0;
    }

    return &((ngx_str_t *) l->names.elts)[i];
}


const char *
ngx_http_mqttapi_stats_word(ngx_uint_t metric, ngx_uint_t word)
{
    ngx_uint_t    i;
    const char  **words;

    switch (metric) {

    case NGX_HTTP_MQTTAPI_STAT_RESPONSES:
        words = ngx_http_mqttapi_stats_sources;
        break;

    case NGX_HTTP_MQTTAPI_STAT_PASSTHROUGH:
        words = ngx_http_mqttapi_stats_pass_reasons;
        break;

    case NGX_HTTP_MQTTAPI_STAT_REJECTS:
    case NGX_HTTP_MQTTAPI_STAT_DRY_RUN:
        words = ngx_http_mqttapi_stats_local_reasons;
        break;

    case NGX_HTTP_MQTTAPI_STAT_BACKOFF:
        words = ngx_http_mqttapi_stats_events;
        break;

    default:
        words = ngx_http_mqttapi_stats_none;
        break;
    }

    for (i = 0; words[i]; i++) {
        if (i == word) {
            return words[i];
        }
    }

    return words[0];
}
