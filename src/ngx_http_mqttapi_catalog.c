
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"


/*
 * The error catalog at run time: an exact code, an action's name are a
 * lookup in a table built once the catalog is loaded (the loader is
 * ngx_http_mqttapi_catalog_load.c); patterned codes are matched, the
 * latest first, only when no exact code is known.
 */


static ngx_int_t ngx_http_mqttapi_hash_build(ngx_conf_t *cf,
    ngx_http_mqttapi_names_t *names, ngx_array_t *elts, char *name);
static void *ngx_http_mqttapi_hash_find(ngx_http_mqttapi_names_t *names,
    ngx_str_t *name);
static ngx_http_mqttapi_slot_t *ngx_http_mqttapi_hash_slot(
    ngx_http_mqttapi_names_t *names, ngx_str_t *name, uint32_t hash);
static ngx_int_t ngx_http_mqttapi_printf_match(ngx_http_mqttapi_entry_t *e,
    ngx_str_t *code, ngx_str_t *param);


ngx_int_t
ngx_http_mqttapi_catalog_hash(ngx_conf_t *cf,
    ngx_http_mqttapi_catalog_t *catalog)
{
    if (ngx_http_mqttapi_hash_build(cf, &catalog->codes_hash,
                                    &catalog->entries, "mqttapi_codes_hash")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_mqttapi_hash_build(cf, &catalog->actions_hash,
                                       &catalog->actions,
                                       "mqttapi_actions_hash");
}


/*
 * The lookup table of an array of pointers to structures that begin with
 * their name (entries with their code, actions with their name).  Names
 * are case-sensitive, so unlike ngx_hash (lowercase keys) a lookup needs
 * no lowercase copy of the name and no second comparison of its spelling;
 * at most half of the slots are used.  The first of equal names is found.
 */

static ngx_int_t
ngx_http_mqttapi_hash_build(ngx_conf_t *cf, ngx_http_mqttapi_names_t *names,
    ngx_array_t *elts, char *name)
{
    void                     **elt;
    uint32_t                   hash;
    ngx_str_t                 *key;
    ngx_uint_t                 i, n;
    ngx_http_mqttapi_slot_t   *s;

    for (n = 8; n < 2 * elts->nelts; n <<= 1) { /* void */ }

    names->slots = ngx_pcalloc(cf->pool, n * sizeof(ngx_http_mqttapi_slot_t));
    if (names->slots == NULL) {
        return NGX_ERROR;
    }

    names->mask = n - 1;

    elt = elts->elts;

    for (i = 0; i < elts->nelts; i++) {
        key = elt[i];
        hash = ngx_murmur_hash2(key->data, key->len);

        s = ngx_http_mqttapi_hash_slot(names, key, hash);

        if (s->value == NULL) {
            s->hash = hash;
            s->value = elt[i];
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "%s: %ui names in %ui slots", name, elts->nelts, n);

    return NGX_OK;
}


ngx_http_mqttapi_entry_t *
ngx_http_mqttapi_catalog_find(ngx_http_mqttapi_catalog_t *catalog,
    ngx_str_t *code, ngx_str_t *param, ngx_pool_t *pool)
{
    ngx_uint_t                  i;
    ngx_http_mqttapi_entry_t   *e, **p;
#if (NGX_PCRE)
    ngx_int_t                   rc;
    int                         captures[30];
#endif

    e = ngx_http_mqttapi_hash_find(&catalog->codes_hash, code);

    if (e) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "mqttapi catalog: \"%V\" found", code);
        return e;
    }

    /* later patterns (user catalogs) take precedence */

    p = catalog->patterns.elts;

    for (i = catalog->patterns.nelts; i > 0; i--) {
        e = p[i - 1];

        if (e->printf) {
            if (ngx_http_mqttapi_printf_match(e, code, param) == NGX_OK) {
                ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                               "mqttapi catalog: \"%V\" matches \"%V\"",
                               code, &e->code);
                return e;
            }

            continue;
        }

#if (NGX_PCRE)

        rc = ngx_regex_exec(e->regex, code, captures, 30);

        if (rc == NGX_REGEX_NO_MATCHED) {
            continue;
        }

        if (rc < 0) {
            ngx_log_error(NGX_LOG_ALERT, pool->log, 0,
                          ngx_regex_exec_n " failed: %i on \"%V\" "
                          "(catalog regex \"%V\")", rc, code, &e->code);
            return NULL;
        }

        /*
         * the parameter: group 1 only, when it took part in the match
         * (rc is one more than the highest group set, an unset one is -1)
         */

        if (rc > 1 && captures[2] >= 0) {
            param->data = code->data + captures[2];
            param->len = captures[3] - captures[2];
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "mqttapi catalog: \"%V\" matches the regex \"%V\"",
                       code, &e->code);

        return e;

#endif
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "mqttapi catalog: \"%V\" is not in the catalog", code);

    return NULL;
}


static ngx_int_t
ngx_http_mqttapi_printf_match(ngx_http_mqttapi_entry_t *e, ngx_str_t *code,
    ngx_str_t *param)
{
    u_char  *p, *last;

    if (code->len <= e->prefix.len + e->suffix.len
        || ngx_strncmp(code->data, e->prefix.data, e->prefix.len) != 0
        || ngx_strncmp(code->data + code->len - e->suffix.len,
                       e->suffix.data, e->suffix.len)
           != 0)
    {
        return NGX_DECLINED;
    }

    p = code->data + e->prefix.len;
    last = code->data + code->len - e->suffix.len;

    param->data = p;
    param->len = last - p;

    for ( /* void */ ; p < last; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9')
              || *p == '.' || *p == '_' || *p == '-'))
        {
            ngx_str_null(param);
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


ngx_http_mqttapi_action_t *
ngx_http_mqttapi_catalog_action(ngx_http_mqttapi_catalog_t *catalog,
    ngx_str_t *name)
{
    return ngx_http_mqttapi_hash_find(&catalog->actions_hash, name);
}


static void *
ngx_http_mqttapi_hash_find(ngx_http_mqttapi_names_t *names, ngx_str_t *name)
{
    ngx_http_mqttapi_slot_t  *s;

    s = ngx_http_mqttapi_hash_slot(names, name,
                                   ngx_murmur_hash2(name->data, name->len));

    return s->value;
}


/*
 * The slot that holds "name", or the free one where it would go: a table
 * is never more than half full, so the probe always ends
 */

static ngx_http_mqttapi_slot_t *
ngx_http_mqttapi_hash_slot(ngx_http_mqttapi_names_t *names, ngx_str_t *name,
    uint32_t hash)
{
    ngx_str_t                *key;
    ngx_uint_t                slot;
    ngx_http_mqttapi_slot_t  *s;

    for (slot = hash & names->mask; /* void */;
         slot = (slot + 1) & names->mask)
    {
        s = &names->slots[slot];
        key = s->value;

        if (key == NULL
            || (s->hash == hash
                && key->len == name->len
                && ngx_memcmp(key->data, name->data, name->len) == 0))
        {
            return s;
        }
    }
}


/*
 * The gateway code for a status: the status's own before its class
 * ("4xx", "5xx"); for errors nginx made without using an upstream, the
 * "local" ones before the "nginx" ones, key by key.
 */

ngx_http_mqttapi_entry_t *
ngx_http_mqttapi_catalog_gateway(ngx_http_mqttapi_catalog_t *catalog,
    ngx_uint_t origin, ngx_uint_t status)
{
    ngx_uint_t                   i, k, key[2];
    ngx_http_mqttapi_entry_t    *own, *nginx;
    ngx_http_mqttapi_gateway_t  *gw;

    key[0] = status;
    key[1] = status / 100;

    gw = catalog->gateway.elts;

    for (k = 0; k < 2; k++) {
        own = NULL;
        nginx = NULL;

        for (i = 0; i < catalog->gateway.nelts; i++) {
            if (gw[i].status != key[k]) {
                continue;
            }

            if (gw[i].origin == origin) {
                own = gw[i].entry;

            } else if (gw[i].origin == NGX_HTTP_MQTTAPI_GW_NGINX) {
                nginx = gw[i].entry;
            }
        }

        if (own) {
            return own;
        }

        if (nginx && origin == NGX_HTTP_MQTTAPI_GW_LOCAL) {
            return nginx;
        }
    }

    return NULL;
}


ngx_http_mqttapi_text_t *
ngx_http_mqttapi_catalog_text(ngx_http_mqttapi_catalog_t *catalog,
    ngx_http_mqttapi_entry_t *entry, ngx_uint_t lang)
{
    if (entry == NULL || lang >= entry->ntexts) {
        return NULL;
    }

    return &entry->texts[lang];
}


ngx_int_t
ngx_http_mqttapi_valid_code(u_char *p, size_t len)
{
    u_char  *last;

    /* 1: a character of a code, "A-Za-z0-9._%-" (0x80-0xff: 0) */

    static const u_char  valid[256] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0,   /* '%' '-' '.' */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,   /* '0'-'9' */
        0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,   /* 'A'-'O' */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,   /* 'P'-'Z' '_' */
        0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,   /* 'a'-'o' */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0   /* 'p'-'z' */
    };

    if (len == 0 || len > NGX_HTTP_MQTTAPI_CODE_MAX_LEN) {
        return NGX_DECLINED;
    }

    for (last = p + len; p < last; p++) {
        if (!valid[*p]) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* a name of an action, a category or a language: [A-Za-z0-9_-] */

ngx_int_t
ngx_http_mqttapi_valid_name(ngx_str_t *s)
{
    size_t  i;
    u_char  c;

    if (s->len == 0 || s->len > NGX_HTTP_MQTTAPI_NAME_MAX_LEN) {
        return NGX_DECLINED;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_')
        {
            continue;
        }

        return NGX_DECLINED;
    }

    return NGX_OK;
}
