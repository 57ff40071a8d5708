
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * The background task.  Every worker arms a cancelable timer; the first
 * whose tick finds no live owner in shared memory takes the task (a
 * compare-and-swap of the owner's pid), and keeps it while it ticks; when
 * it exits it gives the task back, and if it dies the others see its
 * heartbeat stop and one of them takes over.  The owner connects to Redis
 * (a command and a subscriber connection), loads the scripts, and on each
 * tick hands the outbox's events to the back-off and quota parts,
 * reconciles and beats.  Any failure closes both connections and
 * reconnects after a growing, jittered delay; meanwhile requests go on
 * with the node's own state.
 */


static void ngx_http_mqttapi_sync_tick(ngx_event_t *ev);
static void ngx_http_mqttapi_sync_work(ngx_http_mqttapi_sync_task_t *task);
static void ngx_http_mqttapi_sync_outbox(ngx_http_mqttapi_sync_task_t *task);
static void ngx_http_mqttapi_sync_connect(ngx_http_mqttapi_sync_task_t *task);
static ngx_int_t ngx_http_mqttapi_sync_auth(ngx_http_mqttapi_sync_link_t *link,
    ngx_str_t *user, ngx_str_t *password);
static void ngx_http_mqttapi_sync_handshake(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_hello(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_subscribe(
    ngx_http_mqttapi_sync_task_t *task);
static void ngx_http_mqttapi_sync_setup_step(
    ngx_http_mqttapi_sync_task_t *task);
static ngx_int_t ngx_http_mqttapi_sync_load(
    ngx_http_mqttapi_sync_task_t *task, ngx_uint_t handshake);
static void ngx_http_mqttapi_sync_beat(ngx_http_mqttapi_sync_task_t *task);
static void ngx_http_mqttapi_sync_beat_reply(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);
static void ngx_http_mqttapi_sync_accepted(
    ngx_http_mqttapi_sync_task_t *task);
static size_t ngx_http_mqttapi_sync_reply_text(redisReply *reply);
static void ngx_http_mqttapi_sync_log(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t op, const char *fmt, va_list args);


static ngx_http_mqttapi_sync_task_t  *ngx_http_mqttapi_sync_the_task;

static ngx_msec_t  ngx_http_mqttapi_sync_rtt_bounds[] = {
    1, 5, 10, 25, 50, 100, 500
};


ngx_int_t
ngx_http_mqttapi_sync_init_process(ngx_cycle_t *cycle)
{
    u_char                        *p;
    ngx_http_mqttapi_sync_task_t  *task;
    ngx_http_mqttapi_sync_conf_t  *scf;
    ngx_http_mqttapi_main_conf_t  *mcf;

    ngx_http_mqttapi_sync_the_task = NULL;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_mqttapi_module);

    if (mcf == NULL || mcf->sync == NULL) {
        return NGX_OK;
    }

    scf = mcf->sync;

    task = ngx_pcalloc(cycle->pool, sizeof(ngx_http_mqttapi_sync_task_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    task->conf = scf;
    task->log = cycle->log;

    task->channel.len = scf->prefix.len + sizeof("events") - 1;
    task->channel.data = ngx_pnalloc(cycle->pool, task->channel.len);
    if (task->channel.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(task->channel.data, scf->prefix.data, scf->prefix.len);
    ngx_memcpy(p, "events", sizeof("events") - 1);

    ngx_http_mqttapi_sync_backoff_init(task);

    task->cmd.task = task;
    task->cmd.name = "command";
    task->cmd.addr = &task->master;
    task->sub.task = task;
    task->sub.name = "subscriber";
    task->sub.addr = &task->master;
    task->sub.push = ngx_http_mqttapi_sync_backoff_message;

    task->name = scf->name;

    if (scf->sentinels) {
        ngx_http_mqttapi_sync_sentinel_init(task);

    } else {
        task->master.sockaddr = scf->sockaddr;
        task->master.socklen = scf->socklen;
        task->master.name = scf->name;
        task->master_known = 1;
    }

    task->tick.handler = ngx_http_mqttapi_sync_tick;
    task->tick.data = task;
    task->tick.log = cycle->log;
    task->tick.cancelable = 1;

    if (ngx_http_mqttapi_sync_grant_init(task, cycle->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_add_timer(&task->tick, 1 + ngx_random() % scf->interval);

    ngx_http_mqttapi_sync_the_task = task;

    return NGX_OK;
}


void
ngx_http_mqttapi_sync_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_mqttapi_sync_task_t  *task;

    task = ngx_http_mqttapi_sync_the_task;

    if (task == NULL || !task->owner) {
        return;
    }

    /*
     * the connections go, and another worker (or node) takes the task,
     * given back only if this worker still holds it
     */

    ngx_http_mqttapi_sync_close(task);

#if (NGX_SSL)
    ngx_http_mqttapi_sync_ssl_free(task);
#endif

    (void) ngx_atomic_cmp_set(&task->conf->sh->owner, ngx_pid, 0);

    task->owner = 0;
}


static void
ngx_http_mqttapi_sync_tick(ngx_event_t *ev)
{
    ngx_pid_t                      pid;
    ngx_msec_t                     now;
    ngx_http_mqttapi_sync_sh_t    *sh;
    ngx_http_mqttapi_sync_task_t  *task;

    task = ev->data;
    sh = task->conf->sh;
    now = ngx_current_msec;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_http_mqttapi_sync_exit_process((ngx_cycle_t *) ngx_cycle);
        return;
    }

    if (task->owner && !ngx_http_mqttapi_sync_owner(task)) {
        ngx_http_mqttapi_sync_release(task);
    }

    if (!task->owner) {
        pid = (ngx_pid_t) sh->owner;

        if ((pid == 0
             || (ngx_msec_int_t) (now - sh->beat)
                > (ngx_msec_int_t) (3 * task->conf->interval + 1000))
            && ngx_atomic_cmp_set(&sh->owner, pid, ngx_pid))
        {
            ngx_log_error(NGX_LOG_NOTICE, task->log, 0,
                          "mqttapi sync: this worker runs the sync task");

            task->owner = 1;
            task->rescan = 1;
            task->retry_at = now;
            task->retry_delay = 0;
            sh->beat = now;
            sh->up = 0;
        }
    }

    if (task->owner) {
        sh->beat = now;
        ngx_http_mqttapi_sync_work(task);
    }

    ngx_add_timer(ev, task->conf->interval);
}


static void
ngx_http_mqttapi_sync_work(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_msec_t  now;

    now = ngx_current_msec;

    if (task->state == NGX_HTTP_MQTTAPI_SYNC_DOWN
        && (ngx_msec_int_t) (now - task->retry_at) >= 0)
    {
        ngx_http_mqttapi_sync_connect(task);
    }

    ngx_http_mqttapi_sync_outbox(task);

    if (task->rescan) {
        task->rescan = 0;
        ngx_http_mqttapi_sync_backoff_scan(task);
    }

    if (task->state != NGX_HTTP_MQTTAPI_SYNC_READY) {
        return;
    }

    ngx_http_mqttapi_sync_backoff_tick(task);
    ngx_http_mqttapi_sync_grant_tick(task, 1);

    if ((ngx_msec_int_t) (now - task->beat_at) >= 0) {
        task->beat_at = now + NGX_HTTP_MQTTAPI_SYNC_BEAT;
        ngx_http_mqttapi_sync_beat(task);
    }

    if ((ngx_msec_int_t) (now - task->reconcile_at) >= 0) {
        task->reconcile_at = now + NGX_HTTP_MQTTAPI_SYNC_RECONCILE;
        ngx_http_mqttapi_sync_backoff_reconcile(task);
    }
}


static void
ngx_http_mqttapi_sync_outbox(ngx_http_mqttapi_sync_task_t *task)
{
    uint32_t                       *ids;
    ngx_uint_t                      i, n, z;
    ngx_http_mqttapi_sync_sh_t     *sh;
    ngx_http_mqttapi_sync_event_t   ev;

    sh = task->conf->sh;

    /* one event at a time: the lock is the requests' too */

    for (n = 0; n < NGX_HTTP_MQTTAPI_SYNC_OUTBOX; n++) {

        ngx_shmtx_lock(&task->conf->shpool->mutex);

        if (sh->overflow) {
            sh->overflow = 0;
            task->rescan = 1;
        }

        if (sh->n == 0) {
            ngx_shmtx_unlock(&task->conf->shpool->mutex);
            break;
        }

        i = sh->head;
        ev = sh->outbox[i];
        sh->head = (i + 1) % NGX_HTTP_MQTTAPI_SYNC_OUTBOX;
        sh->n--;

        ngx_shmtx_unlock(&task->conf->shpool->mutex);

        if (ev.len > NGX_HTTP_MQTTAPI_KEY_MAX_LEN) {
            continue;
        }

        /* the zone by its name: the event may be an older worker's */

        ids = task->conf->zone_ids.elts;

        for (z = 0; z < task->conf->zone_ids.nelts; z++) {
            if (ids[z] == ev.zone_id) {
                break;
            }
        }

        if (z == task->conf->zone_ids.nelts) {
            /* a zone this configuration no longer syncs */
            continue;
        }

        ev.zone = (u_char) z;

        ngx_http_mqttapi_sync_backoff_event(task, &ev);
    }
}


static void
ngx_http_mqttapi_sync_connect(ngx_http_mqttapi_sync_task_t *task)
{
    if (!task->master_known) {
        /* Sentinel: which Redis is the master now, first */
        ngx_http_mqttapi_sync_sentinel_ask(task);
        return;
    }

    ngx_http_mqttapi_sync_connect_master(task);
}


void
ngx_http_mqttapi_sync_connect_master(ngx_http_mqttapi_sync_task_t *task)
{
    const char                    *argv[3];
    size_t                         argvlen[3];
    u_char                         db[NGX_INT_T_LEN];
    ngx_http_mqttapi_sync_conf_t  *scf;

    scf = task->conf;

    if (ngx_http_mqttapi_sync_link_connect(&task->cmd) != NGX_OK
        || ngx_http_mqttapi_sync_link_connect(&task->sub) != NGX_OK)
    {
        task->state = NGX_HTTP_MQTTAPI_SYNC_HANDSHAKE;
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "cannot connect to %V", &task->name);
        return;
    }

    task->state = NGX_HTTP_MQTTAPI_SYNC_HANDSHAKE;
    task->handshake = 0;

    if (scf->password.len) {
        if (ngx_http_mqttapi_sync_auth(&task->cmd, &scf->user, &scf->password)
            != NGX_OK
            || ngx_http_mqttapi_sync_auth(&task->sub, &scf->user,
                                          &scf->password)
               != NGX_OK)
        {
            goto failed;
        }

        task->handshake += 2;
    }

    if (scf->db) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%i", scf->db) - db;

        if (ngx_http_mqttapi_sync_link_send(&task->cmd,
                                     NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT, 2,
                                     argv, argvlen,
                                     ngx_http_mqttapi_sync_handshake, NULL)
            != NGX_OK)
        {
            goto failed;
        }

        task->handshake++;
    }

    /* what the server is: checked in sync_hello */

    argv[0] = "HELLO";
    argvlen[0] = 5;

    if (ngx_http_mqttapi_sync_link_send(&task->cmd,
                                     NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT, 1,
                                     argv, argvlen,
                                     ngx_http_mqttapi_sync_hello, NULL)
        != NGX_OK)
    {
        goto failed;
    }

    task->handshake++;

    if (ngx_http_mqttapi_sync_load(task, 1) != NGX_OK) {
        goto failed;
    }

    /* SUBSCRIBE: a step of its own, sent once HELLO has been answered */

    task->handshake++;

    return;

failed:

    ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                               "cannot send to %V", &task->name);
}


/* AUTH [user] password, as the setup's first command of a connection */

static ngx_int_t
ngx_http_mqttapi_sync_auth(ngx_http_mqttapi_sync_link_t *link,
    ngx_str_t *user, ngx_str_t *password)
{
    int          argc;
    const char  *argv[3];
    size_t       argvlen[3];

    argc = 0;
    argv[argc] = "AUTH";
    argvlen[argc++] = 4;

    if (user->len) {
        argv[argc] = (const char *) user->data;
        argvlen[argc++] = user->len;
    }

    argv[argc] = (const char *) password->data;
    argvlen[argc++] = password->len;

    return ngx_http_mqttapi_sync_link_send(link,
                                           NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                           argc, argv, argvlen,
                                           ngx_http_mqttapi_sync_handshake,
                                           NULL);
}


/*
 * HELLO (no protocol change: RESP2 stays): the server and its version,
 * once per connection.  Older than 6.2 (or no HELLO at all, before 6.0)
 * is said in the log and tried anyway; a Sentinel or a replica is no
 * place for the fleet's state.
 */

static void
ngx_http_mqttapi_sync_hello(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_http_mqttapi_sync_hello_t  h;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if ((reply->len >= 6 && ngx_strncmp(reply->str, "NOAUTH", 6) == 0)
            || (reply->len >= 9
                && ngx_strncmp(reply->str, "WRONGPASS", 9) == 0))
        {
            /* the setup's error line */
            ngx_http_mqttapi_sync_handshake(task, reply, NULL);
            return;
        }

        ngx_cpystrn(task->server, (u_char *) "version unknown",
                    sizeof(task->server));

        if (ngx_strnstr((u_char *) reply->str, "unknown command",
                        reply->len))
        {
            ngx_log_error(NGX_LOG_WARN, task->log, 0,
                          "mqttapi sync: %V does not know HELLO: it is "
                          "older than Redis 6.2, which mqttapi_sync needs "
                          "(or a proxy that does not pass HELLO on)",
                          &task->name);

        } else {
            /* a proxy's own words, an ACL user without +hello */
            ngx_log_error(NGX_LOG_WARN, task->log, 0,
                          "mqttapi sync: %V refused HELLO: \"%*s\"; its "
                          "version is not checked (mqttapi_sync needs "
                          "Redis 6.2 or newer)", &task->name,
                          ngx_http_mqttapi_sync_reply_text(reply),
                          reply->str);
        }

        ngx_http_mqttapi_sync_subscribe(task);
        return;
    }

    if (ngx_http_mqttapi_sync_parse_hello(reply, &h) != NGX_OK) {
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "unexpected reply to HELLO");
        return;
    }

    ngx_snprintf(task->server, sizeof(task->server) - 1, "%V %V%Z",
                 &h.server, &h.version);

    if (h.mode.len == 8 && ngx_strncmp(h.mode.data, "sentinel", 8) == 0) {
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "%V is a Sentinel, not a Redis (use "
                                   "\"sentinel=\" and \"master=\")",
                                   &task->name);
        return;
    }

    if (h.role.len && !(h.role.len == 6
                        && ngx_strncmp(h.role.data, "master", 6) == 0))
    {
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "%V is a %V, not a master: it cannot "
                                   "hold the fleet's state",
                                   &task->name, &h.role);
        return;
    }

    if (h.major < 6 || (h.major == 6 && h.minor < 2)) {
        ngx_log_error(NGX_LOG_WARN, task->log, 0,
                      "mqttapi sync: %V runs %V %V, older than the Redis "
                      "6.2 that mqttapi_sync needs", &task->name,
                      &h.server, &h.version);
    }

    ngx_http_mqttapi_sync_subscribe(task);
}


/*
 * The subscriber's SUBSCRIBE goes out once HELLO is answered: a server
 * that is no place for the fleet's state is told by HELLO's line, not by
 * whatever it answers to SUBSCRIBE first (the log takes one line a
 * second)
 */

static void
ngx_http_mqttapi_sync_subscribe(ngx_http_mqttapi_sync_task_t *task)
{
    const char  *argv[2];
    size_t       argvlen[2];

    argv[0] = "SUBSCRIBE";
    argvlen[0] = 9;
    argv[1] = (const char *) task->channel.data;
    argvlen[1] = task->channel.len;

    if (ngx_http_mqttapi_sync_link_send(&task->sub,
                                     NGX_HTTP_MQTTAPI_SYNC_OP_PUBSUB, 2,
                                     argv, argvlen,
                                     ngx_http_mqttapi_sync_handshake,
                                     (void *) (uintptr_t)
                                         NGX_HTTP_MQTTAPI_SYNC_SUBSCRIBE)
        != NGX_OK)
    {
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "cannot send to %V", &task->name);
        return;
    }

    ngx_http_mqttapi_sync_setup_step(task);
}


static ngx_int_t
ngx_http_mqttapi_sync_load(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t handshake)
{
    ngx_uint_t   i;
    const char  *argv[3];
    size_t       argvlen[3];

    argv[0] = "SCRIPT";
    argvlen[0] = 6;
    argv[1] = "LOAD";
    argvlen[1] = 4;

    for (i = 0; i < NGX_HTTP_MQTTAPI_SCRIPTS; i++) {
        argv[2] = ngx_http_mqttapi_sync_scripts[i];
        argvlen[2] = ngx_strlen(argv[2]);

        if (ngx_http_mqttapi_sync_link_send(&task->cmd,
                                     NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT, 3,
                                     argv, argvlen,
                                     ngx_http_mqttapi_sync_handshake,
                                     (void *) (uintptr_t) (i + 1))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        task->handshake += handshake;
    }

    return NGX_OK;
}


static void
ngx_http_mqttapi_sync_handshake(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_uint_t  script;

    if (reply == NULL) {
        return;
    }

    script = (uintptr_t) data;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "%V refused the connection's setup: "
                                   "\"%*s\"", &task->name,
                                   ngx_http_mqttapi_sync_reply_text(reply),
                                   reply->str);
        return;
    }

    if (script == NGX_HTTP_MQTTAPI_SYNC_SUBSCRIBE) {
        if (ngx_http_mqttapi_sync_parse_subscribe(reply, &task->channel)
            != NGX_OK)
        {
            ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_PUBSUB,
                                       "unexpected reply to SUBSCRIBE");
            return;
        }

    } else if (script) {
        if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
            ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                       "unexpected reply to SCRIPT LOAD");
            return;
        }

        ngx_memcpy(task->sha[script - 1], reply->str, 40);
        task->sha[script - 1][40] = '\0';
    }

    ngx_http_mqttapi_sync_setup_step(task);
}


/* one more step of the connection's setup done; after the last, ready */

static void
ngx_http_mqttapi_sync_setup_step(ngx_http_mqttapi_sync_task_t *task)
{
    if (task->state != NGX_HTTP_MQTTAPI_SYNC_HANDSHAKE
        || task->handshake == 0 || --task->handshake)
    {
        return;
    }

    /*
     * Ready to send, but "up" (the fleet's quotas) only once Redis has
     * accepted a write, the heartbeat's (ngx_http_mqttapi_sync_accepted):
     * a Redis that refuses writes (maxmemory, a replica) takes SCRIPT
     * LOAD and SUBSCRIBE all the same.  Then push what was learnt
     * meanwhile, and read what the fleet knows.
     */

    task->state = NGX_HTTP_MQTTAPI_SYNC_READY;

    task->beat_at = ngx_current_msec + NGX_HTTP_MQTTAPI_SYNC_BEAT;
    task->reconcile_at = ngx_current_msec + NGX_HTTP_MQTTAPI_SYNC_RECONCILE;

    ngx_http_mqttapi_sync_beat(task);
    ngx_http_mqttapi_sync_backoff_tick(task);
    ngx_http_mqttapi_sync_backoff_reconcile(task);
}


/*
 * Whether this worker still runs the task: one that stalled (SIGSTOP, CPU
 * throttling, swapping) longer than the heartbeat allows finds another
 * worker in its place when it resumes
 */

ngx_uint_t
ngx_http_mqttapi_sync_owner(ngx_http_mqttapi_sync_task_t *task)
{
    return task->owner && (ngx_pid_t) task->conf->sh->owner == ngx_pid;
}


/*
 * The task was lost to another worker: this worker closes its own
 * connections and forgets its own list, and touches nothing shared (the
 * node's session state is the new owner's)
 */

void
ngx_http_mqttapi_sync_release(ngx_http_mqttapi_sync_task_t *task)
{
    if (!task->owner) {
        return;
    }

    task->owner = 0;

    ngx_log_error(NGX_LOG_NOTICE, task->log, 0,
                  "mqttapi sync: another worker took over the sync task");

    ngx_http_mqttapi_sync_close(task);
}


void
ngx_http_mqttapi_sync_close(ngx_http_mqttapi_sync_task_t *task)
{
    task->state = NGX_HTTP_MQTTAPI_SYNC_DOWN;

    if (ngx_http_mqttapi_sync_owner(task)) {
        task->conf->sh->up = 0;
    }

    ngx_http_mqttapi_sync_link_close(&task->cmd);
    ngx_http_mqttapi_sync_link_close(&task->sub);
    ngx_http_mqttapi_sync_link_close(&task->sen);

    ngx_http_mqttapi_sync_backoff_drop(task);
}


void
ngx_http_mqttapi_sync_fail(ngx_http_mqttapi_sync_task_t *task, ngx_uint_t op,
    const char *fmt, ...)
{
    va_list     args;
    ngx_msec_t  delay;

    if (task->state == NGX_HTTP_MQTTAPI_SYNC_DOWN) {
        return;
    }

    if (!ngx_http_mqttapi_sync_owner(task)) {
        /* a worker that lost the task: no counter, no log line */
        ngx_http_mqttapi_sync_release(task);
        return;
    }

    va_start(args, fmt);
    ngx_http_mqttapi_sync_log(task, op, fmt, args);
    va_end(args);

    ngx_http_mqttapi_sync_close(task);

    if (task->conf->sentinels) {
        /* the next try asks the sentinels again */
        task->master_known = 0;
    }

    /* reconnect after a doubling delay, half of it jitter */

    delay = task->retry_delay ? task->retry_delay * 2
                              : task->conf->interval;
    delay = ngx_min(delay, NGX_HTTP_MQTTAPI_SYNC_MAX_RETRY);

    task->retry_delay = delay;
    task->retry_at = ngx_current_msec + delay / 2
                     + ngx_random() % (delay / 2 + 1);
}


void
ngx_http_mqttapi_sync_error(ngx_http_mqttapi_sync_task_t *task, ngx_uint_t op,
    const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_http_mqttapi_sync_log(task, op, fmt, args);
    va_end(args);
}


static void
ngx_http_mqttapi_sync_log(ngx_http_mqttapi_sync_task_t *task, ngx_uint_t op,
    const char *fmt, va_list args)
{
    u_char      *p;
    ngx_msec_t   now;
    u_char       buf[NGX_MAX_ERROR_STR];

    (void) ngx_atomic_fetch_add(&task->conf->sh->errors[op], 1);

    /* once per interval at most: a broken Redis does not flood the log */

    now = ngx_current_msec;

    if (task->logged_at
        && (ngx_msec_int_t) (now - task->logged_at)
           < (ngx_msec_int_t) ngx_max(task->conf->interval, 1000))
    {
        return;
    }

    task->logged_at = now ? now : 1;

    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);

    ngx_log_error(NGX_LOG_ERR, task->log, 0, "mqttapi sync: %*s",
                  (size_t) (p - buf), buf);
}


void
ngx_http_mqttapi_sync_roundtrip(ngx_http_mqttapi_sync_task_t *task,
    ngx_msec_t sent)
{
    ngx_uint_t                   i;
    ngx_msec_t                   rtt;
    ngx_http_mqttapi_sync_sh_t  *sh;

    sh = task->conf->sh;
    rtt = ngx_current_msec - sent;

    for (i = 0; i < NGX_HTTP_MQTTAPI_SYNC_RTT_BUCKETS - 1; i++) {
        if (rtt <= ngx_http_mqttapi_sync_rtt_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&sh->rtt[i], 1);
    (void) ngx_atomic_fetch_add(&sh->rtt_count, 1);
    (void) ngx_atomic_fetch_add(&sh->rtt_sum, rtt * 1000);
}


ngx_int_t
ngx_http_mqttapi_sync_eval(ngx_http_mqttapi_sync_task_t *task, ngx_uint_t op,
    ngx_uint_t script, int nkeys, int argc, ngx_str_t *args,
    ngx_http_mqttapi_sync_reply_pt handler, void *data)
{
    int          i;
    u_char       n[NGX_INT_T_LEN];
    const char  *argv[16];
    size_t       argvlen[16];

    if (task->state != NGX_HTTP_MQTTAPI_SYNC_READY || argc > 13) {
        return NGX_DECLINED;
    }

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = task->sha[script];
    argvlen[1] = 40;
    argv[2] = (const char *) n;
    argvlen[2] = ngx_sprintf(n, "%d", nkeys) - n;

    for (i = 0; i < argc; i++) {
        argv[3 + i] = (const char *) args[i].data;
        argvlen[3 + i] = args[i].len;
    }

    return ngx_http_mqttapi_sync_link_send(&task->cmd, op, argc + 3, argv,
                                           argvlen, handler, data);
}


/*
 * "<prefix>{<zone>}:<part><key>", in a buffer of NGX_HTTP_MQTTAPI_SYNC_KEY:
 * the zone's name is the hash tag of all its keys (Redis Cluster's slot),
 * so that one script call on one zone's keys stays in one slot
 */

ngx_int_t
ngx_http_mqttapi_sync_key(ngx_http_mqttapi_sync_task_t *task, ngx_str_t *out,
    ngx_uint_t zone, const char *part, u_char *key, size_t len)
{
    u_char                    *p, *last;
    ngx_http_mqttapi_zone_t  **zones;

    zones = task->conf->zones.elts;

    p = out->data;
    last = p + NGX_HTTP_MQTTAPI_SYNC_KEY;

    p = ngx_slprintf(p, last, "%V{%V}:%s", &task->conf->prefix,
                     &zones[zone]->shm_zone->shm.name, part);

    if ((size_t) (last - p) < len) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, key, len);

    out->len = p - out->data;

    return NGX_OK;
}


/*
 * Every reply of the session's commands goes through here first.  NGX_OK:
 * a reply to read; NGX_DECLINED: none (the connection closed); NGX_ERROR:
 * an error reply.  Scripts Redis forgot (a restart, SCRIPT FLUSH) are
 * loaded again.  Any other error to a command of the task, which all
 * write (OOM under maxmemory, READONLY from a replica, MISCONF, LOADING,
 * BUSY...), means Redis is unusable: the session ends as if Redis were
 * down, "fail=" applies, and the task reconnects after its growing delay;
 * the node is "up" again once Redis accepts a write.
 */

ngx_int_t
ngx_http_mqttapi_sync_reply_error(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t op, redisReply *reply)
{
    ngx_http_mqttapi_sync_sh_t  *sh;

    if (reply == NULL) {
        return NGX_DECLINED;
    }

    if (reply->type != REDIS_REPLY_ERROR) {
        return NGX_OK;
    }

    if (reply->len >= 8 && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        (void) ngx_http_mqttapi_sync_load(task, 0);

        ngx_http_mqttapi_sync_error(task, op, "%V answered \"%*s\"",
                                    &task->name,
                                    ngx_http_mqttapi_sync_reply_text(reply),
                                    reply->str);
        return NGX_ERROR;
    }

    sh = task->conf->sh;

    if (sh->refused && !sh->up) {
        /* still refused since the last reconnect: logged already */
        task->logged_at = ngx_current_msec ? ngx_current_msec : 1;

    } else if (ngx_http_mqttapi_sync_owner(task)) {
        sh->refused = 1;
        task->logged_at = 0;
    }

    if ((reply->len > 6 && ngx_strncmp(reply->str, "MOVED ", 6) == 0)
        || (reply->len > 4 && ngx_strncmp(reply->str, "ASK ", 4) == 0))
    {
        /* a bare Cluster node that does not serve the zone's slot */
        ngx_http_mqttapi_sync_fail(task, op, "Redis Cluster needs a proxy: "
                                   "%V answered \"%*s\" (mqttapi_sync "
                                   "does not follow Cluster redirections)",
                                   &task->name,
                                   ngx_http_mqttapi_sync_reply_text(reply),
                                   reply->str);
        return NGX_ERROR;
    }

    /*
     * READONLY: a replica now (a failover), Sentinel names the new master
     * before the next connection
     */

    ngx_http_mqttapi_sync_fail(task, op, "%V refused a command, the node "
                               "goes on with its own state until Redis "
                               "accepts writes: \"%*s\"%s", &task->name,
                               ngx_http_mqttapi_sync_reply_text(reply),
                               reply->str,
                               (task->conf->sentinels && reply->len >= 8
                                && ngx_strncmp(reply->str, "READONLY", 8)
                                   == 0)
                               ? "; it is no longer the master, asking the "
                                 "sentinels"
                               : "");

    return NGX_ERROR;
}


/* Redis accepted a write: the fleet's state is in use again */

static void
ngx_http_mqttapi_sync_accepted(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_http_mqttapi_sync_sh_t  *sh;

    sh = task->conf->sh;

    task->retry_delay = 0;

    sh->up = 1;

    if (sh->refused) {
        sh->refused = 0;

        ngx_log_error(NGX_LOG_NOTICE, task->log, 0,
                      "mqttapi sync: %V accepts writes again", &task->name);
    }

    ngx_log_error(NGX_LOG_NOTICE, task->log, 0,
                  "mqttapi sync: connected to %V (%s%s)", &task->name,
                  task->server, task->tls);
}


/*
 * How much of an error reply is logged: at most 200 bytes, and nothing of
 * the arguments that Redis quotes back for a command it does not know
 * ("ERR unknown command 'EVALSHA', with args beginning with: ..."), which
 * hold the keys, and so the back-off key (an AccessKeyId).
 */

static size_t
ngx_http_mqttapi_sync_reply_text(redisReply *reply)
{
    size_t   len;
    u_char  *p;

    len = ngx_min(reply->len, 200);

    p = ngx_strnstr((u_char *) reply->str, " with args", len);
    if (p) {
        len = p - (u_char *) reply->str;
    }

    return len;
}


static void
ngx_http_mqttapi_sync_beat(ngx_http_mqttapi_sync_task_t *task)
{
    ngx_str_t  args[3];
    u_char     key[NGX_HTTP_MQTTAPI_SYNC_KEY];
    u_char     alive[NGX_INT_T_LEN];

    /* "<prefix>nodes": a sorted set of node ids by their last beat */

    args[0].data = key;
    args[0].len = ngx_snprintf(key, sizeof(key), "%Vnodes",
                               &task->conf->prefix) - key;

    args[1].data = task->conf->sh->id;
    args[1].len = ngx_strlen(task->conf->sh->id);

    args[2].data = alive;
    args[2].len = ngx_sprintf(alive, "%d", NGX_HTTP_MQTTAPI_SYNC_ALIVE)
                  - alive;

    (void) ngx_http_mqttapi_sync_eval(task, NGX_HTTP_MQTTAPI_SYNC_OP_BEAT,
                                      NGX_HTTP_MQTTAPI_SCRIPT_BEAT, 1, 3, args,
                                      ngx_http_mqttapi_sync_beat_reply, NULL);
}


static void
ngx_http_mqttapi_sync_beat_reply(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data)
{
    ngx_uint_t                   n;
    ngx_msec_t                   now;
    ngx_http_mqttapi_sync_sh_t  *sh;

    if (ngx_http_mqttapi_sync_reply_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_BEAT,
                                          reply)
        != NGX_OK)
    {
        return;
    }

    if (ngx_http_mqttapi_sync_parse_beat(reply, &n, &now) != NGX_OK) {
        ngx_http_mqttapi_sync_error(task, NGX_HTTP_MQTTAPI_SYNC_OP_BEAT,
                                    "unexpected reply to the heartbeat");
        return;
    }

    sh = task->conf->sh;

    if (!sh->up) {
        ngx_http_mqttapi_sync_accepted(task);
    }

    /*
     * Fewer nodes count only once they have been fewer for a while: a
     * Redis restarted empty (or a heartbeat set that lost members) shows
     * one node until the others beat again, and the quotas' credit and
     * fail=local's part would grow meanwhile
     */

    if (n >= sh->nodes) {
        sh->nodes = (ngx_atomic_uint_t) n;
        task->fewer_since = 0;

    } else if (task->fewer_since == 0) {
        task->fewer_since = ngx_current_msec;

    } else if (ngx_current_msec - task->fewer_since
               >= NGX_HTTP_MQTTAPI_SYNC_ALIVE)
    {
        sh->nodes = (ngx_atomic_uint_t) n;
        task->fewer_since = 0;
    }

    /* Redis's clock against this host's, within a roundtrip */

    sh->clock = (ngx_atomic_uint_t) (now - ngx_current_msec);
    sh->clocked = 1;
}
