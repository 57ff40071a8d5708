
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_request.h"
#include "ngx_http_mqttapi_zone.h"

#include <ngx_md5.h>


/*
 * The shared zone of the client-side rate limiting: an rbtree of nodes
 * keyed by a MurmurHash2 of the key, and an LRU queue; when the slab allocator
 * runs out, the least recently used nodes are evicted, and a key that
 * still gets no node is served unlimited (and logged), never an error.
 * The zone is reused across reloads.  ngx_http_mqttapi_zone_node locks
 * the zone and finds (or makes) a key's node of one type; the caller
 * unlocks it with ngx_http_mqttapi_zone_unlock; zone_free and the walks
 * over the queue are made with the zone locked.  The slab mutex is
 * released by the master if a worker dies holding it.
 */


#define NGX_HTTP_MQTTAPI_EVICT_MAX  4


/*
 * Checked at build time: a bucket holds the highest quota, and a long key
 * (a prefix of two, "#" and the MD5 in hex) fits the node.
 */

typedef char  ngx_http_mqttapi_check_quota_max[
    (NGX_HTTP_MQTTAPI_QUOTA_MAX
     <= (1 << (8 * sizeof(((ngx_http_mqttapi_quota_node_t *) 0)
                               ->u.buckets[0])))
        - 1)
    ? 1 : -1];

typedef char  ngx_http_mqttapi_check_key_len[
    (NGX_HTTP_MQTTAPI_KEY_MAX_LEN >= 2 + 1 + 32) ? 1 : -1];

/*
 * ... and the node's layout keeps room for keys of 40 bytes (an MD5 in
 * hex with a prefix, or most access key ids as they are), and its carry
 * holds the highest grant
 */

typedef char  ngx_http_mqttapi_check_node_size[
    (NGX_HTTP_MQTTAPI_KEY_MAX_LEN >= 40) ? 1 : -1];

typedef char  ngx_http_mqttapi_check_carry[
    (NGX_HTTP_MQTTAPI_QUOTA_MAX
     <= (1 << (8 * sizeof(((ngx_http_mqttapi_quota_node_t *) 0)->carry)))
        - 1)
    ? 1 : -1];


static ngx_int_t ngx_http_mqttapi_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_mqttapi_node_t *ngx_http_mqttapi_zone_lookup(
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *key, uint32_t hash);
static ngx_http_mqttapi_node_t *ngx_http_mqttapi_zone_alloc(
    ngx_http_mqttapi_zone_t *zone, ngx_uint_t type, ngx_str_t *key,
    uint32_t hash, ngx_log_t *log);
static void ngx_http_mqttapi_zone_expire(ngx_http_mqttapi_zone_t *zone);
static void ngx_http_mqttapi_zone_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_mqttapi_zone_key_variable(ngx_conf_t *cf,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *value);
static ngx_int_t ngx_http_mqttapi_zone_args(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_http_mqttapi_zone_t *zone, ngx_str_t **key,
    ngx_str_t *name, ssize_t *size);
static ngx_int_t ngx_http_mqttapi_zone_size(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *value, ngx_str_t *name, ssize_t *size);
static ngx_msec_t ngx_http_mqttapi_zone_time(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *value, size_t prefix);
static ngx_uint_t ngx_http_mqttapi_zone_is_param(ngx_str_t *value);


char *
ngx_http_mqttapi_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ssize_t                            size;
    ngx_str_t                         *key, name;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_mqttapi_zone_t           *zone;
    ngx_http_compile_complex_value_t   ccv;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_mqttapi_zone_args(cf, cmd, zone, &key, &name, &size)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = key;
    ccv.complex_value = &zone->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid key \"%V\" in \"%V\" directive",
                           key, &cmd->name);
        return NGX_CONF_ERROR;
    }

    zone->index = ngx_http_mqttapi_zone_key_variable(cf, zone, key);

    if (zone->index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_mqttapi_module);
    if (shm_zone == NULL) {
        /* nginx said why, without the directive */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" cannot be used in \"%V\" directive",
                           &name, &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V \"%V\" is already bound to key \"%V\"",
                           &cmd->name, &name,
                           &((ngx_http_mqttapi_zone_t *) shm_zone->data)
                                ->key.value);
        return NGX_CONF_ERROR;
    }

    zone->shm_zone = shm_zone;

    shm_zone->init = ngx_http_mqttapi_zone_init;
    shm_zone->data = zone;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "mqttapi zone \"%V\": key \"%V\", backoff %M, "
                   "max_backoff %M", &name, key, zone->backoff,
                   zone->max_backoff);

    return NGX_CONF_OK;
}


/* the key and the parameters, in any order, as limit_req_zone's */

static ngx_int_t
ngx_http_mqttapi_zone_args(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t **key, ngx_str_t *name,
    ssize_t *size)
{
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    *key = NULL;
    *size = 0;
    name->len = 0;
    zone->backoff = 1000;
    zone->max_backoff = 60000;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            if (ngx_http_mqttapi_zone_size(cf, cmd, &value[i], name, size)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "backoff=", 8) == 0) {
            zone->backoff = ngx_http_mqttapi_zone_time(cf, cmd, &value[i], 8);
            if (zone->backoff == (ngx_msec_t) NGX_ERROR) {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_backoff=", 12) == 0) {
            zone->max_backoff = ngx_http_mqttapi_zone_time(cf, cmd, &value[i],
                                                           12);
            if (zone->max_backoff == (ngx_msec_t) NGX_ERROR) {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "sync") == 0) {
            /* shared with other nodes through mqttapi_sync */
            zone->synced = 1;
            continue;
        }

        if (*key == NULL && !ngx_http_mqttapi_zone_is_param(&value[i])) {
            *key = &value[i];
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" directive",
                           &value[i], &cmd->name);
        return NGX_ERROR;
    }

    if (*key == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no key in \"%V\" directive, expected one such "
                           "as $arg_AccessKeyId", &cmd->name);
        return NGX_ERROR;
    }

    if (name->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_ERROR;
    }

    if (zone->max_backoff < zone->backoff) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"max_backoff\" must not be less than "
                           "\"backoff\" in \"%V\" directive", &cmd->name);
        return NGX_ERROR;
    }

    if (zone->max_backoff > 86400000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"max_backoff\" must not be more than 1 day "
                           "in \"%V\" directive", &cmd->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "zone=NAME:SIZE" */

static ngx_int_t
ngx_http_mqttapi_zone_size(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, ngx_str_t *name, ssize_t *size)
{
    u_char     *p;
    ngx_str_t   s;

    name->data = value->data + 5;

    p = ngx_strlchr(name->data, value->data + value->len, ':');

    if (p == NULL || p == name->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\" in \"%V\" directive",
                           value, &cmd->name);
        return NGX_ERROR;
    }

    name->len = p - name->data;

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

    *size = ngx_parse_size(&s);

    if (*size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\" in \"%V\" directive",
                           value, &cmd->name);
        return NGX_ERROR;
    }

    if (*size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" in \"%V\" directive is too small",
                           value, &cmd->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "backoff=TIME", "max_backoff=TIME": not zero */

static ngx_msec_t
ngx_http_mqttapi_zone_time(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, size_t prefix)
{
    ngx_str_t   s;
    ngx_msec_t  ms;

    s.data = value->data + prefix;
    s.len = value->len - prefix;

    ms = ngx_parse_time(&s, 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %*s \"%V\" in \"%V\" directive",
                           prefix - 1, value->data, value, &cmd->name);
        return (ngx_msec_t) NGX_ERROR;
    }

    return ms;
}


/*
 * A parameter is a lowercase word and "=" ("burst=5"); a key (a complex
 * value) is anything else: one that looked like a parameter would be a
 * constant, and a constant key limits every request as one.
 */

static ngx_uint_t
ngx_http_mqttapi_zone_is_param(ngx_str_t *value)
{
    size_t  i;

    for (i = 0; i < value->len; i++) {
        if (value->data[i] == '=') {
            return i > 0;
        }

        if (!((value->data[i] >= 'a' && value->data[i] <= 'z')
              || value->data[i] == '_'))
        {
            return 0;
        }
    }

    return 0;
}


/*
 * "mqttapi_throttle zone=NAME" and "mqttapi_quota zone=NAME", or "off".
 * The zone may be declared further on: where each reference was made is
 * kept, to be checked, and reported at its line, once the http block is
 * read.
 */

char *
ngx_http_mqttapi_zone_ref(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    void                         **origin;
    ngx_str_t                     *value, name;
    ngx_shm_zone_t               **field;
    ngx_http_mqttapi_zone_ref_t   *ref, **refp;
    ngx_http_mqttapi_loc_conf_t   *lcf;
    ngx_http_mqttapi_main_conf_t  *mcf;

    lcf = conf;
    field = (ngx_shm_zone_t **) (p + cmd->offset);
    origin = (field == &lcf->throttle_zone) ? &lcf->throttle_ref
                                            : &lcf->quota_ref;

    if (*field != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *field = NULL;
        *origin = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "zone=", 5) != 0 || value[1].len == 5) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" directive, "
                           "expected \"zone=NAME\" or \"off\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data + 5;
    name.len = value[1].len - 5;

    if (ngx_strlchr(name.data, name.data + name.len, ':')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone name \"%V\" in \"%V\" directive",
                           &name, &cmd->name);
        return NGX_CONF_ERROR;
    }

    *field = ngx_shared_memory_add(cf, &name, 0, &ngx_http_mqttapi_module);
    if (*field == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" cannot be used in \"%V\" directive",
                           &name, &cmd->name);
        return NGX_CONF_ERROR;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);

    if (mcf->zone_refs == NULL) {
        mcf->zone_refs = ngx_array_create(cf->pool, 4,
                                     sizeof(ngx_http_mqttapi_zone_ref_t *));
        if (mcf->zone_refs == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    /* the locations that inherit the setting point at it: not moved */

    ref = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_zone_ref_t));
    if (ref == NULL) {
        return NGX_CONF_ERROR;
    }

    refp = ngx_array_push(mcf->zone_refs);
    if (refp == NULL) {
        return NGX_CONF_ERROR;
    }

    *refp = ref;
    *origin = ref;

    ref->shm_zone = *field;
    ref->directive = &cmd->name;
    ref->location = (cf->cmd_type == NGX_HTTP_LOC_CONF);
    ref->line = cf->conf_file->line;

    ref->file.len = cf->conf_file->file.name.len;
    ref->file.data = ngx_pstrdup(cf->pool, &cf->conf_file->file.name);
    if (ref->file.data == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * As each server and location is merged: the mqttapi_throttle and
 * mqttapi_quota it has, its own or inherited, are used when mqttapi is on
 * there.
 */

void
ngx_http_mqttapi_zone_merge_refs(ngx_http_mqttapi_loc_conf_t *conf,
    ngx_http_mqttapi_loc_conf_t *prev)
{
    ngx_http_mqttapi_zone_ref_t  *ref;

    ngx_conf_merge_ptr_value(conf->throttle_ref, prev->throttle_ref, NULL);
    ngx_conf_merge_ptr_value(conf->quota_ref, prev->quota_ref, NULL);

    if (!conf->enable) {
        return;
    }

    ref = conf->throttle_ref;
    if (ref) {
        ref->used = 1;
    }

    ref = conf->quota_ref;
    if (ref) {
        ref->used = 1;
    }
}


/*
 * Once every location is merged: each zone named by mqttapi_throttle and
 * mqttapi_quota was declared, and each setting applies to at least one
 * location where mqttapi is on (elsewhere nothing would ever back off or
 * be counted; a location below it with "mqttapi off" is not a mistake).
 * Reported at the line of the setting, as nginx reports a directive.
 */

ngx_int_t
ngx_http_mqttapi_zone_check_refs(ngx_conf_t *cf)
{
    ngx_uint_t                     i;
    ngx_http_mqttapi_zone_ref_t  **refs, *ref;
    ngx_http_mqttapi_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);

    if (mcf->zone_refs == NULL) {
        return NGX_OK;
    }

    refs = mcf->zone_refs->elts;

    for (i = 0; i < mcf->zone_refs->nelts; i++) {
        ref = refs[i];

        if (ref->shm_zone->data == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" refers to an unknown "
                          "mqttapi_throttle_zone \"%V\" in %V:%ui",
                          ref->directive, &ref->shm_zone->shm.name,
                          &ref->file, ref->line);
            return NGX_ERROR;
        }

        if (ref->used) {
            continue;
        }

        if (ref->location) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" needs \"mqttapi on\" in its location, "
                          "it does nothing without it in %V:%ui",
                          ref->directive, &ref->file, ref->line);

        } else if (!mcf->enabled) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" has no effect: \"mqttapi\" is not on "
                          "anywhere in %V:%ui",
                          ref->directive, &ref->file, ref->line);

        } else {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" has no effect: \"mqttapi\" is on in "
                          "none of the locations it applies to in %V:%ui",
                          ref->directive, &ref->file, ref->line);
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_shm_zone_t *
ngx_http_mqttapi_zone_ceiling(ngx_conf_t *cf)
{
    ngx_shm_zone_t           *shm_zone;
    ngx_http_mqttapi_zone_t  *zone;

    static ngx_str_t  name = ngx_string(NGX_HTTP_MQTTAPI_CEILING_ZONE);

    /* a zone like the others, without a key: kept across reloads alike */

    shm_zone = ngx_shared_memory_add(cf, &name, NGX_HTTP_MQTTAPI_CEILING_SIZE,
                                     &ngx_http_mqttapi_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        return shm_zone;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_zone_t));
    if (zone == NULL) {
        return NULL;
    }

    zone->shm_zone = shm_zone;

    shm_zone->init = ngx_http_mqttapi_zone_init;
    shm_zone->data = zone;

    return shm_zone;
}


static ngx_int_t
ngx_http_mqttapi_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_mqttapi_zone_t  *ozone = data;

    ngx_http_mqttapi_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        if (zone->key.value.len != ozone->key.value.len
            || ngx_strncmp(zone->key.value.data, ozone->key.value.data,
                           zone->key.value.len)
               != 0)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "mqttapi_throttle_zone \"%V\" uses the \"%V\" key "
                          "while previously it used the \"%V\" key",
                          &shm_zone->shm.name, &zone->key.value,
                          &ozone->key.value);
            return NGX_ERROR;
        }

        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;

        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_alloc(zone->shpool,
                              sizeof(ngx_http_mqttapi_zone_sh_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(zone->sh, sizeof(ngx_http_mqttapi_zone_sh_t));

    zone->shpool->data = zone->sh;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_mqttapi_zone_insert);

    ngx_queue_init(&zone->sh->queue);

    /* the log context lives in the zone's own header: no slab page for it */

    ngx_snprintf(zone->sh->log_ctx, NGX_HTTP_MQTTAPI_LOG_CTX_LEN - 1,
                 " in mqttapi zone \"%V\"%Z", &shm_zone->shm.name);

    zone->shpool->log_ctx = zone->sh->log_ctx;

    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_zone_key_variable(ngx_conf_t *cf,
    ngx_http_mqttapi_zone_t *zone, ngx_str_t *value)
{
    ngx_str_t   name;
    ngx_uint_t  i;

    /*
     * a key that is one variable ($arg_AccessKeyId, ${binary_remote_addr})
     * is read directly at run time, without the script engine and a copy,
     * and a query argument without the variable either ("arg");
     * NGX_DECLINED: any other key
     */

    name = *value;

    if (name.len < 2 || name.data[0] != '$') {
        return NGX_DECLINED;
    }

    name.data++;
    name.len--;

    if (name.data[0] == '{') {
        if (name.len < 3 || name.data[name.len - 1] != '}') {
            return NGX_DECLINED;
        }

        name.data++;
        name.len -= 2;
    }

    /* "$1" is a regex capture, not a variable */

    if (ngx_http_script_variables_count(value) != 1
        || (name.data[0] >= '0' && name.data[0] <= '9'))
    {
        return NGX_DECLINED;
    }

    for (i = 0; i < name.len; i++) {
        if (!((name.data[i] >= 'a' && name.data[i] <= 'z')
              || (name.data[i] >= 'A' && name.data[i] <= 'Z')
              || (name.data[i] >= '0' && name.data[i] <= '9')
              || name.data[i] == '_'))
        {
            return NGX_DECLINED;
        }
    }

    if (name.len > sizeof("arg_") - 1
        && ngx_strncmp(name.data, "arg_", sizeof("arg_") - 1) == 0)
    {
        zone->arg.data = name.data + sizeof("arg_") - 1;
        zone->arg.len = name.len - (sizeof("arg_") - 1);
    }

    return ngx_http_get_variable_index(cf, &name);
}


ngx_int_t
ngx_http_mqttapi_zone_key(ngx_http_request_t *r, ngx_http_mqttapi_zone_t *zone,
    const char *prefix, ngx_str_t *suffix, ngx_str_t *key, uint32_t *hash)
{
    ngx_str_t                   value;
    ngx_http_variable_value_t  *vv;

    if (zone->arg.len) {
        if (ngx_http_mqttapi_request_arg(r, &zone->arg, &value) != NGX_OK) {
            value.len = 0;
        }

    } else if (zone->index >= 0) {
        vv = ngx_http_get_flushed_variable(r, zone->index);

        if (vv == NULL) {
            return NGX_ERROR;
        }

        value.data = vv->data;
        value.len = vv->not_found ? 0 : vv->len;

    } else if (ngx_http_complex_value(r, &zone->key, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_zone_make_key(r->pool, prefix, &value, suffix, key,
                                       hash)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return value.len ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_mqttapi_zone_make_key(ngx_pool_t *pool, const char *prefix,
    ngx_str_t *value, ngx_str_t *suffix, ngx_str_t *key, uint32_t *hash)
{
    u_char     *p;
    size_t      plen, len;
    ngx_md5_t   md5;
    u_char      digest[16];

    plen = ngx_strlen(prefix);
    len = plen + value->len + (suffix ? suffix->len + 1 : 0);

    key->data = ngx_pnalloc(pool, ngx_max(len, plen + 33));
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix, plen);

    if (len > NGX_HTTP_MQTTAPI_KEY_MAX_LEN) {

        /* a long key is kept as its digest: nodes stay one slab size */

        ngx_md5_init(&md5);
        ngx_md5_update(&md5, value->data, value->len);

        if (suffix) {
            ngx_md5_update(&md5, ":", 1);
            ngx_md5_update(&md5, suffix->data, suffix->len);
        }

        ngx_md5_final(digest, &md5);

        *p++ = '#';
        p = ngx_hex_dump(p, digest, 16);

    } else {
        p = ngx_cpymem(p, value->data, value->len);

        if (suffix) {
            *p++ = ':';
            p = ngx_cpymem(p, suffix->data, suffix->len);
        }
    }

    key->len = p - key->data;
    *hash = ngx_http_mqttapi_zone_hash(key);

    return NGX_OK;
}


/*
 * The rbtree key of a node: every lookup of a request hashes its key, so
 * MurmurHash2, cheaper a byte than CRC32; the value is only ever compared
 * within the zone of one binary
 */

uint32_t
ngx_http_mqttapi_zone_hash(ngx_str_t *key)
{
    return ngx_murmur_hash2(key->data, key->len);
}


/*
 * The zone locked, a key's node of "type": NULL when the key has none, or
 * a node of another type.  With a log, a key without a node gets one
 * (NULL when the zone has no room even after eviction, logged).  The zone
 * stays locked whatever the result: ngx_http_mqttapi_zone_unlock.
 */

ngx_http_mqttapi_node_t *
ngx_http_mqttapi_zone_node(ngx_http_mqttapi_zone_t *zone, ngx_uint_t type,
    ngx_str_t *key, uint32_t hash, ngx_log_t *log)
{
    ngx_http_mqttapi_node_t  *node;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_http_mqttapi_zone_lookup(zone, key, hash);

    if (node == NULL) {
        return log ? ngx_http_mqttapi_zone_alloc(zone, type, key, hash, log)
                   : NULL;
    }

    return (node->type == type) ? node : NULL;
}


static ngx_http_mqttapi_node_t *
ngx_http_mqttapi_zone_lookup(ngx_http_mqttapi_zone_t *zone, ngx_str_t *key,
    uint32_t hash)
{
    ngx_int_t                 rc;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_mqttapi_node_t  *n;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        /* hash == node->key */

        n = (ngx_http_mqttapi_node_t *) &node->color;

        rc = ngx_memn2cmp(key->data, n->data, key->len, (size_t) n->len);

        if (rc == 0) {
            ngx_queue_remove(&n->queue);
            ngx_queue_insert_head(&zone->sh->queue, &n->queue);
            return n;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static ngx_http_mqttapi_node_t *
ngx_http_mqttapi_zone_alloc(ngx_http_mqttapi_zone_t *zone, ngx_uint_t type,
    ngx_str_t *key, uint32_t hash, ngx_log_t *log)
{
    size_t                    size;
    ngx_uint_t                i;
    ngx_queue_t              *q;
    ngx_rbtree_node_t        *node;
    ngx_http_mqttapi_node_t  *n;

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_mqttapi_node_t, data)
           + key->len;

    size = ngx_max(size, NGX_HTTP_MQTTAPI_NODE_SIZE);

    ngx_http_mqttapi_zone_expire(zone);

    node = ngx_slab_alloc_locked(zone->shpool, size);

    for (i = 0; node == NULL && i < NGX_HTTP_MQTTAPI_EVICT_MAX; i++) {

        /* the zone is full: evict the least recently used node */

        if (ngx_queue_empty(&zone->sh->queue)) {
            break;
        }

        q = ngx_queue_last(&zone->sh->queue);
        n = ngx_queue_data(q, ngx_http_mqttapi_node_t, queue);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "mqttapi zone: full, the least recently used key "
                       "\"%*s\" evicted", (size_t) n->len, n->data);

        ngx_http_mqttapi_zone_free(zone, n);
        (void) ngx_atomic_fetch_add(&zone->sh->evicted, 1);

        node = ngx_slab_alloc_locked(zone->shpool, size);
    }

    if (node == NULL) {
        (void) ngx_atomic_fetch_add(&zone->sh->failed, 1);

        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "mqttapi: could not allocate a node%s, the key is "
                      "not limited", zone->shpool->log_ctx);
        return NULL;
    }

    node->key = hash;

    n = (ngx_http_mqttapi_node_t *) &node->color;

    ngx_memzero(&n->type, offsetof(ngx_http_mqttapi_node_t, data)
                          - offsetof(ngx_http_mqttapi_node_t, type));



    n->type = (u_char) type;
    n->len = (u_short) key->len;
    ngx_memcpy(n->data, key->data, key->len);

    if (type == NGX_HTTP_MQTTAPI_NODE_QUOTA) {
        n->u.quota.bucket = (uint32_t) (ngx_current_msec
                                        / NGX_HTTP_MQTTAPI_BUCKET_MSEC);
    }

    ngx_rbtree_insert(&zone->sh->rbtree, node);
    ngx_queue_insert_head(&zone->sh->queue, &n->queue);

    (void) ngx_atomic_fetch_add(&zone->sh->nodes, 1);

    return n;
}


static void
ngx_http_mqttapi_zone_expire(ngx_http_mqttapi_zone_t *zone)
{
    ngx_uint_t                        n;
    ngx_msec_t                        now;
    ngx_msec_int_t                    idle;
    ngx_queue_t                      *q;
    ngx_http_mqttapi_node_t          *node;
    ngx_http_mqttapi_quota_node_t    *quota;
    ngx_http_mqttapi_backoff_node_t  *backoff;

    /*
     * Up to two nodes from the cold end that no longer hold anything: a
     * quota window older than two seconds, or a back-off that ended an
     * hour ago without a probe.  Full eviction is left to the allocator.
     */

    now = ngx_current_msec;

    for (n = 0; n < 2 && !ngx_queue_empty(&zone->sh->queue); n++) {

        q = ngx_queue_last(&zone->sh->queue);
        node = ngx_queue_data(q, ngx_http_mqttapi_node_t, queue);

        quota = ngx_http_mqttapi_node_quota(node);
        backoff = ngx_http_mqttapi_node_backoff(node);

        if (quota) {
            idle = (ngx_msec_int_t) (int32_t)
                       ((uint32_t) (now / NGX_HTTP_MQTTAPI_BUCKET_MSEC)
                        - quota->bucket)
                   * NGX_HTTP_MQTTAPI_BUCKET_MSEC;

            if (idle < 2000) {
                return;
            }

        } else if (backoff) {
            idle = (ngx_msec_int_t) (now - backoff->until);

            if (idle < 3600000 || backoff->probe) {
                return;
            }
        }

        ngx_http_mqttapi_zone_free(zone, node);
    }
}


void
ngx_http_mqttapi_zone_free(ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_node_t *n)
{
    ngx_rbtree_node_t  *node;

    node = (ngx_rbtree_node_t *)
               ((u_char *) n - offsetof(ngx_rbtree_node_t, color));

    ngx_queue_remove(&n->queue);
    ngx_rbtree_delete(&zone->sh->rbtree, node);
    ngx_slab_free_locked(zone->shpool, node);

    (void) ngx_atomic_fetch_add(&zone->sh->nodes, -1);
}


/*
 * The back-offs in effect (or probing), own and learnt from other nodes,
 * each also given to "each" if any
 */

void
ngx_http_mqttapi_zone_backoffs(ngx_http_mqttapi_zone_t *zone,
    ngx_uint_t *local, ngx_uint_t *peer, ngx_http_mqttapi_zone_each_pt each,
    void *data)
{
    ngx_msec_t                        now;
    ngx_queue_t                      *q;
    ngx_http_mqttapi_backoff_node_t  *b;

    now = ngx_current_msec;
    *local = 0;
    *peer = 0;

    for (q = ngx_queue_head(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue);
         q = ngx_queue_next(q))
    {
        b = ngx_http_mqttapi_node_backoff(
                ngx_queue_data(q, ngx_http_mqttapi_node_t, queue));

        if (b == NULL
            || ((ngx_msec_int_t) (b->until - now) <= 0 && b->probe == 0))
        {
            continue;
        }

        if (b->flags & NGX_HTTP_MQTTAPI_SYNC_PEER) {
            (*peer)++;

        } else {
            (*local)++;
        }

        if (each) {
            each(data, ngx_queue_data(q, ngx_http_mqttapi_node_t, queue),
                 now);
        }
    }
}


u_char
ngx_http_mqttapi_zone_code_index(ngx_http_mqttapi_zone_t *zone,
    ngx_str_t *code)
{
    u_char                   *c;
    ngx_uint_t                        i;
    ngx_queue_t                      *q;
    ngx_http_mqttapi_backoff_node_t  *b;
    u_char                            used[NGX_HTTP_MQTTAPI_ZONE_CODES];

    /* the codes that opened back-offs, kept once per zone */

    for (i = 0; i < zone->sh->ncodes; i++) {
        c = zone->sh->codes[i];

        if (c[0] == code->len && ngx_strncmp(c + 1, code->data, c[0]) == 0) {
            return (u_char) i;
        }
    }

    if (code->len > NGX_HTTP_MQTTAPI_CODE_MAX_LEN) {
        return NGX_HTTP_MQTTAPI_ZONE_CODES;
    }

    if (i == NGX_HTTP_MQTTAPI_ZONE_CODES) {

        /*
         * the table is full: reuse a slot no back-off refers to, else
         * the code is not kept (the local answer has a generic one)
         */

        ngx_memzero(used, sizeof(used));

        for (q = ngx_queue_head(&zone->sh->queue);
             q != ngx_queue_sentinel(&zone->sh->queue);
             q = ngx_queue_next(q))
        {
            b = ngx_http_mqttapi_node_backoff(
                    ngx_queue_data(q, ngx_http_mqttapi_node_t, queue));

            if (b && b->code < NGX_HTTP_MQTTAPI_ZONE_CODES) {
                used[b->code] = 1;
            }
        }

        for (i = 0; i < NGX_HTTP_MQTTAPI_ZONE_CODES; i++) {
            if (!used[i]) {
                break;
            }
        }

        if (i == NGX_HTTP_MQTTAPI_ZONE_CODES) {
            return NGX_HTTP_MQTTAPI_ZONE_CODES;
        }

    } else {
        zone->sh->ncodes++;
    }

    c = zone->sh->codes[i];
    c[0] = (u_char) code->len;
    ngx_memcpy(c + 1, code->data, code->len);

    return (u_char) i;
}


void
ngx_http_mqttapi_zone_code(ngx_http_mqttapi_zone_t *zone, u_char index,
    ngx_str_t *code)
{
    u_char  *c;

    if (index >= zone->sh->ncodes) {
        /* a code that was not kept */
        ngx_str_null(code);
        return;
    }

    c = zone->sh->codes[index];

    code->len = c[0];
    code->data = c + 1;
}


static void
ngx_http_mqttapi_zone_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t        **p;
    ngx_http_mqttapi_node_t   *n, *nt;

    for ( ;; ) {

        if (node->key < temp->key) {

            p = &temp->left;

        } else if (node->key > temp->key) {

            p = &temp->right;

        } else { /* node->key == temp->key */

            n = (ngx_http_mqttapi_node_t *) &node->color;
            nt = (ngx_http_mqttapi_node_t *) &temp->color;

            p = (ngx_memn2cmp(n->data, nt->data, n->len, nt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}
