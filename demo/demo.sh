#!/usr/bin/env bash
# `make demo`: the main job, end to end, against the local API emulator on a
# throwaway cluster (see scripts/sandbox.sh).  A Supabase-like database with
# a contaminated production is built first; then, as the DBA would from
# psql: store the API keys, sync both APIs, validate into staging and read
# the report.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/sandbox.sh

echo "== starting a throwaway PostgreSQL 15 cluster and the Xendit / Systeme.io emulator"
sandbox_start 1
echo "== building a Supabase-like database 'app' with a contaminated production"
as_postgres $PY test/fixture/production_data.py --scale 1 --out "$SANDBOX/dataset" >/dev/null
psql_q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_q -d postgres -f test/fixture/roles.sql >/dev/null
psql_q -d postgres -c "CREATE DATABASE app"
psql_q -d app -f test/fixture/schema.sql >/dev/null
psql_q -d app -f "$SANDBOX/dataset/production.sql" >/dev/null
# the DBA is Supabase's "postgres": the owner of the tables, not a superuser;
# the keys come from the environment (never on a command line)
"$PG_BIN/psql" -X -d app -U postgres -v ON_ERROR_STOP=1 -f demo/demo.sql
echo "== done; the cluster and the emulator are stopped and removed"
