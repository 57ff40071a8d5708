
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync.h"


/*
 * mqttapi_sync: the configuration, the node's shared state (which worker
 * runs the background task, whether Redis is up, the nodes alive, the
 * counters) and the outbox through which requests hand what they learnt
 * to the task.  A request only ever touches shared memory; the task, in
 * ngx_http_mqttapi_sync_task.c, talks to Redis.
 */


const char  *ngx_http_mqttapi_sync_ops[] = {
    "connect", "backoff", "reconcile", "probe", "lease", "beat", "pubsub"
};

/* the upper bounds of ngx_http_mqttapi_sync_task.c's buckets, in seconds */

const char  *ngx_http_mqttapi_sync_rtt_le[] = {
    "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.5", "+Inf"
};


static ngx_int_t ngx_http_mqttapi_sync_shm_init(ngx_shm_zone_t *shm_zone,
    void *data);
static char *ngx_http_mqttapi_sync_param(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_mqttapi_sync_conf_t *scf, ngx_str_t *value);
static char *ngx_http_mqttapi_sync_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_mqttapi_sync_conf_t *scf, ngx_str_t *value);
static char *ngx_http_mqttapi_sync_sentinel(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_http_mqttapi_sync_conf_t *scf, ngx_str_t *value);
static ngx_int_t ngx_http_mqttapi_sync_url(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, u_char *url, size_t len, in_port_t port, ngx_url_t *u);
static char *ngx_http_mqttapi_sync_msec(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, ngx_msec_t *ms);
static ngx_int_t ngx_http_mqttapi_sync_enum(ngx_str_t *value, size_t skip,
    ngx_conf_enum_t *e, ngx_uint_t *out);


static ngx_conf_enum_t  ngx_http_mqttapi_sync_fail[] = {
    { ngx_string("local"), NGX_HTTP_MQTTAPI_SYNC_FAIL_LOCAL },
    { ngx_string("open"), NGX_HTTP_MQTTAPI_SYNC_FAIL_OPEN },
    { ngx_string("closed"), NGX_HTTP_MQTTAPI_SYNC_FAIL_CLOSED },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_mqttapi_sync_flag[] = {
    { ngx_string("on"), 1 },
    { ngx_string("off"), 0 },
    { ngx_null_string, 0 }
};


char *
ngx_http_mqttapi_sync_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_mqttapi_main_conf_t *mcf = conf;

    char                          *rv;
    ngx_str_t                     *value, name;
    ngx_uint_t                     i;
    ngx_http_mqttapi_sync_conf_t  *scf;

    if (mcf->sync) {
        return "is duplicate";
    }

    scf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_sync_conf_t));
    if (scf == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&scf->prefix, "mqttapi:");
    scf->interval = 100;
    scf->timeout = 50;
    scf->fail = NGX_HTTP_MQTTAPI_SYNC_FAIL_LOCAL;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        rv = ngx_http_mqttapi_sync_param(cf, cmd, scf, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if ((scf->sockaddr == NULL) == (scf->sentinels == NULL)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have either \"redis\" or "
                           "\"sentinel\" parameter", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if ((scf->sentinels == NULL) != (scf->master.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sentinel\" and \"master\" go together in "
                           "\"%V\" directive", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (scf->sentinels) {
        /* the master's address comes from the sentinels: for the log */
        scf->name.len = sizeof("master ") - 1 + scf->master.len;
        scf->name.data = ngx_pnalloc(cf->pool, scf->name.len);
        if (scf->name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(ngx_cpymem(scf->name.data, "master ", 7),
                   scf->master.data, scf->master.len);
    }

    if (scf->user.len && scf->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"user\" needs \"password\" in \"%V\" directive",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (scf->timeout > scf->interval * 20) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"timeout\" must not be more than 20 times "
                           "\"interval\" in \"%V\" directive", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&scf->zones, cf->pool, 4, sizeof(void *)) != NGX_OK
        || ngx_array_init(&scf->zone_ids, cf->pool, 4, sizeof(uint32_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, NGX_HTTP_MQTTAPI_SYNC_ZONE);

    scf->shm_zone = ngx_shared_memory_add(cf, &name,
                                  ngx_align(sizeof(ngx_http_mqttapi_sync_sh_t),
                                            ngx_pagesize)
                                  + 8 * ngx_pagesize,
                                  &ngx_http_mqttapi_module);
    if (scf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    scf->shm_zone->init = ngx_http_mqttapi_sync_shm_init;
    scf->shm_zone->data = scf;

    mcf->sync = scf;

    return NGX_CONF_OK;
}


/* one "name=value" parameter of mqttapi_sync */

static char *
ngx_http_mqttapi_sync_param(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_mqttapi_sync_conf_t *scf, ngx_str_t *value)
{
    ngx_uint_t  n;

    if (ngx_strncmp(value->data, "redis=", 6) == 0) {
        return ngx_http_mqttapi_sync_redis(cf, cmd, scf, value);
    }

    if (ngx_strncmp(value->data, "sentinel=", 9) == 0) {
        return ngx_http_mqttapi_sync_sentinel(cf, cmd, scf, value);
    }

    if (ngx_strncmp(value->data, "master=", 7) == 0) {
        scf->master.data = value->data + 7;
        scf->master.len = value->len - 7;

        if (scf->master.len == 0
            || ngx_strlchr(scf->master.data,
                           scf->master.data + scf->master.len, ' '))
        {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "sentinel_password=", 18) == 0) {
        scf->sentinel_password.data = value->data + 18;
        scf->sentinel_password.len = value->len - 18;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "user=", 5) == 0) {
        scf->user.data = value->data + 5;
        scf->user.len = value->len - 5;

        if (scf->user.len == 0) {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "password=", 9) == 0) {
        scf->password.data = value->data + 9;
        scf->password.len = value->len - 9;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "db=", 3) == 0) {
        scf->db = ngx_atoi(value->data + 3, value->len - 3);

        if (scf->db == NGX_ERROR || scf->db > 65535) {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "prefix=", 7) == 0) {
        scf->prefix.data = value->data + 7;
        scf->prefix.len = value->len - 7;

        if (scf->prefix.len > 64
            || ngx_strlchr(scf->prefix.data,
                           scf->prefix.data + scf->prefix.len, ' '))
        {
            goto invalid;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "interval=", 9) == 0) {
        return ngx_http_mqttapi_sync_msec(cf, cmd, value, &scf->interval);
    }

    if (ngx_strncmp(value->data, "timeout=", 8) == 0) {
        return ngx_http_mqttapi_sync_msec(cf, cmd, value, &scf->timeout);
    }

    if (ngx_strncmp(value->data, "fail=", 5) == 0) {
        if (ngx_http_mqttapi_sync_enum(value, 5, ngx_http_mqttapi_sync_fail,
                                       &scf->fail)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in \"%V\" directive, it "
                               "must be \"local\", \"open\" or \"closed\"",
                               value, &cmd->name);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "shared_egress=", 14) == 0) {
        if (ngx_http_mqttapi_sync_enum(value, 14, ngx_http_mqttapi_sync_flag,
                                       &n)
            != NGX_OK)
        {
            goto invalid;
        }

        scf->shared_egress = n;

        return NGX_CONF_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\" directive",
                       value, &cmd->name);
    return NGX_CONF_ERROR;
}


/* "redis=host[:port]", resolved here, so that no worker ever blocks on DNS */

static char *
ngx_http_mqttapi_sync_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_mqttapi_sync_conf_t *scf, ngx_str_t *value)
{
    ngx_url_t  u;

    if (ngx_http_mqttapi_sync_url(cf, cmd, value, value->data + 6,
                                  value->len - 6, 6379, &u)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    scf->sockaddr = u.addrs[0].sockaddr;
    scf->socklen = u.addrs[0].socklen;
    scf->name = u.addrs[0].name;
    scf->host = u.host;

    return NGX_CONF_OK;
}


/* "sentinel=host[:port][,host[:port]...]": every address of every name */

static char *
ngx_http_mqttapi_sync_sentinel(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_mqttapi_sync_conf_t *scf, ngx_str_t *value)
{
    u_char      *p, *last, *comma;
    ngx_url_t    u;
    ngx_uint_t   i;
    ngx_addr_t  *a;

    if (scf->sentinels == NULL) {
        scf->sentinels = ngx_array_create(cf->pool, 3, sizeof(ngx_addr_t));
        if (scf->sentinels == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    p = value->data + 9;
    last = value->data + value->len;

    for ( ;; ) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (ngx_http_mqttapi_sync_url(cf, cmd, value, p, comma - p, 26379,
                                      &u)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < u.naddrs; i++) {
            a = ngx_array_push(scf->sentinels);
            if (a == NULL) {
                return NGX_CONF_ERROR;
            }

            *a = u.addrs[i];
        }

        if (comma == last) {
            return NGX_CONF_OK;
        }

        p = comma + 1;
    }
}


static ngx_int_t
ngx_http_mqttapi_sync_url(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, u_char *url, size_t len, in_port_t port, ngx_url_t *u)
{
    ngx_memzero(u, sizeof(ngx_url_t));

    u->url.data = url;
    u->url.len = len;
    u->default_port = port;

    if (len == 0 || ngx_parse_url(cf->pool, u) != NGX_OK || u->naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address \"%V\" in \"%V\" directive%s%s",
                           value, &cmd->name,
                           u->err ? ": " : "", u->err ? u->err : "");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "name=TIME" */

static char *
ngx_http_mqttapi_sync_msec(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, ngx_msec_t *ms)
{
    ngx_str_t  s;

    s.data = (u_char *) ngx_strchr(value->data, '=') + 1;
    s.len = value->data + value->len - s.data;

    *ms = ngx_parse_time(&s, 0);

    if (*ms == (ngx_msec_t) NGX_ERROR || *ms == 0 || *ms > 60000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" in \"%V\" directive, it must be "
                           "a time between 1ms and 60s", value, &cmd->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "name=word": the word's value in "e" */

static ngx_int_t
ngx_http_mqttapi_sync_enum(ngx_str_t *value, size_t skip, ngx_conf_enum_t *e,
    ngx_uint_t *out)
{
    size_t   len;
    u_char  *p;

    p = value->data + skip;
    len = value->len - skip;

    for ( /* void */ ; e->name.len; e++) {
        if (e->name.len == len && ngx_strncmp(e->name.data, p, len) == 0) {
            *out = e->value;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * After the http block: the zones with the "sync" flag, which need
 * mqttapi_sync, and the per-API ceiling when the nodes share an egress.
 */

ngx_int_t
ngx_http_mqttapi_sync_postconfiguration(ngx_conf_t *cf)
{
    uint32_t                       id, *ids, *idp;
    ngx_uint_t                     i, k;
    ngx_list_part_t               *part;
    ngx_shm_zone_t                *shm;
    ngx_http_mqttapi_zone_t       *zone, **z;
    ngx_http_mqttapi_sync_conf_t  *scf;
    ngx_http_mqttapi_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);
    scf = mcf->sync;

    if (ngx_http_mqttapi_sync_ssl_init(cf, scf, mcf->sync_ssl) != NGX_OK) {
        return NGX_ERROR;
    }

    part = &cf->cycle->shared_memory.part;
    shm = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm = part->elts;
            i = 0;
        }

        if (shm[i].tag != &ngx_http_mqttapi_module
            || shm[i].init == ngx_http_mqttapi_sync_shm_init
            || shm[i].data == NULL)
        {
            continue;
        }

        zone = shm[i].data;

        if (ngx_strcmp(shm[i].shm.name.data, NGX_HTTP_MQTTAPI_CEILING_ZONE)
            == 0)
        {
            zone->synced = (scf && scf->shared_egress);
        }

        if (!zone->synced) {
            continue;
        }

        if (scf == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "mqttapi_throttle_zone \"%V\" has \"sync\" "
                               "but there is no \"mqttapi_sync\"",
                               &shm[i].shm.name);
            return NGX_ERROR;
        }

        if (ngx_strlchr(shm[i].shm.name.data,
                        shm[i].shm.name.data + shm[i].shm.name.len, ' ')
            || scf->zones.nelts == 255)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "mqttapi_throttle_zone \"%V\" cannot be "
                               "synced by \"mqttapi_sync\"",
                               &shm[i].shm.name);
            return NGX_ERROR;
        }

        id = ngx_http_mqttapi_sync_zone_id(zone);
        ids = scf->zone_ids.elts;

        for (k = 0; k < scf->zone_ids.nelts; k++) {
            if (ids[k] == id) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "mqttapi_throttle_zone \"%V\" cannot be "
                                   "synced by \"mqttapi_sync\" beside a "
                                   "zone whose name has the same hash, "
                                   "rename it", &shm[i].shm.name);
                return NGX_ERROR;
            }
        }

        z = ngx_array_push(&scf->zones);
        idp = ngx_array_push(&scf->zone_ids);
        if (z == NULL || idp == NULL) {
            return NGX_ERROR;
        }

        *z = zone;
        *idp = id;
        zone->sync = scf;
        zone->sync_index = scf->zones.nelts - 1;
    }

    return NGX_OK;
}


/* what names a zone in the outbox, the same across reloads */

uint32_t
ngx_http_mqttapi_sync_zone_id(ngx_http_mqttapi_zone_t *zone)
{
    return ngx_crc32_short(zone->shm_zone->shm.name.data,
                           zone->shm_zone->shm.name.len);
}


static ngx_int_t
ngx_http_mqttapi_sync_shm_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_mqttapi_sync_conf_t  *oscf = data;

    ngx_http_mqttapi_sync_conf_t  *scf;

    scf = shm_zone->data;

    if (oscf) {
        /* a reload: the same node, its task and counters go on */
        scf->shpool = oscf->shpool;
        scf->sh = oscf->sh;
        return NGX_OK;
    }

    scf->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        scf->sh = scf->shpool->data;
        return NGX_OK;
    }

    scf->sh = ngx_slab_calloc(scf->shpool, sizeof(ngx_http_mqttapi_sync_sh_t));
    if (scf->sh == NULL) {
        return NGX_ERROR;
    }

    scf->shpool->data = scf->sh;
    scf->sh->nodes = 1;

    /* the node's name in Redis, unique enough among a fleet */

    ngx_snprintf(scf->sh->id, NGX_HTTP_MQTTAPI_SYNC_ID_LEN - 1,
                 "%08xD%08xD%P%Z", (uint32_t) ngx_random(),
                 (uint32_t) ngx_time(), ngx_pid);

    return NGX_OK;
}


/*
 * The request path: an event for the task, in the outbox.  When the
 * outbox is full the task is told to look at the zones itself.
 */

void
ngx_http_mqttapi_sync_notify(ngx_http_mqttapi_zone_t *zone, ngx_uint_t type,
    ngx_str_t *key, uint32_t count)
{
    ngx_http_mqttapi_sync_sh_t     *sh;
    ngx_http_mqttapi_sync_conf_t   *scf;
    ngx_http_mqttapi_sync_event_t  *ev;

    scf = zone->sync;

    if (scf == NULL || scf->sh == NULL
        || key->len > NGX_HTTP_MQTTAPI_KEY_MAX_LEN)
    {
        return;
    }

    sh = scf->sh;

    ngx_shmtx_lock(&scf->shpool->mutex);

    if (sh->n == NGX_HTTP_MQTTAPI_SYNC_OUTBOX) {
        sh->overflow = 1;
        ngx_shmtx_unlock(&scf->shpool->mutex);
        return;
    }

    ev = &sh->outbox[(sh->head + sh->n) % NGX_HTTP_MQTTAPI_SYNC_OUTBOX];
    sh->n++;

    ev->type = (u_char) type;
    ev->zone = 0;
    ev->zone_id = ngx_http_mqttapi_sync_zone_id(zone);
    ev->len = (u_short) key->len;
    ev->count = count;
    ngx_memcpy(ev->key, key->data, key->len);

    ngx_shmtx_unlock(&scf->shpool->mutex);
}
