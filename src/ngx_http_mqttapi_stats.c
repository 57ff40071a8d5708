
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_throttle.h"


/*
 * The counters of the status endpoint.  They exist once a location has
 * mqttapi_status; without it every counting call returns at once.
 *
 * Label values come from dimensions fixed at configuration time: the
 * codes, actions and categories of every catalog in use and the codes of
 * mqttapi_throttle_codes, the mqttapi_throttle_zone names, and fixed
 * words.  A code, action or zone that is not in them counts as "other",
 * so no request grows the label set.  A counter is one 32-bit key (the
 * metric and the ids of its labels) and a count.
 *
 * The ids are those of a dictionary in the zone, which keeps every label
 * value it was given since nginx started, "other" first: a reload maps
 * its configuration's values to the ids they had (new ones are added),
 * so the counts and the workers still finishing with the old
 * configuration stay right whatever the reload changed.  A dimension
 * whose dictionary is full counts new values as "other".
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
 * There is one slot per CPU (workers beyond that share slots, which the
 * atomics keep right), so the zone's size, and the zone, stay the same
 * across reloads.
 */


#define NGX_HTTP_MQTTAPI_STATS_ZONE       "mqttapi:status"
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

#define ngx_http_mqttapi_ptr_hash(p)                                          \
    ((ngx_uint_t) (((uintptr_t) (p) >> 3) * 2654435761U) >> 4)

#define ngx_http_mqttapi_key(m, a, action, code, word)                        \
    (((ngx_atomic_uint_t) (m) << NGX_HTTP_MQTTAPI_K_METRIC)                   \
     | ((ngx_atomic_uint_t) (a) << NGX_HTTP_MQTTAPI_K_A)                      \
     | ((ngx_atomic_uint_t) (action) << NGX_HTTP_MQTTAPI_K_ACTION)            \
     | ((ngx_atomic_uint_t) (code) << NGX_HTTP_MQTTAPI_K_CODE)                \
     | (ngx_atomic_uint_t) (word))

/* the id of a label value of a dimension (ngx_http_mqttapi_labels_find) */
#define ngx_http_mqttapi_labels_id(l, name)                                   \
    (l)->ids[ngx_http_mqttapi_labels_find(l, name)]


typedef struct {
    ngx_atomic_t                 key;
    ngx_atomic_t                 count;
} ngx_http_mqttapi_counter_t;


typedef struct {
    void                        *key;
    ngx_http_mqttapi_labels_t   *labels;
    ngx_str_t                    name;
} ngx_http_mqttapi_pending_t;


/* a dimension's values in the zone: published once, never changed */

typedef struct {
    ngx_atomic_t                 n;
    ngx_uint_t                   max;
    ngx_str_t                   *names;
} ngx_http_mqttapi_dict_t;


struct ngx_http_mqttapi_stats_sh_s {
    ngx_uint_t                   nslots;
    size_t                       slot_size;
    u_char                      *slots;
    ngx_http_mqttapi_dict_t      dict[NGX_HTTP_MQTTAPI_DIMS];
    time_t                       start;       /* of the counting */
};


static ngx_uint_t  ngx_http_mqttapi_dict_max[NGX_HTTP_MQTTAPI_DIMS] = {
    NGX_HTTP_MQTTAPI_MAX_CODES,
    NGX_HTTP_MQTTAPI_MAX_ACTIONS,
    NGX_HTTP_MQTTAPI_MAX_A,
    NGX_HTTP_MQTTAPI_MAX_A
};


typedef char  ngx_http_mqttapi_check_stats_pad[
    (sizeof(ngx_atomic_t) * NGX_HTTP_MQTTAPI_STAT_METRICS
     <= NGX_HTTP_MQTTAPI_STATS_PAD)
    ? 1 : -1];


static ngx_int_t ngx_http_mqttapi_labels_init(ngx_conf_t *cf,
    ngx_http_mqttapi_labels_t *l, ngx_uint_t dim);
static ngx_int_t ngx_http_mqttapi_labels_add(ngx_conf_t *cf,
    ngx_http_mqttapi_labels_t *l, ngx_str_t *name, const char *what);
static ngx_int_t ngx_http_mqttapi_labels_hash(ngx_conf_t *cf,
    ngx_http_mqttapi_labels_t *l);
static ngx_uint_t ngx_http_mqttapi_labels_find(ngx_http_mqttapi_labels_t *l,
    ngx_str_t *name);

static ngx_int_t ngx_http_mqttapi_ptrs_add(ngx_http_mqttapi_stats_t *st,
    void *key, ngx_http_mqttapi_labels_t *l, ngx_str_t *name);
static ngx_int_t ngx_http_mqttapi_ptrs_build(ngx_conf_t *cf,
    ngx_http_mqttapi_stats_t *st);
static ngx_int_t ngx_http_mqttapi_ptrs_find(ngx_http_mqttapi_stats_t *st,
    void *key);
static ngx_int_t ngx_http_mqttapi_stats_catalog(ngx_conf_t *cf,
    ngx_http_mqttapi_stats_t *st, ngx_http_mqttapi_catalog_t *catalog);
static ngx_int_t ngx_http_mqttapi_stats_entry(ngx_conf_t *cf,
    ngx_http_mqttapi_stats_t *st, ngx_http_mqttapi_entry_t *e);
static ngx_int_t ngx_http_mqttapi_stats_zones(ngx_conf_t *cf,
    ngx_http_mqttapi_stats_t *st);
static ngx_int_t ngx_http_mqttapi_stats_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_mqttapi_dict_init(ngx_slab_pool_t *shpool,
    ngx_http_mqttapi_dict_t *dict, ngx_uint_t max);
static ngx_uint_t ngx_http_mqttapi_dict_id(ngx_shm_zone_t *shm_zone,
    ngx_http_mqttapi_dict_t *dict, ngx_str_t *name);
static ngx_http_mqttapi_stats_t *ngx_http_mqttapi_stats_get(
    ngx_http_request_t *r);
static ngx_uint_t ngx_http_mqttapi_stats_code(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_error_t *err);
static ngx_uint_t ngx_http_mqttapi_stats_action(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st);
static ngx_uint_t ngx_http_mqttapi_stats_code_name(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_str_t *code);
static ngx_uint_t ngx_http_mqttapi_stats_memo(ngx_http_mqttapi_memo_t *m,
    void *catalog, ngx_str_t *name, ngx_uint_t id);
static ngx_uint_t ngx_http_mqttapi_stats_zone(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_zone_t *zone);
static void ngx_http_mqttapi_stats_count(ngx_http_mqttapi_stats_t *st,
    ngx_atomic_uint_t key);
static void ngx_http_mqttapi_stats_add(ngx_http_mqttapi_stats_t *st,
    ngx_atomic_uint_t key, ngx_atomic_uint_t n);
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


/* the upper bounds of quota_delay_seconds' buckets, in ms and as "le" */

ngx_msec_t  ngx_http_mqttapi_delay_le[NGX_HTTP_MQTTAPI_DELAY_LE] = {
    10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    NGX_MAX_INT32_VALUE
};

const char  *ngx_http_mqttapi_delay_le_names[NGX_HTTP_MQTTAPI_DELAY_LE] = {
    "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60",
    "+Inf"
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
        || ngx_array_init(&st->ptrs.pending, cf->temp_pool, 64,
                          sizeof(ngx_http_mqttapi_pending_t))
           != NGX_OK
        || ngx_http_mqttapi_labels_init(cf, &st->codes,
                                        NGX_HTTP_MQTTAPI_DIM_CODES)
           != NGX_OK
        || ngx_http_mqttapi_labels_init(cf, &st->actions,
                                        NGX_HTTP_MQTTAPI_DIM_ACTIONS)
           != NGX_OK
        || ngx_http_mqttapi_labels_init(cf, &st->categories,
                                        NGX_HTTP_MQTTAPI_DIM_CATEGORIES)
           != NGX_OK
        || ngx_http_mqttapi_labels_init(cf, &st->zone_names,
                                        NGX_HTTP_MQTTAPI_DIM_ZONES)
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
    size_t                         size;
    ngx_str_t                      name, *s;
    ngx_uint_t                     i;
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

    /* one slot per CPU: the same on every reload */

    for (st->nslots = 1;
         st->nslots < (ngx_uint_t) ngx_ncpu
         && st->nslots < NGX_HTTP_MQTTAPI_STATS_SLOTS_MAX;
         st->nslots <<= 1)
    { /* void */ }

    st->slot_size = NGX_HTTP_MQTTAPI_STATS_PAD
                    + NGX_HTTP_MQTTAPI_STATS_ENTRIES
                      * sizeof(ngx_http_mqttapi_counter_t);

    if (ngx_http_mqttapi_labels_hash(cf, &st->codes) != NGX_OK
        || ngx_http_mqttapi_labels_hash(cf, &st->actions) != NGX_OK
        || ngx_http_mqttapi_labels_hash(cf, &st->categories) != NGX_OK
        || ngx_http_mqttapi_labels_hash(cf, &st->zone_names) != NGX_OK
        || ngx_http_mqttapi_ptrs_build(cf, st) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * the zone: the slots, the dictionaries and their names, and room for
     * the slab allocator's pages
     */

    size = st->nslots * st->slot_size;
    size = ngx_align(size, ngx_pagesize);
    size += 16 * ngx_pagesize + size / 64
            + (NGX_HTTP_MQTTAPI_MAX_CODES + NGX_HTTP_MQTTAPI_MAX_ACTIONS
               + 2 * NGX_HTTP_MQTTAPI_MAX_A + 4)
              * (sizeof(ngx_str_t) + 64);
    size = ngx_align(size, ngx_pagesize);

    ngx_str_set(&name, NGX_HTTP_MQTTAPI_STATS_ZONE);

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
    ngx_uint_t dim)
{
    l->dim = dim;
    l->max = ngx_http_mqttapi_dict_max[dim];

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
 * The lookup table of a dimension, once it is complete.  ngx_hash keeps
 * names in lowercase: two names that differ only in case find the first
 * (and ngx_http_mqttapi_labels_find() compares the spelling).  The ids of
 * the names are set when the zone is.
 */

static ngx_int_t
ngx_http_mqttapi_labels_hash(ngx_conf_t *cf, ngx_http_mqttapi_labels_t *l)
{
    size_t            len;
    ngx_str_t        *s;
    ngx_uint_t        i;
    ngx_array_t       keys;
    ngx_hash_key_t   *hk;
    ngx_hash_init_t   hinit;

    l->ids = ngx_pcalloc(cf->pool, l->names.nelts * sizeof(ngx_uint_t));
    if (l->ids == NULL) {
        return NGX_ERROR;
    }

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

        hk = ngx_array_push(&keys);
        if (hk == NULL) {
            return NGX_ERROR;
        }

        hk->key = s[i];
        hk->key_hash = ngx_hash_key_lc(s[i].data, s[i].len);
        hk->value = (void *) (uintptr_t) (i + 1);
    }

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


/*
 * Catalog objects are known by their address on the request path: a
 * pointer, not a name, to look up
 */

static ngx_int_t
ngx_http_mqttapi_ptrs_add(ngx_http_mqttapi_stats_t *st, void *key,
    ngx_http_mqttapi_labels_t *l, ngx_str_t *name)
{
    ngx_http_mqttapi_pending_t  *p;

    if (key == NULL) {
        return NGX_OK;
    }

    p = ngx_array_push(&st->ptrs.pending);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p->key = key;
    p->labels = l;
    p->name = *name;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_ptrs_build(ngx_conf_t *cf, ngx_http_mqttapi_stats_t *st)
{
    ngx_uint_t                   i, n, h;
    ngx_http_mqttapi_pending_t  *p;

    for (n = 16; n < 2 * st->ptrs.pending.nelts; n <<= 1) { /* void */ }

    st->ptrs.slots = ngx_pcalloc(cf->pool, n * sizeof(ngx_http_mqttapi_ptr_t));
    if (st->ptrs.slots == NULL) {
        return NGX_ERROR;
    }

    st->ptrs.mask = n - 1;

    p = st->ptrs.pending.elts;

    for (i = 0; i < st->ptrs.pending.nelts; i++) {

        for (h = ngx_http_mqttapi_ptr_hash(p[i].key) & st->ptrs.mask;
             st->ptrs.slots[h].key && st->ptrs.slots[h].key != p[i].key;
             h = (h + 1) & st->ptrs.mask)
        { /* void */ }

        st->ptrs.slots[h].key = p[i].key;
        st->ptrs.slots[h].id = &p[i].labels->ids[
                                  ngx_http_mqttapi_labels_find(p[i].labels,
                                                               &p[i].name)];
    }

    return NGX_OK;
}


/* the label index of a catalog object, -1: not one */

static ngx_int_t
ngx_http_mqttapi_ptrs_find(ngx_http_mqttapi_stats_t *st, void *key)
{
    ngx_uint_t  h;

    if (key == NULL) {
        return -1;
    }

    for (h = ngx_http_mqttapi_ptr_hash(key) & st->ptrs.mask;
         st->ptrs.slots[h].key;
         h = (h + 1) & st->ptrs.mask)
    {
        if (st->ptrs.slots[h].key == key) {
            return *st->ptrs.slots[h].id;
        }
    }

    return -1;
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
            || ngx_http_mqttapi_ptrs_add(st, a[i], &st->actions, &a[i]->name)
               != NGX_OK
            || ngx_http_mqttapi_ptrs_add(st, a[i]->category.data,
                                         &st->categories, &a[i]->category)
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
        != NGX_OK
        || ngx_http_mqttapi_ptrs_add(st, e, &st->codes, &e->code) != NGX_OK)
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
            != NGX_OK
            || ngx_http_mqttapi_ptrs_add(st, c[i].data, &st->categories,
                                         &c[i])
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

        /*
         * a zone's figures go by its position, and its name must be a
         * label of its own: a zone named "other" (the label of what has
         * none) or with a name too long for a label is counted as "other"
         */

        if (shm_zone[i].shm.name.len > NGX_HTTP_MQTTAPI_LABEL_MAX_LEN
            || (shm_zone[i].shm.name.len == ngx_http_mqttapi_stats_other.len
                && ngx_strncmp(shm_zone[i].shm.name.data,
                               ngx_http_mqttapi_stats_other.data,
                               ngx_http_mqttapi_stats_other.len)
                   == 0))
        {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "mqttapi_status: the zone \"%V\" counts as "
                               "\"other\"", &shm_zone[i].shm.name);
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

    ngx_str_t                    *s;
    ngx_uint_t                    d, i;
    ngx_slab_pool_t              *shpool;
    ngx_http_mqttapi_stats_t     *st;
    ngx_http_mqttapi_labels_t    *l[NGX_HTTP_MQTTAPI_DIMS];
    ngx_http_mqttapi_stats_sh_t  *sh;

    st = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (ost) {
        /* a reload: the counts and the dictionaries so far */
        sh = ost->sh;

    } else if (shm_zone->shm.exists) {
        sh = shpool->data;

    } else {
        sh = ngx_slab_calloc(shpool, sizeof(ngx_http_mqttapi_stats_sh_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        /* pages: the slots begin on a cache line boundary */

        sh->nslots = st->nslots;
        sh->slot_size = st->slot_size;
        sh->start = ngx_time();
        sh->slots = ngx_slab_calloc(shpool, st->nslots * st->slot_size);

        if (sh->slots == NULL) {
            return NGX_ERROR;
        }

        for (d = 0; d < NGX_HTTP_MQTTAPI_DIMS; d++) {
            if (ngx_http_mqttapi_dict_init(shpool, &sh->dict[d],
                                           ngx_http_mqttapi_dict_max[d])
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        shpool->data = sh;
    }

    st->sh = sh;
    st->nslots = sh->nslots;
    st->slot_size = sh->slot_size;

    /* this configuration's label values: their ids, new ones added */

    l[NGX_HTTP_MQTTAPI_DIM_CODES] = &st->codes;
    l[NGX_HTTP_MQTTAPI_DIM_ACTIONS] = &st->actions;
    l[NGX_HTTP_MQTTAPI_DIM_CATEGORIES] = &st->categories;
    l[NGX_HTTP_MQTTAPI_DIM_ZONES] = &st->zone_names;

    for (d = 0; d < NGX_HTTP_MQTTAPI_DIMS; d++) {
        s = l[d]->names.elts;

        for (i = 0; i < l[d]->names.nelts; i++) {
            l[d]->ids[i] = ngx_http_mqttapi_dict_id(shm_zone, &sh->dict[d],
                                                    &s[i]);
        }
    }

    st->slots = sh->slots;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_dict_init(ngx_slab_pool_t *shpool,
    ngx_http_mqttapi_dict_t *dict, ngx_uint_t max)
{
    dict->max = max;

    dict->names = ngx_slab_calloc(shpool, (max + 1) * sizeof(ngx_str_t));
    if (dict->names == NULL) {
        return NGX_ERROR;
    }

    /* in the zone too: it outlives this cycle's module image */

    dict->names[0].len = ngx_http_mqttapi_stats_other.len;
    dict->names[0].data = ngx_slab_alloc(shpool,
                                         ngx_http_mqttapi_stats_other.len);
    if (dict->names[0].data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dict->names[0].data, ngx_http_mqttapi_stats_other.data,
               ngx_http_mqttapi_stats_other.len);
    dict->n = 1;

    return NGX_OK;
}


/*
 * The id of a label value, added if new: the name first, then the count
 * that publishes it (the endpoint reads the dictionary without a lock)
 */

static ngx_uint_t
ngx_http_mqttapi_dict_id(ngx_shm_zone_t *shm_zone,
    ngx_http_mqttapi_dict_t *dict, ngx_str_t *name)
{
    u_char           *p;
    ngx_uint_t        i, n;
    ngx_slab_pool_t  *shpool;

    n = dict->n;

    for (i = 0; i < n; i++) {
        if (dict->names[i].len == name->len
            && ngx_memcmp(dict->names[i].data, name->data, name->len) == 0)
        {
            return i;
        }
    }

    if (n > dict->max) {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "mqttapi_status: more than %ui label values of a kind "
                      "since nginx started, \"%V\" counts as \"other\"",
                      dict->max, name);
        return 0;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    p = ngx_slab_alloc(shpool, name->len);
    if (p == NULL) {
        return 0;
    }

    ngx_memcpy(p, name->data, name->len);

    dict->names[n].len = name->len;
    dict->names[n].data = p;

    ngx_memory_barrier();

    dict->n = n + 1;

    return n;
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
    ngx_int_t                  action, category;
    ngx_uint_t                 code;
    ngx_http_mqttapi_stats_t  *st;

    st = ngx_http_mqttapi_stats_get(r);

    if (st == NULL) {
        return;
    }

    /* what resolving the error found; a gateway error looked for nothing */

    if (err->gateway) {
        action = ngx_http_mqttapi_stats_action(r, st);

    } else {
        action = ngx_http_mqttapi_ptrs_find(st, err->action);

        if (action == -1) {
            action = 0;
        }
    }

    code = ngx_http_mqttapi_stats_code(st, err);

    category = ngx_http_mqttapi_ptrs_find(st, err->category.data);

    if (category == -1) {
        category = ngx_http_mqttapi_labels_id(&st->categories,
                                                &err->category);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi status: response, action %i, code %ui, "
                   "category %i", action, code, category);

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
                             ngx_http_mqttapi_stats_code_name(r, st, code),
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


/* a request let go after waiting "waited" ms for its quota's slot */

void
ngx_http_mqttapi_stats_delayed(ngx_http_request_t *r,
    ngx_http_mqttapi_zone_t *zone, ngx_msec_t waited)
{
    ngx_uint_t                 z, action, le;
    ngx_http_mqttapi_stats_t  *st;

    st = ngx_http_mqttapi_stats_get(r);

    if (st == NULL) {
        return;
    }

    z = ngx_http_mqttapi_stats_zone(st, zone);
    action = ngx_http_mqttapi_stats_action(r, st);

    for (le = 0; waited > ngx_http_mqttapi_delay_le[le]; le++) { /* void */ }

    ngx_http_mqttapi_stats_count(st,
        ngx_http_mqttapi_key(NGX_HTTP_MQTTAPI_STAT_DELAY, z, action, 0,
                             le + 1));

    if (waited) {
        ngx_http_mqttapi_stats_add(st,
            ngx_http_mqttapi_key(NGX_HTTP_MQTTAPI_STAT_DELAY, z, action, 0,
                                 NGX_HTTP_MQTTAPI_DELAY_SUM),
            waited);
    }
}


/*
 * The code label: a catalog entry's code (a patterned one's pattern), or
 * a code of mqttapi_throttle_codes, else "other"
 */

static ngx_uint_t
ngx_http_mqttapi_stats_code(ngx_http_mqttapi_stats_t *st,
    ngx_http_mqttapi_error_t *err)
{
    ngx_int_t  i;

    if (err->entry) {
        i = ngx_http_mqttapi_ptrs_find(st, err->entry);

        return (i != -1) ? (ngx_uint_t) i
                         : ngx_http_mqttapi_labels_id(&st->codes,
                                                        &err->entry->code);
    }

    if (err->code.len == 0) {
        return 0;
    }

    return ngx_http_mqttapi_labels_id(&st->codes, &err->code);
}


/*
 * The request's action and a code by name: through the location's
 * catalog (its lookups are case-sensitive, with a cheaper hash), then by
 * address; a code that is no catalog's, by name among the other values.
 * A worker remembers its last lookup of each: a flood repeats them.
 */

static ngx_uint_t
ngx_http_mqttapi_stats_action(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st)
{
    ngx_int_t                     id;
    ngx_str_t                     name;
    ngx_http_mqttapi_memo_t      *m;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    if (ngx_http_mqttapi_request_action_name(r, &name) != NGX_OK) {
        return 0;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mqttapi_module);
    m = &st->last_action;

    if (m->catalog == lcf->catalog && m->len == name.len
        && ngx_memcmp(m->name, name.data, name.len) == 0)
    {
        return m->id;
    }

    id = ngx_http_mqttapi_ptrs_find(st,
                          ngx_http_mqttapi_catalog_action(lcf->catalog, &name));

    return ngx_http_mqttapi_stats_memo(m, lcf->catalog, &name,
                                       (id == -1) ? 0 : (ngx_uint_t) id);
}


static ngx_uint_t
ngx_http_mqttapi_stats_code_name(ngx_http_request_t *r,
    ngx_http_mqttapi_stats_t *st, ngx_str_t *code)
{
    ngx_int_t                     id;
    ngx_str_t                     param;
    ngx_http_mqttapi_memo_t      *m;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mqttapi_module);
    m = &st->last_code;

    if (m->catalog == lcf->catalog && m->len == code->len
        && ngx_memcmp(m->name, code->data, code->len) == 0)
    {
        return m->id;
    }

    id = ngx_http_mqttapi_ptrs_find(st,
                  ngx_http_mqttapi_catalog_find(lcf->catalog, code, &param,
                                                r->pool));

    return ngx_http_mqttapi_stats_memo(m, lcf->catalog, code,
                (id != -1) ? (ngx_uint_t) id
                           : ngx_http_mqttapi_labels_id(&st->codes, code));
}


static ngx_uint_t
ngx_http_mqttapi_stats_memo(ngx_http_mqttapi_memo_t *m, void *catalog,
    ngx_str_t *name, ngx_uint_t id)
{
    if (name->len <= sizeof(m->name)) {
        m->catalog = catalog;
        m->len = name->len;
        ngx_memcpy(m->name, name->data, name->len);
        m->id = id;
    }

    return id;
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
            return st->zone_names.ids[i];
        }
    }

    return 0;
}


static void
ngx_http_mqttapi_stats_count(ngx_http_mqttapi_stats_t *st,
    ngx_atomic_uint_t key)
{
    ngx_http_mqttapi_stats_add(st, key, 1);
}


static void
ngx_http_mqttapi_stats_add(ngx_http_mqttapi_stats_t *st,
    ngx_atomic_uint_t key, ngx_atomic_uint_t n)
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
                                n);
    return;

found:

    (void) ngx_atomic_fetch_add(&c[h].count, n);
}


/* the sum of the slots, sorted by metric and labels */

ngx_array_t *
ngx_http_mqttapi_stats_collect(ngx_http_mqttapi_stats_t *st,
    ngx_pool_t *pool)
{
    u_char                      *slot;
    ngx_uint_t                   s, i, n, h, mask, m, p;
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

        for (i = 0;
             i < NGX_HTTP_MQTTAPI_STATS_ENTRIES + NGX_HTTP_MQTTAPI_STAT_METRICS;
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

            /*
             * the table has room for twice the keys counted above, but
             * workers may add keys meanwhile: the probes are bounded, and
             * a key that finds no room waits for the next collection
             */

            for (h = (key * 2654435761U) & mask, p = 0;
                 keys[h] && keys[h] != key && p <= mask;
                 h = (h + 1) & mask, p++)
            { /* void */ }

            if (p > mask) {
                continue;
            }

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
    ngx_uint_t                i;
    ngx_http_mqttapi_dict_t  *dict;

    switch (field) {

    case NGX_HTTP_MQTTAPI_LABEL_ZONE:
        dict = &st->sh->dict[NGX_HTTP_MQTTAPI_DIM_ZONES];
        i = s->a;
        break;

    case NGX_HTTP_MQTTAPI_LABEL_CATEGORY:
        dict = &st->sh->dict[NGX_HTTP_MQTTAPI_DIM_CATEGORIES];
        i = s->a;
        break;

    case NGX_HTTP_MQTTAPI_LABEL_ACTION:
        dict = &st->sh->dict[NGX_HTTP_MQTTAPI_DIM_ACTIONS];
        i = s->action;
        break;

    default: /* NGX_HTTP_MQTTAPI_LABEL_CODE */
        dict = &st->sh->dict[NGX_HTTP_MQTTAPI_DIM_CODES];
        i = s->code;
        break;
    }

    if (i >= dict->n) {
        i = 0;
    }

    return &dict->names[i];
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


/* seconds since the counting started: nginx's start, kept across reloads */

time_t
ngx_http_mqttapi_stats_uptime(ngx_http_mqttapi_stats_t *st)
{
    return ngx_time() - st->sh->start;
}
