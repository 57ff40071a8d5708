
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * The error catalog: built at configuration time from JSON documents, the
 * built-in one (conf/mqttapi_catalog.json, compiled in) first, then the
 * user's mqttapi_catalog files on top of it.  A derived catalog shares the
 * entries it does not change with its base; an entry that a user file
 * changes is copied first.  Lookups at run time are a hash find, and a
 * regex match for patterned codes only when no exact code is known.
 */


#define NGX_HTTP_MQTTAPI_CATALOG_MAX_SIZE  (1024 * 1024)


typedef struct {
    ngx_conf_t                  *cf;
    ngx_http_mqttapi_catalog_t  *catalog;
    ngx_str_t                   *source;
    const char                  *entry;       /* for messages */
    char                         entry_buf[160];
} ngx_http_mqttapi_loader_t;


extern const unsigned char  ngx_http_mqttapi_catalog_data[];
extern const size_t         ngx_http_mqttapi_catalog_data_len;


static ngx_http_mqttapi_catalog_t *ngx_http_mqttapi_catalog_copy(
    ngx_conf_t *cf, ngx_http_mqttapi_catalog_t *base);
static ngx_int_t ngx_http_mqttapi_catalog_apply(
    ngx_http_mqttapi_loader_t *ld, json_t *doc);
static ngx_int_t ngx_http_mqttapi_load_languages(
    ngx_http_mqttapi_loader_t *ld, json_t *langs);
static ngx_int_t ngx_http_mqttapi_load_actions(
    ngx_http_mqttapi_loader_t *ld, json_t *actions);
static ngx_int_t ngx_http_mqttapi_load_quota(ngx_http_mqttapi_loader_t *ld,
    json_t *quota);
static ngx_int_t ngx_http_mqttapi_load_gateway(
    ngx_http_mqttapi_loader_t *ld, json_t *gateway);
static ngx_int_t ngx_http_mqttapi_load_errors(
    ngx_http_mqttapi_loader_t *ld, json_t *errors);
static ngx_int_t ngx_http_mqttapi_load_entry(ngx_http_mqttapi_loader_t *ld,
    json_t *obj);
static ngx_int_t ngx_http_mqttapi_check_default_texts(
    ngx_http_mqttapi_loader_t *ld);
static ngx_int_t ngx_http_mqttapi_load_texts(ngx_http_mqttapi_loader_t *ld,
    ngx_http_mqttapi_entry_t *e, json_t *text);
static ngx_int_t ngx_http_mqttapi_load_pattern(
    ngx_http_mqttapi_loader_t *ld, ngx_http_mqttapi_entry_t *e,
    ngx_str_t *source, ngx_uint_t printf_style);
static ngx_int_t ngx_http_mqttapi_load_status(ngx_http_mqttapi_loader_t *ld,
    json_t *obj, const char *key, ngx_uint_t *status);
static ngx_int_t ngx_http_mqttapi_load_string(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const char *what, ngx_str_t *s, ngx_str_t *json,
    ngx_uint_t *holes);
static ngx_int_t ngx_http_mqttapi_catalog_hash(ngx_conf_t *cf,
    ngx_http_mqttapi_catalog_t *catalog);
static ngx_int_t ngx_http_mqttapi_hash_build(ngx_conf_t *cf,
    ngx_http_mqttapi_names_t *names,
    ngx_array_t *elts, char *name);
static ngx_http_mqttapi_entry_t **ngx_http_mqttapi_find_entry(
    ngx_array_t *a, ngx_str_t *code);
static void *ngx_http_mqttapi_hash_find(ngx_http_mqttapi_names_t *names,
    ngx_str_t *name);
static ngx_http_mqttapi_slot_t *ngx_http_mqttapi_hash_slot(
    ngx_http_mqttapi_names_t *names, ngx_str_t *name, uint32_t hash);
static ngx_int_t ngx_http_mqttapi_printf_match(ngx_http_mqttapi_entry_t *e,
    ngx_str_t *code, ngx_str_t *param);
static ngx_int_t ngx_http_mqttapi_find_lang(ngx_http_mqttapi_catalog_t *cat,
    ngx_str_t *tag);
static ngx_int_t ngx_http_mqttapi_header_safe(ngx_str_t *s);
static ngx_int_t ngx_http_mqttapi_valid_name(ngx_str_t *s);
static void ngx_http_mqttapi_loader_error(ngx_http_mqttapi_loader_t *ld,
    const char *fmt, ...);


ngx_http_mqttapi_catalog_t *
ngx_http_mqttapi_catalog_builtin(ngx_conf_t *cf)
{
    json_t                      *doc;
    json_error_t                 err;
    ngx_http_mqttapi_catalog_t  *catalog;
    ngx_http_mqttapi_loader_t    ld;
    static ngx_str_t             source = ngx_string("built-in catalog");

    doc = json_loadb((const char *) ngx_http_mqttapi_catalog_data,
                     ngx_http_mqttapi_catalog_data_len,
                     JSON_REJECT_DUPLICATES, &err);
    if (doc == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mqttapi: %V: line %d, column %d: %s",
                           &source, err.line, err.column, err.text);
        return NULL;
    }

    catalog = ngx_http_mqttapi_catalog_copy(cf, NULL);
    if (catalog == NULL) {
        json_decref(doc);
        return NULL;
    }

    ngx_memzero(&ld, sizeof(ngx_http_mqttapi_loader_t));
    ld.cf = cf;
    ld.catalog = catalog;
    ld.source = &source;

    if (ngx_http_mqttapi_catalog_apply(&ld, doc) != NGX_OK) {
        json_decref(doc);
        return NULL;
    }

    json_decref(doc);

    if (ngx_http_mqttapi_catalog_hash(cf, catalog) != NGX_OK) {
        return NULL;
    }

    return catalog;
}


ngx_http_mqttapi_catalog_t *
ngx_http_mqttapi_catalog_load(ngx_conf_t *cf, ngx_http_mqttapi_catalog_t *base,
    ngx_str_t *file)
{
    char                        *path;
    json_t                      *doc;
    json_error_t                 err;
    ngx_file_info_t              fi;
    ngx_http_mqttapi_catalog_t  *catalog;
    ngx_http_mqttapi_loader_t    ld;

    path = (char *) file->data;       /* null-terminated by the caller */

    if (ngx_file_info(path, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "mqttapi_catalog \"%V\": "
                           ngx_file_info_n " failed", file);
        return NULL;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_MQTTAPI_CATALOG_MAX_SIZE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mqttapi_catalog \"%V\": file is larger than %uz",
                           file, (size_t) NGX_HTTP_MQTTAPI_CATALOG_MAX_SIZE);
        return NULL;
    }

    doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (doc == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mqttapi_catalog \"%V\": line %d, column %d: %s",
                           file, err.line, err.column, err.text);
        return NULL;
    }

    catalog = ngx_http_mqttapi_catalog_copy(cf, base);
    if (catalog == NULL) {
        json_decref(doc);
        return NULL;
    }

    ngx_memzero(&ld, sizeof(ngx_http_mqttapi_loader_t));
    ld.cf = cf;
    ld.catalog = catalog;
    ld.source = file;

    if (ngx_http_mqttapi_catalog_apply(&ld, doc) != NGX_OK) {
        json_decref(doc);
        return NULL;
    }

    json_decref(doc);

    if (ngx_http_mqttapi_catalog_hash(cf, catalog) != NGX_OK) {
        return NULL;
    }

    return catalog;
}


static ngx_http_mqttapi_catalog_t *
ngx_http_mqttapi_catalog_copy(ngx_conf_t *cf, ngx_http_mqttapi_catalog_t *base)
{
    ngx_http_mqttapi_catalog_t  *catalog;

    catalog = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_catalog_t));
    if (catalog == NULL) {
        return NULL;
    }

    if (ngx_array_init(&catalog->entries, cf->pool, 64, sizeof(void *))
        != NGX_OK
        || ngx_array_init(&catalog->patterns, cf->pool, 4, sizeof(void *))
           != NGX_OK
        || ngx_array_init(&catalog->langs, cf->pool, 4,
                          sizeof(ngx_http_mqttapi_lang_t))
           != NGX_OK
        || ngx_array_init(&catalog->actions, cf->pool, 32, sizeof(void *))
           != NGX_OK
        || ngx_array_init(&catalog->gateway, cf->pool, 16,
                          sizeof(ngx_http_mqttapi_gateway_t))
           != NGX_OK)
    {
        return NULL;
    }

    if (base == NULL) {
        catalog->default_quota = 500;
        catalog->api_ceiling = 300;
        ngx_str_set(&catalog->quota_code, "SystemOverFlow");
        return catalog;
    }

#define ngx_http_mqttapi_copy_array(name)                                     \
    if (base->name.nelts) {                                                   \
        if (ngx_array_push_n(&catalog->name, base->name.nelts) == NULL) {     \
            return NULL;                                                      \
        }                                                                     \
        ngx_memcpy(catalog->name.elts, base->name.elts,                       \
                   base->name.nelts * base->name.size);                       \
    }

    ngx_http_mqttapi_copy_array(entries);
    ngx_http_mqttapi_copy_array(patterns);
    ngx_http_mqttapi_copy_array(langs);
    ngx_http_mqttapi_copy_array(actions);
    ngx_http_mqttapi_copy_array(gateway);

#undef ngx_http_mqttapi_copy_array

    catalog->default_lang = base->default_lang;
    catalog->default_quota = base->default_quota;
    catalog->api_ceiling = base->api_ceiling;
    catalog->quota_code = base->quota_code;

    return catalog;
}


static ngx_int_t
ngx_http_mqttapi_catalog_apply(ngx_http_mqttapi_loader_t *ld, json_t *doc)
{
    ngx_int_t                     lang;
    ngx_str_t                     tag;
    ngx_uint_t                    i;
    const char                   *key;
    json_t                       *v;
    ngx_http_mqttapi_entry_t    **e;
    ngx_http_mqttapi_gateway_t   *gw;

    if (!json_is_object(doc)) {
        ngx_http_mqttapi_loader_error(ld, "the document is not an object");
        return NGX_ERROR;
    }

    json_object_foreach(doc, key, v) {
        if (ngx_strcmp(key, "languages") != 0
            && ngx_strcmp(key, "default_language") != 0
            && ngx_strcmp(key, "actions") != 0
            && ngx_strcmp(key, "quota") != 0
            && ngx_strcmp(key, "gateway") != 0
            && ngx_strcmp(key, "errors") != 0
            && key[0] != '_')
        {
            ngx_http_mqttapi_loader_error(ld, "unknown key \"%s\"", key);
            return NGX_ERROR;
        }
    }

    /* languages first: texts refer to them */

    v = json_object_get(doc, "languages");
    if (v && ngx_http_mqttapi_load_languages(ld, v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ld->catalog->langs.nelts == 0) {
        ngx_http_mqttapi_loader_error(ld, "no \"languages\" defined");
        return NGX_ERROR;
    }

    v = json_object_get(doc, "default_language");
    if (v) {
        if (!json_is_string(v)) {
            ngx_http_mqttapi_loader_error(ld,
                                  "\"default_language\" is not a string");
            return NGX_ERROR;
        }

        tag.data = (u_char *) json_string_value(v);
        tag.len = json_string_length(v);

        lang = ngx_http_mqttapi_find_lang(ld->catalog, &tag);
        if (lang == NGX_ERROR) {
            ngx_http_mqttapi_loader_error(ld,
                                  "\"default_language\" \"%V\" is not one of "
                                  "the \"languages\"", &tag);
            return NGX_ERROR;
        }

        if ((ngx_uint_t) lang != ld->catalog->default_lang) {
            ld->catalog->default_lang = lang;

            if (ngx_http_mqttapi_check_default_texts(ld) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    v = json_object_get(doc, "actions");
    if (v && ngx_http_mqttapi_load_actions(ld, v) != NGX_OK) {
        return NGX_ERROR;
    }

    v = json_object_get(doc, "quota");
    if (v && ngx_http_mqttapi_load_quota(ld, v) != NGX_OK) {
        return NGX_ERROR;
    }

    v = json_object_get(doc, "errors");
    if (v && ngx_http_mqttapi_load_errors(ld, v) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the gateway codes follow the entries this document changed */

    gw = ld->catalog->gateway.elts;

    for (i = 0; i < ld->catalog->gateway.nelts; i++) {
        e = ngx_http_mqttapi_find_entry(&ld->catalog->entries,
                                        &gw[i].entry->code);
        if (e) {
            gw[i].entry = *e;
        }
    }

    /* gateway codes last: they refer to errors */

    v = json_object_get(doc, "gateway");
    if (v && ngx_http_mqttapi_load_gateway(ld, v) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_languages(ngx_http_mqttapi_loader_t *ld, json_t *langs)
{
    size_t                    i;
    ngx_int_t                 n;
    ngx_str_t                 tag, *alias;
    const char               *key;
    json_t                   *v, *a;
    ngx_http_mqttapi_lang_t  *lang;

    if (!json_is_object(langs)) {
        ngx_http_mqttapi_loader_error(ld, "\"languages\" is not an object");
        return NGX_ERROR;
    }

    json_object_foreach(langs, key, v) {

        tag.data = (u_char *) key;
        tag.len = ngx_strlen(key);

        if (ngx_http_mqttapi_valid_name(&tag) != NGX_OK) {
            ngx_http_mqttapi_loader_error(ld, "language tag \"%V\" is not a "
                                          "BCP 47 tag", &tag);
            return NGX_ERROR;
        }

        if (!json_is_array(v)) {
            ngx_http_mqttapi_loader_error(ld, "language \"%V\": the aliases "
                                          "are not an array of tags", &tag);
            return NGX_ERROR;
        }

        n = ngx_http_mqttapi_find_lang(ld->catalog, &tag);

        if (n == NGX_ERROR) {
            lang = ngx_array_push(&ld->catalog->langs);
            if (lang == NULL) {
                return NGX_ERROR;
            }

            lang->tag.len = tag.len;
            lang->tag.data = ngx_pstrdup(ld->cf->pool, &tag);
            if (lang->tag.data == NULL) {
                return NGX_ERROR;
            }

        } else {
            lang = (ngx_http_mqttapi_lang_t *) ld->catalog->langs.elts + n;
        }

        /* the aliases given replace the known ones; the tag is one itself */

        lang->aliases = ngx_array_create(ld->cf->pool, 4, sizeof(ngx_str_t));
        if (lang->aliases == NULL) {
            return NGX_ERROR;
        }

        alias = ngx_array_push(lang->aliases);
        if (alias == NULL) {
            return NGX_ERROR;
        }

        alias->len = lang->tag.len;
        alias->data = ngx_pnalloc(ld->cf->pool, alias->len);
        if (alias->data == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(alias->data, lang->tag.data, alias->len);

        json_array_foreach(v, i, a) {
            if (!json_is_string(a)) {
                ngx_http_mqttapi_loader_error(ld, "language \"%V\": alias "
                                              "#%uz is not a string",
                                              &tag, i + 1);
                return NGX_ERROR;
            }

            tag.data = (u_char *) json_string_value(a);
            tag.len = json_string_length(a);

            if (ngx_http_mqttapi_valid_name(&tag) != NGX_OK) {
                ngx_http_mqttapi_loader_error(ld, "language alias \"%V\" is "
                                              "not a BCP 47 tag", &tag);
                return NGX_ERROR;
            }

            alias = ngx_array_push(lang->aliases);
            if (alias == NULL) {
                return NGX_ERROR;
            }

            alias->len = tag.len;
            alias->data = ngx_pnalloc(ld->cf->pool, tag.len);
            if (alias->data == NULL) {
                return NGX_ERROR;
            }

            ngx_strlow(alias->data, tag.data, tag.len);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_actions(ngx_http_mqttapi_loader_t *ld, json_t *actions)
{
    json_int_t                  q;
    ngx_str_t                   name;
    const char                 *key, *k;
    json_t                     *v, *f;
    ngx_uint_t                  i;
    ngx_http_mqttapi_action_t  *act, **slot;

    if (!json_is_object(actions)) {
        ngx_http_mqttapi_loader_error(ld, "\"actions\" is not an object");
        return NGX_ERROR;
    }

    json_object_foreach(actions, key, v) {

        name.data = (u_char *) key;
        name.len = ngx_strlen(key);

        if (ngx_http_mqttapi_valid_name(&name) != NGX_OK) {
            ngx_http_mqttapi_loader_error(ld, "action \"%V\": invalid name",
                                          &name);
            return NGX_ERROR;
        }

        if (!json_is_object(v)) {
            ngx_http_mqttapi_loader_error(ld, "action \"%V\" is not an "
                                          "object", &name);
            return NGX_ERROR;
        }

        slot = NULL;

        for (i = 0; i < ld->catalog->actions.nelts; i++) {
            act = ((ngx_http_mqttapi_action_t **) ld->catalog->actions.elts)[i];

            if (act->name.len == name.len
                && ngx_strncmp(act->name.data, name.data, name.len) == 0)
            {
                slot = (ngx_http_mqttapi_action_t **)
                           ld->catalog->actions.elts + i;
                break;
            }
        }

        act = ngx_palloc(ld->cf->pool, sizeof(ngx_http_mqttapi_action_t));
        if (act == NULL) {
            return NGX_ERROR;
        }

        if (slot) {
            *act = **slot;

        } else {
            ngx_memzero(act, sizeof(ngx_http_mqttapi_action_t));

            act->name.len = name.len;
            act->name.data = ngx_pstrdup(ld->cf->pool, &name);
            if (act->name.data == NULL) {
                return NGX_ERROR;
            }

            slot = ngx_array_push(&ld->catalog->actions);
            if (slot == NULL) {
                return NGX_ERROR;
            }
        }

        *slot = act;

        json_object_foreach(v, k, f) {

            if (ngx_strcmp(k, "category") == 0) {
                if (!json_is_string(f)) {
                    goto invalid;
                }

                act->category.data = (u_char *) json_string_value(f);
                act->category.len = json_string_length(f);

                if (ngx_http_mqttapi_valid_name(&act->category) != NGX_OK) {
                    goto invalid;
                }

                act->category.data = ngx_pstrdup(ld->cf->pool,
                                                 &act->category);
                if (act->category.data == NULL) {
                    return NGX_ERROR;
                }

            } else if (ngx_strcmp(k, "throttle_code") == 0) {
                if (!json_is_string(f)
                    || ngx_http_mqttapi_valid_code((u_char *)
                                                   json_string_value(f),
                                                   json_string_length(f))
                       != NGX_OK)
                {
                    goto invalid;
                }

                act->throttle_code.len = json_string_length(f);
                act->throttle_code.data = ngx_pnalloc(ld->cf->pool,
                                                      act->throttle_code.len);
                if (act->throttle_code.data == NULL) {
                    return NGX_ERROR;
                }

                ngx_memcpy(act->throttle_code.data, json_string_value(f),
                           act->throttle_code.len);

            } else if (ngx_strcmp(k, "quota") == 0) {
                if (!json_is_integer(f)
                    || (q = json_integer_value(f)) < 1
                    || q > NGX_HTTP_MQTTAPI_QUOTA_MAX)
                {
                    ngx_http_mqttapi_loader_error(ld, "action \"%V\": "
                                                  "\"quota\" is not an "
                                                  "integer between 1 and %d",
                                                  &name,
                                                  NGX_HTTP_MQTTAPI_QUOTA_MAX);
                    return NGX_ERROR;
                }

                act->quota = (ngx_uint_t) q;

            } else if (k[0] != '_') {
                ngx_http_mqttapi_loader_error(ld, "action \"%V\": unknown "
                                              "key \"%s\"", &name, k);
                return NGX_ERROR;
            }

            continue;

        invalid:

            ngx_http_mqttapi_loader_error(ld, "action \"%V\": invalid "
                                          "\"%s\"", &name, k);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_quota(ngx_http_mqttapi_loader_t *ld, json_t *quota)
{
    json_int_t   q;
    const char  *key;
    json_t      *v;

    if (!json_is_object(quota)) {
        ngx_http_mqttapi_loader_error(ld, "\"quota\" is not an object");
        return NGX_ERROR;
    }

    json_object_foreach(quota, key, v) {

        if (ngx_strcmp(key, "code") == 0) {
            if (!json_is_string(v)
                || ngx_http_mqttapi_valid_code((u_char *) json_string_value(v),
                                               json_string_length(v))
                   != NGX_OK)
            {
                ngx_http_mqttapi_loader_error(ld, "quota \"code\" is not "
                                              "a valid code");
                return NGX_ERROR;
            }

            ld->catalog->quota_code.len = json_string_length(v);
            ld->catalog->quota_code.data = ngx_pnalloc(ld->cf->pool,
                                               ld->catalog->quota_code.len);
            if (ld->catalog->quota_code.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(ld->catalog->quota_code.data, json_string_value(v),
                       ld->catalog->quota_code.len);
            continue;
        }

        if (!json_is_integer(v)
            || (q = json_integer_value(v)) < 1
            || q > NGX_HTTP_MQTTAPI_QUOTA_MAX)
        {
            ngx_http_mqttapi_loader_error(ld, "quota \"%s\": not an integer "
                                          "between 1 and %d", key,
                                          NGX_HTTP_MQTTAPI_QUOTA_MAX);
            return NGX_ERROR;
        }

        if (ngx_strcmp(key, "default") == 0) {
            ld->catalog->default_quota = (ngx_uint_t) q;

        } else if (ngx_strcmp(key, "api_ceiling") == 0) {
            ld->catalog->api_ceiling = (ngx_uint_t) q;

        } else {
            ngx_http_mqttapi_loader_error(ld, "quota: unknown key \"%s\"",
                                          key);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_gateway(ngx_http_mqttapi_loader_t *ld, json_t *gateway)
{
    ngx_int_t                    status;
    ngx_str_t                    code;
    ngx_uint_t                   origin, i;
    const char                  *okey, *skey;
    json_t                      *o, *v;
    ngx_http_mqttapi_entry_t   **e;
    ngx_http_mqttapi_gateway_t  *gw;

    if (!json_is_object(gateway)) {
        ngx_http_mqttapi_loader_error(ld, "\"gateway\" is not an object");
        return NGX_ERROR;
    }

    json_object_foreach(gateway, okey, o) {

        if (ngx_strcmp(okey, "nginx") == 0) {
            origin = NGX_HTTP_MQTTAPI_GW_NGINX;

        } else if (ngx_strcmp(okey, "local") == 0) {
            origin = NGX_HTTP_MQTTAPI_GW_LOCAL;

        } else if (ngx_strcmp(okey, "upstream") == 0) {
            origin = NGX_HTTP_MQTTAPI_GW_UPSTREAM;

        } else {
            ngx_http_mqttapi_loader_error(ld, "gateway: unknown origin "
                                          "\"%s\", expected \"nginx\", "
                                          "\"local\" or \"upstream\"",
                                          okey);
            return NGX_ERROR;
        }

        if (!json_is_object(o)) {
            ngx_http_mqttapi_loader_error(ld, "gateway \"%s\" is not an "
                                          "object", okey);
            return NGX_ERROR;
        }

        json_object_foreach(o, skey, v) {

            if (ngx_strcmp(skey, "4xx") == 0) {
                status = 4;

            } else if (ngx_strcmp(skey, "5xx") == 0) {
                status = 5;

            } else {
                status = ngx_atoi((u_char *) skey, ngx_strlen(skey));
                if (status < 400 || status > 599) {
                    ngx_http_mqttapi_loader_error(ld, "gateway \"%s\": "
                                                  "\"%s\" is not a status "
                                                  "400-599, \"4xx\" or "
                                                  "\"5xx\"", okey, skey);
                    return NGX_ERROR;
                }
            }

            if (!json_is_string(v)) {
                ngx_http_mqttapi_loader_error(ld, "gateway \"%s\" \"%s\": "
                                              "not a code", okey, skey);
                return NGX_ERROR;
            }

            code.data = (u_char *) json_string_value(v);
            code.len = json_string_length(v);

            e = ngx_http_mqttapi_find_entry(&ld->catalog->entries, &code);
            if (e == NULL) {
                ngx_http_mqttapi_loader_error(ld, "gateway \"%s\" \"%s\": "
                                              "code \"%V\" is not in the "
                                              "catalog", okey, skey, &code);
                return NGX_ERROR;
            }

            gw = ld->catalog->gateway.elts;

            for (i = 0; i < ld->catalog->gateway.nelts; i++) {
                if (gw[i].origin == origin
                    && gw[i].status == (ngx_uint_t) status)
                {
                    break;
                }
            }

            if (i == ld->catalog->gateway.nelts) {
                gw = ngx_array_push(&ld->catalog->gateway);
                if (gw == NULL) {
                    return NGX_ERROR;
                }

            } else {
                gw = &gw[i];
            }

            gw->origin = origin;
            gw->status = status;
            gw->entry = *e;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_errors(ngx_http_mqttapi_loader_t *ld, json_t *errors)
{
    size_t   i;
    json_t  *obj;

    if (!json_is_array(errors)) {
        ngx_http_mqttapi_loader_error(ld, "\"errors\" is not an array");
        return NGX_ERROR;
    }

    json_array_foreach(errors, i, obj) {

        ngx_snprintf((u_char *) ld->entry_buf, sizeof(ld->entry_buf) - 1,
                     "#%uz%Z", i + 1);
        ld->entry = ld->entry_buf;

        if (!json_is_object(obj)) {
            ngx_http_mqttapi_loader_error(ld, "not an object");
            return NGX_ERROR;
        }

        if (ngx_http_mqttapi_load_entry(ld, obj) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    ld->entry = NULL;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_entry(ngx_http_mqttapi_loader_t *ld, json_t *obj)
{
    size_t                      i;
    u_char                     *p;
    json_int_t                  n;
    ngx_str_t                   code, *cat;
    ngx_uint_t                  is_regex;
    ngx_array_t                *where;
    const char                 *key;
    json_t                     *v, *c;
    ngx_http_mqttapi_entry_t   *e, **slot;
    ngx_http_mqttapi_text_t    *texts;

    v = json_object_get(obj, "code");
    c = json_object_get(obj, "regex");

    if ((v == NULL) == (c == NULL)) {
        ngx_http_mqttapi_loader_error(ld, "needs exactly one of \"code\" "
                                      "and \"regex\"");
        return NGX_ERROR;
    }

    is_regex = (v == NULL);
    v = is_regex ? c : v;

    if (!json_is_string(v)) {
        ngx_http_mqttapi_loader_error(ld, "\"%s\" is not a string",
                                      is_regex ? "regex" : "code");
        return NGX_ERROR;
    }

    code.data = (u_char *) json_string_value(v);
    code.len = json_string_length(v);

    p = ngx_snprintf((u_char *) ld->entry_buf, sizeof(ld->entry_buf) - 4,
                     "%V", &code);
    if (code.len > sizeof(ld->entry_buf) - 4) {
        p = ngx_cpymem(p, "...", 3);
    }
    *p = '\0';

    if (!is_regex
        && ngx_http_mqttapi_valid_code(code.data, code.len) != NGX_OK)
    {
        ngx_http_mqttapi_loader_error(ld, "the code is empty, longer than "
                                      "%d bytes or has characters outside "
                                      "[A-Za-z0-9._%%-]",
                                      NGX_HTTP_MQTTAPI_CODE_MAX_LEN);
        return NGX_ERROR;
    }

    if (!is_regex && ngx_strlchr(code.data, code.data + code.len, '%')) {
        is_regex = 2;   /* printf-style pattern, "InvalidParameter.%s" */
    }

    where = is_regex ? &ld->catalog->patterns : &ld->catalog->entries;

    slot = ngx_http_mqttapi_find_entry(where, &code);

    e = ngx_palloc(ld->cf->pool, sizeof(ngx_http_mqttapi_entry_t));
    if (e == NULL) {
        return NGX_ERROR;
    }

    if (slot) {
        /* an override: copy on write, the base catalog keeps its entry */

        *e = **slot;

        texts = ngx_pcalloc(ld->cf->pool, ld->catalog->langs.nelts
                                          * sizeof(ngx_http_mqttapi_text_t));
        if (texts == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(texts, e->texts,
                   e->ntexts * sizeof(ngx_http_mqttapi_text_t));

        e->texts = texts;
        e->ntexts = ld->catalog->langs.nelts;

    } else {
        ngx_memzero(e, sizeof(ngx_http_mqttapi_entry_t));

        e->retry_after = -1;

        e->code.len = code.len;
        e->code.data = ngx_pstrdup(ld->cf->pool, &code);
        if (e->code.data == NULL) {
            return NGX_ERROR;
        }

        e->ntexts = ld->catalog->langs.nelts;
        e->texts = ngx_pcalloc(ld->cf->pool,
                               e->ntexts * sizeof(ngx_http_mqttapi_text_t));
        if (e->texts == NULL) {
            return NGX_ERROR;
        }

        if (is_regex
            && ngx_http_mqttapi_load_pattern(ld, e, &e->code, is_regex == 2)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        slot = ngx_array_push(where);
        if (slot == NULL) {
            return NGX_ERROR;
        }
    }

    json_object_foreach(obj, key, v) {

        if (ngx_strcmp(key, "code") == 0 || ngx_strcmp(key, "regex") == 0) {
            continue;

        } else if (ngx_strcmp(key, "status") == 0) {
            if (ngx_http_mqttapi_load_status(ld, obj, key, &e->status)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "mapped_status") == 0) {
            if (ngx_http_mqttapi_load_status(ld, obj, key, &e->mapped_status)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "message") == 0) {
            if (ngx_http_mqttapi_load_string(ld, v, "message", &e->message,
                                             &e->message_json, NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "categories") == 0) {
            if (!json_is_array(v) || json_array_size(v) == 0) {
                ngx_http_mqttapi_loader_error(ld, "\"categories\" is not a "
                                              "non-empty array");
                return NGX_ERROR;
            }

            e->categories = ngx_array_create(ld->cf->pool,
                                             json_array_size(v),
                                             sizeof(ngx_str_t));
            if (e->categories == NULL) {
                return NGX_ERROR;
            }

            json_array_foreach(v, i, c) {
                cat = ngx_array_push(e->categories);
                if (cat == NULL) {
                    return NGX_ERROR;
                }

                if (!json_is_string(c)) {
                    goto bad_category;
                }

                cat->data = (u_char *) json_string_value(c);
                cat->len = json_string_length(c);

                if (ngx_http_mqttapi_valid_name(cat) != NGX_OK) {
                    goto bad_category;
                }

                cat->data = ngx_pstrdup(ld->cf->pool, cat);
                if (cat->data == NULL) {
                    return NGX_ERROR;
                }

                continue;

            bad_category:

                ngx_http_mqttapi_loader_error(ld, "category #%uz is not a "
                                              "name of [A-Za-z0-9_-]",
                                              i + 1);
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "retryable") == 0) {
            if (!json_is_boolean(v)) {
                ngx_http_mqttapi_loader_error(ld, "\"retryable\" is not "
                                              "true or false");
                return NGX_ERROR;
            }

            e->retryable = json_is_true(v);

        } else if (ngx_strcmp(key, "throttle") == 0) {
            if (!json_is_boolean(v)) {
                ngx_http_mqttapi_loader_error(ld, "\"throttle\" is not "
                                              "true or false");
                return NGX_ERROR;
            }

            e->throttle = json_is_true(v);

        } else if (ngx_strcmp(key, "retry_after") == 0) {
            if (!json_is_integer(v)
                || (n = json_integer_value(v)) < 0 || n > 86400)
            {
                ngx_http_mqttapi_loader_error(ld, "\"retry_after\" is not "
                                              "an integer of seconds "
                                              "between 0 and 86400");
                return NGX_ERROR;
            }

            e->retry_after = (ngx_int_t) n;

        } else if (ngx_strcmp(key, "text") == 0) {
            if (ngx_http_mqttapi_load_texts(ld, e, v) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (key[0] != '_') {
            ngx_http_mqttapi_loader_error(ld, "unknown key \"%s\"", key);
            return NGX_ERROR;
        }
    }

    if (e->retryable && e->retry_after == -1) {
        e->retry_after = 1;
    }

    if (e->throttle && !e->retryable) {
        ngx_http_mqttapi_loader_error(ld, "a \"throttle\" code must be "
                                      "\"retryable\"");
        return NGX_ERROR;
    }

    *slot = e;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_check_default_texts(ngx_http_mqttapi_loader_t *ld)
{
    u_char                     *p;
    ngx_uint_t                  i, k;
    ngx_array_t                *a;
    ngx_http_mqttapi_lang_t    *lang;
    ngx_http_mqttapi_text_t    *t;
    ngx_http_mqttapi_entry_t  **e;

    lang = ld->catalog->langs.elts;
    lang = &lang[ld->catalog->default_lang];

    /*
     * a new default language: the texts loaded for it before (an earlier
     * file) now go into headers, and are checked like those loaded after
     */

    for (k = 0; k < 2; k++) {
        a = k ? &ld->catalog->patterns : &ld->catalog->entries;
        e = a->elts;

        for (i = 0; i < a->nelts; i++) {
            t = ngx_http_mqttapi_catalog_text(ld->catalog, e[i],
                                              ld->catalog->default_lang);

            if (t == NULL
                || (ngx_http_mqttapi_header_safe(&t->cause) == NGX_OK
                    && ngx_http_mqttapi_header_safe(&t->solution) == NGX_OK))
            {
                continue;
            }

            p = ngx_snprintf((u_char *) ld->entry_buf,
                             sizeof(ld->entry_buf) - 1, "%V", &e[i]->code);
            *p = '\0';

            ld->entry = ld->entry_buf;

            ngx_http_mqttapi_loader_error(ld, "text \"%V\": the cause and "
                                          "solution of the default language "
                                          "are sent in headers and must be "
                                          "printable ASCII of at most 1024 "
                                          "bytes", &lang->tag);
            ld->entry = NULL;

            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_texts(ngx_http_mqttapi_loader_t *ld,
    ngx_http_mqttapi_entry_t *e, json_t *text)
{
    ngx_int_t                 n;
    ngx_str_t                 tag;
    const char               *key, *k;
    json_t                   *v, *s;
    ngx_http_mqttapi_text_t  *t;

    if (!json_is_object(text)) {
        ngx_http_mqttapi_loader_error(ld, "\"text\" is not an object");
        return NGX_ERROR;
    }

    json_object_foreach(text, key, v) {

        tag.data = (u_char *) key;
        tag.len = ngx_strlen(key);

        n = ngx_http_mqttapi_find_lang(ld->catalog, &tag);
        if (n == NGX_ERROR) {
            ngx_http_mqttapi_loader_error(ld, "text \"%V\": the language is "
                                          "not one of the \"languages\"",
                                          &tag);
            return NGX_ERROR;
        }

        if (!json_is_object(v)) {
            ngx_http_mqttapi_loader_error(ld, "text \"%V\" is not an object",
                                          &tag);
            return NGX_ERROR;
        }

        t = &e->texts[n];

        json_object_foreach(v, k, s) {

            if (ngx_strcmp(k, "cause") == 0) {
                if (ngx_http_mqttapi_load_string(ld, s, k, &t->cause,
                                                 &t->cause_json,
                                                 &t->cause_holes)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

            } else if (ngx_strcmp(k, "solution") == 0) {
                if (ngx_http_mqttapi_load_string(ld, s, k, &t->solution,
                                                 &t->solution_json,
                                                 &t->solution_holes)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

            } else if (ngx_strcmp(k, "description") == 0) {
                if (ngx_http_mqttapi_load_string(ld, s, k, &t->description,
                                                 &t->description_json,
                                                 &t->description_holes)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

            } else if (k[0] != '_') {
                ngx_http_mqttapi_loader_error(ld, "text \"%V\": unknown key "
                                              "\"%s\"", &tag, k);
                return NGX_ERROR;
            }
        }

        /* the default language's cause and solution go into headers */

        if ((ngx_uint_t) n == ld->catalog->default_lang
            && (ngx_http_mqttapi_header_safe(&t->cause) != NGX_OK
                || ngx_http_mqttapi_header_safe(&t->solution) != NGX_OK))
        {
            ngx_http_mqttapi_loader_error(ld, "text \"%V\": the cause and "
                                          "solution of the default language "
                                          "are sent in headers and must be "
                                          "printable ASCII of at most 1024 "
                                          "bytes", &tag);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_pattern(ngx_http_mqttapi_loader_t *ld,
    ngx_http_mqttapi_entry_t *e, ngx_str_t *source, ngx_uint_t printf_style)
{
    u_char               *p, *last, *hole;
#if (NGX_PCRE)
    ngx_regex_compile_t   rc;
    u_char                errstr[NGX_MAX_CONF_ERRSTR];
#endif

    if (printf_style) {

        /*
         * "Prefix.%s": the code is the prefix, one or more of
         * [A-Za-z0-9._-], the suffix; matched without a regex, it is
         * looked up on every error that is not in the catalog as it is
         */

        p = source->data;
        last = p + source->len;
        hole = NULL;

        for ( /* void */ ; p < last; p++) {
            if (*p != '%') {
                continue;
            }

            if (hole || p + 1 == last || p[1] != 's') {
                hole = NULL;
                break;
            }

            hole = p++;
        }

        if (hole == NULL) {
            ngx_http_mqttapi_loader_error(ld, "a patterned code must have "
                                          "exactly one \"%%s\" and no other "
                                          "\"%%\"");
            return NGX_ERROR;
        }

        e->prefix.data = source->data;
        e->prefix.len = hole - source->data;
        e->suffix.data = hole + 2;
        e->suffix.len = last - (hole + 2);
        e->printf = 1;

        return NGX_OK;
    }

#if (NGX_PCRE)

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = *source;
    rc.pool = ld->cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_http_mqttapi_loader_error(ld, "%V", &rc.err);
        return NGX_ERROR;
    }

    if (rc.captures > 9) {
        ngx_http_mqttapi_loader_error(ld, "the regex has more than 9 "
                                      "captures");
        return NGX_ERROR;
    }

    e->regex = rc.regex;

    return NGX_OK;

#else

    ngx_http_mqttapi_loader_error(ld, "regex codes need nginx built with "
                                  "PCRE");
    return NGX_ERROR;

#endif
}


static ngx_int_t
ngx_http_mqttapi_load_status(ngx_http_mqttapi_loader_t *ld, json_t *obj,
    const char *key, ngx_uint_t *status)
{
    json_int_t   n;
    json_t      *v;

    v = json_object_get(obj, key);

    if (!json_is_integer(v)
        || (n = json_integer_value(v)) < 400 || n > 599)
    {
        ngx_http_mqttapi_loader_error(ld, "\"%s\" is not an integer "
                                      "between 400 and 599", key);
        return NGX_ERROR;
    }

    *status = (ngx_uint_t) n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_string(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const char *what, ngx_str_t *s, ngx_str_t *json, ngx_uint_t *holes)
{
    char    *dump;
    u_char  *p, *last;

    if (!json_is_string(v) || json_string_length(v) == 0) {
        ngx_http_mqttapi_loader_error(ld, "\"%s\" is not a non-empty string",
                                      what);
        return NGX_ERROR;
    }

    s->len = json_string_length(v);
    s->data = ngx_pnalloc(ld->cf->pool, s->len);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, json_string_value(v), s->len);

    /* JSON escaping leaves "%s" alone: both forms have as many */

    if (holes) {
        *holes = 0;
        last = s->data + s->len;

        for (p = s->data; p + 1 < last; p++) {
            if (p[0] == '%' && p[1] == 's') {
                (*holes)++;
                p++;
            }
        }
    }

    dump = json_dumps(v, JSON_ENCODE_ANY);
    if (dump == NULL) {
        return NGX_ERROR;
    }

    json->len = ngx_strlen(dump);
    json->data = ngx_pnalloc(ld->cf->pool, json->len);
    if (json->data == NULL) {
        free(dump);
        return NGX_ERROR;
    }

    ngx_memcpy(json->data, dump, json->len);
    free(dump);

    return NGX_OK;
}


static ngx_int_t
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
        return e;
    }

    /* later patterns (user catalogs) take precedence */

    p = catalog->patterns.elts;

    for (i = catalog->patterns.nelts; i > 0; i--) {
        e = p[i - 1];

        if (e->printf) {
            if (ngx_http_mqttapi_printf_match(e, code, param) == NGX_OK) {
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

        return e;

#endif
    }

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


static ngx_http_mqttapi_entry_t **
ngx_http_mqttapi_find_entry(ngx_array_t *a, ngx_str_t *code)
{
    ngx_uint_t                  i;
    ngx_http_mqttapi_entry_t  **e;

    e = a->elts;

    for (i = 0; i < a->nelts; i++) {
        if (e[i]->code.len == code->len
            && ngx_strncmp(e[i]->code.data, code->data, code->len) == 0)
        {
            return &e[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_mqttapi_find_lang(ngx_http_mqttapi_catalog_t *cat, ngx_str_t *tag)
{
    ngx_uint_t                i;
    ngx_http_mqttapi_lang_t  *lang;

    lang = cat->langs.elts;

    for (i = 0; i < cat->langs.nelts; i++) {
        if (lang[i].tag.len == tag->len
            && ngx_strncasecmp(lang[i].tag.data, tag->data, tag->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_mqttapi_header_safe(ngx_str_t *s)
{
    size_t  i;

    if (s->len > 1024) {
        return NGX_DECLINED;
    }

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] > 0x7e) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
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


static void
ngx_http_mqttapi_loader_error(ngx_http_mqttapi_loader_t *ld,
    const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;
    u_char    buf[NGX_MAX_CONF_ERRSTR];

    last = buf + sizeof(buf);

    if (ld->entry) {
        p = ngx_slprintf(buf, last, "entry \"%s\": ", ld->entry);

    } else {
        p = buf;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(p, last, fmt, args);
    va_end(args);

    ngx_conf_log_error(NGX_LOG_EMERG, ld->cf, 0, "mqttapi_catalog \"%V\": %*s",
                       ld->source, (size_t) (p - buf), buf);
}
