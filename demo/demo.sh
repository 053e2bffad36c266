#!/usr/bin/env bash
# `make demo`: the main job, end to end, against the local API emulator on a
# throwaway cluster (see scripts/sandbox.sh).  A Supabase-like database with
# a contaminated production is built first; then the steps of
# doc/runbook.md as the DBA runs them from psql, and at the end what this
# run produced beside what the seed expected (demo/seed_expected.sql).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/sandbox.sh

echo "== starting a throwaway PostgreSQL 15 cluster and the Xendit / Systeme.io emulator"
# pg_cron lives in the application's database, as on Supabase
export SANDBOX_CRON_DATABASE=app
sandbox_start 1
echo "== building a Supabase-like database 'app' with a contaminated production"
as_postgres $PY test/fixture/production_data.py --scale 1 --out "$SANDBOX/dataset" >/dev/null
psql_q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_q -d postgres -f test/fixture/roles.sql >/dev/null
psql_q -d postgres -c "CREATE DATABASE app"
psql_q -d app -f test/fixture/schema.sql >/dev/null
psql_q -d app -f "$SANDBOX/dataset/production.sql" >/dev/null
# pg_cron enabled as Supabase's dashboard does it: by the superuser, usable by postgres
psql_q -d app -c "CREATE EXTENSION pg_cron" -c "GRANT USAGE ON SCHEMA cron TO postgres"
# the DBA is Supabase's "postgres": the owner of the tables, not a superuser;
# the keys come from the environment (never on a command line)
"$PG_BIN/psql" -X -d app -U postgres -v ON_ERROR_STOP=1 -f demo/demo.sql
echo "== done; the cluster and the emulator are stopped and removed"
