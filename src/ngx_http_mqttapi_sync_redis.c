
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"

#include <ngx_event_connect.h>


/*
 * One Redis connection owned by nginx's event loop: the socket is
 * nginx's (ngx_event_connect_peer, non-blocking reads and writes), hiredis
 * only formats the commands and parses the replies.  Commands are
 * pipelined; each waits for its reply in order, at most "timeout" (a
 * cancelable timer, so that a worker that quits does not wait for it).
 * Any failure closes the connection and hands every waiting command a
 * NULL reply; the task then reconnects after a back-off.
 */


static void ngx_http_mqttapi_sync_link_read(ngx_event_t *rev);
static void ngx_http_mqttapi_sync_link_write(ngx_event_t *wev);
static ngx_int_t ngx_http_mqttapi_sync_link_flush(
    ngx_http_mqttapi_sync_link_t *link);
static void ngx_http_mqttapi_sync_link_timer(
    ngx_http_mqttapi_sync_link_t *link);
static ngx_int_t ngx_http_mqttapi_sync_link_replies(
    ngx_http_mqttapi_sync_link_t *link);
static void ngx_http_mqttapi_sync_link_fail(ngx_http_mqttapi_sync_link_t *link,
    const char *fmt, ...);


ngx_int_t
ngx_http_mqttapi_sync_link_connect(ngx_http_mqttapi_sync_link_t *link)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    ngx_memzero(&link->pc, sizeof(ngx_peer_connection_t));

    link->pc.sockaddr = link->addr->sockaddr;
    link->pc.socklen = link->addr->socklen;
    link->pc.name = &link->addr->name;
    link->pc.get = ngx_event_get_peer;
    link->pc.log = link->task->log;
    link->pc.log_error = NGX_ERROR_ERR;

    link->len = 0;
    link->sent = 0;
    link->head = 0;
    link->n = 0;

    link->reader = ngx_http_mqttapi_sync_reader();
    if (link->reader == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_event_connect_peer(&link->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (link->pc.connection) {
            ngx_close_connection(link->pc.connection);
            link->pc.connection = NULL;
        }

        redisReaderFree(link->reader);
        link->reader = NULL;

        return NGX_ERROR;
    }

    c = link->pc.connection;

    c->data = link;
    c->read->handler = ngx_http_mqttapi_sync_link_read;
    c->write->handler = ngx_http_mqttapi_sync_link_write;
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    /* connected or not, the write handler goes on (and starts TLS) */

    link->connecting = 1;
    link->handshaking = 0;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, link->task->conf->timeout);

    } else {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, link->task->log, 0,
                   "mqttapi sync: %s connection to %V", link->name,
                   &link->addr->name);

    return NGX_OK;
}


void
ngx_http_mqttapi_sync_link_close(ngx_http_mqttapi_sync_link_t *link)
{
    ngx_uint_t                        i, n;
    ngx_pool_t                       *pool;
    ngx_connection_t                 *c;
    ngx_http_mqttapi_sync_pending_t  *p;

    c = link->pc.connection;

    if (c) {
#if (NGX_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif
        pool = c->pool;

        ngx_close_connection(c);
        link->pc.connection = NULL;

        if (pool) {
            ngx_destroy_pool(pool);
        }
    }

    link->connecting = 0;
    link->handshaking = 0;

    if (link->reader) {
        redisReaderFree(link->reader);
        link->reader = NULL;
    }

    ngx_free(link->out);
    link->out = NULL;
    link->size = 0;
    link->len = 0;
    link->sent = 0;

    /* whoever waits for a reply learns there is none */

    n = link->n;
    link->n = 0;

    for (i = 0; i < n; i++) {
        p = &link->pending[(link->head + i) % NGX_HTTP_MQTTAPI_SYNC_PENDING];

        if (p->handler) {
            p->handler(link->task, NULL, p->data);
        }
    }

    link->head = 0;
}


ngx_int_t
ngx_http_mqttapi_sync_link_send(ngx_http_mqttapi_sync_link_t *link,
    ngx_uint_t op, int argc, const char **argv, const size_t *argvlen,
    ngx_http_mqttapi_sync_reply_pt handler, void *data)
{
    int                               len;
    char                             *cmd;
    u_char                           *out;
    size_t                            size;
    ngx_http_mqttapi_sync_pending_t  *p;

    if (link->pc.connection == NULL
        || link->n == NGX_HTTP_MQTTAPI_SYNC_PENDING)
    {
        return NGX_DECLINED;
    }

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    if (link->len + len > link->size) {
        size = ngx_max(link->size * 2, link->len + len);
        size = ngx_max(size, 4096);

        out = ngx_alloc(size, link->task->log);
        if (out == NULL) {
            redisFreeCommand(cmd);
            return NGX_ERROR;
        }

        if (link->out) {
            ngx_memcpy(out, link->out + link->sent, link->len - link->sent);
            ngx_free(link->out);
        }

        link->len -= link->sent;
        link->sent = 0;
        link->out = out;
        link->size = size;
    }

    ngx_memcpy(link->out + link->len, cmd, len);
    link->len += len;

    redisFreeCommand(cmd);

    p = &link->pending[(link->head + link->n) % NGX_HTTP_MQTTAPI_SYNC_PENDING];
    link->n++;

    p->handler = handler;
    p->data = data;
    p->sent = ngx_current_msec;
    p->op = op;

    if (link->connecting || link->handshaking) {
        return NGX_OK;
    }

    ngx_http_mqttapi_sync_link_timer(link);

    if (ngx_http_mqttapi_sync_link_flush(link) != NGX_OK) {
        /* the caller learns it from the reply: handled after this call */
        ngx_post_event(link->pc.connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mqttapi_sync_link_flush(ngx_http_mqttapi_sync_link_t *link)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = link->pc.connection;

    while (link->sent < link->len) {
        n = c->send(c, link->out + link->sent, link->len - link->sent);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        link->sent += n;
    }

    if (link->sent == link->len) {
        link->sent = 0;
        link->len = 0;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_mqttapi_sync_link_timer(ngx_http_mqttapi_sync_link_t *link)
{
    ngx_event_t  *rev;

    /* the oldest command waiting for its reply sets the deadline */

    rev = link->pc.connection->read;

    if (link->n == 0) {
        if (rev->timer_set) {
            ngx_del_timer(rev);
        }

        return;
    }

    if (!rev->timer_set) {
        ngx_add_timer(rev, link->task->conf->timeout);
    }
}


static void
ngx_http_mqttapi_sync_link_write(ngx_event_t *wev)
{
    int                            err;
    socklen_t                      len;
    ngx_connection_t              *c;
    ngx_http_mqttapi_sync_link_t  *link;

    c = wev->data;
    link = c->data;

    if (wev->timedout) {
        ngx_http_mqttapi_sync_link_fail(link, "%s connection to %V timed out",
                                        link->name, &link->addr->name);
        return;
    }

    if (link->connecting) {
        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_http_mqttapi_sync_link_fail(link,
                                            "%s connection to %V failed (%d)",
                                            link->name, &link->addr->name,
                                            err);
            return;
        }

        link->connecting = 0;

#if (NGX_SSL)
        if (link->task->conf->ssl && !link->plain) {
            ngx_http_mqttapi_sync_ssl_connect(link);
            return;
        }
#endif

        ngx_http_mqttapi_sync_link_timer(link);
    }

    if (ngx_http_mqttapi_sync_link_flush(link) != NGX_OK) {
        ngx_http_mqttapi_sync_link_fail(link,
                                        "%s connection to %V: send failed",
                                        link->name, &link->addr->name);
    }
}


/* the TLS handshake is done: the link's own handlers, and what waits */

void
ngx_http_mqttapi_sync_link_ready(ngx_http_mqttapi_sync_link_t *link)
{
    ngx_connection_t  *c;

    c = link->pc.connection;

    c->read->handler = ngx_http_mqttapi_sync_link_read;
    c->write->handler = ngx_http_mqttapi_sync_link_write;

    ngx_http_mqttapi_sync_link_timer(link);
    ngx_http_mqttapi_sync_link_write(c->write);
}


static void
ngx_http_mqttapi_sync_link_read(ngx_event_t *rev)
{
    ssize_t                        n;
    ngx_connection_t              *c;
    ngx_http_mqttapi_sync_link_t  *link;
    u_char                         buf[16384];

    c = rev->data;
    link = c->data;

    if (rev->timedout) {
        ngx_http_mqttapi_sync_link_fail(link, "%V did not answer on the %s "
                                        "connection within %M ms",
                                        &link->addr->name, link->name,
                                        link->task->conf->timeout);
        return;
    }

    if (link->connecting || link->handshaking) {
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_mqttapi_sync_link_fail(link, "%V closed the %s connection",
                                            &link->addr->name, link->name);
            return;
        }

        if (redisReaderFeed(link->reader, (const char *) buf, n)
            != REDIS_OK
            || link->reader->len - link->reader->pos
               > NGX_HTTP_MQTTAPI_SYNC_MAX_REPLY)
        {
            ngx_http_mqttapi_sync_link_fail(link, "%V sent too much on the %s "
                                            "connection", &link->addr->name,
                                            link->name);
            return;
        }

        if (ngx_http_mqttapi_sync_link_replies(link) != NGX_OK) {
            /* the session is closed: the link is no more */
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_mqttapi_sync_link_fail(link,
                                        "%s connection: read event failed",
                                        link->name);
    }
}


static ngx_int_t
ngx_http_mqttapi_sync_link_replies(ngx_http_mqttapi_sync_link_t *link)
{
    void                             *reply;
    ngx_http_mqttapi_sync_pending_t   p;

    for ( ;; ) {
        reply = NULL;

        if (redisReaderGetReply(link->reader, &reply) != REDIS_OK) {
            ngx_http_mqttapi_sync_link_fail(link, "invalid reply on the %s "
                                            "connection: %s", link->name,
                                            link->reader->errstr);
            return NGX_ERROR;
        }

        if (reply == NULL) {
            return NGX_OK;
        }

        if (!ngx_http_mqttapi_sync_owner(link->task)) {
            /* this worker stalled and lost the task: nothing is applied */
            freeReplyObject(reply);
            ngx_http_mqttapi_sync_release(link->task);
            return NGX_ERROR;
        }

        if (link->n == 0) {
            if (link->push == NULL) {
                freeReplyObject(reply);
                ngx_http_mqttapi_sync_link_fail(link, "a reply nobody asked "
                                                "for on the %s connection",
                                                link->name);
                return NGX_ERROR;
            }

            link->push(link->task, reply, NULL);
            freeReplyObject(reply);

            if (link->pc.connection == NULL) {
                return NGX_ERROR;
            }

            continue;
        }

        p = link->pending[link->head];
        link->head = (link->head + 1) % NGX_HTTP_MQTTAPI_SYNC_PENDING;
        link->n--;

        ngx_http_mqttapi_sync_roundtrip(link->task, p.sent);

        /* the next command's deadline counts from now */

        if (link->pc.connection->read->timer_set) {
            ngx_del_timer(link->pc.connection->read);
        }

        ngx_http_mqttapi_sync_link_timer(link);

        if (p.handler) {
            p.handler(link->task, reply, p.data);
        }

        freeReplyObject(reply);

        if (link->pc.connection == NULL) {
            /* the handler closed the session */
            return NGX_ERROR;
        }
    }
}


/* the connection failed: the link's own handler, or the session's end */

static void
ngx_http_mqttapi_sync_link_fail(ngx_http_mqttapi_sync_link_t *link,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    buf[NGX_MAX_ERROR_STR];

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    if (link->lost) {
        link->lost(link, buf, p - buf);
        return;
    }

    if (ngx_http_mqttapi_sync_owner(link->task)) {
        /* Redis out of reach, no longer refusing writes */
        link->task->conf->sh->refused = 0;
    }

    ngx_http_mqttapi_sync_fail(link->task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                               "%*s", (size_t) (p - buf), buf);
}
