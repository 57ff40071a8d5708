
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#include "ngx_http_mqttapi_sync_task.h"


/*
 * TLS on the connections to Redis, with nginx's own OpenSSL: the
 * mqttapi_sync_ssl* directives, named and behaving like their proxy_ssl_*
 * namesakes (one SSL context per configuration, made when the http block
 * is read), and the handshake of a connection in nginx's event loop
 * (ngx_ssl_handshake with a handler, as nginx's upstream does: it never
 * blocks the worker).  The certificate is checked once the handshake is
 * done (verify result, then the name); a session is kept per task and
 * offered again on the next connection.
 */


#if (NGX_SSL)

static char *ngx_http_mqttapi_sync_ssl_conf(ngx_conf_t *cf,
    ngx_http_mqttapi_sync_ssl_conf_t **sslp);
static void ngx_http_mqttapi_sync_ssl_handshake(ngx_connection_t *c);
static void ngx_http_mqttapi_sync_ssl_save_session(ngx_connection_t *c);
static ngx_int_t ngx_http_mqttapi_sync_ssl_server_name(
    ngx_http_mqttapi_sync_link_t *link);


static ngx_conf_bitmask_t  ngx_http_mqttapi_sync_ssl_protocols[] = {
    { ngx_string("SSLv2"), NGX_SSL_SSLv2 },
    { ngx_string("SSLv3"), NGX_SSL_SSLv3 },
    { ngx_string("TLSv1"), NGX_SSL_TLSv1 },
    { ngx_string("TLSv1.1"), NGX_SSL_TLSv1_1 },
    { ngx_string("TLSv1.2"), NGX_SSL_TLSv1_2 },
    { ngx_string("TLSv1.3"), NGX_SSL_TLSv1_3 },
    { ngx_null_string, 0 }
};

#endif


/*
 * The directives: each the standard slot of its kind, on the settings
 * that the main configuration points to (made at the first of them)
 */

char *
ngx_http_mqttapi_sync_ssl_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
#if (NGX_SSL)
    ngx_http_mqttapi_main_conf_t *mcf = conf;

    char                              *rv;
    ngx_command_t                      protocols;
    ngx_http_mqttapi_sync_ssl_conf_t  *ssl;

    rv = ngx_http_mqttapi_sync_ssl_conf(cf,
                                (ngx_http_mqttapi_sync_ssl_conf_t **)
                                    &mcf->sync_ssl);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    ssl = mcf->sync_ssl;

    if (cmd->type & NGX_CONF_FLAG) {
        return ngx_conf_set_flag_slot(cf, cmd, ssl);
    }

    if (cmd->type & NGX_CONF_1MORE) {
        protocols = *cmd;
        protocols.post = ngx_http_mqttapi_sync_ssl_protocols;
        return ngx_conf_set_bitmask_slot(cf, &protocols, ssl);
    }

    if (cmd->offset
        == offsetof(ngx_http_mqttapi_sync_ssl_conf_t, verify_depth))
    {
        return ngx_conf_set_num_slot(cf, cmd, ssl);
    }

    return ngx_conf_set_str_slot(cf, cmd, ssl);

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" requires nginx built with OpenSSL",
                       &cmd->name);
    return NGX_CONF_ERROR;

#endif
}


#if (NGX_SSL)

static char *
ngx_http_mqttapi_sync_ssl_conf(ngx_conf_t *cf,
    ngx_http_mqttapi_sync_ssl_conf_t **sslp)
{
    ngx_http_mqttapi_sync_ssl_conf_t  *ssl;

    if (*sslp) {
        return NGX_CONF_OK;
    }

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_http_mqttapi_sync_ssl_conf_t));
    if (ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     ssl->protocols = 0;
     *     ssl->name, trusted_certificate, certificate, certificate_key,
     *     ciphers = { 0, NULL };
     */

    ssl->enable = NGX_CONF_UNSET;
    ssl->verify = NGX_CONF_UNSET;
    ssl->verify_depth = NGX_CONF_UNSET_UINT;
    ssl->server_name = NGX_CONF_UNSET;
    ssl->session_reuse = NGX_CONF_UNSET;

    *sslp = ssl;

    return NGX_CONF_OK;
}


/*
 * After the http block: the SSL context of mqttapi_sync_ssl on, with the
 * defaults of proxy_ssl_* (no verification, depth 1, no SNI, sessions
 * reused, the "DEFAULT" ciphers; TLSv1.2 and TLSv1.3, as since nginx
 * 1.23.4)
 */

ngx_int_t
ngx_http_mqttapi_sync_ssl_init(ngx_conf_t *cf,
    ngx_http_mqttapi_sync_conf_t *scf, void *conf)
{
    ngx_http_mqttapi_sync_ssl_conf_t *ssl = conf;

    ngx_array_t                       *passwords;
    ngx_pool_cleanup_t                *cln;

    if (ssl == NULL) {
        return NGX_OK;
    }

    ngx_conf_init_value(ssl->enable, 0);
    ngx_conf_init_value(ssl->verify, 0);
    ngx_conf_init_uint_value(ssl->verify_depth, 1);
    ngx_conf_init_value(ssl->server_name, 0);
    ngx_conf_init_value(ssl->session_reuse, 1);

    if (ssl->protocols == 0) {
        ssl->protocols = NGX_CONF_BITMASK_SET
                         | NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3;
    }

    if (ssl->ciphers.data == NULL) {
        ngx_str_set(&ssl->ciphers, "DEFAULT");
    }

    if (!ssl->enable || scf == NULL) {
        return NGX_OK;
    }

    if (ssl->name.len == 0) {
        ssl->name = scf->host;
    }

    if (ssl->verify && ssl->name.len == 0) {
        /* Sentinel: the master's address is an IP, the name is not known */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"mqttapi_sync_ssl_verify\" with \"sentinel\" needs "
                      "\"mqttapi_sync_ssl_name\"");
        return NGX_ERROR;
    }

    scf->ssl = ssl;

    ssl->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl->ssl == NULL) {
        return NGX_ERROR;
    }

    ssl->ssl->log = cf->log;

    if (ngx_ssl_create(ssl->ssl, ssl->protocols, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl->ssl;

    if (ngx_ssl_ciphers(cf, ssl->ssl, &ssl->ciphers, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    passwords = NULL;

    if (ssl->certificate.len) {

        if (ssl->certificate_key.len == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "no \"mqttapi_sync_ssl_certificate_key\" is "
                          "defined for certificate \"%V\"",
                          &ssl->certificate);
            return NGX_ERROR;
        }

        if (ssl->password_file.len) {
            passwords = ngx_ssl_read_password_file(cf, &ssl->password_file);
            if (passwords == NULL) {
                return NGX_ERROR;
            }
        }

        if (ngx_ssl_certificate(cf, ssl->ssl, &ssl->certificate,
                                &ssl->certificate_key, passwords)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ssl->verify) {
        if (ssl->trusted_certificate.len == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "no \"mqttapi_sync_ssl_trusted_certificate\" is "
                          "defined for the \"mqttapi_sync_ssl_verify\" "
                          "directive");
            return NGX_ERROR;
        }

        if (ngx_ssl_trusted_certificate(cf, ssl->ssl,
                                        &ssl->trusted_certificate,
                                        ssl->verify_depth)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_ssl_crl(cf, ssl->ssl, &ssl->crl) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_ssl_client_session_cache(cf, ssl->ssl, ssl->session_reuse)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the connection is up: TLS over it, the handshake in the event loop */

void
ngx_http_mqttapi_sync_ssl_connect(ngx_http_mqttapi_sync_link_t *link)
{
    ngx_int_t                          rc;
    ngx_connection_t                  *c;
    ngx_http_mqttapi_sync_task_t      *task;
    ngx_http_mqttapi_sync_ssl_conf_t  *ssl;

    task = link->task;
    ssl = task->conf->ssl;
    c = link->pc.connection;

    /* a connection of ngx_event_connect_peer() has no pool: TLS needs one */

    c->pool = ngx_create_pool(1024, task->log);
    if (c->pool == NULL
        || ngx_ssl_create_connection(ssl->ssl, c, NGX_SSL_CLIENT) != NGX_OK)
    {
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "TLS: cannot create a connection to %V",
                                   &task->name);
        return;
    }

    /* the output buffer grows and moves between two tries of a write */

    SSL_set_mode(c->ssl->connection, SSL_MODE_ENABLE_PARTIAL_WRITE
                                     | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (ssl->server_name
        && ngx_http_mqttapi_sync_ssl_server_name(link) != NGX_OK)
    {
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "TLS: cannot set the server name");
        return;
    }

    if (ssl->session_reuse) {
        c->ssl->save_session = ngx_http_mqttapi_sync_ssl_save_session;

        if (task->ssl_session
            && ngx_ssl_set_session(c, task->ssl_session) != NGX_OK)
        {
            ngx_http_mqttapi_sync_fail(task,
                                       NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                       "TLS: cannot reuse the session");
            return;
        }
    }

    link->handshaking = 1;

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, task->conf->timeout);
        }

        c->ssl->handler = ngx_http_mqttapi_sync_ssl_handshake;
        return;
    }

    ngx_http_mqttapi_sync_ssl_handshake(c);
}


static void
ngx_http_mqttapi_sync_ssl_handshake(ngx_connection_t *c)
{
    long                               rc;
    ngx_http_mqttapi_sync_link_t      *link;
    ngx_http_mqttapi_sync_task_t      *task;
    ngx_http_mqttapi_sync_ssl_conf_t  *ssl;

    link = c->data;
    task = link->task;
    ssl = task->conf->ssl;

    if (!c->ssl->handshaked) {
        ngx_http_mqttapi_sync_fail(task, NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                   "TLS: the handshake with %V on the %s "
                                   "connection %s", &task->name,
                                   link->name,
                                   c->write->timedout ? "timed out"
                                                      : "failed");
        return;
    }

    if (ssl->verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_http_mqttapi_sync_fail(task,
                                       NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                       "TLS: the certificate of %V does "
                                       "not verify: (%l:%s)",
                                       &task->name, rc,
                                       X509_verify_cert_error_string(rc));
            return;
        }

        if (ngx_ssl_check_host(c, &ssl->name) != NGX_OK) {
            ngx_http_mqttapi_sync_fail(task,
                                       NGX_HTTP_MQTTAPI_SYNC_OP_CONNECT,
                                       "TLS: the certificate of %V does "
                                       "not match \"%V\"",
                                       &task->name, &ssl->name);
            return;
        }
    }

    if (link == &task->cmd) {
        ngx_snprintf(task->tls, sizeof(task->tls) - 1, ", %s%s%Z",
                     SSL_get_version(c->ssl->connection),
                     SSL_session_reused(c->ssl->connection)
                     ? ", session reused" : "");
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    link->handshaking = 0;

    ngx_http_mqttapi_sync_link_ready(link);
}


/* a new session (TLSv1.3: after the handshake): kept for the next one */

static void
ngx_http_mqttapi_sync_ssl_save_session(ngx_connection_t *c)
{
    ngx_ssl_session_t             *session;
    ngx_http_mqttapi_sync_link_t  *link;

    link = c->data;

    session = ngx_ssl_get_session(c);
    if (session == NULL) {
        return;
    }

    if (link->task->ssl_session) {
        ngx_ssl_free_session(link->task->ssl_session);
    }

    link->task->ssl_session = session;
}


void
ngx_http_mqttapi_sync_ssl_free(ngx_http_mqttapi_sync_task_t *task)
{
    if (task->ssl_session) {
        ngx_ssl_free_session(task->ssl_session);
        task->ssl_session = NULL;
    }
}


/* SNI: the name, unless it is an address (RFC 6066), as nginx's proxy */

static ngx_int_t
ngx_http_mqttapi_sync_ssl_server_name(ngx_http_mqttapi_sync_link_t *link)
{
    u_char                            *p;
    ngx_str_t                         *name;
    ngx_connection_t                  *c;
    ngx_http_mqttapi_sync_ssl_conf_t  *ssl;
    u_char                             buf[256];

    ssl = link->task->conf->ssl;
    c = link->pc.connection;
    name = &ssl->name;

    if (name->len == 0 || name->len >= sizeof(buf)
        || ngx_inet_addr(name->data, name->len) != INADDR_NONE)
    {
        return NGX_OK;
    }

#if (NGX_HAVE_INET6)
    if (name->data[0] == '['
        || ngx_strlchr(name->data, name->data + name->len, ':'))
    {
        return NGX_OK;
    }
#endif

    p = ngx_cpymem(buf, name->data, name->len);
    *p = '\0';

    if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) buf) == 0) {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed", buf);
        return NGX_ERROR;
    }

    return NGX_OK;
}

#else


ngx_int_t
ngx_http_mqttapi_sync_ssl_init(ngx_conf_t *cf,
    ngx_http_mqttapi_sync_conf_t *scf, void *conf)
{
    return NGX_OK;
}

#endif
