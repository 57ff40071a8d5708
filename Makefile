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
#                              (with STATIC=1: against build/nginx)
#   make bench                 the benchmarks (bench/RESULTS.md; raw
#                              outputs in build/bench, outside git)
#   make fuzz                  the fast JSON scan against jansson, and
#                              the parsers of Redis replies (mqttapi_sync)
#                              (libFuzzer, FUZZ_TIME=60 seconds a build)
#   make deb                   build/libnginx-mod-http-mqttapi_<v>_<arch>.deb
#                              for the packaged nginx (pkg/build-deb.sh)
#   make deps                  install the Debian packages needed (apt-get,
#                              as root); the other targets only check them

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

# Debian packages: to build and run the demo, to run the test suite (the
# same list as .ci/run), to benchmark, to fuzz.  `make deps` installs what
# is missing of all of them; run, test, bench and fuzz only check theirs
# (dpkg-query, no apt-get) and name what is missing.
BUILD_PKGS  := nginx nginx-dev libjansson-dev libpcre2-dev libssl-dev \
               zlib1g-dev libhiredis-dev make gcc
TEST_PKGS   := $(BUILD_PKGS) perl curl ca-certificates redis-server redis-sentinel \
               openssl prometheus opencc dpkg-dev chromium
BENCH_PKGS  := $(BUILD_PKGS) wrk libnginx-mod-http-lua lua-cjson curl \
               python3 valgrind redis-server
FUZZ_PKGS   := $(BUILD_PKGS) clang libclang-rt-dev
DEPS_PKGS   := $(sort $(TEST_PKGS) $(BENCH_PKGS) $(FUZZ_PKGS))

.PHONY: all module deps check-build check-test check-bench check-fuzz \
        check-deb run test bench fuzz deb clean FORCE

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

# A release tarball (and nginx-dev) has ./configure, a clone of the nginx
# repository auto/configure: either is run from the top of the tree.
CONFIGURE    = $(firstword $(foreach c,configure auto/configure,\
                   $(if $(wildcard $(SRC)/$(c)),./$(c))))

$(OBJS)/Makefile: config conf/mqttapi_catalog.json \
                 src/ngx_http_mqttapi_status.html $(OBJS)/configured-from
	@test -n "$(CONFIGURE)" || { \
	    echo "no nginx source at $(SRC) (neither configure nor" \
	         "auto/configure): run 'make deps' or set NGINX_SRC"; exit 1; }
	@echo "configuring $(SRC) into $(OBJS)"
	@cd $(SRC) && \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	    else NGX_CONF_FLAGS="--with-compat"; fi && \
	    $(CONFIGURE) "$${NGX_CONF_FLAGS[@]}" $(EXTRA_CONFIGURE) \
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

# missing(packages): the ones not installed ("install ok installed";
# a removed package whose conffiles remain does not count)
missing = for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q '^install ok installed$$' || printf ' %s' $$p; done

# check(packages): fail, naming them, when some are missing.  Without
# dpkg (not a Debian system) nothing is checked.
check = @command -v dpkg-query >/dev/null || exit 0; \
	m=$$($(call missing,$(1))); [ -z "$$m" ] || { \
	    echo "missing Debian packages:$$m"; \
	    echo "run 'make deps' (as root) to install them"; exit 1; }

deps:
	@m=$$($(call missing,$(DEPS_PKGS))); \
	if [ -n "$$m" ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y --no-install-recommends $$m; \
	else echo "make deps: every package is installed"; fi

check-build:
	$(call check,$(BUILD_PKGS))
check-test:
	$(call check,$(TEST_PKGS))
check-bench:
	$(call check,$(BENCH_PKGS))
check-fuzz:
	$(call check,$(FUZZ_PKGS))
check-deb:
	$(call check,$(BUILD_PKGS) dpkg-dev)

# the demo: a quiet build (the compiler's lines only when it fails)
run: check-build
	@mkdir -p $(BUILD)
	@$(MAKE) -s --no-print-directory module > $(BUILD)/run-build.log 2>&1 \
	    || { tail -40 $(BUILD)/run-build.log; exit 1; }
	@bash conf/run.sh

# With STATIC=1 the suite runs the build/nginx just built (the module
# compiled in) instead of the packaged nginx and build/*.so.  The build's
# variables, which make exports when they are given on its command line,
# are not passed on: the tests that run make choose their own.
TEST_UNSET  := $(foreach v,NGINX_SRC STATIC EXTRA_CONFIGURE CC_OPT OPTIMIZE \
                 BUILD NGINX MAKEFLAGS MFLAGS MAKELEVEL,-u $(v))

test: check-test module
	env $(TEST_UNSET) \
	    $(if $(STATIC),MQTTAPI_NGINX=$(TARGET) MQTTAPI_MODULE=none) \
	    $(PROVE) -j2 $(PROVE_FLAGS) $(TESTS)

bench: check-bench module
	bash bench/run.sh

fuzz: check-fuzz module
	bash t/fuzz/run.sh

deb: check-deb module
	bash pkg/build-deb.sh

clean:
	rm -rf $(BUILD)
