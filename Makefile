# pglite_sync: PGXS build
#   make && make install          build and install (PG_CONFIG=... to choose a server)
#   make unit                     pure C unit tests under ASan/UBSan
#   test/run-all                  every test layer (see README)

EXTENSION = pglite_sync
EXTVERSION = 0.1.0
MODULE_big = pglite_sync
DATA = pglite_sync--$(EXTVERSION).sql

PURE_OBJS = src/strbuf.o src/bodysplit.o src/message.o src/protocol.o src/shapeopts.o
OBJS = $(PURE_OBJS) src/pg_alloc.o src/pg_compat.o src/pglite_sync.o src/shmem.o src/launcher.o \
	src/worker.o src/stream.o src/foreground.o src/http.o src/spool.o src/apply.o src/catalog.o src/api.o

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
PGLITE_OBJS = $(PURE_OBJS) src/pg_alloc.o src/pg_compat.o
ifdef PGLITE
OBJS = $(PGLITE_OBJS)
PG_CPPFLAGS = -Isrc -D__PGLITE__ $(shell pkg-config --cflags jansson)
SHLIB_LINK = $(shell pkg-config --libs --static jansson)
endif
ifeq ($(MAKECMDGOALS),pglite)
# pglite/build brings its own PostgreSQL: the host needs no pg_config or PGXS
override PG_CONFIG := true
override PGXS := /dev/null
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

unit:
	$(MAKE) -C test/unit

pglite:
	pglite/build

.PHONY: unit pglite
