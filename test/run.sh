#!/usr/bin/env bash
# `make test`: every test suite on a throwaway cluster (see scripts/sandbox.sh).
#   1. the pg_regress suites of test/sql against the API emulator;
#   2. the scenarios that need several sessions or a stopwatch
#      (test/scenarios.py: cancel, statement_timeout, progress, locks);
#   3. the documentation checks (test/check_docs.py);
#   4. the server log of the whole run must not contain an API key.
# Ends with one line "N passed, N failed" and a non-zero exit on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/sandbox.sh

passed=0
failed=0
record() {		# record NAME STATUS
    if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "ok:   $1"
    else failed=$((failed + 1)); echo "FAIL: $1"; fi
}

sandbox_start 1 || { echo "0 passed, 1 failed"; exit 1; }

# the data set the emulator serves, as files, for tests that compare with it
as_postgres $PY test/emulator/generate.py --scale 1 --out "$SANDBOX/dataset" >/dev/null
# and the contaminated production of the same people, for the Supabase-like fixture
as_postgres $PY test/fixture/production_data.py --scale 1 --out "$SANDBOX/dataset" >/dev/null
export DATASET_DIR="$SANDBOX/dataset"

# 1. pg_regress suites
rm -rf results regression.diffs regression.out
make -s installcheck PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" >"$SANDBOX/regress.log" 2>&1
regress_rc=$?
cat "$SANDBOX/regress.log"
for t in $(sed -n 's/^REGRESS = //p' Makefile); do
    # PG15 prints "test NAME ... ok", PG16+ prints "ok N - NAME"
    if grep -Eq "(^|[[:space:]])$t[[:space:]]+\.\.\. ok|^ok +[0-9]+ +- +$t([[:space:]]|$)" "$SANDBOX/regress.log"; then
        record "regress/$t" 0
    else
        record "regress/$t" 1
    fi
done
if [ $regress_rc -ne 0 ] && [ -f regression.diffs ]; then
    echo "---- regression.diffs ----"
    cat regression.diffs
fi

# 2. scenarios
$PY test/scenarios.py
scen_rc=$?
if [ -f "$SANDBOX/scenarios.result" ]; then
    read -r sp sf <"$SANDBOX/scenarios.result"
    passed=$((passed + sp)); failed=$((failed + sf))
else
    record "scenarios" 1
fi
[ $scen_rc -eq 0 ] || [ -f "$SANDBOX/scenarios.result" ] || record "scenarios exit" 1

# 3. the documentation says what the code does: the runbook's commands are
#    the demo's, and Troubleshooting quotes every error the code raises
$PY test/check_docs.py >"$SANDBOX/check_docs.log" 2>&1
docs_rc=$?
cat "$SANDBOX/check_docs.log"
record "docs: runbook = demo, troubleshooting = the code's errors" $docs_rc

# 4. no API key anywhere in the server log of the run
leak=0
for k in "$XENDIT_KEY" "$SYSTEMEIO_KEY" xnd_wrong_key_for_tests xnd_fake_bad_secret_1; do
    if grep -qF -- "$k" "$SANDBOX/server.log"; then leak=1; echo "an API key appears in the server log"; fi
done
record "server log holds no API key" $leak

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
