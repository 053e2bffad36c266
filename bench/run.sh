#!/usr/bin/env bash
# `make bench`: the benchmarks of bench/ (see bench/README.md).
#
#   bench/run.sh [SCALE...]     default: 1 10
#   BENCH_REPEAT=3 bench/run.sh  three rounds per scale; each figure is the
#                                fastest round (default 1)
#   bench/run.sh validate [SCALE...]   the validation benchmark instead
#                                (bench/validate_bench.py), default: 1 10 100
#   bench/run.sh launch [SCALE...]     the launch benchmark instead
#                                (bench/launch_bench.py), default: 1 10 100
#
# Sync throughput of migrate_ext.sync_raw_api_data() against the local API
# emulator, next to the floor (the same records loaded from a local file),
# with backend peak memory and the WAL of a second, no-change sync.  Each
# scale runs in its own throwaway sandbox (scripts/sandbox.sh) under a time
# limit (BENCH_TIMEOUT seconds per scale, default 300 + 600 per round).
# Prints a table and writes it to bench/results/sync-<date>.txt (.json: all
# measurements).  Exits non-zero when a step
# fails; no server or emulator is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3

# The validation or launch benchmark, one scale in one sandbox:
#   bench/run.sh --one-validate SCALE OUT.json,  bench/run.sh --one-launch SCALE OUT.json
# The sandbox (and its emulator, which these benchmarks do not use) is started at scale 1:
# validate_bench.py / launch_bench.py generate the data set of the scale as files and load it
# without HTTP.
if [ "${1:-}" = --one-validate ] || [ "${1:-}" = --one-launch ]; then
    bench=${1#--one-} scale=$2 out=$3
    . scripts/sandbox.sh
    sandbox_start 1 || { echo "bench: the sandbox did not start" >&2; exit 1; }
    export EMULATOR_PID
    pm_pid=$(head -n 1 "$SANDBOX/data/postmaster.pid")
    bench_stop() {
        sandbox_stop || true
        if grep -qF "$SANDBOX" "/proc/$pm_pid/cmdline" 2>/dev/null; then kill -QUIT "$pm_pid" 2>/dev/null || true; fi
        kill "$EMULATOR_PID" 2>/dev/null || true
    }
    trap bench_stop EXIT
    child=""
    trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 130' INT TERM
    # the emulator is not needed: stop it now, it would only take memory
    kill "$EMULATOR_PID" 2>/dev/null || true
    $PY "bench/${bench}_bench.py" measure --scale "$scale" --dataset "$SANDBOX/dataset" \
        --out "$SANDBOX/result.json" &
    child=$!
    wait "$child" || { rc=$?; echo "bench: scale $scale failed; server log tail:" >&2
                       grep -v 'duration: \|^\s' "$SANDBOX/server.log" | tail -n 20 >&2 || true; exit "$rc"; }
    child=""
    cp "$SANDBOX/result.json" "$out"
    exit 0
fi

# One scale in one sandbox: bench/run.sh --one SCALE OUT.json
if [ "${1:-}" = --one ]; then
    scale=$2 out=$3
    . scripts/sandbox.sh
    sandbox_start "$scale" || { echo "bench: the sandbox did not start" >&2; exit 1; }
    export EMULATOR_PID
    # belt and braces: should the sandbox folder disappear under us (postmaster.pid
    # gone), sandbox_stop could not stop the server, so stop it by its pid
    pm_pid=$(head -n 1 "$SANDBOX/data/postmaster.pid")
    bench_stop() {
        sandbox_stop || true
        if grep -qF "$SANDBOX" "/proc/$pm_pid/cmdline" 2>/dev/null; then kill -QUIT "$pm_pid" 2>/dev/null || true; fi
        kill "$EMULATOR_PID" 2>/dev/null || true
    }
    trap bench_stop EXIT
    # a TERM from the time limit: stop the measuring script, then the EXIT
    # trap (bench_stop) stops the cluster and the emulator
    child=""
    trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 130' INT TERM
    echo "bench: scale $scale: generating the same data set as files"
    as_postgres $PY test/emulator/generate.py --scale "$scale" --out "$SANDBOX/dataset" >/dev/null ||
        { echo "bench: test/emulator/generate.py failed" >&2; exit 1; }
    $PY bench/sync_bench.py measure --scale "$scale" --dataset "$SANDBOX/dataset" \
        --repeat "${BENCH_REPEAT:-1}" --out "$SANDBOX/result.json" &
    child=$!
    wait "$child" || { rc=$?; echo "bench: scale $scale failed; server log tail:" >&2
                       tail -n 20 "$SANDBOX/server.log" >&2 || true; exit "$rc"; }
    child=""
    cp "$SANDBOX/result.json" "$out"
    exit 0
fi

mode=sync
case "${1:-}" in
    sync|validate|launch) mode=$1; shift ;;
esac
scales=("$@")
if [ ${#scales[@]} -eq 0 ]; then
    if [ "$mode" = sync ]; then scales=(1 10); else scales=(1 10 100); fi
fi
for s in "${scales[@]}"; do
    [[ "$s" =~ ^[0-9]+$ ]] && [ "$s" -ge 1 ] ||
        { echo "usage: bench/run.sh [sync|validate|launch] [SCALE...]  (whole numbers >= 1)" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || [ "$(id -un)" = postgres ] ||
    { echo "bench: run as root (the cluster runs as the postgres OS user)" >&2; exit 1; }
[[ "${BENCH_REPEAT:-1}" =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_REPEAT must be a whole number >= 1" >&2; exit 2; }
limit=${BENCH_TIMEOUT:-$((300 + 600 * ${BENCH_REPEAT:-1}))}
[ -f migrate_ext.so ] || { echo "bench: build first (make bench does)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/migrate_ext_bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
read -r load1 _ </proc/loadavg
echo "bench: load average $load1 before starting (another job on the 2 cores skews the numbers)"

jsons=()
for s in "${scales[@]}"; do
    echo "bench: === scale $s ==="
    # the limit TERMs the --one process (which cleans up), then KILLs it 60 s later
    if [ "$mode" = validate ]; then
        # validation: BENCH_TIMEOUT seconds per scale, default 900 + 20 per scale unit (data
        # set, production, raw tables) + 3 validation runs of at most BENCH_VALIDATE_TIMEOUT
        limit=${BENCH_TIMEOUT:-$((900 + 20 * s + 3 * ${BENCH_VALIDATE_TIMEOUT:-1200}))}
        timeout -k 60 "$limit" "$0" --one-validate "$s" "$tmp/scale$s.json" &
    elif [ "$mode" = launch ]; then
        # launch: BENCH_TIMEOUT seconds per scale, default 1200 + 40 per scale unit (data set,
        # production, raw tables, two validations, a copy of the database per method, the methods)
        limit=${BENCH_TIMEOUT:-$((1200 + 40 * s))}
        timeout -k 60 "$limit" "$0" --one-launch "$s" "$tmp/scale$s.json" &
    else
        timeout -k 60 "$limit" "$0" --one "$s" "$tmp/scale$s.json" &
    fi
    one=$!
    trap 'kill -TERM "$one" 2>/dev/null; wait "$one"; exit 130' INT TERM
    if ! wait "$one"; then
        echo "bench: FAILED at scale $s (or it took more than $limit s, BENCH_TIMEOUT)" >&2
        exit 1
    fi
    jsons+=("$tmp/scale$s.json")
done

mkdir -p bench/results
echo
$PY "bench/${mode}_bench.py" report --results-file "bench/results/$mode-$(date +%Y%m%d-%H%M%S).txt" "${jsons[@]}"
