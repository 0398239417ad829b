# pgwa: PGXS build of the extension (pgwa.so), plus the HTTP front (pgwa-http)
# and the mock broker used by tests and benchmarks.
#
#   make            build everything
#   make install    install the extension into PostgreSQL (needs root)
#   make run        install dependencies, build, start a local cluster and pgwa-http
#   make stop       stop what make run started
#   make test       the whole suite on a throwaway cluster; ends with "N passed, N failed"
#   make bench      benchmarks (not timed tests); see BENCHMARKS.md

EXTENSION   = pgwa
MODULE_big  = pgwa
OBJS = \
	extension/pgwa.o \
	extension/guc.o \
	extension/errors.o \
	extension/shmem.o \
	extension/tokens.o \
	extension/normalize.o \
	extension/enqueue.o \
	extension/metrics.o \
	extension/inbound_util.o \
	extension/inbound_content.o \
	extension/inbound_normalize.o \
	extension/inbound_evolution.o \
	extension/inbound_evolution_content.o \
	extension/inbound_meta.o extension/inbound_coexistence.o \
	extension/crypto.o \
	extension/ingest.o \
	extension/http_fast.o \
	extension/sql_support.o \
	bgworker/dispatcher.o \
	bgworker/worker.o \
	bgworker/inbound_applier.o \
	bgworker/transfer.o \
	bgworker/webhook_delivery.o \
	bgworker/provider_broker.o \
	bgworker/provider_evolution.o \
	bgworker/provider_meta.o

# The install script is assembled from sql/src/, one file per responsibility.
# Upgrade scripts (sql/pgwa--A--B.sql) are written by hand once a version is released.
EXTVERSION = 0.1
DATA_built = sql/pgwa--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/pgwa--*--*.sql))
PGFILEDESC = "pgwa - WhatsApp messaging gateway"

REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/extension -I$(srcdir)/bgworker -Wextra -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK = -lcurl -ljansson

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

PG_INCLUDEDIR := $(shell $(PG_CONFIG) --includedir)
PG_LIBDIR     := $(shell $(PG_CONFIG) --libdir)
TOOL_CFLAGS   = -O2 -g -Wall -Wextra

all: http_front/pgwa-http test/mock_broker/mock-broker

sql/pgwa--$(EXTVERSION).sql: $(sort $(wildcard sql/src/*.sql))
	{ echo '-- pgwa $(EXTVERSION). Generated from sql/src/ by make; edit those files.'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION pgwa" to load this file. \quit'; \
	  for f in $^; do echo; echo "-- $$f"; cat $$f; done; } > $@

# PGXS does not track header dependencies here: rebuild objects when a header changes.
$(OBJS): $(wildcard extension/*.h bgworker/*.h)

http_front/pgwa-http: $(wildcard http_front/*.c http_front/*.h)
	$(CC) $(TOOL_CFLAGS) -o $@ $(filter %.c,$^) -I$(PG_INCLUDEDIR) \
		$$(pkg-config --cflags --libs libmicrohttpd jansson libcurl) -L$(PG_LIBDIR) -lpq -lpthread -lm

test/mock_broker/mock-broker: $(wildcard test/mock_broker/*.c test/mock_broker/*.h)
	$(CC) $(TOOL_CFLAGS) -o $@ $(filter %.c,$^) \
		$$(pkg-config --cflags --libs libmicrohttpd jansson) -lpthread

clean: clean-tools
clean-tools:
	rm -f http_front/pgwa-http test/mock_broker/mock-broker bench/enqueue_client

.PHONY: deps run stop test bench clean-tools
deps:
	bash scripts/install_deps.sh
run:
	bash scripts/run.sh
stop:
	bash scripts/stop.sh
test:
	bash scripts/test.sh
bench:
	bash bench/run.sh
