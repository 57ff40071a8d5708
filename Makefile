SHELL := /bin/bash

# ngx_http_mqttapi_module
#
#   make                       build build/ngx_http_mqttapi_module.so against
#                              Debian's nginx-dev (/usr/share/nginx/src)
#   make NGINX_SRC=/path/nginx-x.y.z
#                              build against a full nginx source tree
#   make NGINX_SRC=... STATIC=1
#                              build build/nginx with the module compiled in
#   make run                   the gateway in front of the bundled emulator
#   make test                  build and run the whole test suite
#   make bench                 the SPEC 9 benchmarks (bench/RESULTS.md)
#   make deps                  install the Debian packages needed

REPO        := $(abspath .)
NGINX_SRC   ?= /usr/share/nginx/src
BUILD       := $(REPO)/build
OBJS        := $(BUILD)/objs$(if $(filter /usr/share/nginx/src,$(NGINX_SRC)),,-$(notdir $(NGINX_SRC)))$(if $(STATIC),-static)
MODULE      := $(BUILD)/ngx_http_mqttapi_module.so
TARGET      := $(if $(STATIC),$(BUILD)/nginx,$(MODULE))
NGINX       ?= /usr/sbin/nginx
PROVE       ?= prove
TESTS       ?= t/*.t

DEPS_PKGS   := nginx nginx-dev libjansson-dev libpcre2-dev libssl-dev \
               zlib1g-dev perl make gcc curl

SOURCES     := config ngx_http_mqttapi_module.c $(wildcard src/*.c src/*.h) \
               conf/mqttapi_catalog.json

.PHONY: all module deps run test bench clean

all: module

module: $(TARGET)

# Debian's nginx-dev ships the configure script and conf_flags with the
# exact options of the packaged binary (--with-compat among them); a full
# source tree is configured with --with-compat plus EXTRA_CONFIGURE.

$(OBJS)/Makefile: config conf/mqttapi_catalog.json
	@test -x $(NGINX_SRC)/configure || { \
	    echo "no nginx source at $(NGINX_SRC): run 'make deps'" \
	         "or set NGINX_SRC"; exit 1; }
	mkdir -p $(OBJS)
	cd $(NGINX_SRC) && \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	    else NGX_CONF_FLAGS="--with-compat"; fi && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" $(EXTRA_CONFIGURE) \
	        --with-cc-opt="-Werror $(CC_OPT)" \
	        $(if $(STATIC),--add-module,--add-dynamic-module)=$(REPO) \
	        --builddir=$(OBJS) > $(OBJS)/configure.log 2>&1 \
	    || { tail -30 $(OBJS)/configure.log; exit 1; }

ifeq ($(STATIC),)
$(TARGET): $(OBJS)/Makefile $(SOURCES)
	$(MAKE) -f $(OBJS)/Makefile -C $(NGINX_SRC) modules
	cp $(OBJS)/ngx_http_mqttapi_module.so $(MODULE).tmp && mv -f $(MODULE).tmp $(MODULE)
else
$(TARGET): $(OBJS)/Makefile $(SOURCES)
	$(MAKE) -f $(OBJS)/Makefile -C $(NGINX_SRC) binary
	cp $(OBJS)/nginx $(BUILD)/nginx.tmp && mv -f $(BUILD)/nginx.tmp $(BUILD)/nginx
endif

deps:
	@missing=""; for p in $(DEPS_PKGS); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y --no-install-recommends $$missing; fi

run: deps module
	@bash conf/run.sh

test: deps module
	$(PROVE) -j2 $(PROVE_FLAGS) $(TESTS)

bench: deps module
	bash bench/run.sh

clean:
	rm -rf $(BUILD)
