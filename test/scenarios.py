#!/usr/bin/python3
"""Scenarios that need several sessions or a stopwatch: query cancel and
statement_timeout during a slow response and during a back-off, progress seen
from another session, and two syncs at once.

Run by test/run.sh inside the sandbox (PGHOST etc. and EMULATOR_URL set).
Writes "PASSED FAILED" to $SANDBOX/scenarios.result.
"""
import os
import subprocess
import sys
import time

PSQL = os.path.join(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"), "psql")
DB = "migrate_ext_scenarios"
results = []


def psql(sql, db=DB, timeout=120):
    """Run SQL in a new session; return (exit code, stdout, stderr)."""
    p = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db],
                       input=sql + "\n", capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def value(sql):
    """The single value a query returns; raises if it fails."""
    rc, out, err = psql(sql)
    if rc != 0:
        raise RuntimeError(err)
    return out


def start_sync(label, setup):
    """Start a sync in the background with the given session setup SQL."""
    sql = ("SET application_name = '%s';\n%s\n"
           "SELECT source, status FROM migrate_ext.sync_raw_api_data();" % (label, setup))
    proc = subprocess.Popen([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", DB],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write(sql + "\n")
    proc.stdin.close()
    proc.stdin = None
    return proc


def wait_for(sql, timeout=20):
    """Poll a query until it returns a non-empty value; return it or None."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = value(sql)
        if out:
            return out
        time.sleep(0.05)
    return None


def check(name, ok, detail=""):
    """Record and print one scenario's outcome."""
    results.append(ok)
    print("%s %s%s" % ("ok:  " if ok else "FAIL:", name, "" if ok else " -- " + detail))


def emulator(xendit, systemeio=""):
    """Session SQL pointing both sources at the emulator with path modifiers."""
    base = os.environ["EMULATOR_URL"]
    return ("SELECT set_config('migrate_ext.xendit_base_url', '%s%s', false), "
            "set_config('migrate_ext.systemeio_base_url', '%s%s', false) \\g /dev/null"
            % (base, xendit, base, systemeio))


def state():
    """What a sync could have written: run count and a digest of both raw tables."""
    return value("SELECT (SELECT count(*) FROM migrate_ext.sync_runs) || ' ' || "
                 "(SELECT md5(string_agg(id || api_response::text || api_synced_at::text, ',' ORDER BY id)) "
                 "FROM migrate_ext.xendit_raw) || ' ' || "
                 "(SELECT md5(string_agg(id || api_response::text || api_synced_at::text, ',' ORDER BY id)) "
                 "FROM migrate_ext.systemeio_raw)")


def setup():
    """A database with the extension, the keys and one full sync."""
    psql("DROP DATABASE IF EXISTS %s" % DB, db="postgres")
    rc, _, err = psql("CREATE DATABASE %s" % DB, db="postgres")
    if rc != 0:
        raise RuntimeError(err)
    value("CREATE EXTENSION migrate_ext")
    subprocess.run([PSQL, "-X", "-q", "-d", DB, "-v", "ON_ERROR_STOP=1",
                    "-v", "xk=" + os.environ["XENDIT_KEY"], "-v", "sk=" + os.environ["SYSTEMEIO_KEY"]],
                   input="SELECT migrate_ext.set_api_key('xendit', :'xk') \\g /dev/null\n"
                         "SELECT migrate_ext.set_api_key('systemeio', :'sk') \\g /dev/null\n",
                   text=True, check=True)
    out = value("SET client_min_messages = warning; "
                "SELECT string_agg(status, ',') FROM migrate_ext.sync_raw_api_data()")
    if out != "succeeded,succeeded":
        raise RuntimeError("first sync: " + out)


def timed_out_sync(name, modifiers, extra=""):
    """statement_timeout stops a sync within a second, leaving nothing of it."""
    before = state()
    t0 = time.time()
    rc, out, err = psql("SET client_min_messages = warning; %s SET statement_timeout = '1s';\n%s\n"
                        "SELECT migrate_ext.sync_raw_api_data();" % (extra, emulator(modifiers, modifiers)))
    elapsed = time.time() - t0
    check("%s: stopped by statement_timeout" % name,
          rc != 0 and "canceling statement due to statement timeout" in err, err)
    check("%s: within one second of the timeout (%.2f s in all)" % (name, elapsed), 0.9 < elapsed < 2.0,
          "took %.2f s" % elapsed)
    check("%s: nothing of the sync remains" % name, state() == before)


def cancelled_sync(name, modifiers, extra, waiting_sql):
    """pg_cancel_backend stops a sync within a second, leaving nothing of it."""
    before = state()
    proc = start_sync(name, "SET client_min_messages = warning; " + extra + emulator(modifiers, modifiers))
    pid = wait_for("SELECT pid FROM pg_stat_activity WHERE application_name = '%s' AND %s"
                   % (name, waiting_sql))
    check("%s: seen waiting in pg_stat_activity" % name, pid is not None)
    if pid is None:
        proc.kill()
        proc.communicate()
        return
    t0 = time.time()
    value("SELECT pg_cancel_backend(%s)" % pid)
    _, err = proc.communicate(timeout=60)
    elapsed = time.time() - t0
    check("%s: stopped by pg_cancel_backend" % name,
          proc.returncode != 0 and "canceling statement due to user request" in err, err)
    check("%s: within one second (%.2f s)" % (name, elapsed), elapsed < 1.0, "took %.2f s" % elapsed)
    check("%s: nothing of the sync remains" % name, state() == before)


def progress_and_lock():
    """Another session sees the page reached; a second sync is refused."""
    proc = start_sync("progress", "SET client_min_messages = warning; " + emulator("/t/prog/f/slow.p5.n1.w3"))
    seen = wait_for("SELECT query || ' | ' || wait_event_type || ' | ' || wait_event "
                    "FROM pg_stat_activity WHERE application_name = 'progress' "
                    "AND query LIKE 'migrate_ext.sync_raw_api_data(): xendit page 4,%'")
    check("progress: pg_stat_activity shows source and page", seen is not None
          and "xendit page 4, 400 records" in seen and "Extension" in seen, str(seen))
    rc, out, err = psql("SELECT migrate_ext.sync_raw_api_data()")
    check("a second sync at the same time is refused clearly",
          rc != 0 and "another migrate_ext.sync_raw_api_data() is running" in err, err)
    out, err = proc.communicate(timeout=60)
    check("the first sync then completes", proc.returncode == 0
          and out.strip() == "xendit|succeeded\nsystemeio|succeeded", out + err)
    final = value("SELECT query FROM pg_stat_activity WHERE application_name = 'progress'")
    check("progress text is gone after the sync", "page" not in final, final)


def lock_protocol():
    """The swap's locks: a reader makes it retry and give up clearly; others wait one attempt at most."""
    value("CREATE TABLE lock_a (id int); CREATE TABLE lock_b (id int)")
    holder = start_sync("holder", "BEGIN; LOCK TABLE lock_b IN ACCESS SHARE MODE; SELECT pg_sleep(6); COMMIT;")
    held = wait_for("SELECT l.pid FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
                    "WHERE a.application_name = 'holder' AND l.relation = 'lock_b'::regclass AND l.granted")
    check("locks: a reader holds the table", held is not None)
    t0 = time.time()
    swapper = subprocess.Popen([PSQL, "-X", "-q", "-At", "-d", DB], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    swapper.stdin.write("SET migrate_ext.lock_timeout = '200ms'; SET migrate_ext.lock_retries = 3;\n"
                        "SELECT migrate_ext.lock_for_swap('{lock_a,lock_b}');\n")
    swapper.stdin.close()
    swapper.stdin = None
    worst = 0.0
    while swapper.poll() is None and time.time() - t0 < 10:
        s0 = time.time()
        psql("SELECT count(*) FROM lock_a")
        worst = max(worst, time.time() - s0)
    _, err = swapper.communicate(timeout=30)
    elapsed = time.time() - t0
    check("locks: the swap gives up with a clear error naming the table and the holder",
          swapper.returncode != 0 and "could not lock lock_b for the swap: 4 attempts of 200ms each timed out" in err
          and "Held by: pid" in err and "holder" in err, err)
    check("locks: it retried, then stopped (%.2f s)" % elapsed, 0.8 < elapsed < 5.0, "took %.2f s" % elapsed)
    check("locks: a third session never waited more than one attempt (worst %.2f s)" % worst, worst < 0.6,
          "worst %.2f s" % worst)
    holder.communicate(timeout=30)
    out = value("BEGIN; SELECT migrate_ext.lock_for_swap('{lock_a,lock_b}'); "
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND mode = 'AccessExclusiveLock' "
                "AND relation IN ('lock_a'::regclass, 'lock_b'::regclass); COMMIT;")
    check("locks: with the reader gone, one attempt locks everything", out.split() == ["1", "2"], out)
    value("DROP TABLE lock_a, lock_b")


def main():
    """Run every scenario and write the tally."""
    setup()
    # /changed/5 makes a sync that completed write rows, so "nothing remains" means something
    timed_out_sync("statement_timeout, slow response", "/changed/5/t/st1/f/slow.p3.n0.w30")
    timed_out_sync("statement_timeout, back-off after 429", "/changed/5/t/st2/f/429.p2.n0.w30",
                   "SET migrate_ext.max_retry_wait = '60s';")
    cancelled_sync("cancel_slow", "/changed/5/t/c1/f/slow.p3.n0.w30", "",
                   "wait_event_type = 'Extension' AND query LIKE '%xendit page 2,%'")
    cancelled_sync("cancel_backoff", "/changed/5/t/c2/f/429.p2.n0.w30",
                   "SET migrate_ext.max_retry_wait = '60s';",
                   "wait_event_type = 'Extension' AND query LIKE '%xendit page 1,%' "
                   "AND now() - query_start > interval '300 ms'")
    progress_and_lock()
    lock_protocol()
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    with open(os.path.join(os.environ["SANDBOX"], "scenarios.result"), "w") as f:
        f.write("%d %d\n" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
