# pglite_sync: PGXS build
#   make && make install          build and install (PG_CONFIG=... to choose a server)
#   make unit                     pure C unit tests under ASan/UBSan
#   test/run-all                  every test layer (see README)

EXTENSION = pglite_sync
EXTVERSION = 0.6.0
MODULE_big = pglite_sync
# every release's script stays: CREATE EXTENSION runs 0.1.0 and the updates
DATA = $(wildcard src/sql/pglite_sync--*.sql)

# pure C: compile and unit-test without PostgreSQL
PURE_OBJS = src/strbuf.o src/bodysplit.o src/message.o src/protocol.o src/shapeopts.o src/align.o \
	src/sse.o src/visibility.o src/tags.o
# the engine: everything PGlite has too (no workers, no libcurl there)
ENGINE_OBJS = $(PURE_OBJS) src/pg_alloc.o src/pg_compat.o src/pglite_sync.o src/extension.o \
	src/catalog.o src/response.o src/member.o src/run.o src/commit.o src/spool.o \
	src/target.o src/rowbuild.o src/apply_spi.o src/apply_bulk.o src/apply_direct.o src/apply_tags.o src/subset.o src/optimistic.o src/writes.o src/apply.o \
	src/api_subscribe.o src/api_manage.o src/hostdrive.o src/status.o src/jsonutil.o \
	src/foreground.o
# the workers: slots in shared memory, the launcher, libcurl
WORKER_OBJS = src/slots.o src/atcommit.o src/launcher.o src/worker.o src/upload.o src/http.o src/dbhook.o
OBJS = $(ENGINE_OBJS) $(WORKER_OBJS)

REGRESS = api
REGRESS_OPTS = --temp-config=test/regress.conf --temp-instance=tmp_check \
	--load-extension=$(EXTENSION)

PG_CONFIG ?= pg_config

# No JIT bitcode: clang is not a build dependency.
override with_llvm = no

PG_CPPFLAGS = -Isrc $(shell pkg-config --cflags libcurl jansson)
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK = $(shell pkg-config --libs libcurl jansson)

# PGlite (PostgreSQL 18 in WASM): `make pglite` (pglite/build) runs this
# Makefile with PGLITE=1 and an emscripten PGXS, linking PGLITE_OBJS into a
# side module: no libcurl, no background workers, jansson linked statically.
PGLITE_OBJS = $(ENGINE_OBJS)
ifdef PGLITE
OBJS = $(PGLITE_OBJS)
PG_CPPFLAGS = -Isrc -D__PGLITE__ $(shell pkg-config --cflags jansson)
# --profiling-funcs keeps the function names (the name section): a trap's
# stack and a profile then name our functions; the code is the same
SHLIB_LINK = $(shell pkg-config --libs --static jansson) --profiling-funcs
endif
ifeq ($(MAKECMDGOALS),pglite)
# pglite/build brings its own PostgreSQL: the host needs no pg_config or PGXS
override PG_CONFIG := true
override PGXS := /dev/null
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks headers only for a PostgreSQL configured with --enable-depend
# (Debian's is not): without this, a changed header leaves stale objects
ifneq ($(autodepend),yes)
override CPPFLAGS += -MMD -MP
-include $(OBJS:.o=.d)
EXTRA_CLEAN += $(OBJS:.o=.d)
endif

unit:
	$(MAKE) -C test/unit

pglite:
	pglite/build

.PHONY: unit pglite
