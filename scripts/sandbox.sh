#!/usr/bin/env bash
# The throwaway environment of `make demo`, `make test` and `make bench`:
# a private copy of the PostgreSQL 15 installation with migrate_ext installed
# into it, a cluster run by the `postgres` OS user, and the local API
# emulator.  Everything lives in one temporary folder, removed on exit;
# nothing is installed into the system's PostgreSQL.
#
# Source this file, then call sandbox_start [SCALE].  It exports PGHOST,
# PGPORT, PGUSER, PGDATABASE, EMULATOR_URL, XENDIT_KEY, SYSTEMEIO_KEY,
# SANDBOX and PG_BIN.  KEEP_SANDBOX=1 keeps the folder for inspection.
# SANDBOX_CRON_DATABASE names the database pg_cron lives in (default postgres).

SANDBOX_PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3

# Run a command as the postgres OS user (PostgreSQL refuses to run as root)
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# Stop the cluster and the emulator, and remove the temporary folder
sandbox_stop() {
    local rc=$?
    if [ -n "${SANDBOX:-}" ] && [ -d "$SANDBOX" ]; then
        if [ -f "$SANDBOX/data/postmaster.pid" ]; then
            as_postgres "$PG_BIN/pg_ctl" -D "$SANDBOX/data" -m immediate -w stop >/dev/null 2>&1 || true
        fi
        if [ -n "${EMULATOR_PID:-}" ]; then
            kill "$EMULATOR_PID" 2>/dev/null || true
            wait "$EMULATOR_PID" 2>/dev/null || true
        fi
        if [ "${KEEP_SANDBOX:-0}" = 1 ]; then
            echo "sandbox kept in $SANDBOX"
        else
            rm -rf "$SANDBOX"
        fi
    fi
    return $rc
}

# Start the emulator serving the data set of the given scale; sets EMULATOR_URL
sandbox_start_emulator() {
    local scale=$1
    # a self-signed certificate for 127.0.0.1, so that HTTPS and its
    # verification are tested too (migrate_ext.ca_file trusts it)
    mkdir -p "$SANDBOX/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" \
        -keyout "$SANDBOX/tls/key.pem" -out "$SANDBOX/tls/cert.pem" >/dev/null 2>&1 ||
        { echo "openssl could not make a test certificate" >&2; return 1; }
    chmod 644 "$SANDBOX/tls/cert.pem"
    # the keys travel in the environment, not on the command line (ps shows that)
    EMU_XENDIT_KEY="$XENDIT_KEY" EMU_SYSTEMEIO_KEY="$SYSTEMEIO_KEY" \
        $PY "$SANDBOX_PROJECT/test/emulator/emulator.py" --port 0 \
        --port-file "$SANDBOX/emulator.port" --trap-port-file "$SANDBOX/trap.port" \
        --scale "$scale" --log "$SANDBOX/emulator.log" \
        --tls-cert "$SANDBOX/tls/cert.pem" --tls-key "$SANDBOX/tls/key.pem" \
        --tls-port-file "$SANDBOX/emulator_tls.port" >"$SANDBOX/emulator.out" 2>&1 &
    EMULATOR_PID=$!
    local i
    for i in $(seq 1 600); do
        [ -s "$SANDBOX/emulator.port" ] && break
        kill -0 "$EMULATOR_PID" 2>/dev/null || { cat "$SANDBOX/emulator.out" >&2; return 1; }
        sleep 0.1
    done
    [ -s "$SANDBOX/emulator.port" ] || { echo "the API emulator did not start" >&2; return 1; }
    export EMULATOR_URL="http://127.0.0.1:$(cat "$SANDBOX/emulator.port")"
    export EMULATOR_TLS_URL="https://127.0.0.1:$(cat "$SANDBOX/emulator_tls.port")"
}

# Create the sandbox: PostgreSQL copy, migrate_ext, cluster, emulator
sandbox_start() {
    local scale=${1:-1}
    local pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
    local bindir sharedir pkglibdir libroot

    SANDBOX=$(mktemp -d /tmp/migrate_ext.XXXXXX)
    export SANDBOX
    trap sandbox_stop EXIT
    trap 'exit 130' INT TERM
    chmod 755 "$SANDBOX"

    # a private copy of the installation: PostgreSQL finds its share and lib
    # folders relative to its binaries, so the extension goes in here only
    bindir=$("$pg_config" --bindir)
    sharedir=$("$pg_config" --sharedir)
    pkglibdir=$("$pg_config" --pkglibdir)
    libroot=$(dirname "$bindir")
    mkdir -p "$SANDBOX/pg$(dirname "$libroot")" "$SANDBOX/pg$(dirname "$sharedir")"
    cp -a "$libroot" "$SANDBOX/pg$libroot"
    cp -a "$sharedir" "$SANDBOX/pg$sharedir"
    make -s -C "$SANDBOX_PROJECT" install DESTDIR="$SANDBOX/pg" PG_CONFIG="$pg_config" >/dev/null
    export PG_BIN="$SANDBOX/pg$bindir"
    [ -f "$SANDBOX/pg$pkglibdir/migrate_ext.so" ] || { echo "migrate_ext was not installed into the sandbox" >&2; return 1; }

    XENDIT_KEY="xnd_development_$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
    SYSTEMEIO_KEY="sio_$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    export XENDIT_KEY SYSTEMEIO_KEY
    chown -R postgres "$SANDBOX"

    sandbox_start_emulator "$scale"

    # the bootstrap superuser is supabase_admin, as on Supabase, so that
    # "postgres" can be an ordinary role that owns the application tables
    as_postgres "$PG_BIN/initdb" -D "$SANDBOX/data" -U supabase_admin --auth=trust \
        -E UTF8 --locale=C.UTF-8 >"$SANDBOX/initdb.log" 2>&1 ||
        { cat "$SANDBOX/initdb.log" >&2; return 1; }
    cat >>"$SANDBOX/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$SANDBOX'
port = 5432
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = logical
shared_buffers = 256MB
max_wal_size = 4GB
log_line_prefix = '%m [%p] %u@%d '
# pg_cron, as on Supabase: the nightly sync and reconcile (doc/runbook.md);
# jobs run in background workers (no TCP here), scheduled from the database
# cron.database_name names (the demo's is its application database)
shared_preload_libraries = 'pg_cron'
cron.database_name = '${SANDBOX_CRON_DATABASE:-postgres}'
cron.use_background_workers = on
max_worker_processes = 16
migrate_ext.xendit_base_url = '$EMULATOR_URL'
migrate_ext.systemeio_base_url = '$EMULATOR_URL'
regress.emulator_url = '$EMULATOR_URL'
regress.emulator_tls_url = '$EMULATOR_TLS_URL'
regress.emulator_ca_file = '$SANDBOX/tls/cert.pem'
CONF
    as_postgres "$PG_BIN/pg_ctl" -D "$SANDBOX/data" -l "$SANDBOX/server.log" -w start >/dev/null ||
        { cat "$SANDBOX/server.log" >&2; return 1; }
    export PGHOST="$SANDBOX" PGPORT=5432 PGUSER=supabase_admin PGDATABASE=postgres
}
