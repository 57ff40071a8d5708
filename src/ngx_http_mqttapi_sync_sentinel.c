
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * mqttapi_sync sentinel=... master=NAME: before each connection the task
 * asks the sentinels, in turn, where the master is (SENTINEL
 * get-master-addr-by-name, on a connection of its own, plain, in nginx's
 * event loop), stays subscribed to +switch-master on the sentinel that
 * answered, and connects to that address (HELLO then checks that it is a
 * master).  A failover the sentinel announces moves the task to the new
 * master at once; a master that is lost, or that answers READONLY, or a
 * replica, sends it back to the sentinels (ngx_http_mqttapi_sync_fail
 * forgets the master).  The sentinels' addresses are resolved with the
 * configuration; the master's is the IP the sentinels give.
 */


#define NGX_HTTP_MQTTAPI_SENTINEL_AUTH      1
#define NGX_HTTP_MQTTAPI_SENTINEL_MASTER    2
#define NGX_HTTP_MQTTAPI_SENTINEL_SUBSCRIBE 3


static void ngx_http_mqttapi_sync_sentinel_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_sentinel_master(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply);
static void ngx_http_mqttapi_sync_sentinel_message(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_sentinel_lost(
    ngx_http_mqttapi_sync_link_t *link, u_char *msg, size_t len);
static void ngx_http_mqttapi_sync_sentinel_next(
    ngx_http_mqttapi_sync_task_t *task, const char *fmt, ...);
static ngx_int_t ngx_http_mqttapi_sync_sentinel_addr(
    ngx_http_mqttapi_sync_task_t *task, u_char *ip, size_t iplen,
    u_char *port, size_t portlen);


void
ngx_http_mqttapi_sync_sentinel_init(ngx_http_mqttapi_sync_task_t *task)
{
    task->sen.task = task;
    task->sen.name = "sentinel";
    task->sen.plain = 1;
    task->sen.lost = ngx_http_mqttapi_sync_sentinel_lost;
    task->sen.push = ngx_http_mqttapi_sync_sentinel_message;

    /* in the configuration's order; the one that answered is asked first */

    task->sentinel = 0;
    task->master_known = 0;
}


void
ngx_http_mqttapi_sync_sentinel_ask(ngx_http_mqttapi_sync_task_t *task)
{
    int                            argc;
    const char                    *argv[3];
    size_t                         argvlen[3];
    ngx_addr_t                    *addrs;
    ngx_http_mqttapi_sync_conf_t  *scf;

    scf = task->conf;
    addrs = scf->sentinels->elts;

    task->state = NGX_HTTP_MQTTAPI_SYNC_HANDSHAKE;
    task->name = scf->name;
    task->sen.addr = &addrs[task->sentinel];

    if (ngx_http_mqttapi_sync_link_connect(&task->sen) != NGX_OK) {
        ngx_http_mqttapi_sync_sentinel_next(task, "cannot connect");
        return;
    }

    if (scf->sentinel_password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        argv[1] = (const char *) scf->sentinel_password.data;
        argvlen[1] = scf->sentinel_password.len;

        if (ngx_http_mqttapi_sync_link_send(&task->sen,
                                 NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT, 2, argv,
                                 argvlen, ngx_http_mqttapi_sync_sentinel_reply,
                                 (void *) NGX_HTTP_MQTTAPI_SENTINEL_AUTH)
            != NGX_OK)
        {
            ngx_http_mqttapi_sync_sentinel_next(task, "cannot send");
            return;
        }
    }

    argc = 3;
    argv[0] = "SENTINEL";
    argvlen[0] = 8;
    argv[1] = "get-master-addr-by-name";
    argvlen[1] = sizeof("get-master-addr-by-name") - 1;
    argv[2] = (const char *) scf->master.data;
    argvlen[2] = scf->master.len;

    if (ngx_http_mqttapi_sync_link_send(&task->sen,
                                 NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT, argc, argv,
                                 argvlen, ngx_http_mqttapi_sync_sentinel_reply,
                                 (void *) NGX_HTTP_MQTTAPI_SENTINEL_MASTER)
        != NGX_OK)
    {
        ngx_http_mqttapi_sync_sentinel_next(task, "cannot send");
    }
}


static void
ngx_http_mqttapi_sync_sentinel_reply(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_uint_t  step = (uintptr_t) data;

    if (reply == NULL) {
        /* the link closed: its "lost" handler, or the session, said why */
        return;
    }

    switch (step) {

    case NGX_HTTP_MQTTAPI_SENTINEL_AUTH:
        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_http_mqttapi_sync_sentinel_next(task, "refused AUTH: \"%*s\"",
                                                ngx_min(reply->len, 100),
                                                reply->str);
        }

        return;

    case NGX_HTTP_MQTTAPI_SENTINEL_MASTER:
        ngx_http_mqttapi_sync_sentinel_master(task, reply);
        return;

    default: /* NGX_HTTP_MQTTAPI_SENTINEL_SUBSCRIBE */
        if (reply->type == REDIS_REPLY_ERROR) {
            /* a failover is then found by its effects on the master */
            ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_PUBSUB,
                                        "sentinel %V refused SUBSCRIBE "
                                        "+switch-master: \"%*s\"",
                                        &task->sen.addr->name,
                                        ngx_min(reply->len, 100),
                                        reply->str);
            ngx_http_mqttapi_sync_link_close(&task->sen);
        }

        return;
    }
}


/* {ip, port}, or nil for a master the sentinel does not know */

static void
ngx_http_mqttapi_sync_sentinel_master(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply)
{
    const char                    *argv[2];
    size_t                         argvlen[2];
    redisReply                   **e;
    ngx_http_mqttapi_sync_conf_t  *scf;

    scf = task->conf;

    if (reply->type == REDIS_REPLY_NIL) {
        ngx_http_mqttapi_sync_sentinel_next(task, "does not know master "
                                            "\"%V\"", &scf->master);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_mqttapi_sync_sentinel_next(task, "answered \"%*s\"",
                                            ngx_min(reply->len, 100),
                                            reply->str);
        return;
    }

    e = reply->element;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || e[0]->type != REDIS_REPLY_STRING
        || e[1]->type != REDIS_REPLY_STRING
        || ngx_http_mqttapi_sync_sentinel_addr(task, (u_char *) e[0]->str,
                                               e[0]->len,
                                               (u_char *) e[1]->str,
                                               e[1]->len)
           != NGX_OK)
    {
        ngx_http_mqttapi_sync_sentinel_next(task, "gave no address for "
                                            "master \"%V\"", &scf->master);
        return;
    }

    task->asked = 0;

    ngx_log_error(NGX_LOG_NOTICE, task->log, 0,
                  "mqttapi sync: sentinel %V: master \"%V\" is at %V",
                  &task->sen.addr->name, &scf->master, &task->name);

    /* a failover is announced here */

    argv[0] = "SUBSCRIBE";
    argvlen[0] = 9;
    argv[1] = "+switch-master";
    argvlen[1] = sizeof("+switch-master") - 1;

    if (ngx_http_mqttapi_sync_link_send(&task->sen,
                                 NGX_HTTP_MQTTAPI_SYNC_OP_PUBSUB, 2, argv,
                                 argvlen, ngx_http_mqttapi_sync_sentinel_reply,
                                 (void *) NGX_HTTP_MQTTAPI_SENTINEL_SUBSCRIBE)
        != NGX_OK)
    {
        ngx_http_mqttapi_sync_link_close(&task->sen);
    }

    ngx_http_mqttapi_sync_connect_master(task);
}


/*
 * "+switch-master": "<name> <old ip> <old port> <new ip> <new port>"; for
 * this master, the task moves to the new one at once
 */

static void
ngx_http_mqttapi_sync_sentinel_message(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    u_char      *p, *last, *f[5];
    size_t       len[5];
    ngx_uint_t   i;
    redisReply  *m;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    m = reply->element[2];
    p = (u_char *) m->str;
    last = p + m->len;

    for (i = 0; i < 5; i++) {
        f[i] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        len[i] = p - f[i];

        if (p < last) {
            p++;
        }
    }

    if (len[0] != task->conf->master.len
        || ngx_strncmp(f[0], task->conf->master.data, len[0]) != 0)
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, task->log, 0,
                  "mqttapi sync: sentinel %V: master \"%V\" switched from "
                  "%*s:%*s to %*s:%*s", &task->sen.addr->name,
                  &task->conf->master, len[1], f[1], len[2], f[2],
                  len[3], f[3], len[4], f[4]);

    /* to the new master now, not after a back-off */

    ngx_http_mqttapi_sync_close(task);

    task->master_known =
        (ngx_http_mqttapi_sync_sentinel_addr(task, f[3], len[3], f[4],
                                             len[4])
         == NGX_OK);
    task->retry_at = ngx_current_msec;
    task->retry_delay = 0;
}


/* the sentinel's connection failed */

static void
ngx_http_mqttapi_sync_sentinel_lost(ngx_http_mqttapi_sync_link_t *link,
    u_char *msg, size_t len)
{
    ngx_http_mqttapi_sync_task_t  *task;

    task = link->task;

    if (task->master_known) {
        /* the master is known: only +switch-master is no longer heard */
        ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_PUBSUB,
                                    "%*s; a failover is found when the "
                                    "master fails", len, msg);
        ngx_http_mqttapi_sync_link_close(link);
        return;
    }

    ngx_http_mqttapi_sync_sentinel_next(task, "%*s", len, msg);
}


/*
 * This sentinel did not say where the master is: the next one, at once,
 * until each has been asked; then the session fails (and tries again
 * after its back-off), with the last reason
 */

static void
ngx_http_mqttapi_sync_sentinel_next(ngx_http_mqttapi_sync_task_t *task,
    const char *fmt, ...)
{
    u_char      *p, *last;
    va_list      args;
    ngx_uint_t   n;

    p = task->sentinel_err;
    last = p + sizeof(task->sentinel_err) - 1;

    p = ngx_slprintf(p, last, "sentinel %V: ", &task->sen.addr->name);

    va_start(args, fmt);
    p = ngx_vslprintf(p, last, fmt, args);
    va_end(args);

    *p = '\0';

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, task->log, 0, "mqttapi sync: %s",
                   task->sentinel_err);

    ngx_http_mqttapi_sync_link_close(&task->sen);

    n = task->conf->sentinels->nelts;
    task->sentinel = (task->sentinel + 1) % n;

    if (++task->asked < n) {
        ngx_http_mqttapi_sync_sentinel_ask(task);
        return;
    }

    task->asked = 0;

    ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                               "no sentinel gave the address of master "
                               "\"%V\" (the last: %s)", &task->conf->master,
                               task->sentinel_err);
}


/* the master's address, an IP as the sentinels give it */

static ngx_int_t
ngx_http_mqttapi_sync_sentinel_addr(ngx_http_mqttapi_sync_task_t *task,
    u_char *ip, size_t iplen, u_char *port, size_t portlen)
{
    in_addr_t             inaddr;
    ngx_int_t             n;
    ngx_sockaddr_t       *sa;
#if (NGX_HAVE_INET6)
    struct in6_addr       inaddr6;
#endif

    n = ngx_atoi(port, portlen);

    if (n < 1 || n > 65535 || iplen == 0) {
        return NGX_ERROR;
    }

    sa = &task->master_sockaddr;
    ngx_memzero(sa, sizeof(ngx_sockaddr_t));

    inaddr = ngx_inet_addr(ip, iplen);

    if (inaddr != INADDR_NONE) {
        sa->sockaddr_in.sin_family = AF_INET;
        sa->sockaddr_in.sin_addr.s_addr = inaddr;
        task->master.socklen = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(ip, iplen, inaddr6.s6_addr) == NGX_OK) {
        sa->sockaddr_in6.sin6_family = AF_INET6;
        sa->sockaddr_in6.sin6_addr = inaddr6;
        task->master.socklen = sizeof(struct sockaddr_in6);
#endif

    } else {
        return NGX_ERROR;
    }

    ngx_inet_set_port(&sa->sockaddr, (in_port_t) n);

    task->master.sockaddr = &sa->sockaddr;
    task->master.name.data = task->master_text;
    task->master.name.len = ngx_sock_ntop(&sa->sockaddr, task->master.socklen,
                                          task->master_text,
                                          NGX_SOCKADDR_STRLEN, 1);
    task->name = task->master.name;

    return NGX_OK;
}
