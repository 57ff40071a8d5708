
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


/*
 * ngx_http_mqttapi_module: an edge gateway for the ApsaraMQ for MQTT
 * OpenAPI.  This file holds the module definition, the directives and the
 * configuration; the work is done in src/:
 *
 *   ngx_http_mqttapi_catalog.c    the error catalog (knowing)
 *   ngx_http_mqttapi_catalog_load.c  loading it from JSON
 *   ngx_http_mqttapi_error.c      resolving an error against it
 *   ngx_http_mqttapi_lang.c       Accept-Language negotiation
 *   ngx_http_mqttapi_filter.c     header and body filters (deciding)
 *   ngx_http_mqttapi_json.c       the fast scan of error bodies
 *   ngx_http_mqttapi_render.c     headers and bodies (writing)
 *   ngx_http_mqttapi_id.c         the RequestId of gateway-made errors
 *   ngx_http_mqttapi_variables.c  $mqttapi_* variables
 *   ngx_http_mqttapi_ctx.c        the request context
 *   ngx_http_mqttapi_headers.c    request and response header lookups
 *   ngx_http_mqttapi_request.c    the request's arguments and action
 *   ngx_http_mqttapi_zone.c       the shared zone of rate limiting
 *   ngx_http_mqttapi_throttle.c   back-off, probes, local answers
 *   ngx_http_mqttapi_answer.c     prepared local answers and annotations
 *   ngx_http_mqttapi_quota.c      proactive quotas
 *   ngx_http_mqttapi_quota_delay.c  their slots, waited for (delay=)
 *   ngx_http_mqttapi_sync*.c      state shared by several nodes (Redis)
 *   ngx_http_mqttapi_stats.c      the counters of the status endpoint
 *   ngx_http_mqttapi_status.c     the status endpoint
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_answer.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_catalog_load.h"
#include "ngx_http_mqttapi_filter.h"
#include "ngx_http_mqttapi_id.h"
#include "ngx_http_mqttapi_quota_delay.h"
#include "ngx_http_mqttapi_sync.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_status.h"
#include "ngx_http_mqttapi_throttle.h"
#include "ngx_http_mqttapi_variables.h"
#include "ngx_http_mqttapi_zone.h"


static ngx_int_t ngx_http_mqttapi_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_mqttapi_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_mqttapi_init_process(ngx_cycle_t *cycle);
static void ngx_http_mqttapi_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_mqttapi_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_mqttapi_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_http_mqttapi_catalog_t *ngx_http_mqttapi_builtin(ngx_conf_t *cf);
static void *ngx_http_mqttapi_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mqttapi_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_mqttapi_enable(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mqttapi_set_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mqttapi_set_complex_value(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_mqttapi_set_num(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mqttapi_named(ngx_conf_t *cf, ngx_command_t *cmd,
    char *rv);
static char *ngx_http_mqttapi_catalog(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mqttapi_problem_base_uri(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_mqttapi_quota(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mqttapi_throttle_codes(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_mqttapi_max_body_size(ngx_conf_t *cf, void *post,
    void *data);


static ngx_conf_enum_t  ngx_http_mqttapi_body_modes[] = {
    { ngx_string("off"), NGX_HTTP_MQTTAPI_BODY_OFF },
    { ngx_string("augment"), NGX_HTTP_MQTTAPI_BODY_AUGMENT },
    { ngx_string("problem"), NGX_HTTP_MQTTAPI_BODY_PROBLEM },
    { ngx_null_string, 0 }
};


static ngx_conf_post_handler_pt  ngx_http_mqttapi_problem_base_uri_p =
    ngx_http_mqttapi_problem_base_uri;


static ngx_conf_post_handler_pt  ngx_http_mqttapi_max_body_size_p =
    ngx_http_mqttapi_max_body_size;


/* an error the SDKs still see as an error */

static ngx_conf_num_bounds_t  ngx_http_mqttapi_throttle_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_conf_enum_t  ngx_http_mqttapi_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_mqttapi_commands[] = {

    { ngx_string("mqttapi"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_mqttapi_enable,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, enable),
      NULL },

    { ngx_string("mqttapi_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, body),
      &ngx_http_mqttapi_body_modes },

    { ngx_string("mqttapi_normalize_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, normalize_status),
      NULL },

    { ngx_string("mqttapi_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, max_body_size),
      &ngx_http_mqttapi_max_body_size_p },

    { ngx_string("mqttapi_problem_base_uri"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, problem_base_uri),
      &ngx_http_mqttapi_problem_base_uri_p },

    { ngx_string("mqttapi_host_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_set_complex_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, host_id),
      NULL },

    { ngx_string("mqttapi_catalog"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_catalog,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mqttapi_throttle_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_mqttapi_zone_directive,
      0,
      0,
      NULL },

    { ngx_string("mqttapi_throttle"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_zone_ref,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, throttle_zone),
      NULL },

    { ngx_string("mqttapi_quota"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_mqttapi_quota,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, quota_zone),
      NULL },

    { ngx_string("mqttapi_throttle_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_set_num,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, throttle_status),
      &ngx_http_mqttapi_throttle_status_bounds },

    { ngx_string("mqttapi_throttle_dry_run"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, throttle_dry_run),
      NULL },

    { ngx_string("mqttapi_throttle_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, throttle_log_level),
      &ngx_http_mqttapi_log_levels },

    { ngx_string("mqttapi_throttle_codes"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_mqttapi_throttle_codes,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_loc_conf_t, throttle_codes),
      NULL },

    { ngx_string("mqttapi_sync"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_mqttapi_sync_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mqttapi_sync_ssl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, enable),
      NULL },

    { ngx_string("mqttapi_sync_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, verify),
      NULL },

    { ngx_string("mqttapi_sync_ssl_verify_depth"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, verify_depth),
      NULL },

    { ngx_string("mqttapi_sync_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, trusted_certificate),
      NULL },

    { ngx_string("mqttapi_sync_ssl_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, name),
      NULL },

    { ngx_string("mqttapi_sync_ssl_server_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, server_name),
      NULL },

    { ngx_string("mqttapi_sync_ssl_session_reuse"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, session_reuse),
      NULL },

    { ngx_string("mqttapi_sync_ssl_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, certificate),
      NULL },

    { ngx_string("mqttapi_sync_ssl_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, certificate_key),
      NULL },

    { ngx_string("mqttapi_sync_ssl_protocols"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, protocols),
      NULL },

    { ngx_string("mqttapi_sync_ssl_ciphers"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mqttapi_sync_ssl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mqttapi_sync_ssl_conf_t, ciphers),
      NULL },

    { ngx_string("mqttapi_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mqttapi_status,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mqttapi_module_ctx = {
    ngx_http_mqttapi_preconfiguration,     /* preconfiguration */
    ngx_http_mqttapi_postconfiguration,    /* postconfiguration */

    ngx_http_mqttapi_create_main_conf,     /* create main configuration */
    ngx_http_mqttapi_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_mqttapi_create_loc_conf,      /* create location configuration */
    ngx_http_mqttapi_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_mqttapi_module = {
    NGX_MODULE_V1,
    &ngx_http_mqttapi_module_ctx,          /* module context */
    ngx_http_mqttapi_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_mqttapi_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_mqttapi_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_mqttapi_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_mqttapi_add_variables(cf);
}


static ngx_int_t
ngx_http_mqttapi_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_mqttapi_id_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_throttle_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_sync_postconfiguration(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_stats_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* every location is merged now: where mqttapi is on is known */

    if (ngx_http_mqttapi_zone_check_refs(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_mqttapi_filter_init(cf);
}


static ngx_int_t
ngx_http_mqttapi_init_process(ngx_cycle_t *cycle)
{
    if (ngx_http_mqttapi_id_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_answer_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_mqttapi_sync_init_process(cycle);
}


static void
ngx_http_mqttapi_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_mqttapi_sync_exit_process(cycle);
    ngx_http_mqttapi_answer_exit_process(cycle);
}


static void *
ngx_http_mqttapi_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_mqttapi_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->catalog = NULL;
     *     mcf->ceiling = NULL;
     */

    return mcf;
}


static char *
ngx_http_mqttapi_init_main_conf(ngx_conf_t *cf, void *conf)
{
    if (ngx_http_mqttapi_builtin(cf) == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The built-in catalog, compiled in from conf/mqttapi_catalog.json: read
 * once the http block is, or at the first mqttapi_catalog, which applies
 * its file on top of it there and then (so that a broken file is reported
 * at its directive's line).
 */

static ngx_http_mqttapi_catalog_t *
ngx_http_mqttapi_builtin(ngx_conf_t *cf)
{
    ngx_http_mqttapi_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);

    if (mcf->catalog == NULL) {
        mcf->catalog = ngx_http_mqttapi_catalog_builtin(cf);
    }

    return mcf->catalog;
}


static void *
ngx_http_mqttapi_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mqttapi_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->problem_base_uri = { 0, NULL };
     *     conf->catalog_files = NULL;
     *     conf->catalog = NULL;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->body = NGX_CONF_UNSET_UINT;
    conf->normalize_status = NGX_CONF_UNSET;
    conf->max_body_size = NGX_CONF_UNSET_SIZE;
    conf->host_id = NGX_CONF_UNSET_PTR;

    conf->throttle_zone = NGX_CONF_UNSET_PTR;
    conf->quota_zone = NGX_CONF_UNSET_PTR;
    conf->quota_delay = NGX_CONF_UNSET_MSEC;
    conf->throttle_ref = NGX_CONF_UNSET_PTR;
    conf->quota_ref = NGX_CONF_UNSET_PTR;
    conf->throttle_status = NGX_CONF_UNSET_UINT;
    conf->throttle_dry_run = NGX_CONF_UNSET;
    conf->throttle_log_level = NGX_CONF_UNSET_UINT;
    conf->throttle_codes = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_mqttapi_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_mqttapi_loc_conf_t *prev = parent;
    ngx_http_mqttapi_loc_conf_t *conf = child;

    ngx_http_mqttapi_main_conf_t  *mcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->body, prev->body,
                              NGX_HTTP_MQTTAPI_BODY_AUGMENT);
    ngx_conf_merge_value(conf->normalize_status, prev->normalize_status, 0);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              64 * 1024);
    ngx_conf_merge_str_value(conf->problem_base_uri, prev->problem_base_uri,
                             "urn:mqttapi:error:");
    ngx_conf_merge_ptr_value(conf->host_id, prev->host_id, NULL);

    ngx_conf_merge_ptr_value(conf->throttle_zone, prev->throttle_zone, NULL);
    ngx_conf_merge_ptr_value(conf->quota_zone, prev->quota_zone, NULL);
    ngx_conf_merge_msec_value(conf->quota_delay, prev->quota_delay, 0);
    ngx_http_mqttapi_zone_merge_refs(conf, prev);
    ngx_conf_merge_uint_value(conf->throttle_status, prev->throttle_status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_value(conf->throttle_dry_run, prev->throttle_dry_run, 0);
    ngx_conf_merge_uint_value(conf->throttle_log_level,
                              prev->throttle_log_level, NGX_LOG_WARN);
    ngx_conf_merge_ptr_value(conf->throttle_codes, prev->throttle_codes, NULL);

    /* catalogs: those of this level, else the inherited ones */

    if (conf->catalog_files == NULL) {
        conf->catalog_files = prev->catalog_files;
        conf->catalog = prev->catalog;
    }

    if (conf->catalog == NULL) {
        mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);
        conf->catalog = mcf->catalog;
    }

    if (ngx_http_mqttapi_stats_merge(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_mqttapi_enable(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mqttapi_loc_conf_t *lcf = conf;

    char                          *rv;
    ngx_http_mqttapi_main_conf_t  *mcf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);

    /* mqttapi_throttle and mqttapi_quota do nothing where it is off */

    if (rv == NGX_CONF_OK && lcf->enable) {
        mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);
        mcf->enabled = 1;
    }

    return rv;
}


/*
 * nginx's enum, number and complex value slots log some mistakes
 * themselves, without the directive's name (an operator needs it): these
 * name it.
 */

static char *
ngx_http_mqttapi_set_enum(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char           *p, *last;
    ngx_str_t        *value;
    ngx_uint_t        i;
    ngx_conf_enum_t  *e;
    u_char            buf[NGX_MAX_CONF_ERRSTR];

    value = cf->args->elts;
    e = cmd->post;

    for (i = 0; e[i].name.len; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcasecmp(e[i].name.data, value[1].data) == 0)
        {
            return ngx_conf_set_enum_slot(cf, cmd, conf);
        }
    }

    p = buf;
    last = buf + sizeof(buf);

    for (i = 0; e[i].name.len; i++) {
        p = ngx_slprintf(p, last, "%s\"%V\"",
                         i == 0 ? "" : e[i + 1].name.len ? ", " : " or ",
                         &e[i].name);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, "
                       "it must be %*s", &value[1], &cmd->name,
                       (size_t) (p - buf), buf);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_mqttapi_set_complex_value(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    return ngx_http_mqttapi_named(cf, cmd,
                                  ngx_http_set_complex_value_slot(cf, cmd,
                                                                  conf));
}


static char *
ngx_http_mqttapi_set_num(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_mqttapi_named(cf, cmd,
                                  ngx_conf_set_num_slot(cf, cmd, conf));
}


/* after a slot's own message (the script compiler's, the bounds'), if any */

static char *
ngx_http_mqttapi_named(ngx_conf_t *cf, ngx_command_t *cmd, char *rv)
{
    ngx_str_t  *value;

    if (rv == NGX_CONF_ERROR) {
        value = cf->args->elts;

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive",
                           &value[1], &cmd->name);
    }

    return rv;
}


static char *
ngx_http_mqttapi_catalog(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mqttapi_loc_conf_t *lcf = conf;

    ngx_str_t                   *value, *file;
    ngx_http_mqttapi_catalog_t  *base;

    value = cf->args->elts;

    if (lcf->catalog_files == NULL) {
        lcf->catalog_files = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (lcf->catalog_files == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    file = ngx_array_push(lcf->catalog_files);
    if (file == NULL) {
        return NGX_CONF_ERROR;
    }

    *file = value[1];

    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * Each file is applied on top of the built-in catalog and the files
     * before it on this level, here, so that a broken file is reported at
     * its directive's line.
     */

    base = lcf->catalog;

    if (base == NULL) {
        base = ngx_http_mqttapi_builtin(cf);
        if (base == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    lcf->catalog = ngx_http_mqttapi_catalog_load(cf, base, file);
    if (lcf->catalog == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_mqttapi_problem_base_uri(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *uri = data;

    size_t  i;

    /* it becomes part of a JSON string: no quotes, controls, backslashes */

    for (i = 0; i < uri->len; i++) {
        if (uri->data[i] <= 0x20 || uri->data[i] >= 0x7f
            || uri->data[i] == '"' || uri->data[i] == '\\')
        {
            return "must be a URI without spaces, quotes or backslashes";
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_mqttapi_quota(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mqttapi_loc_conf_t *lcf = conf;

    char                          *rv;
    ngx_str_t                     *value;
    ngx_http_mqttapi_main_conf_t  *mcf;

    rv = ngx_http_mqttapi_zone_ref(cf, cmd, conf);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    /* "delay=TIME": how long a request over the quota may wait */

    value = cf->args->elts;
    lcf->quota_delay = 0;

    if (cf->args->nelts == 3) {
        if (lcf->quota_zone == NULL
            || ngx_strncmp(value[2].data, "delay=", 6) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"%V\" "
                               "directive, expected \"delay=TIME\" after "
                               "\"zone=NAME\"", &value[2], &cmd->name);
            return NGX_CONF_ERROR;
        }

        value[2].data += 6;
        value[2].len -= 6;

        lcf->quota_delay = ngx_parse_time(&value[2], 0);

        if (lcf->quota_delay == (ngx_msec_t) NGX_ERROR
            || lcf->quota_delay > NGX_HTTP_MQTTAPI_QUOTA_DELAY_MAX)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid delay \"%V\" in \"%V\" directive, "
                               "expected a time of at most 60s",
                               &value[2], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    if (lcf->quota_zone == NULL) {
        return NGX_CONF_OK;
    }

    /* the per-action ceiling is counted for the whole gateway */

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mqttapi_module);

    if (mcf->ceiling == NULL) {
        mcf->ceiling = ngx_http_mqttapi_zone_ceiling(cf);

        if (mcf->ceiling == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: cannot add the shared "
                               "zone \"" NGX_HTTP_MQTTAPI_CEILING_ZONE "\"",
                               &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_mqttapi_throttle_codes(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_mqttapi_loc_conf_t *lcf = conf;

    ngx_str_t   *value, *code;
    ngx_uint_t   i;

    if (lcf->throttle_codes != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    lcf->throttle_codes = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                           sizeof(ngx_str_t));
    if (lcf->throttle_codes == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_http_mqttapi_valid_code(value[i].data, value[i].len)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid code \"%V\" in \"%V\" directive, "
                               "it must be of [A-Za-z0-9._%%-], at most %d "
                               "bytes", &value[i], &cmd->name,
                               NGX_HTTP_MQTTAPI_CODE_MAX_LEN);
            return NGX_CONF_ERROR;
        }

        code = ngx_array_push(lcf->throttle_codes);
        if (code == NULL) {
            return NGX_CONF_ERROR;
        }

        *code = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_mqttapi_max_body_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *sp = data;

    if (*sp == 0) {
        return "must not be zero";
    }

    return NGX_CONF_OK;
}
