#!/usr/bin/env bash
# `make demo`: the main job, end to end, against the local API emulator on a
# throwaway cluster (see scripts/sandbox.sh).  Today: store the API keys,
# sync both APIs into the raw tables, and show what landed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/sandbox.sh

echo "== starting a throwaway PostgreSQL 15 cluster and the Xendit / Systeme.io emulator"
sandbox_start 1
"$PG_BIN/psql" -X -q -d postgres -c "CREATE DATABASE demo"
"$PG_BIN/psql" -X -d demo -v ON_ERROR_STOP=1 \
    -v xendit_key="$XENDIT_KEY" -v systemeio_key="$SYSTEMEIO_KEY" -f demo/demo.sql
echo "== done; the cluster and the emulator are stopped and removed"
