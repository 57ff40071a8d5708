
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_CATALOG_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_CATALOG_H_INCLUDED_


#include "ngx_http_mqttapi.h"


/*
 * Texts come in two forms: raw (for headers; only the English cause and
 * solution go there, and they are checked to be printable ASCII at load
 * time) and as ready JSON string literals, quotes included, so that
 * rendering a body is a memcpy.  A text's "%s" stand for the parameter of
 * a patterned code; how many each has is counted once, at load time.
 */

typedef struct {
    ngx_str_t                    cause;
    ngx_str_t                    solution;
    ngx_str_t                    description;
    ngx_str_t                    cause_json;
    ngx_str_t                    solution_json;
    ngx_str_t                    description_json;
    ngx_uint_t                   cause_holes;
    ngx_uint_t                   solution_holes;
    ngx_uint_t                   description_holes;
} ngx_http_mqttapi_text_t;


struct ngx_http_mqttapi_entry_s {
    ngx_str_t                    code;         /* first: the hash key */
    ngx_uint_t                   status;       /* documented status, or 0 */
    ngx_uint_t                   mapped_status;   /* 0: keep the status */
    ngx_str_t                    message;
    ngx_str_t                    message_json;
    ngx_array_t                 *categories;   /* of ngx_str_t */
    ngx_int_t                    retry_after;  /* seconds, -1: none */
    ngx_http_mqttapi_text_t     *texts;        /* per catalog language */
    ngx_uint_t                   ntexts;
    ngx_str_t                    prefix;       /* "Prefix%sSuffix" codes */
    ngx_str_t                    suffix;
#if (NGX_PCRE)
    ngx_regex_t                 *regex;        /* "regex" codes */
#endif
    ngx_flag_t                   retryable;
    ngx_flag_t                   throttle;
    unsigned                     printf:1;     /* prefix and suffix */
};


typedef struct {
    ngx_str_t                    tag;
    ngx_array_t                 *aliases;      /* of ngx_str_t, lowercase */
} ngx_http_mqttapi_lang_t;


typedef struct {
    ngx_str_t                    name;         /* first: the hash key */
    ngx_str_t                    category;
    ngx_uint_t                   quota;        /* requests/s, 0: default */
    ngx_str_t                    throttle_code;   /* for quota rejects */
} ngx_http_mqttapi_action_t;


/* gateway codes for errors that carry no JSON error of the upstream */

#define NGX_HTTP_MQTTAPI_GW_NGINX     0      /* made by nginx itself */
#define NGX_HTTP_MQTTAPI_GW_UPSTREAM  1      /* upstream, not JSON */
#define NGX_HTTP_MQTTAPI_GW_LOCAL     2      /* nginx, no upstream used */


typedef struct {
    ngx_uint_t                   status;       /* 0: the class default */
    ngx_uint_t                   origin;
    ngx_http_mqttapi_entry_t    *entry;
} ngx_http_mqttapi_gateway_t;


/*
 * An exact-name lookup table: open addressing over a power of two of
 * slots, MurmurHash2 of the name; a value is a structure that begins
 * with its name (an ngx_str_t).
 */

typedef struct {
    uint32_t                     hash;
    void                        *value;       /* NULL: a free slot */
} ngx_http_mqttapi_slot_t;


typedef struct {
    ngx_http_mqttapi_slot_t     *slots;
    ngx_uint_t                   mask;
} ngx_http_mqttapi_names_t;


struct ngx_http_mqttapi_catalog_s {
    ngx_array_t                  entries;      /* of entry pointers */
    ngx_array_t                  patterns;     /* of entry pointers */
    ngx_array_t                  langs;        /* of ngx_http_mqttapi_lang_t */
    ngx_array_t                  actions;      /* of action pointers */
    ngx_array_t                  gateway;      /* ngx_http_mqttapi_gateway_t */

    ngx_uint_t                   default_lang;
    ngx_uint_t                   default_quota;
    ngx_uint_t                   api_ceiling;
    ngx_str_t                    quota_code;      /* for quota rejects */

    ngx_http_mqttapi_names_t     codes_hash;
    ngx_http_mqttapi_names_t     actions_hash;
};


ngx_int_t ngx_http_mqttapi_catalog_hash(ngx_conf_t *cf,
    ngx_http_mqttapi_catalog_t *catalog);

ngx_http_mqttapi_entry_t *ngx_http_mqttapi_catalog_find(
    ngx_http_mqttapi_catalog_t *catalog, ngx_str_t *code, ngx_str_t *param,
    ngx_pool_t *pool);
ngx_http_mqttapi_action_t *ngx_http_mqttapi_catalog_action(
    ngx_http_mqttapi_catalog_t *catalog, ngx_str_t *name);
ngx_http_mqttapi_entry_t *ngx_http_mqttapi_catalog_gateway(
    ngx_http_mqttapi_catalog_t *catalog, ngx_uint_t origin,
    ngx_uint_t status);
ngx_http_mqttapi_text_t *ngx_http_mqttapi_catalog_text(
    ngx_http_mqttapi_catalog_t *catalog, ngx_http_mqttapi_entry_t *entry,
    ngx_uint_t lang);

ngx_int_t ngx_http_mqttapi_valid_code(u_char *p, size_t len);
ngx_int_t ngx_http_mqttapi_valid_name(ngx_str_t *s);


#endif /* _NGX_HTTP_MQTTAPI_CATALOG_H_INCLUDED_ */
