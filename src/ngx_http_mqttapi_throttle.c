
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi.h"
#include "ngx_http_mqttapi_answer.h"
#include "ngx_http_mqttapi_catalog.h"
#include "ngx_http_mqttapi_error.h"
#include "ngx_http_mqttapi_quota.h"
#include "ngx_http_mqttapi_quota_delay.h"
#include "ngx_http_mqttapi_render.h"
#include "ngx_http_mqttapi_stats.h"
#include "ngx_http_mqttapi_sync.h"
#include "ngx_http_mqttapi_throttle.h"
#include "ngx_http_mqttapi_zone.h"


/*
 * Back-off.  A throttle code in an upstream answer opens a back-off for
 * the request's key: the delay doubles with each consecutive throttle from
 * "backoff" to "max_backoff", minus up to 10% of jitter, and is never less
 * than the upstream's Retry-After.  Until it ends, the preaccess handler
 * answers that key locally.  Then one request is let through as a probe
 * while the others are still answered locally: a clean answer removes the
 * node, a throttled one reopens the back-off longer.  A probe that ends
 * without an answer of the upstream (client gone, or an error the gateway
 * made) gives its turn back and leaves the count as it is; one that hangs
 * loses it after NGX_HTTP_MQTTAPI_PROBE_TIMEOUT.  Nothing ever waits.  The
 * answer that opens a back-off advertises its delay.  In a zone synced with
 * other nodes, openings and closings are handed to the sync task, and
 * while Redis is up only the node that holds the fleet's right to probe
 * lets the probe through (ngx_http_mqttapi_sync_backoff.c).
 */


#define NGX_HTTP_MQTTAPI_PROBE_TIMEOUT  5000


static ngx_int_t ngx_http_mqttapi_throttle_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mqttapi_backoff_check(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_verdict_t *v);
static ngx_int_t ngx_http_mqttapi_backoff_code(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_node_t *node, ngx_str_t *code);
static ngx_int_t ngx_http_mqttapi_backoff_judge(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_node_t *node, ngx_http_mqttapi_verdict_t *v,
    ngx_pool_cleanup_t **cln, uint32_t *meanwhile);
static void ngx_http_mqttapi_backoff_over(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_pool_cleanup_t *cln, ngx_str_t *code, uint32_t meanwhile);
static void ngx_http_mqttapi_backoff_open(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_error_t *err);
static ngx_msec_t ngx_http_mqttapi_backoff_delay(
    ngx_http_mqttapi_zone_t *zone, uint32_t count,
    ngx_http_mqttapi_error_t *err);
static void ngx_http_mqttapi_backoff_close(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx);
static void ngx_http_mqttapi_advertise(ngx_http_mqttapi_loc_conf_t *lcf,
    ngx_http_mqttapi_error_t *err, ngx_msec_t delay);
static void ngx_http_mqttapi_set_delay(ngx_http_mqttapi_error_t *err,
    ngx_msec_t delay);
static void ngx_http_mqttapi_probe_cleanup(void *data);
static void ngx_http_mqttapi_probe_release(ngx_http_mqttapi_ctx_t *ctx);


static ngx_str_t  ngx_http_mqttapi_throttled_h =
    ngx_string("X-MQTTAPI-Throttled");
static ngx_str_t  ngx_http_mqttapi_throttled = ngx_string("gateway");


ngx_int_t
ngx_http_mqttapi_throttle_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_mqttapi_throttle_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_throttle_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_shm_zone_t               *shm_zone;
    ngx_http_mqttapi_ctx_t       *ctx;
    ngx_http_mqttapi_verdict_t    v;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mqttapi_module);

    if (!lcf->enable
        || (lcf->throttle_zone == NULL && lcf->quota_zone == NULL))
    {
        return NGX_DECLINED;
    }

    ctx = ngx_http_mqttapi_create_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = NGX_DECLINED;
    ngx_memzero(&v, sizeof(ngx_http_mqttapi_verdict_t));

    if (ctx->checked) {

        /*
         * An internal redirect: the request was judged already; or one
         * let go after waiting for its quota's slot, whose key may have
         * been backed off meanwhile
         */

        if (ngx_http_mqttapi_wait_released(ctx) != NGX_OK
            || lcf->throttle_zone == NULL)
        {
            return NGX_DECLINED;
        }

        rc = ngx_http_mqttapi_backoff_check(r, lcf, ctx, &v);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        goto judged;
    }

    ctx->checked = 1;
    ctx->throttle = NGX_HTTP_MQTTAPI_THROTTLE_PASS;

    if (lcf->throttle_zone) {
        rc = ngx_http_mqttapi_backoff_check(r, lcf, ctx, &v);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (rc != NGX_BUSY && lcf->quota_zone) {
        rc = ngx_http_mqttapi_quota_check(r, lcf, ctx, &v);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_AGAIN) {
            /* a slot booked within delay=: wait for it */
            return ngx_http_mqttapi_wait(r, ctx, v.left);
        }
    }

judged:

    if (rc != NGX_BUSY) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi throttle: pass");
        return NGX_DECLINED;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mqttapi throttle: local \"%V\" (%s), %M ms left, "
                   "logged:%d", &v.code,
                   v.reason == NGX_HTTP_MQTTAPI_LOCAL_BACKOFF
                   ? "back-off" : "quota", v.left, !v.quiet);

    shm_zone = (v.reason == NGX_HTTP_MQTTAPI_LOCAL_BACKOFF)
               ? lcf->throttle_zone : lcf->quota_zone;

    ngx_http_mqttapi_stats_local(r, shm_zone->data, &v.code, v.reason,
                                 lcf->throttle_dry_run);

    /* a key's first local answer of a window is logged, the others counted */

    if (lcf->throttle_dry_run) {
        if (!v.quiet) {
            ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                          "mqttapi: dry run, would answer \"%V\" locally "
                          "for %M ms more", &v.code, v.left);
        }

        if (ctx->throttle == NGX_HTTP_MQTTAPI_THROTTLE_PASS) {
            ctx->throttle = NGX_HTTP_MQTTAPI_THROTTLE_DRY_RUN;
        }

        return NGX_DECLINED;
    }

    if (!v.quiet) {
        ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                      "mqttapi: answering \"%V\" locally, %M ms left; the "
                      "key's next local answers are counted until the "
                      "%s ends", &v.code, v.left,
                      v.reason == NGX_HTTP_MQTTAPI_LOCAL_BACKOFF
                      ? "back-off" : "second");
    }

    ctx->throttle = NGX_HTTP_MQTTAPI_THROTTLE_REJECTED;

    rc = ngx_http_mqttapi_throttle_reject(r, ctx, &v.code, v.left);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_mqttapi_backoff_check(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_verdict_t *v)
{
    uint32_t                  meanwhile;
    ngx_int_t                 rc;
    ngx_pool_cleanup_t       *cln;
    ngx_http_mqttapi_node_t  *node;
    ngx_http_mqttapi_zone_t  *zone;

    zone = lcf->throttle_zone->data;

    rc = ngx_http_mqttapi_zone_key(r, zone, "b:", NULL, &ctx->key,
                                   &ctx->hash);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* an empty key is not limited */
        ctx->key.len = 0;
        return NGX_DECLINED;
    }

    ctx->zone = zone;

    cln = NULL;
    meanwhile = 0;

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_BACKOFF,
                                      &ctx->key, ctx->hash, NULL);

    if (node == NULL) {
        ngx_http_mqttapi_zone_unlock(zone);
        return NGX_DECLINED;
    }

    if (ngx_http_mqttapi_backoff_code(r, lcf, zone, node, &v->code)
        != NGX_OK)
    {
        ngx_http_mqttapi_zone_unlock(zone);
        return NGX_ERROR;
    }

    rc = ngx_http_mqttapi_backoff_judge(r, lcf, ctx, node, v, &cln,
                                        &meanwhile);

    ngx_http_mqttapi_zone_unlock(zone);

    if (cln || meanwhile) {
        ngx_http_mqttapi_backoff_over(r, lcf, ctx, cln, &v->code, meanwhile);
    }

    return rc;
}


/* the code of a key's back-off, copied out of the zone (locked) */

static ngx_int_t
ngx_http_mqttapi_backoff_code(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_zone_t *zone,
    ngx_http_mqttapi_node_t *node, ngx_str_t *code)
{
    ngx_str_t  c;

    ngx_http_mqttapi_zone_code(zone, node->u.backoff.code, &c);

    if (c.len == 0) {
        /* the zone had no room to keep the code: the generic one */
        c = lcf->catalog->quota_code;
    }

    code->len = c.len;
    code->data = ngx_pnalloc(r->pool, c.len);

    if (code->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(code->data, c.data, c.len);

    return NGX_OK;
}


/*
 * What becomes of a request for a key that has a back-off (the zone
 * locked): NGX_BUSY, answered locally for v->left ms more; or
 * NGX_DECLINED, the back-off is over and the request goes on, as the
 * probe (*cln, unless no cleanup could be added) or in a dry run.  A
 * window's first local answer is logged, the next ones counted; when the
 * window ends, *meanwhile is how many were answered locally.
 */

static ngx_int_t
ngx_http_mqttapi_backoff_judge(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_node_t *node, ngx_http_mqttapi_verdict_t *v,
    ngx_pool_cleanup_t **cln, uint32_t *meanwhile)
{
    ngx_int_t   rc;
    ngx_msec_t  now;

    now = ngx_current_msec;

    if ((ngx_msec_int_t) (node->u.backoff.until - now) > 0) {
        v->left = node->u.backoff.until - now;
        rc = NGX_BUSY;

    } else if (node->u.backoff.probe
               && (ngx_msec_int_t) (now - node->u.backoff.probe)
                  < NGX_HTTP_MQTTAPI_PROBE_TIMEOUT)
    {
        /* a probe is out: wait for its answer */
        v->left = 1000;
        rc = NGX_BUSY;

    } else if (lcf->throttle_dry_run) {
        *meanwhile = node->rejected;
        node->rejected = 0;
        rc = NGX_DECLINED;

    } else if (!(node->u.backoff.flags & NGX_HTTP_MQTTAPI_SYNC_RIGHT)
               && ngx_http_mqttapi_sync_up(ctx->zone))
    {
        /* another node of the fleet probes: its answer comes by Redis */
        v->left = 1000;
        rc = NGX_BUSY;

    } else {
        /* the back-off is over: this request is the probe */

        *cln = ngx_pool_cleanup_add(r->pool, 0);

        if (*cln) {
            node->u.backoff.probe = now ? now : 1;
            ctx->probe = node->u.backoff.probe;
            ctx->throttle = NGX_HTTP_MQTTAPI_THROTTLE_PROBE;
        }

        *meanwhile = node->rejected;
        node->rejected = 0;
        rc = NGX_DECLINED;
    }

    if (rc == NGX_BUSY) {
        /* the first local answer of the window is logged, the rest counted */
        v->reason = NGX_HTTP_MQTTAPI_LOCAL_BACKOFF;
        v->quiet = (node->rejected++ != 0);

        if (!v->quiet) {
            /* for the window's last line, when another node ends it */
            node->u.backoff.level = (u_char) lcf->throttle_log_level;
        }
    }

    return rc;
}


/*
 * A back-off is over (the zone unlocked): the probe (cln, NULL when no
 * cleanup could be added) is set going and announced, with how many
 * requests were answered locally meanwhile; a dry run says how many would
 * have been.
 */

static void
ngx_http_mqttapi_backoff_over(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_pool_cleanup_t *cln, ngx_str_t *code, uint32_t meanwhile)
{
    if (lcf->throttle_dry_run) {
        ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                      "mqttapi: dry run, back-off after \"%V\" is over; "
                      "%uD requests would have been answered locally "
                      "meanwhile", code, meanwhile);
        return;
    }

    if (cln) {
        cln->handler = ngx_http_mqttapi_probe_cleanup;
        cln->data = ctx;

        ngx_http_mqttapi_stats_backoff(r, ctx->zone,
                                       NGX_HTTP_MQTTAPI_EVENT_PROBE);
    }

    /*
     * without a cleanup (no memory) the request still goes on, untracked:
     * the next one past the window probes again
     */

    if (meanwhile == 0) {
        ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                      "mqttapi: back-off after \"%V\" is over, probing",
                      code);

    } else {
        ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                      "mqttapi: back-off after \"%V\" is over, probing; "
                      "%uD requests were answered locally meanwhile",
                      code, meanwhile);
    }
}


void
ngx_http_mqttapi_throttle_observe(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_http_mqttapi_error_t *err)
{
    ngx_http_mqttapi_loc_conf_t  *lcf;

    if (ctx == NULL || ctx->zone == NULL || ctx->key.len == 0
        || ctx->observed
        || ctx->throttle == NGX_HTTP_MQTTAPI_THROTTLE_REJECTED)
    {
        return;
    }

    ctx->observed = 1;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mqttapi_module);

    if (err && err->gateway) {

        /*
         * an error the gateway made (upstream unreachable, timed out, not
         * answering JSON) is no answer of the upstream: the back-off is
         * kept with its count, and a probe gives its turn back
         */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: throttle: \"%V\" is the gateway's, "
                       "the back-off is kept", &err->code);

        if (ctx->probe) {
            ngx_http_mqttapi_probe_release(ctx);

            ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                          "mqttapi: the probe got \"%V\" from the gateway, "
                          "not an answer of the upstream: probing again",
                          &err->code);
        }

        return;
    }

    if (err && ngx_http_mqttapi_throttle_code(lcf, err)) {
        ngx_http_mqttapi_backoff_open(r, lcf, ctx, err);
        return;
    }

    ngx_http_mqttapi_backoff_close(r, lcf, ctx);
}


/* a throttle code from the upstream: the key's back-off opens, or reopens */

static void
ngx_http_mqttapi_backoff_open(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx,
    ngx_http_mqttapi_error_t *err)
{
    uint32_t                  count, meanwhile;
    ngx_msec_t                now, delay;
    ngx_http_mqttapi_node_t  *node;
    ngx_http_mqttapi_zone_t  *zone;

    zone = ctx->zone;
    now = ngx_current_msec;

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_BACKOFF,
                                      &ctx->key, ctx->hash,
                                      r->connection->log);
    if (node == NULL) {
        ngx_http_mqttapi_zone_unlock(zone);
        return;
    }

    if ((ngx_msec_int_t) (node->u.backoff.until - now) > 0 && ctx->probe == 0) {
        /*
         * a request that was under way when the back-off opened:
         * the back-off already counts this throttle
         */
        delay = node->u.backoff.until - now;

        ngx_http_mqttapi_zone_unlock(zone);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mqttapi: throttle: already backed off, %M ms left",
                       delay);

        ngx_http_mqttapi_advertise(lcf, err, delay);
        return;
    }

    if (node->u.backoff.count < 31) {
        node->u.backoff.count++;
    }

    count = node->u.backoff.count;
    delay = ngx_http_mqttapi_backoff_delay(zone, count, err);

    node->u.backoff.delay = (uint32_t) delay;
    node->u.backoff.until = now + delay;
    node->u.backoff.since = (uint32_t) now;
    node->u.backoff.probe = 0;
    node->u.backoff.flags = 0;
    node->u.backoff.code = ngx_http_mqttapi_zone_code_index(zone, &err->code);

    /* the local answers of the last window (while probing) */
    meanwhile = node->rejected;
    node->rejected = 0;

    ngx_http_mqttapi_zone_unlock(zone);

    if (zone->sync) {
        ngx_http_mqttapi_sync_notify(zone, NGX_HTTP_MQTTAPI_SYNC_OPEN,
                                     &ctx->key, count);
    }

    ngx_http_mqttapi_stats_backoff(r, zone,
                                   (count == 1)
                                   ? NGX_HTTP_MQTTAPI_EVENT_OPEN
                                   : NGX_HTTP_MQTTAPI_EVENT_REOPEN);

    ngx_http_mqttapi_advertise(lcf, err, delay);

    if (meanwhile) {
        ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                      "mqttapi: \"%V\" from the upstream, backing off "
                      "for %M ms (throttle #%uD); %uD requests were "
                      "answered locally meanwhile", &err->code, delay,
                      count, meanwhile);

    } else {
        ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                      "mqttapi: \"%V\" from the upstream, backing off "
                      "for %M ms (throttle #%uD)", &err->code, delay,
                      count);
    }
}


/*
 * The delay of the count-th throttle in a row: "backoff" doubled up to
 * "max_backoff", less up to 10% of jitter so that clients do not come
 * back together, and never below the upstream's own Retry-After.
 */

static ngx_msec_t
ngx_http_mqttapi_backoff_delay(ngx_http_mqttapi_zone_t *zone, uint32_t count,
    ngx_http_mqttapi_error_t *err)
{
    ngx_msec_t  delay, floor;

    delay = zone->backoff;

    while (--count && delay < zone->max_backoff) {
        delay *= 2;
    }

    delay = ngx_min(delay, zone->max_backoff);

    delay -= ngx_random() % (delay / 10 + 1);

    if (err->upstream_delay > 0) {
        floor = (ngx_msec_t) err->upstream_delay * 1000;
        delay = ngx_max(delay, floor);
    }

    return delay;
}


/* a clean answer: a back-off that is over (probed) is closed */

static void
ngx_http_mqttapi_backoff_close(ngx_http_request_t *r,
    ngx_http_mqttapi_loc_conf_t *lcf, ngx_http_mqttapi_ctx_t *ctx)
{
    uint32_t                  count, meanwhile;
    ngx_http_mqttapi_node_t  *node;
    ngx_http_mqttapi_zone_t  *zone;

    zone = ctx->zone;

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_BACKOFF,
                                      &ctx->key, ctx->hash, NULL);

    if (node == NULL
        || (ngx_msec_int_t) (node->u.backoff.until - ngx_current_msec) > 0
        || (!ctx->probe && node->u.backoff.probe && !lcf->throttle_dry_run))
    {
        ngx_http_mqttapi_zone_unlock(zone);
        return;
    }

    meanwhile = node->rejected;
    count = node->u.backoff.count;

    ngx_http_mqttapi_zone_free(zone, node);

    ngx_http_mqttapi_zone_unlock(zone);

    if (zone->sync) {
        ngx_http_mqttapi_sync_notify(zone, NGX_HTTP_MQTTAPI_SYNC_CLOSE,
                                     &ctx->key, count);
    }

    ngx_http_mqttapi_stats_backoff(r, zone, NGX_HTTP_MQTTAPI_EVENT_CLOSE);

    if (ctx->probe) {
        ctx->probe = 0;

        if (meanwhile == 0) {
            ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                          "mqttapi: the probe was answered, back-off "
                          "closed");

        } else {
            ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                          "mqttapi: the probe was answered, back-off "
                          "closed; %uD requests were answered locally "
                          "while it was out", meanwhile);
        }

    } else if (meanwhile) {
        ngx_log_error(lcf->throttle_log_level, r->connection->log, 0,
                      "mqttapi: back-off closed; %uD requests %s "
                      "answered locally", meanwhile,
                      lcf->throttle_dry_run ? "would have been" : "were");
    }
}


ngx_int_t
ngx_http_mqttapi_throttle_reject(ngx_http_request_t *r,
    ngx_http_mqttapi_ctx_t *ctx, ngx_str_t *code, ngx_msec_t left)
{
    ngx_int_t                     rc;
    ngx_str_t                     body;
    ngx_http_mqttapi_error_t     *err;
    ngx_http_mqttapi_answer_t    *a;
    ngx_http_mqttapi_template_t   tpl, *t;
    ngx_http_mqttapi_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_mqttapi_module);

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    err = &ctx->error;

    r->headers_out.status = lcf->throttle_status;

    a = ngx_http_mqttapi_answer_get(r, lcf, code);

    if (a && ngx_http_mqttapi_answer_ready(a)) {

        /* the same answer as the last one but for the id and the delay */

        ngx_http_mqttapi_set_delay(err, left);

        if (ngx_http_mqttapi_answer_make(r, a, err, &body) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        goto send;
    }

    if (ngx_http_mqttapi_error_resolve(r, lcf->catalog, err, code, NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    err->local = 1;
    err->retryable = 1;
    err->throttle = 1;
    err->upstream_retry_after = 0;
    ngx_http_mqttapi_set_delay(err, left);
    err->status = lcf->throttle_status;

    /* an answer that may be kept is rendered with its template */

    t = NULL;

    if (a) {
        ngx_memzero(&tpl, sizeof(ngx_http_mqttapi_template_t));
        t = &tpl;
    }

    if (ngx_http_mqttapi_render_envelope(r, lcf, err, &body, t) != NGX_OK
        || ngx_http_mqttapi_render_headers(r, lcf, err, t) != NGX_OK
        || ngx_http_mqttapi_render_header(r, t, &ngx_http_mqttapi_throttled_h,
                                          &ngx_http_mqttapi_throttled,
                                          NGX_HTTP_MQTTAPI_HOLE_NONE)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (a) {
        ngx_http_mqttapi_answer_keep(r, a, err, &body, t);
    }

send:

    if (ngx_http_mqttapi_set_body_headers(r, lcf, body.len, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->state = NGX_HTTP_MQTTAPI_STATE_DONE;
    ctx->annotated = 1;

    return ngx_http_mqttapi_send_body(r, &body, ngx_http_send_header,
                                      ngx_http_output_filter);
}


ngx_uint_t
ngx_http_mqttapi_throttle_code(ngx_http_mqttapi_loc_conf_t *lcf,
    ngx_http_mqttapi_error_t *err)
{
    ngx_str_t   *c;
    ngx_uint_t   i;

    if (err->code.len == 0 || err->gateway) {
        return 0;
    }

    if (lcf->throttle_codes == NULL) {
        return err->entry && err->entry->throttle;
    }

    c = lcf->throttle_codes->elts;

    for (i = 0; i < lcf->throttle_codes->nelts; i++) {
        if (c[i].len == err->code.len
            && ngx_strncmp(c[i].data, err->code.data, c[i].len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_mqttapi_advertise(ngx_http_mqttapi_loc_conf_t *lcf,
    ngx_http_mqttapi_error_t *err, ngx_msec_t delay)
{
    /*
     * The response that opened the back-off tells the client how long the
     * gateway is going to answer locally, rather than the catalog's delay.
     * The upstream's own Retry-After is kept (it is the floor anyway), a
     * code the catalog does not call retryable gets none (no Retry-After
     * on an error a client must not retry), and a dry run answers nothing
     * locally.
     */

    if (lcf->throttle_dry_run || !err->retryable
        || err->upstream_retry_after)
    {
        return;
    }

    ngx_http_mqttapi_set_delay(err, delay);
}


/* the delay an answer advertises: Retry-After rounded up, and in ms */

static void
ngx_http_mqttapi_set_delay(ngx_http_mqttapi_error_t *err, ngx_msec_t delay)
{
    err->retry_after = (delay + 999) / 1000;
    err->retry_after_ms = delay;
}


static void
ngx_http_mqttapi_probe_cleanup(void *data)
{
    ngx_http_mqttapi_ctx_t  *ctx = data;

    /* a probe that ended without an answer gives its turn back */

    if (!ctx->observed) {
        ngx_http_mqttapi_probe_release(ctx);
    }
}


static void
ngx_http_mqttapi_probe_release(ngx_http_mqttapi_ctx_t *ctx)
{
    ngx_http_mqttapi_node_t  *node;
    ngx_http_mqttapi_zone_t  *zone;

    /* the next request after the back-off probes again */

    if (ctx->probe == 0) {
        return;
    }

    zone = ctx->zone;

    node = ngx_http_mqttapi_zone_node(zone, NGX_HTTP_MQTTAPI_NODE_BACKOFF,
                                      &ctx->key, ctx->hash, NULL);

    if (node && node->u.backoff.probe == ctx->probe) {
        node->u.backoff.probe = 0;
    }

    ngx_http_mqttapi_zone_unlock(zone);

    ctx->probe = 0;
}
