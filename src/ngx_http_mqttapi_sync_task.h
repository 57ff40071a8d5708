
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_SYNC_TASK_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_SYNC_TASK_H_INCLUDED_


#include "ngx_http_mqttapi_sync.h"

#include <hiredis/hiredis.h>


/*
 * The background task of one worker per node: its Redis connections (one
 * for commands, one subscribed to the events channel), the back-offs it
 * tracks and the scripts it runs.  Nothing here is touched by a request.
 */


#define NGX_HTTP_MQTTAPI_SYNC_PENDING    1024
#define NGX_HTTP_MQTTAPI_SYNC_TRACKED    4096

/* a reply over this many bytes is hostile */
#define NGX_HTTP_MQTTAPI_SYNC_MAX_REPLY  (4 * 1024 * 1024)

#define NGX_HTTP_MQTTAPI_SYNC_DOWN       0
#define NGX_HTTP_MQTTAPI_SYNC_HANDSHAKE  1
#define NGX_HTTP_MQTTAPI_SYNC_READY      2

#define NGX_HTTP_MQTTAPI_SCRIPT_OPEN     0
#define NGX_HTTP_MQTTAPI_SCRIPT_CLOSE    1
#define NGX_HTTP_MQTTAPI_SCRIPT_PULL     2
#define NGX_HTTP_MQTTAPI_SCRIPT_BEAT     3
#define NGX_HTTP_MQTTAPI_SCRIPT_GRANT    4
#define NGX_HTTP_MQTTAPI_SCRIPTS         5

/* the handshake's reply to SUBSCRIBE, after the scripts' */
#define NGX_HTTP_MQTTAPI_SYNC_SUBSCRIBE  (NGX_HTTP_MQTTAPI_SCRIPTS + 1)

/* a back-off is kept in Redis this long after its end (its count) */
#define NGX_HTTP_MQTTAPI_SYNC_KEEP       60000

/* how long a node keeps the right to probe past the back-off's end */
#define NGX_HTTP_MQTTAPI_SYNC_RIGHT_TTL  2000

/* the heartbeat, and how long a silent node still counts */
#define NGX_HTTP_MQTTAPI_SYNC_BEAT       1000
#define NGX_HTTP_MQTTAPI_SYNC_ALIVE      3000

/* the longest gap between two reconciliations */
#define NGX_HTTP_MQTTAPI_SYNC_RECONCILE  2000

#define NGX_HTTP_MQTTAPI_SYNC_MAX_RETRY  2000

/* the longest Redis key: prefix, zone name, a part and a node's key */
#define NGX_HTTP_MQTTAPI_SYNC_KEY        512


/* a back-off as Redis tells it (a reply, a message) */

typedef struct {
    ngx_str_t                        zone;        /* messages */
    ngx_str_t                        key;
    ngx_str_t                        code;        /* empty: not kept */
    uint32_t                         count;
    ngx_msec_int_t                   left;
    ngx_msec_t                       delay;
    ngx_uint_t                       close;       /* messages */
} ngx_http_mqttapi_sync_backoff_t;


/* what HELLO tells of the server */

typedef struct {
    ngx_str_t                        server;      /* "redis", "valkey" */
    ngx_str_t                        version;
    ngx_str_t                        mode;        /* "standalone", ... */
    ngx_str_t                        role;        /* "master", "replica" */
    ngx_uint_t                       major;
    ngx_uint_t                       minor;
} ngx_http_mqttapi_sync_hello_t;


typedef struct ngx_http_mqttapi_sync_task_s  ngx_http_mqttapi_sync_task_t;
typedef struct ngx_http_mqttapi_sync_link_s  ngx_http_mqttapi_sync_link_t;

/* a reply, or NULL when the connection closed before it came */
typedef void (*ngx_http_mqttapi_sync_reply_pt)(
    ngx_http_mqttapi_sync_task_t *task, redisReply *reply, void *data);


typedef struct {
    ngx_http_mqttapi_sync_reply_pt   handler;
    void                            *data;
    ngx_msec_t                       sent;
    ngx_uint_t                       op;
} ngx_http_mqttapi_sync_pending_t;


/* a link's connection failed: "msg" says how */
typedef void (*ngx_http_mqttapi_sync_lost_pt)(
    ngx_http_mqttapi_sync_link_t *link, u_char *msg, size_t len);


struct ngx_http_mqttapi_sync_link_s {
    ngx_peer_connection_t            pc;
    ngx_http_mqttapi_sync_task_t    *task;
    redisReader                     *reader;
    const char                      *name;
    ngx_addr_t                      *addr;        /* to connect to */

    /* NULL: the session fails (ngx_http_mqttapi_sync_fail) */
    ngx_http_mqttapi_sync_lost_pt    lost;

    u_char                          *out;
    size_t                           len;
    size_t                           size;
    size_t                           sent;

    ngx_http_mqttapi_sync_pending_t  pending[NGX_HTTP_MQTTAPI_SYNC_PENDING];
    ngx_uint_t                       head;
    ngx_uint_t                       n;

    /* replies nobody asked for: Pub/Sub messages */
    ngx_http_mqttapi_sync_reply_pt   push;

    unsigned                         connecting:1;
    unsigned                         handshaking:1;   /* TLS */
    unsigned                         plain:1;         /* never TLS */
};


/*
 * A back-off the task tracks: in a list (the ticks go over it) and in a
 * tree (replies and messages find it) by "zk", the zone's place (a byte)
 * then the key
 */

typedef struct {
    ngx_str_node_t                   sn;          /* "zk", first */
    ngx_queue_t                      queue;
    ngx_uint_t                       zone;
    uint32_t                         count;
    ngx_msec_t                       until;       /* local, as the node's */
    ngx_msec_t                       next_ask;    /* for the right */
    unsigned                         pushed:1;
    unsigned                         asking:1;
    unsigned                         right:1;
    unsigned                         peer:1;
    unsigned                         seen:1;      /* by this reconcile */
    unsigned                         asking_right:1;
    unsigned                         closed:1;    /* to be pushed closed */
    unsigned                         check:1;     /* pushed, if Redis has
                                                     it: the next pull
                                                     tells */
    ngx_uint_t                       seq;         /* of its last update */
    u_short                          len;
    u_char                          *key;         /* zk + 1 */
    u_char                           zk[1 + NGX_HTTP_MQTTAPI_KEY_MAX_LEN];
} ngx_http_mqttapi_sync_tracked_t;


struct ngx_http_mqttapi_sync_task_s {
    ngx_http_mqttapi_sync_conf_t    *conf;
    ngx_log_t                       *log;
    ngx_event_t                      tick;
    ngx_uint_t                       owner;

    ngx_http_mqttapi_sync_link_t     cmd;
    ngx_http_mqttapi_sync_link_t     sub;

    /* the Redis connected to: redis=, or the master the sentinels name */
    ngx_str_t                        name;
    ngx_addr_t                       master;
    ngx_sockaddr_t                   master_sockaddr;
    u_char                           master_text[NGX_SOCKADDR_STRLEN];
    ngx_uint_t                       master_known;

    /* Sentinel: asked in turn, then subscribed to +switch-master */
    ngx_http_mqttapi_sync_link_t     sen;
    ngx_uint_t                       sentinel;    /* the next to ask */
    ngx_uint_t                       asked;       /* in this round */
    u_char                           sentinel_err[128];

    ngx_uint_t                       state;
    ngx_uint_t                       handshake;   /* replies to come */
    ngx_msec_t                       retry_at;
    ngx_msec_t                       retry_delay;
    ngx_msec_t                       reconcile_at;
    ngx_msec_t                       beat_at;
    ngx_event_t                      wake;        /* polls sh->ask */
    ngx_msec_t                       fewer_since; /* beats saw fewer nodes */
    u_char                          *granting;    /* per zone: GRANT_* */
    ngx_msec_t                       logged_at;
    ngx_uint_t                       seq;

    char                             sha[NGX_HTTP_MQTTAPI_SCRIPTS][41];
    u_char                           server[64];  /* "redis 7.0.15" */
    u_char                           tls[48];     /* ", TLSv1.3" or "" */
#if (NGX_SSL)
    ngx_ssl_session_t               *ssl_session;
#endif

    ngx_queue_t                      tracked;
    ngx_rbtree_t                     tree;
    ngx_rbtree_node_t                tree_sentinel;
    ngx_uint_t                       ntracked;
    ngx_uint_t                       rescan;

    ngx_str_t                        channel;

    unsigned                         unknown_zone:1;  /* logged */
};


/* ngx_http_mqttapi_sync_redis.c: one connection in nginx's event loop */

ngx_int_t ngx_http_mqttapi_sync_link_connect(
    ngx_http_mqttapi_sync_link_t *link);
void ngx_http_mqttapi_sync_link_close(ngx_http_mqttapi_sync_link_t *link);
void ngx_http_mqttapi_sync_link_ready(ngx_http_mqttapi_sync_link_t *link);

/* ngx_http_mqttapi_sync_ssl.c: TLS on a connection */

#if (NGX_SSL)
void ngx_http_mqttapi_sync_ssl_connect(ngx_http_mqttapi_sync_link_t *link);
void ngx_http_mqttapi_sync_ssl_free(ngx_http_mqttapi_sync_task_t *task);
#endif
ngx_int_t ngx_http_mqttapi_sync_link_send(ngx_http_mqttapi_sync_link_t *link,
    ngx_uint_t op, int argc, const char **argv, const size_t *argvlen,
    ngx_http_mqttapi_sync_reply_pt handler, void *data);

/* ngx_http_mqttapi_sync_sentinel.c: the master, as the sentinels say */

void ngx_http_mqttapi_sync_sentinel_init(ngx_http_mqttapi_sync_task_t *task);
void ngx_http_mqttapi_sync_sentinel_ask(ngx_http_mqttapi_sync_task_t *task);

/* ngx_http_mqttapi_sync_task.c: the session */

ngx_uint_t ngx_http_mqttapi_sync_owner(ngx_http_mqttapi_sync_task_t *task);
void ngx_http_mqttapi_sync_release(ngx_http_mqttapi_sync_task_t *task);
void ngx_http_mqttapi_sync_connect_master(ngx_http_mqttapi_sync_task_t *task);
void ngx_http_mqttapi_sync_close(ngx_http_mqttapi_sync_task_t *task);

void ngx_http_mqttapi_sync_fail(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t op, const char *fmt, ...);
void ngx_http_mqttapi_sync_error(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t op, const char *fmt, ...);
void ngx_http_mqttapi_sync_roundtrip(ngx_http_mqttapi_sync_task_t *task,
    ngx_msec_t sent);
ngx_int_t ngx_http_mqttapi_sync_eval(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t op, ngx_uint_t script, int nkeys, int argc, ngx_str_t *args,
    ngx_http_mqttapi_sync_reply_pt handler, void *data);
ngx_int_t ngx_http_mqttapi_sync_key(ngx_http_mqttapi_sync_task_t *task,
    ngx_str_t *out, ngx_uint_t zone, const char *part, u_char *key,
    size_t len);
ngx_int_t ngx_http_mqttapi_sync_reply_error(
    ngx_http_mqttapi_sync_task_t *task, ngx_uint_t op, redisReply *reply);

/* ngx_http_mqttapi_sync_reply.c: what Redis sent, checked */

redisReader *ngx_http_mqttapi_sync_reader(void);
ngx_int_t ngx_http_mqttapi_sync_integer(redisReply *r, long long *n);
ngx_int_t ngx_http_mqttapi_sync_parse_backoff(redisReply **e,
    ngx_http_mqttapi_sync_backoff_t *b);
ngx_int_t ngx_http_mqttapi_sync_parse_entry(redisReply **e,
    ngx_http_mqttapi_sync_backoff_t *b);
ngx_int_t ngx_http_mqttapi_sync_parse_event(redisReply *reply,
    ngx_http_mqttapi_sync_backoff_t *b);
ngx_int_t ngx_http_mqttapi_sync_parse_grants(redisReply *reply,
    ngx_uint_t n, ngx_msec_t *second, uint16_t *grants);
ngx_int_t ngx_http_mqttapi_sync_parse_subscribe(redisReply *reply,
    ngx_str_t *channel);
ngx_int_t ngx_http_mqttapi_sync_parse_beat(redisReply *reply,
    ngx_uint_t *nodes, ngx_msec_t *now);
ngx_int_t ngx_http_mqttapi_sync_parse_hello(redisReply *reply,
    ngx_http_mqttapi_sync_hello_t *h);

/* ngx_http_mqttapi_sync_backoff.c: back-offs shared by the fleet */

void ngx_http_mqttapi_sync_backoff_event(ngx_http_mqttapi_sync_task_t *task,
    ngx_http_mqttapi_sync_event_t *ev);
void ngx_http_mqttapi_sync_backoff_tick(ngx_http_mqttapi_sync_task_t *task);
void ngx_http_mqttapi_sync_backoff_reconcile(
    ngx_http_mqttapi_sync_task_t *task);
void ngx_http_mqttapi_sync_backoff_scan(ngx_http_mqttapi_sync_task_t *task);
void ngx_http_mqttapi_sync_backoff_message(ngx_http_mqttapi_sync_task_t *task,
    redisReply *reply, void *data);
void ngx_http_mqttapi_sync_backoff_drop(ngx_http_mqttapi_sync_task_t *task);
void ngx_http_mqttapi_sync_backoff_init(ngx_http_mqttapi_sync_task_t *task);

/* ngx_http_mqttapi_sync_quota.c: quota grants by demand */

ngx_int_t ngx_http_mqttapi_sync_grant_init(ngx_http_mqttapi_sync_task_t *task,
    ngx_pool_t *pool);
void ngx_http_mqttapi_sync_grant_tick(ngx_http_mqttapi_sync_task_t *task,
    ngx_uint_t scheduled);


extern const char  *ngx_http_mqttapi_sync_scripts[];


#endif /* _NGX_HTTP_MQTTAPI_SYNC_TASK_H_INCLUDED_ */
