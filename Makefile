# migrate_ext: PGXS build, plus the two commands that do everything:
#   make demo   the whole job against the local API emulator, on a throwaway cluster
#   make test   every test suite, on a throwaway cluster
# Both install the Debian packages they need when missing (run as root).

EXTENSION = migrate_ext
MODULE_big = migrate_ext
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
# Released install scripts are committed exactly as released, with the
# upgrade scripts between versions.  The install script of the version in
# development (default_version in migrate_ext.control), when it is not
# released yet, is built from sql/, one file per concern, in name order.
RELEASED = 1.0
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" migrate_ext.control)
DATA = $(foreach v,$(RELEASED),migrate_ext--$(v).sql) $(wildcard migrate_ext--*--*.sql)
ifeq ($(filter $(EXTVERSION),$(RELEASED)),)
DATA_built = migrate_ext--$(EXTVERSION).sql
endif
SQL_PARTS = $(sort $(wildcard sql/*.sql))
PGFILEDESC = "migrate_ext - clean data migration from Xendit and Systeme.io"

# pg_regress suites, in order (test/sql/NAME.sql, expected/NAME.out)
REGRESS = setup sync_basic sync_faults sync_security validate swap_inventory swap verify reconcile security upgrade plpgsql_check
REGRESS_OPTS = --inputdir=test --load-extension=migrate_ext

PG_CPPFLAGS = $(shell pkg-config --cflags libcurl jansson 2>/dev/null)
SHLIB_LINK = $(shell pkg-config --libs libcurl jansson 2>/dev/null || echo -lcurl -ljansson)
PG_CFLAGS = -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers

EXTRA_CLEAN = results regression.diffs regression.out

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
endif

.PHONY: deps demo test bench

ifneq ($(DATA_built),)
$(DATA_built): $(SQL_PARTS)
	cat $^ > $@
endif

# Debian packages the build, the tests and the demo need
deps:
	@scripts/deps.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@demo/demo.sh

test: deps
	@$(MAKE) --no-print-directory all
	@test/run.sh

# sync, validation and launch at 1x and 10x; 100x: bench/run.sh validate 100, bench/run.sh launch 100
bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh 1 10
	@bench/run.sh validate 1 10
	@bench/run.sh launch 1 10
