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
#   make fuzz                  the fast JSON scan against jansson
#                              (libFuzzer, FUZZ_TIME=60 seconds a build)
#   make deps                  install the Debian packages needed

REPO        := $(abspath .)
NGINX_SRC   ?= /usr/share/nginx/src
SRC         := $(abspath $(NGINX_SRC))
BUILD       := $(REPO)/build
OBJS        := $(BUILD)/objs$(if $(filter /usr/share/nginx/src,$(SRC)),,-$(notdir $(SRC)))$(if $(STATIC),-static)
MODULE      := $(BUILD)/ngx_http_mqttapi_module.so
TARGET      := $(if $(STATIC),$(BUILD)/nginx,$(MODULE))
NGINX       ?= /usr/sbin/nginx
PROVE       ?= prove
TESTS       ?= t/*.t

# The module is compiled as Debian compiles nginx and its module packages
# (dpkg-buildflags: -O2 and the hardening options), not with the -O that
# nginx's configure puts first; CC_OPT adds to it, OPTIMIZE= drops it.
OPTIMIZE    ?= -O2 -fstack-protector-strong -Wformat -Werror=format-security \
               -Wdate-time -D_FORTIFY_SOURCE=2

DEPS_PKGS   := nginx nginx-dev libjansson-dev libpcre2-dev libssl-dev \
               zlib1g-dev perl make gcc curl prometheus

.PHONY: all module deps run test bench fuzz clean FORCE

all: module

module: $(TARGET)

# What a build directory was configured from: the tree and the options.
# Rewritten only when they change (another tree with the same directory
# name, other EXTRA_CONFIGURE or CC_OPT), which then reconfigures.
CONF_ID     := $(SRC) $(if $(STATIC),static,dynamic) $(EXTRA_CONFIGURE) \
               $(OPTIMIZE) $(CC_OPT)

$(OBJS)/configured-from: FORCE
	@mkdir -p $(OBJS)
	@printf '%s\n' '$(subst ','\'',$(CONF_ID))' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi

# Debian's nginx-dev ships the configure script and conf_flags with the
# exact options of the packaged binary (--with-compat among them); a full
# source tree is configured with --with-compat plus EXTRA_CONFIGURE.

$(OBJS)/Makefile: config conf/mqttapi_catalog.json $(OBJS)/configured-from
	@test -x $(SRC)/configure || { \
	    echo "no nginx source at $(SRC): run 'make deps'" \
	         "or set NGINX_SRC"; exit 1; }
	cd $(SRC) && \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	    else NGX_CONF_FLAGS="--with-compat"; fi && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" $(EXTRA_CONFIGURE) \
	        --with-cc-opt="-Werror $(OPTIMIZE) $(CC_OPT)" \
	        $(if $(STATIC),--add-module,--add-dynamic-module)=$(REPO) \
	        --builddir=$(OBJS) > $(OBJS)/configure.log 2>&1 \
	    || { tail -30 $(OBJS)/configure.log; exit 1; }

# build/ngx_http_mqttapi_module.so (build/nginx for STATIC=1) is shared by
# every tree: always let the tree's own objs Makefile bring its build up to
# date (it tracks the sources), then install its result whenever that
# differs from what is installed, so the installed file is always the
# requested tree's, whichever tree was built before.

ifeq ($(STATIC),)
$(TARGET): $(OBJS)/Makefile FORCE
	$(MAKE) -f $(OBJS)/Makefile -C $(SRC) modules
	@cmp -s $(OBJS)/ngx_http_mqttapi_module.so $@ || { \
	    cp $(OBJS)/ngx_http_mqttapi_module.so $@.tmp && mv -f $@.tmp $@ && \
	    echo "installed $@ (from $(OBJS))"; }
else
$(TARGET): $(OBJS)/Makefile FORCE
	$(MAKE) -f $(OBJS)/Makefile -C $(SRC) binary
	@cmp -s $(OBJS)/nginx $@ || { \
	    cp $(OBJS)/nginx $@.tmp && mv -f $@.tmp $@ && \
	    echo "installed $@ (from $(OBJS))"; }
endif

FORCE:

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

fuzz: deps module
	bash t/fuzz/run.sh

clean:
	rm -rf $(BUILD)
