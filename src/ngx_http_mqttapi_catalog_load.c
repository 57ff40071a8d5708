
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_catalog_load.h"


/*
 * Loading the error catalog at configuration time from JSON documents:
 * the built-in one (conf/mqttapi_catalog.json, compiled in) first, then
 * the user's mqttapi_catalog files on top of it.  A derived catalog shares
 * the entries it does not change with its base; an entry that a user file
 * changes is copied first.
 *
 * The members of an object are read by a table of fields: the key, the
 * JSON type it must have, what it must be (for the message), and a
 * setter that checks the value further and stores it at an offset of the
 * structure being filled.  Keys beginning with "_" are comments.
 */


#define NGX_HTTP_MQTTAPI_CATALOG_MAX_SIZE  (1024 * 1024)

#define NGX_HTTP_MQTTAPI_HEADER_TEXT_MAX   1024

/* a boolean, for the field table (jansson has true and false) */
#define NGX_HTTP_MQTTAPI_JSON_BOOLEAN      JSON_TRUE


typedef struct {
    ngx_conf_t                  *cf;
    ngx_http_mqttapi_catalog_t  *catalog;
    ngx_str_t                   *source;
    const char                  *entry;       /* for messages */
    char                         entry_buf[160];
} ngx_http_mqttapi_loader_t;


typedef struct ngx_http_mqttapi_field_s  ngx_http_mqttapi_field_t;

/* NGX_OK, NGX_DECLINED: not what the field must be, NGX_ERROR: reported */
typedef ngx_int_t (*ngx_http_mqttapi_field_pt)(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);

struct ngx_http_mqttapi_field_s {
    char                        *key;
    json_type                    type;
    char                        *expect;      /* "is not ..." */
    ngx_http_mqttapi_field_pt    set;         /* NULL: read elsewhere */
    size_t                       offset;
    void                        *data;        /* the setter's own */
};


/* where a text's JSON literal and its count of "%s" go */

typedef struct {
    size_t                       json;
    size_t                       holes;       /* NGX_CONF_UNSET_SIZE: none */
} ngx_http_mqttapi_text_field_t;


typedef struct {
    char                        *name;
    ngx_uint_t                   origin;
} ngx_http_mqttapi_origin_t;


extern const unsigned char  ngx_http_mqttapi_catalog_data[];
extern const size_t         ngx_http_mqttapi_catalog_data_len;


static ngx_http_mqttapi_catalog_t *ngx_http_mqttapi_catalog_build(
    ngx_conf_t *cf, ngx_http_mqttapi_catalog_t *base, json_t *doc,
    ngx_str_t *source);
static ngx_http_mqttapi_catalog_t *ngx_http_mqttapi_catalog_copy(
    ngx_conf_t *cf, ngx_http_mqttapi_catalog_t *base);
static ngx_int_t ngx_http_mqttapi_load_fields(ngx_http_mqttapi_loader_t *ld,
    json_t *obj, const ngx_http_mqttapi_field_t *fields, void *base,
    const char *what);

static ngx_int_t ngx_http_mqttapi_set_languages(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_default_language(
    ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_actions(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_quota(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_errors(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_gateway(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_int(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_flag(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_name(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_code(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_names(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_text(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);
static ngx_int_t ngx_http_mqttapi_set_texts(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base);

static ngx_int_t ngx_http_mqttapi_add_alias(ngx_http_mqttapi_loader_t *ld,
    ngx_http_mqttapi_lang_t *lang, ngx_str_t *tag);
static ngx_int_t ngx_http_mqttapi_load_entry(ngx_http_mqttapi_loader_t *ld,
    json_t *obj);
static ngx_http_mqttapi_entry_t *ngx_http_mqttapi_new_entry(
    ngx_http_mqttapi_loader_t *ld, ngx_str_t *code,
    ngx_http_mqttapi_entry_t *base, ngx_uint_t pattern);
static ngx_int_t ngx_http_mqttapi_load_pattern(
    ngx_http_mqttapi_loader_t *ld, ngx_http_mqttapi_entry_t *e,
    ngx_uint_t printf_style);
static ngx_int_t ngx_http_mqttapi_check_header_texts(
    ngx_http_mqttapi_loader_t *ld, ngx_http_mqttapi_entry_t *e);
static ngx_int_t ngx_http_mqttapi_set_gateway_code(
    ngx_http_mqttapi_loader_t *ld, ngx_uint_t origin, const char *okey,
    const char *skey, json_t *v);
static ngx_http_mqttapi_entry_t **ngx_http_mqttapi_find_entry(
    ngx_array_t *a, ngx_str_t *code);
static ngx_int_t ngx_http_mqttapi_find_lang(ngx_http_mqttapi_catalog_t *cat,
    ngx_str_t *tag);
static ngx_int_t ngx_http_mqttapi_header_safe(ngx_str_t *s);
static ngx_int_t ngx_http_mqttapi_copy_string(ngx_http_mqttapi_loader_t *ld,
    json_t *v, ngx_str_t *s);
static void ngx_http_mqttapi_loader_error(ngx_http_mqttapi_loader_t *ld,
    const char *fmt, ...);


#define ngx_http_mqttapi_quota_expect                                         \
    "an integer between 1 and " ngx_value(NGX_HTTP_MQTTAPI_QUOTA_MAX)

#define ngx_http_mqttapi_name_expect                                          \
    "a name of [A-Za-z0-9_-] of at most "                                     \
    ngx_value(NGX_HTTP_MQTTAPI_NAME_MAX_LEN) " bytes"

#define ngx_http_mqttapi_code_expect                                          \
    "a code of [A-Za-z0-9._%-] of at most "                                   \
    ngx_value(NGX_HTTP_MQTTAPI_CODE_MAX_LEN) " bytes"


static ngx_conf_num_bounds_t  ngx_http_mqttapi_status_bounds = {
    NULL, 400, 599
};

static ngx_conf_num_bounds_t  ngx_http_mqttapi_delay_bounds = {
    NULL, 0, 86400
};

static ngx_conf_num_bounds_t  ngx_http_mqttapi_quota_bounds = {
    NULL, 1, NGX_HTTP_MQTTAPI_QUOTA_MAX
};


/* the top level, in the order it is applied: texts refer to languages */

static const ngx_http_mqttapi_field_t  ngx_http_mqttapi_document_fields[] = {

    { "languages", JSON_OBJECT, "an object",
      ngx_http_mqttapi_set_languages, 0, NULL },

    { "default_language", JSON_STRING, "a string",
      ngx_http_mqttapi_set_default_language, 0, NULL },

    { "actions", JSON_OBJECT, "an object",
      ngx_http_mqttapi_set_actions, 0, NULL },

    { "quota", JSON_OBJECT, "an object",
      ngx_http_mqttapi_set_quota, 0, NULL },

    /* gateway codes after the errors: they refer to them */

    { "errors", JSON_ARRAY, "an array",
      ngx_http_mqttapi_set_errors, 0, NULL },

    { "gateway", JSON_OBJECT, "an object",
      ngx_http_mqttapi_set_gateway, 0, NULL },

    { NULL, 0, NULL, NULL, 0, NULL }
};


static const ngx_http_mqttapi_field_t  ngx_http_mqttapi_action_fields[] = {

    { "category", JSON_STRING, ngx_http_mqttapi_name_expect,
      ngx_http_mqttapi_set_name,
      offsetof(ngx_http_mqttapi_action_t, category), NULL },

    { "throttle_code", JSON_STRING, ngx_http_mqttapi_code_expect,
      ngx_http_mqttapi_set_code,
      offsetof(ngx_http_mqttapi_action_t, throttle_code), NULL },

    { "quota", JSON_INTEGER, ngx_http_mqttapi_quota_expect,
      ngx_http_mqttapi_set_int,
      offsetof(ngx_http_mqttapi_action_t, quota),
      &ngx_http_mqttapi_quota_bounds },

    { NULL, 0, NULL, NULL, 0, NULL }
};


static const ngx_http_mqttapi_field_t  ngx_http_mqttapi_quota_fields[] = {

    { "default", JSON_INTEGER, ngx_http_mqttapi_quota_expect,
      ngx_http_mqttapi_set_int,
      offsetof(ngx_http_mqttapi_catalog_t, default_quota),
      &ngx_http_mqttapi_quota_bounds },

    { "api_ceiling", JSON_INTEGER, ngx_http_mqttapi_quota_expect,
      ngx_http_mqttapi_set_int,
      offsetof(ngx_http_mqttapi_catalog_t, api_ceiling),
      &ngx_http_mqttapi_quota_bounds },

    { "code", JSON_STRING, ngx_http_mqttapi_code_expect,
      ngx_http_mqttapi_set_code,
      offsetof(ngx_http_mqttapi_catalog_t, quota_code), NULL },

    { NULL, 0, NULL, NULL, 0, NULL }
};


static ngx_http_mqttapi_text_field_t  ngx_http_mqttapi_message_text = {
    offsetof(ngx_http_mqttapi_entry_t, message_json), NGX_CONF_UNSET_SIZE
};


static const ngx_http_mqttapi_field_t  ngx_http_mqttapi_entry_fields[] = {

    /* the code or regex, read first: they say which entry this is */

    { "code", JSON_STRING, "a string", NULL, 0, NULL },
    { "regex", JSON_STRING, "a string", NULL, 0, NULL },

    { "status", JSON_INTEGER, "an integer between 400 and 599",
      ngx_http_mqttapi_set_int,
      offsetof(ngx_http_mqttapi_entry_t, status),
      &ngx_http_mqttapi_status_bounds },

    { "mapped_status", JSON_INTEGER, "an integer between 400 and 599",
      ngx_http_mqttapi_set_int,
      offsetof(ngx_http_mqttapi_entry_t, mapped_status),
      &ngx_http_mqttapi_status_bounds },

    { "message", JSON_STRING, "a non-empty string",
      ngx_http_mqttapi_set_text,
      offsetof(ngx_http_mqttapi_entry_t, message),
      &ngx_http_mqttapi_message_text },

    { "categories", JSON_ARRAY,
      "a non-empty array of names of [A-Za-z0-9_-]",
      ngx_http_mqttapi_set_names,
      offsetof(ngx_http_mqttapi_entry_t, categories), NULL },

    { "retryable", NGX_HTTP_MQTTAPI_JSON_BOOLEAN, "true or false",
      ngx_http_mqttapi_set_flag,
      offsetof(ngx_http_mqttapi_entry_t, retryable), NULL },

    { "throttle", NGX_HTTP_MQTTAPI_JSON_BOOLEAN, "true or false",
      ngx_http_mqttapi_set_flag,
      offsetof(ngx_http_mqttapi_entry_t, throttle), NULL },

    { "retry_after", JSON_INTEGER,
      "an integer of seconds between 0 and 86400",
      ngx_http_mqttapi_set_int,
      offsetof(ngx_http_mqttapi_entry_t, retry_after),
      &ngx_http_mqttapi_delay_bounds },

    { "text", JSON_OBJECT, "an object",
      ngx_http_mqttapi_set_texts, 0, NULL },

    { NULL, 0, NULL, NULL, 0, NULL }
};


static ngx_http_mqttapi_text_field_t  ngx_http_mqttapi_cause_text = {
    offsetof(ngx_http_mqttapi_text_t, cause_json),
    offsetof(ngx_http_mqttapi_text_t, cause_holes)
};

static ngx_http_mqttapi_text_field_t  ngx_http_mqttapi_solution_text = {
    offsetof(ngx_http_mqttapi_text_t, solution_json),
    offsetof(ngx_http_mqttapi_text_t, solution_holes)
};

static ngx_http_mqttapi_text_field_t  ngx_http_mqttapi_description_text = {
    offsetof(ngx_http_mqttapi_text_t, description_json),
    offsetof(ngx_http_mqttapi_text_t, description_holes)
};


static const ngx_http_mqttapi_field_t  ngx_http_mqttapi_text_fields[] = {

    { "cause", JSON_STRING, "a non-empty string",
      ngx_http_mqttapi_set_text,
      offsetof(ngx_http_mqttapi_text_t, cause),
      &ngx_http_mqttapi_cause_text },

    { "solution", JSON_STRING, "a non-empty string",
      ngx_http_mqttapi_set_text,
      offsetof(ngx_http_mqttapi_text_t, solution),
      &ngx_http_mqttapi_solution_text },

    { "description", JSON_STRING, "a non-empty string",
      ngx_http_mqttapi_set_text,
      offsetof(ngx_http_mqttapi_text_t, description),
      &ngx_http_mqttapi_description_text },

    { NULL, 0, NULL, NULL, 0, NULL }
};


static ngx_http_mqttapi_origin_t  ngx_http_mqttapi_origins[] = {
    { "nginx", NGX_HTTP_MQTTAPI_GW_NGINX },
    { "local", NGX_HTTP_MQTTAPI_GW_LOCAL },
    { "upstream", NGX_HTTP_MQTTAPI_GW_UPSTREAM },
    { NULL, 0 }
};


ngx_http_mqttapi_catalog_t *
ngx_http_mqttapi_catalog_builtin(ngx_conf_t *cf)
{
    json_t                      *doc;
    json_error_t                 err;
    ngx_http_mqttapi_catalog_t  *catalog;

    static ngx_str_t  source = ngx_string("built-in catalog");

    doc = json_loadb((const char *) ngx_http_mqttapi_catalog_data,
                     ngx_http_mqttapi_catalog_data_len,
                     JSON_REJECT_DUPLICATES, &err);
    if (doc == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mqttapi: %V: line %d, column %d: %s",
                           &source, err.line, err.column, err.text);
        return NULL;
    }

    catalog = ngx_http_mqttapi_catalog_build(cf, NULL, doc, &source);

    json_decref(doc);

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

    catalog = ngx_http_mqttapi_catalog_build(cf, base, doc, file);

    json_decref(doc);

    return catalog;
}


static ngx_http_mqttapi_catalog_t *
ngx_http_mqttapi_catalog_build(ngx_conf_t *cf, ngx_http_mqttapi_catalog_t *base,
    json_t *doc, ngx_str_t *source)
{
    ngx_http_mqttapi_catalog_t  *catalog;
    ngx_http_mqttapi_loader_t    ld;

    catalog = ngx_http_mqttapi_catalog_copy(cf, base);
    if (catalog == NULL) {
        return NULL;
    }

    ngx_memzero(&ld, sizeof(ngx_http_mqttapi_loader_t));
    ld.cf = cf;
    ld.catalog = catalog;
    ld.source = source;

    if (!json_is_object(doc)) {
        ngx_http_mqttapi_loader_error(&ld, "the document is not an object");
        return NULL;
    }

    if (ngx_http_mqttapi_load_fields(&ld, doc,
                                     ngx_http_mqttapi_document_fields,
                                     catalog, "")
        != NGX_OK)
    {
        return NULL;
    }

    if (catalog->langs.nelts == 0) {
        ngx_http_mqttapi_loader_error(&ld, "no \"languages\" defined");
        return NULL;
    }

    if (ngx_http_mqttapi_catalog_hash(cf, catalog) != NGX_OK) {
        return NULL;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "mqttapi catalog \"%V\": %ui codes, %ui patterns, "
                   "%ui languages, %ui actions", source,
                   catalog->entries.nelts, catalog->patterns.nelts,
                   catalog->langs.nelts, catalog->actions.nelts);

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


/*
 * The members of "obj" by the table "fields", into "base": an unknown key
 * (not a comment) first, then the known ones in the table's order.  "what"
 * begins every message about a value ("action \"ApplyToken\": ").
 */

static ngx_int_t
ngx_http_mqttapi_load_fields(ngx_http_mqttapi_loader_t *ld, json_t *obj,
    const ngx_http_mqttapi_field_t *fields, void *base, const char *what)
{
    ngx_int_t                        rc;
    const char                      *key;
    json_t                          *v;
    const ngx_http_mqttapi_field_t  *f;

    json_object_foreach(obj, key, v) {

        if (key[0] == '_') {
            continue;
        }

        for (f = fields; f->key; f++) {
            if (ngx_strcmp(f->key, key) == 0) {
                break;
            }
        }

        if (f->key == NULL) {
            ngx_http_mqttapi_loader_error(ld, "%s\"%s\" is not a known key",
                                          what, key);
            return NGX_ERROR;
        }
    }

    for (f = fields; f->key; f++) {

        v = json_object_get(obj, f->key);

        if (v == NULL || f->set == NULL) {
            continue;
        }

        if (f->type == NGX_HTTP_MQTTAPI_JSON_BOOLEAN
            ? !json_is_boolean(v) : json_typeof(v) != f->type)
        {
            rc = NGX_DECLINED;

        } else {
            rc = f->set(ld, v, f, base);
        }

        if (rc == NGX_DECLINED) {
            ngx_http_mqttapi_loader_error(ld, "%s\"%s\" is not %s",
                                          what, f->key, f->expect);
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_set_languages(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    size_t                    i;
    ngx_int_t                 n;
    ngx_str_t                 tag;
    const char               *key;
    json_t                   *aliases, *a;
    ngx_http_mqttapi_lang_t  *lang;

    json_object_foreach(v, key, aliases) {

        tag.data = (u_char *) key;
        tag.len = ngx_strlen(key);

        if (ngx_http_mqttapi_valid_name(&tag) != NGX_OK) {
            ngx_http_mqttapi_loader_error(ld, "language tag \"%V\" is not a "
                                          "BCP 47 tag", &tag);
            return NGX_ERROR;
        }

        if (!json_is_array(aliases)) {
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

        if (ngx_http_mqttapi_add_alias(ld, lang, &lang->tag) != NGX_OK) {
            return NGX_ERROR;
        }

        json_array_foreach(aliases, i, a) {
            if (!json_is_string(a)) {
                ngx_http_mqttapi_loader_error(ld, "language \"%V\": alias "
                                              "#%uz is not a string",
                                              &lang->tag, i + 1);
                return NGX_ERROR;
            }

            tag.data = (u_char *) json_string_value(a);
            tag.len = json_string_length(a);

            if (ngx_http_mqttapi_valid_name(&tag) != NGX_OK) {
                ngx_http_mqttapi_loader_error(ld, "language alias \"%V\" is "
                                              "not a BCP 47 tag", &tag);
                return NGX_ERROR;
            }

            if (ngx_http_mqttapi_add_alias(ld, lang, &tag) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_add_alias(ngx_http_mqttapi_loader_t *ld,
    ngx_http_mqttapi_lang_t *lang, ngx_str_t *tag)
{
    ngx_str_t  *alias;

    /* aliases are kept in lowercase: ranges compare case-insensitively */

    alias = ngx_array_push(lang->aliases);
    if (alias == NULL) {
        return NGX_ERROR;
    }

    alias->len = tag->len;
    alias->data = ngx_pnalloc(ld->cf->pool, tag->len);
    if (alias->data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(alias->data, tag->data, tag->len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_set_default_language(ngx_http_mqttapi_loader_t *ld,
    json_t *v, const ngx_http_mqttapi_field_t *f, void *base)
{
    ngx_int_t                   lang;
    ngx_str_t                   tag;
    ngx_uint_t                  i, k;
    ngx_array_t                *a;
    ngx_http_mqttapi_entry_t  **e;

    tag.data = (u_char *) json_string_value(v);
    tag.len = json_string_length(v);

    lang = ngx_http_mqttapi_find_lang(ld->catalog, &tag);
    if (lang == NGX_ERROR) {
        ngx_http_mqttapi_loader_error(ld, "\"default_language\" \"%V\" is "
                                      "not one of the \"languages\"", &tag);
        return NGX_ERROR;
    }

    if ((ngx_uint_t) lang == ld->catalog->default_lang) {
        return NGX_OK;
    }

    ld->catalog->default_lang = lang;

    /*
     * a new default language: the texts loaded for it before (an earlier
     * file) now go into headers, and are checked like those loaded after
     */

    for (k = 0; k < 2; k++) {
        a = k ? &ld->catalog->patterns : &ld->catalog->entries;
        e = a->elts;

        for (i = 0; i < a->nelts; i++) {
            if (ngx_http_mqttapi_check_header_texts(ld, e[i]) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_set_actions(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    ngx_str_t                   name;
    ngx_uint_t                  i;
    const char                 *key;
    json_t                     *obj;
    ngx_http_mqttapi_action_t  *act, **slot;
    u_char                      what[NGX_HTTP_MQTTAPI_NAME_MAX_LEN + 16];

    json_object_foreach(v, key, obj) {

        name.data = (u_char *) key;
        name.len = ngx_strlen(key);

        if (ngx_http_mqttapi_valid_name(&name) != NGX_OK) {
            ngx_http_mqttapi_loader_error(ld, "action \"%V\": invalid name",
                                          &name);
            return NGX_ERROR;
        }

        if (!json_is_object(obj)) {
            ngx_http_mqttapi_loader_error(ld, "action \"%V\" is not an "
                                          "object", &name);
            return NGX_ERROR;
        }

        slot = ld->catalog->actions.elts;

        for (i = 0; i < ld->catalog->actions.nelts; i++) {
            if (slot[i]->name.len == name.len
                && ngx_strncmp(slot[i]->name.data, name.data, name.len) == 0)
            {
                break;
            }
        }

        /* copy on write, as the entries */

        act = ngx_palloc(ld->cf->pool, sizeof(ngx_http_mqttapi_action_t));
        if (act == NULL) {
            return NGX_ERROR;
        }

        if (i < ld->catalog->actions.nelts) {
            *act = *slot[i];
            slot = &slot[i];

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

        ngx_sprintf(what, "action \"%V\": %Z", &name);

        if (ngx_http_mqttapi_load_fields(ld, obj,
                                         ngx_http_mqttapi_action_fields, act,
                                         (char *) what)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_set_quota(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    return ngx_http_mqttapi_load_fields(ld, v, ngx_http_mqttapi_quota_fields,
                                        ld->catalog, "quota ");
}


static ngx_int_t
ngx_http_mqttapi_set_errors(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    size_t                        i;
    json_t                       *obj;
    ngx_http_mqttapi_entry_t    **e;
    ngx_http_mqttapi_gateway_t   *gw;

    json_array_foreach(v, i, obj) {

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

    /* the gateway codes follow the entries this document changed */

    gw = ld->catalog->gateway.elts;

    for (i = 0; i < ld->catalog->gateway.nelts; i++) {
        e = ngx_http_mqttapi_find_entry(&ld->catalog->entries,
                                        &gw[i].entry->code);
        if (e) {
            gw[i].entry = *e;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_load_entry(ngx_http_mqttapi_loader_t *ld, json_t *obj)
{
    u_char                     *p;
    ngx_str_t                   code;
    ngx_uint_t                  pattern;
    ngx_array_t                *where;
    json_t                     *v, *regex;
    ngx_http_mqttapi_entry_t   *e, **slot;

    v = json_object_get(obj, "code");
    regex = json_object_get(obj, "regex");

    if ((v == NULL) == (regex == NULL)) {
        ngx_http_mqttapi_loader_error(ld, "needs exactly one of \"code\" "
                                      "and \"regex\"");
        return NGX_ERROR;
    }

    pattern = (v == NULL);
    v = pattern ? regex : v;

    if (!json_is_string(v)) {
        ngx_http_mqttapi_loader_error(ld, "\"%s\" is not a string",
                                      pattern ? "regex" : "code");
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

    if (!pattern
        && ngx_http_mqttapi_valid_code(code.data, code.len) != NGX_OK)
    {
        ngx_http_mqttapi_loader_error(ld, "the code is empty, longer than "
                                      "%d bytes or has characters outside "
                                      "[A-Za-z0-9._%%-]",
                                      NGX_HTTP_MQTTAPI_CODE_MAX_LEN);
        return NGX_ERROR;
    }

    if (!pattern && ngx_strlchr(code.data, code.data + code.len, '%')) {
        pattern = 2;   /* printf-style pattern, "InvalidParameter.%s" */
    }

    where = pattern ? &ld->catalog->patterns : &ld->catalog->entries;

    slot = ngx_http_mqttapi_find_entry(where, &code);

    e = ngx_http_mqttapi_new_entry(ld, &code, slot ? *slot : NULL, pattern);
    if (e == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_mqttapi_load_fields(ld, obj, ngx_http_mqttapi_entry_fields,
                                     e, "")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (e->retryable && e->retry_after == -1) {
        e->retry_after = 1;
    }

    if (e->throttle && !e->retryable) {
        ngx_http_mqttapi_loader_error(ld, "a \"throttle\" code must be "
                                      "\"retryable\"");
        return NGX_ERROR;
    }

    if (slot == NULL) {
        slot = ngx_array_push(where);
        if (slot == NULL) {
            return NGX_ERROR;
        }
    }

    *slot = e;

    return NGX_OK;
}


/*
 * A new entry for "code", or a copy of "base" with room for the texts of
 * every language (copy on write: the base catalog keeps its entry).
 */

static ngx_http_mqttapi_entry_t *
ngx_http_mqttapi_new_entry(ngx_http_mqttapi_loader_t *ld, ngx_str_t *code,
    ngx_http_mqttapi_entry_t *base, ngx_uint_t pattern)
{
    ngx_http_mqttapi_text_t   *texts;
    ngx_http_mqttapi_entry_t  *e;

    e = ngx_palloc(ld->cf->pool, sizeof(ngx_http_mqttapi_entry_t));
    if (e == NULL) {
        return NULL;
    }

    texts = ngx_pcalloc(ld->cf->pool, ld->catalog->langs.nelts
                                      * sizeof(ngx_http_mqttapi_text_t));
    if (texts == NULL) {
        return NULL;
    }

    if (base) {
        *e = *base;

        ngx_memcpy(texts, e->texts,
                   e->ntexts * sizeof(ngx_http_mqttapi_text_t));

        e->texts = texts;
        e->ntexts = ld->catalog->langs.nelts;

        return e;
    }

    ngx_memzero(e, sizeof(ngx_http_mqttapi_entry_t));

    e->retry_after = -1;
    e->texts = texts;
    e->ntexts = ld->catalog->langs.nelts;

    e->code.len = code->len;
    e->code.data = ngx_pstrdup(ld->cf->pool, code);
    if (e->code.data == NULL) {
        return NULL;
    }

    if (pattern
        && ngx_http_mqttapi_load_pattern(ld, e, pattern == 2) != NGX_OK)
    {
        return NULL;
    }

    return e;
}


static ngx_int_t
ngx_http_mqttapi_load_pattern(ngx_http_mqttapi_loader_t *ld,
    ngx_http_mqttapi_entry_t *e, ngx_uint_t printf_style)
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

        p = e->code.data;
        last = p + e->code.len;
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

        e->prefix.data = e->code.data;
        e->prefix.len = hole - e->code.data;
        e->suffix.data = hole + 2;
        e->suffix.len = last - (hole + 2);
        e->printf = 1;

        return NGX_OK;
    }

#if (NGX_PCRE)

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = e->code;
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
ngx_http_mqttapi_set_texts(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    ngx_http_mqttapi_entry_t *e = base;

    ngx_int_t    n;
    ngx_str_t    tag;
    const char  *key;
    json_t      *t;
    u_char       what[NGX_HTTP_MQTTAPI_NAME_MAX_LEN + 16];

    json_object_foreach(v, key, t) {

        tag.data = (u_char *) key;
        tag.len = ngx_strlen(key);

        n = ngx_http_mqttapi_find_lang(ld->catalog, &tag);
        if (n == NGX_ERROR) {
            ngx_http_mqttapi_loader_error(ld, "text \"%V\": the language is "
                                          "not one of the \"languages\"",
                                          &tag);
            return NGX_ERROR;
        }

        if (!json_is_object(t)) {
            ngx_http_mqttapi_loader_error(ld, "text \"%V\" is not an object",
                                          &tag);
            return NGX_ERROR;
        }

        ngx_sprintf(what, "text \"%V\": %Z", &tag);

        if (ngx_http_mqttapi_load_fields(ld, t, ngx_http_mqttapi_text_fields,
                                         &e->texts[n], (char *) what)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_mqttapi_check_header_texts(ld, e);
}


/* the default language's cause and solution go into headers */

static ngx_int_t
ngx_http_mqttapi_check_header_texts(ngx_http_mqttapi_loader_t *ld,
    ngx_http_mqttapi_entry_t *e)
{
    const char               *entry;
    ngx_http_mqttapi_lang_t  *lang;
    ngx_http_mqttapi_text_t  *t;

    t = ngx_http_mqttapi_catalog_text(ld->catalog, e,
                                      ld->catalog->default_lang);

    if (t == NULL
        || (ngx_http_mqttapi_header_safe(&t->cause) == NGX_OK
            && ngx_http_mqttapi_header_safe(&t->solution) == NGX_OK))
    {
        return NGX_OK;
    }

    lang = ld->catalog->langs.elts;
    lang = &lang[ld->catalog->default_lang];

    /* an entry of an earlier file: the message names it by its code */

    entry = ld->entry;

    if (entry == NULL) {
        ngx_snprintf((u_char *) ld->entry_buf, sizeof(ld->entry_buf) - 1,
                     "%V%Z", &e->code);
        ld->entry = ld->entry_buf;
    }

    ngx_http_mqttapi_loader_error(ld, "text \"%V\": the cause and solution "
                                  "of the default language are sent in "
                                  "headers and must be printable ASCII of "
                                  "at most %d bytes", &lang->tag,
                                  NGX_HTTP_MQTTAPI_HEADER_TEXT_MAX);
    ld->entry = entry;

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_mqttapi_set_gateway(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    const char                 *okey, *skey;
    json_t                     *o, *code;
    ngx_http_mqttapi_origin_t  *origin;

    json_object_foreach(v, okey, o) {

        for (origin = ngx_http_mqttapi_origins; origin->name; origin++) {
            if (ngx_strcmp(origin->name, okey) == 0) {
                break;
            }
        }

        if (origin->name == NULL) {
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

        json_object_foreach(o, skey, code) {
            if (ngx_http_mqttapi_set_gateway_code(ld, origin->origin, okey,
                                                  skey, code)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_set_gateway_code(ngx_http_mqttapi_loader_t *ld,
    ngx_uint_t origin, const char *okey, const char *skey, json_t *v)
{
    ngx_int_t                    status;
    ngx_str_t                    code;
    ngx_uint_t                   i;
    ngx_http_mqttapi_entry_t   **e;
    ngx_http_mqttapi_gateway_t  *gw;

    /* a status, or its class: "4xx" is 4 */

    if (ngx_strcmp(skey, "4xx") == 0 || ngx_strcmp(skey, "5xx") == 0) {
        status = skey[0] - '0';

    } else {
        status = ngx_atoi((u_char *) skey, ngx_strlen(skey));

        if (status < 400 || status > 599) {
            ngx_http_mqttapi_loader_error(ld, "gateway \"%s\": \"%s\" is not "
                                          "a status 400-599, \"4xx\" or "
                                          "\"5xx\"", okey, skey);
            return NGX_ERROR;
        }
    }

    if (!json_is_string(v)) {
        ngx_http_mqttapi_loader_error(ld, "gateway \"%s\" \"%s\": not a code",
                                      okey, skey);
        return NGX_ERROR;
    }

    code.data = (u_char *) json_string_value(v);
    code.len = json_string_length(v);

    e = ngx_http_mqttapi_find_entry(&ld->catalog->entries, &code);
    if (e == NULL) {
        ngx_http_mqttapi_loader_error(ld, "gateway \"%s\" \"%s\": code \"%V\" "
                                      "is not in the catalog",
                                      okey, skey, &code);
        return NGX_ERROR;
    }

    gw = ld->catalog->gateway.elts;

    for (i = 0; i < ld->catalog->gateway.nelts; i++) {
        if (gw[i].origin == origin && gw[i].status == (ngx_uint_t) status) {
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

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_set_int(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    json_int_t              n;
    ngx_conf_num_bounds_t  *bounds;

    bounds = f->data;
    n = json_integer_value(v);

    if (n < bounds->low || n > bounds->high) {
        return NGX_DECLINED;
    }

    /* ngx_int_t and ngx_uint_t fields alike */

    *(ngx_int_t *) ((u_char *) base + f->offset) = (ngx_int_t) n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_set_flag(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    *(ngx_flag_t *) ((u_char *) base + f->offset) = json_is_true(v);

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_set_name(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    ngx_str_t  name;

    name.data = (u_char *) json_string_value(v);
    name.len = json_string_length(v);

    if (ngx_http_mqttapi_valid_name(&name) != NGX_OK) {
        return NGX_DECLINED;
    }

    return ngx_http_mqttapi_copy_string(ld, v,
                                   (ngx_str_t *) ((u_char *) base + f->offset));
}


static ngx_int_t
ngx_http_mqttapi_set_code(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    if (ngx_http_mqttapi_valid_code((u_char *) json_string_value(v),
                                    json_string_length(v))
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return ngx_http_mqttapi_copy_string(ld, v,
                                   (ngx_str_t *) ((u_char *) base + f->offset));
}


static ngx_int_t
ngx_http_mqttapi_set_names(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    size_t        i;
    json_t       *c;
    ngx_str_t    *name;
    ngx_array_t  *names;

    if (json_array_size(v) == 0) {
        return NGX_DECLINED;
    }

    names = ngx_array_create(ld->cf->pool, json_array_size(v),
                             sizeof(ngx_str_t));
    if (names == NULL) {
        return NGX_ERROR;
    }

    json_array_foreach(v, i, c) {

        if (!json_is_string(c)) {
            return NGX_DECLINED;
        }

        name = ngx_array_push(names);
        if (name == NULL) {
            return NGX_ERROR;
        }

        name->data = (u_char *) json_string_value(c);
        name->len = json_string_length(c);

        if (ngx_http_mqttapi_valid_name(name) != NGX_OK) {
            return NGX_DECLINED;
        }

        if (ngx_http_mqttapi_copy_string(ld, c, name) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *(ngx_array_t **) ((u_char *) base + f->offset) = names;

    return NGX_OK;
}


/*
 * A text: the string as it is (for headers), its JSON literal, quotes
 * included (for bodies), and how many "%s" it has (JSON escaping leaves
 * "%s" alone: both forms have as many).
 */

static ngx_int_t
ngx_http_mqttapi_set_text(ngx_http_mqttapi_loader_t *ld, json_t *v,
    const ngx_http_mqttapi_field_t *f, void *base)
{
    char                           *dump;
    u_char                         *p, *last;
    ngx_str_t                      *s, *json;
    ngx_uint_t                     *holes;
    ngx_http_mqttapi_text_field_t  *tf;

    tf = f->data;

    s = (ngx_str_t *) ((u_char *) base + f->offset);
    json = (ngx_str_t *) ((u_char *) base + tf->json);

    if (json_string_length(v) == 0) {
        return NGX_DECLINED;
    }

    if (ngx_http_mqttapi_copy_string(ld, v, s) != NGX_OK) {
        return NGX_ERROR;
    }

    if (tf->holes != NGX_CONF_UNSET_SIZE) {
        holes = (ngx_uint_t *) ((u_char *) base + tf->holes);
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

    if (s->len > NGX_HTTP_MQTTAPI_HEADER_TEXT_MAX) {
        return NGX_DECLINED;
    }

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] > 0x7e) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* a JSON string into the configuration's pool: jansson frees its own */

static ngx_int_t
ngx_http_mqttapi_copy_string(ngx_http_mqttapi_loader_t *ld, json_t *v,
    ngx_str_t *s)
{
    s->len = json_string_length(v);
    s->data = ngx_pnalloc(ld->cf->pool, s->len);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, json_string_value(v), s->len);

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
