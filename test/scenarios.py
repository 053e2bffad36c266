#!/usr/bin/python3
"""Scenarios that need several sessions or a stopwatch: query cancel and
statement_timeout during a slow response and during a back-off, progress seen
from another session, two syncs at once, the swap's lock protocol, a launch
blocked by a reader, and two launches at once.

Run by test/run.sh inside the sandbox (PGHOST etc. and EMULATOR_URL set).
Writes "PASSED FAILED" to $SANDBOX/scenarios.result.
"""
import os
import subprocess
import sys
import time

PSQL = os.path.join(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"), "psql")
DB = "migrate_ext_scenarios"
LAUNCH_DB = "migrate_ext_launch"
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
          rc != 0 and "sync_raw_api_data() cannot start: migrate_ext.sync_raw_api_data() is running" in err, err)
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
    swapper = subprocess.Popen([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", DB], stdin=subprocess.PIPE,
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
          swapper.returncode != 0 and "could not lock public.lock_b for the swap: 4 attempts of 200ms each timed out" in err
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


def lock_order_views():
    """A view older than the table it reads (as after a launch) is locked after the tables, and a
    blocked swap names the table really waited on and its holder, not the view."""
    value("CREATE TABLE lock_old (id int); CREATE VIEW lock_v AS SELECT id FROM lock_old; "
          "CREATE TABLE lock_new (id int); CREATE OR REPLACE VIEW lock_v AS SELECT id FROM lock_new; DROP TABLE lock_old")
    holder = start_sync("viewholder", "BEGIN; LOCK TABLE lock_new IN ACCESS SHARE MODE; SELECT pg_sleep(4); COMMIT;")
    wait_for("SELECT l.pid FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
             "WHERE a.application_name = 'viewholder' AND l.relation = 'lock_new'::regclass AND l.granted")
    _, _, err = psql("SET migrate_ext.lock_timeout = '200ms'; SET migrate_ext.lock_retries = 1; "
                     "SELECT migrate_ext.lock_for_swap('{lock_v,lock_new}');")
    check("locks: a view older than its table: the error names the table waited on and its holder",
          "could not lock public.lock_new for the swap" in err and "viewholder" in err, err)
    holder.communicate(timeout=30)
    value("DROP VIEW lock_v; DROP TABLE lock_new")


def start_session(label, sql, db=DB, user=None):
    """Start a psql session in the background running sql; return the process."""
    cmd = [PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db] + (["-U", user] if user else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("SET application_name = '%s';\n%s\n" % (label, sql))
    proc.stdin.close()
    proc.stdin = None
    return proc


def launch_setup():
    """The Supabase-like fixture with its production, synced, validated without errors."""
    psql("DROP DATABASE IF EXISTS %s" % LAUNCH_DB, db="postgres")
    rc, _, err = psql("CREATE DATABASE %s" % LAUNCH_DB, db="postgres")
    if rc != 0:
        raise RuntimeError(err)
    subprocess.run([PSQL, "-X", "-q", "-d", LAUNCH_DB, "-v", "ON_ERROR_STOP=1",
                    "-v", "production_sql=" + os.path.join(os.environ["DATASET_DIR"], "production.sql"),
                    "-f", "test/fixture/load.psql"], capture_output=True, text=True, check=True)
    subprocess.run([PSQL, "-X", "-q", "-At", "-d", LAUNCH_DB, "-U", "postgres", "-v", "ON_ERROR_STOP=1",
                    "-v", "xk=" + os.environ["XENDIT_KEY"], "-v", "sk=" + os.environ["SYSTEMEIO_KEY"]],
                   input="SET client_min_messages = warning;\n"
                         "CREATE EXTENSION migrate_ext;\n"
                         "SELECT migrate_ext.set_api_key('xendit', :'xk') \\g /dev/null\n"
                         "SELECT migrate_ext.set_api_key('systemeio', :'sk') \\g /dev/null\n"
                         "SELECT count(*) FROM migrate_ext.sync_raw_api_data() \\g /dev/null\n"
                         "SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data() \\g /dev/null\n"
                         "INSERT INTO migrate_ext.exclusions (kind, value, reason) VALUES "
                         "('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');\n"
                         "INSERT INTO migrate_ext.exclusions (kind, value, reason) "
                         "SELECT DISTINCT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, "
                         "record_id, 'scenario' FROM migrate_ext.validation_issues WHERE severity = 'error';\n"
                         "SELECT count(*) FROM migrate_ext.validate_and_prepare_clean_data() \\g /dev/null\n",
                   capture_output=True, text=True, check=True)
    ready = launch_value("SELECT state FROM migrate_ext.migration_status() WHERE item = 'staging'")
    if ready != "ready":
        raise RuntimeError("staging is not ready: " + ready)


def launch_value(sql):
    """The single value a query returns in the launch database, as postgres."""
    p = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", LAUNCH_DB, "-U", "postgres"],
                       input=sql + "\n", capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("%s: %s" % (sql, p.stderr))
    return p.stdout.strip()


def launch_state():
    """What a launch could have changed: migrations, backup schemas, staging, production and auth counts."""
    return launch_value(
        "SELECT concat_ws(' ', (SELECT count(*) FROM migrate_ext.migrations), "
        "(SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'migrate\\_backup\\_%'), "
        "(SELECT count(*) FROM pg_class WHERE relnamespace = 'migrate_staging'::regnamespace AND relkind = 'r'), "
        "(SELECT count(*) FROM public.unified_profiles), (SELECT count(*) FROM public.transactions), "
        "(SELECT count(*) FROM auth.users), (SELECT count(*) FROM pg_constraint WHERE contype = 'f'))")


def launch_blocked_by_reader():
    """A reader holding a production table: the launch retries, gives up clearly, changes nothing; others wait one attempt at most."""
    before = launch_state()
    holder = start_session("reader", "BEGIN; SELECT count(*) FROM public.transactions; SELECT pg_sleep(6); COMMIT;",
                           db=LAUNCH_DB)
    held = wait_for("SELECT 1 FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
                    "WHERE a.application_name = 'reader' AND a.datname = '%s' AND l.granted "
                    "AND l.mode = 'AccessShareLock' AND l.relation IS NOT NULL AND a.state = 'active'" % LAUNCH_DB)
    check("launch: a reader holds public.transactions", held is not None)
    t0 = time.time()
    launcher = start_session("launcher", "SET migrate_ext.lock_timeout = '200ms'; SET migrate_ext.lock_retries = 3;\n"
                             "SELECT migrate_ext.launch_clean_production();", db=LAUNCH_DB, user="postgres")
    worst_read = worst_write = 0.0
    while launcher.poll() is None and time.time() - t0 < 15:
        s0 = time.time()
        launch_value("SELECT count(*) FROM public.unified_profiles")
        worst_read = max(worst_read, time.time() - s0)
        s0 = time.time()
        launch_value("UPDATE auth.users SET last_sign_in_at = last_sign_in_at "
                     "WHERE id = (SELECT id FROM auth.users ORDER BY id LIMIT 1)")
        worst_write = max(worst_write, time.time() - s0)
    _, err = launcher.communicate(timeout=30)
    elapsed = time.time() - t0
    check("launch: gives up with a clear error naming the table and the reader",
          launcher.returncode != 0
          and "could not lock public.transactions for the swap: 4 attempts of 200ms each timed out" in err
          and "reader" in err and "Nothing was changed" in err, err)
    check("launch: it retried, then stopped (%.2f s)" % elapsed, 0.8 < elapsed < 6.0, "took %.2f s" % elapsed)
    check("launch: a reader of another production table waited one attempt at most (worst %.2f s)" % worst_read,
          worst_read < 0.6, "worst %.2f s" % worst_read)
    check("launch: a sign-in writing auth.users waited one attempt at most (worst %.2f s)" % worst_write,
          worst_write < 0.6, "worst %.2f s" % worst_write)
    holder.communicate(timeout=30)
    after = launch_state()
    check("launch: a launch that gave up changed nothing", after == before, "%s -> %s" % (before, after))


def two_launches():
    """Two launches at once: one launches, the other fails at once with a clear error."""
    first = start_session("first_launch", "BEGIN;\nSELECT migrate_ext.launch_clean_production();\n"
                          "SELECT pg_sleep(2);\nCOMMIT;", db=LAUNCH_DB, user="postgres")
    wait_for("SELECT 1 FROM pg_stat_activity WHERE application_name = 'first_launch' AND query LIKE '%pg_sleep%'")
    t0 = time.time()
    second = start_session("second_launch", "SELECT migrate_ext.launch_clean_production();", db=LAUNCH_DB, user="postgres")
    _, err2 = second.communicate(timeout=30)
    waited = time.time() - t0
    out1, err1 = first.communicate(timeout=60)
    check("two launches: the first one launched", first.returncode == 0 and "SUCCESS: launched" in out1, err1)
    check("two launches: the second fails at once, clearly (%.2f s)" % waited,
          second.returncode != 0 and "launch_clean_production() cannot start: migrate_ext.launch_clean_production() is running" in err2 and waited < 2.0, err2)
    state = launch_value("SELECT string_agg(state, ',') || ' ' || "
                         "(SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'migrate\\_backup\\_%') "
                         "FROM migrate_ext.migrations")
    check("two launches: exactly one migration and one backup", state == "launched 1", state)


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
    lock_order_views()
    launch_setup()
    launch_blocked_by_reader()
    two_launches()
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    with open(os.path.join(os.environ["SANDBOX"], "scenarios.result"), "w") as f:
        f.write("%d %d\n" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
