
/*
 * Copyright (C) ngx_http_mqttapi_module authors
 */


#ifndef _NGX_HTTP_MQTTAPI_STATUS_H_INCLUDED_
#define _NGX_HTTP_MQTTAPI_STATUS_H_INCLUDED_


#include "ngx_http_mqttapi.h"


#define NGX_HTTP_MQTTAPI_VERSION  "0.1.0"


char *ngx_http_mqttapi_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_MQTTAPI_STATUS_H_INCLUDED_ */
