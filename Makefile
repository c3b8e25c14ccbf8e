# es: event store extension for PostgreSQL (PGXS build)

EXTENSION = es
MODULE_big = es
OBJS = src/es.o src/guard.o src/horizon.o src/append.o src/append_call.o src/read.o src/read_global.o src/read_row.o src/upcast.o src/upcast_edit.o src/upcast_inline.o src/fold.o \
	src/lifecycle.o src/handler.o \
	src/projector/launcher.o src/projector/worker.o src/projector/slot.o \
	src/projector/decode.o src/projector/apply.o src/projector/catchup.o \
	src/projector/checkpoint.o src/projector/state.o src/projector/applier.o
DATA = $(wildcard sql/es--*.sql)
PGFILEDESC = "es - event store with CQRS read models"

# Tests: pg_regress inputs in test/sql, isolation specs in test/specs, both
# with expected output in expected/ (test/expected links there).
REGRESS = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --load-extension=es
ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --load-extension=es

PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
ifdef WERROR
PG_CPPFLAGS += -Werror
endif

# Every object depends on the shared headers (PGXS tracks no dependencies
# unless PostgreSQL was configured with --enable-depend).
$(OBJS) $(OBJS:.o=.bc): src/es.h src/compat.h src/upcast_int.h src/append_int.h src/read_int.h src/projector/projector.h

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# TAP tests (test/t) need an unprivileged user: initdb refuses root.
# TAP_PGPORT: the port to start from (.ci/run gives each major its own).
PG_TAP_PERL = $(dir $(PGXS))../../src/test/perl
TAP_PGPORT ?= 6$(DEF_PGPORT)
.PHONY: tapcheck
tapcheck:
	rm -rf '$(CURDIR)'/tmp_check
	TESTDIR='$(CURDIR)' PATH="$(bindir):$$PATH" PGPORT='$(TAP_PGPORT)' \
	PG_REGRESS='$(dir $(PGXS))../../src/test/regress/pg_regress' \
	$(PROVE) -I $(PG_TAP_PERL) -I test/t $(PROVE_FLAGS) $(or $(PROVE_TESTS),test/t/*.pl)

# Source release archive for PGXN: es-<version>.zip of the committed tree
# (HEAD), its files under es-<version>/.  The version is es.control's
# default_version; META.json must carry the same one.
DIST_VERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" es.control)
.PHONY: dist
dist:
	@grep -q '"version": "$(DIST_VERSION)"' META.json || \
		{ echo "META.json does not name version $(DIST_VERSION)" >&2; exit 1; }
	git archive --format zip --prefix=es-$(DIST_VERSION)/ -o es-$(DIST_VERSION).zip HEAD
