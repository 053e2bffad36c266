#!/usr/bin/python3
"""Launch benchmark of migrate_ext (run by `bench/run.sh launch` inside the sandbox).

  launch_bench.py measure --scale N --dataset DIR --out FILE.json
      In the running sandbox (PGHOST, PGPORT, PGUSER=supabase_admin, PG_BIN and SANDBOX set),
      measure at one scale three ways of putting the same staged data into production:
        1. the data set, production and raw tables as validate_bench.py builds them (generate.py,
           production_data.py, production.sql, store_page() from the files, no HTTP), in database
           bench_launch (owned by role postgres, as on Supabase: test/fixture/schema.sql);
        2. staging without errors, as the DBA of demo/demo.sql gets it: a validation, exclusions
           ('%@example.com', '%@test.com', every xendit/systemeio record with an error), a second
           validation (0 errors, staging 'ready' in migration_status()); then VACUUM ANALYZE;
        3. each method in its own copy of that database (CREATE DATABASE ... TEMPLATE
           bench_launch), as role postgres:
             launch           SELECT migrate_ext.launch_clean_production(): the rename swap;
             delete_insert    one transaction: create_auth_users(); the rows of every table whose
                              foreign keys reach the swapped tables copied into temp tables and
                              deleted; DELETE FROM the three tables; INSERT ... SELECT from
                              migrate_staging; the copied rows inserted back;
             truncate_insert  the same with one TRUNCATE ... CASCADE instead of the DELETEs;
           total time and lock-hold time (server clock), the backend's CPU time, and, from two
           other sessions issuing one statement every BENCH_PROBE_MS ms (default 10; 0: none), how
           long a reader (SELECT count(*) FROM public.transactions WHERE false) and a writer (an
           UPDATE of one transaction that production and staging both hold) waited;
        4. after each method: production holds exactly staging's rows (counts and ids), and every
           table that references it holds the rows it held before.
      At scales up to STRAIGHT_DELETE_MAX_SCALE, a plain DELETE of the three tables (nothing set
      aside) is tried in one more copy and rolled back, to record the error it ends with.
      Writes everything to FILE.json; exits non-zero with a message when a step or a check fails.

  launch_bench.py report --results-file FILE.txt SCALE.json...
      Print the tables of the measured scales and write them to FILE.txt (every measurement to
      FILE.json; such a FILE.json may be given again instead of the SCALE.json files).
"""

import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sync_bench as sb  # noqa: E402  (psql helpers, the backend's /proc figures)
import validate_bench as vb  # noqa: E402  (data set, production, raw tables without HTTP)

DB = "bench_launch"
vb.DB = DB                                    # validate_bench's steps build and count this database
PUBLIC = ("public.unified_profiles", "public.transactions", "public.enrollments")
# enrollments reference the other two, so they go first
DELETE_ORDER = ("public.enrollments", "public.transactions", "public.unified_profiles")
# transactions before profiles: the after_transaction_insert trigger then finds no profile and
# enrolls nobody (an enrollment it made would collide with staging's); enrollments last
INSERT_ORDER = ("public.transactions", "public.unified_profiles", "public.enrollments")
METHODS = (("launch", "rename swap: launch_clean_production()"),
           ("delete_insert", "DELETE + INSERT, one transaction"),
           ("truncate_insert", "TRUNCATE CASCADE + INSERT, one transaction"))
PROBE_MS = int(os.environ.get("BENCH_PROBE_MS", "10"))           # 0: no reader and writer probes
METHOD_TIMEOUT = int(os.environ.get("BENCH_METHOD_TIMEOUT", "3600"))   # one method's session, s
STRAIGHT_DELETE_MAX_SCALE = 10                # the failing plain DELETE is tried up to this scale
TOP = 3                                       # slowest statements under the locks shown per scale
ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

BenchError = sb.BenchError
log = sb.log


# ---------------------------------------------------------------------------------------------
# Step 2: staging without errors

VALIDATE_STEP = r"""
SELECT clock_timestamp() AS t0 \gset
SELECT 'report_rows', count(*) FROM migrate_ext.validate_and_prepare_clean_data();
SELECT '{tag}', extract(epoch FROM clock_timestamp() - :'t0'::timestamptz), errors, warnings
  FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1;
"""

# demo/demo.sql's exclusions; one row per record even when it has errors of several rules
EXCLUDE = r"""
INSERT INTO migrate_ext.exclusions (kind, value, reason)
VALUES ('email', '%@example.com', 'test accounts'), ('email', '%@test.com', 'test accounts');
INSERT INTO migrate_ext.exclusions (kind, value, reason)
SELECT CASE WHEN source = 'systemeio' THEN 'systemeio_id' ELSE 'xendit_id' END, record_id,
       'bench: cannot be fixed upstream today (' || string_agg(DISTINCT rule, ', ') || ')'
  FROM migrate_ext.validation_issues
 WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error'
   AND source IN ('xendit', 'systemeio')
 GROUP BY 1, 2;
"""


def prepare_staging(args):
    """Validate, exclude what demo/demo.sql excludes, validate again, as postgres; fails unless
    the second validation has no error and migration_status() says staging is ready.  Then
    VACUUM ANALYZE (what autovacuum, off here, would have done) and a checkpoint."""
    log("scale %s: validate_and_prepare_clean_data(), exclusions, validate again (as postgres)" % args.scale)
    body = "\n".join([
        "SET client_min_messages = warning;",
        "SET statement_timeout = '%s';" % sb.STATEMENT_TIMEOUT,
        VALIDATE_STEP.format(tag="first"),
        EXCLUDE,
        "SELECT 'excluded', kind, count(*) FROM migrate_ext.exclusions GROUP BY 2 ORDER BY 2;",
        VALIDATE_STEP.format(tag="second"),
        "SELECT 'left', source, rule, count(*) FROM migrate_ext.validation_issues"
        " WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) AND severity = 'error'"
        " GROUP BY 2, 3 ORDER BY 2, 3;",
        "SELECT 'status', state, detail FROM migrate_ext.migration_status() WHERE item = 'staging';"])
    rows = vb.psql_as(body, DB, "postgres", timeout=2 * vb.VALIDATE_TIMEOUT + 600)
    (s1, e1, w1), = sb.tagged(rows, "first")
    (s2, e2, w2), = sb.tagged(rows, "second")
    (state, detail), = sb.tagged(rows, "status")
    out = {"first_seconds": float(s1), "first_errors": int(e1), "first_warnings": int(w1),
           "exclusions": {k: int(n) for k, n in sb.tagged(rows, "excluded")},
           "second_seconds": float(s2), "errors": int(e2), "warnings": int(w2),
           "staging_state": state}
    log("  first run %.2f s (%d errors), %s exclusions, second run %.2f s (%d errors, %d warnings)"
        % (out["first_seconds"], out["first_errors"], sum(out["exclusions"].values()),
           out["second_seconds"], out["errors"], out["warnings"]))
    if out["errors"]:
        raise BenchError("the second validation still found %d errors (the launch would refuse): %s"
                         % (out["errors"], "; ".join("%s %s %s" % tuple(r) for r in sb.tagged(rows, "left"))))
    if state != "ready":
        raise BenchError("staging is not ready to launch: %s" % detail)
    t = time.time()
    sb.psql("VACUUM (ANALYZE);\nCHECKPOINT;", DB, timeout=vb.LOAD_TIMEOUT)
    out["vacuum_analyze_seconds"] = time.time() - t
    return out


# ---------------------------------------------------------------------------------------------
# What every copy starts from

def parents_first(tables, edges):
    """The tables ordered so that each comes after the tables its foreign keys reference (edges:
    (child, parent) pairs; self-references ignored; a cycle is broken in name order)."""
    order, left = [], sorted(tables)
    while left:
        ready = [t for t in left if not any(c == t and p in left and p != t for c, p in edges)]
        t = (ready or left)[0]
        order.append(t)
        left.remove(t)
    return order


def template_facts():
    """Read from bench_launch: staging's and production's counts and id digests, the tables whose
    foreign keys reach the swapped tables (directly or through each other: what TRUNCATE ...
    CASCADE empties) with their rows and foreign keys, every table's insertable columns, the
    writer probe's row, and the rows of migration_log (written by the fixture's triggers)."""
    rows = sb.psql(r"""
        SELECT 'fk', format('%I.%I', cn.nspname, c.relname), format('%I.%I', pn.nspname, p.relname),
               k.conname, k.confdeltype, k.condeferrable
          FROM pg_constraint AS k
          JOIN pg_class AS c ON c.oid = k.conrelid JOIN pg_namespace AS cn ON cn.oid = c.relnamespace
          JOIN pg_class AS p ON p.oid = k.confrelid JOIN pg_namespace AS pn ON pn.oid = p.relnamespace
         WHERE k.contype = 'f' ORDER BY 2, 4;
        SELECT 'cols', format('%I.%I', n.nspname, c.relname),
               string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
          FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
          JOIN pg_attribute AS a ON a.attrelid = c.oid
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
         GROUP BY 2;
        SELECT 'probe_row', p.id FROM public.transactions AS p JOIN migrate_staging.transactions AS s USING (id)
         ORDER BY p.id LIMIT 1;
        SELECT 'log', count(*) FROM public.migration_log;
        """, DB, timeout=600)
    fks = [{"child": c, "parent": p, "name": n, "on_delete": ACTIONS.get(d, d), "deferrable": f == "t"}
           for c, p, n, d, f in sb.tagged(rows, "fk")]
    dependents = set()
    while True:
        more = {f["child"] for f in fks if (f["parent"] in PUBLIC or f["parent"] in dependents)
                and f["child"] not in PUBLIC} - dependents
        if not more:
            break
        dependents |= more
    edges = [(f["child"], f["parent"]) for f in fks if f["child"] in dependents and f["parent"] in dependents]
    cols = dict(sb.tagged(rows, "cols"))
    facts = {"columns": {t: cols[t] for t in list(PUBLIC) + sorted(dependents)},
             "dependents": parents_first(dependents, edges),
             "dependent_fks": [f for f in fks if f["child"] in dependents
                               and (f["parent"] in PUBLIC or f["parent"] in dependents)],
             "probe_row": sb.tagged(rows, "probe_row")[0][0],
             "migration_log": int(sb.tagged(rows, "log")[0][0])}
    counted = sb.psql("\n".join(
        ["SELECT 'staging', '%s', count(*), coalesce(sum(hashtextextended(id::text, 0)::numeric), 0)"
         " FROM migrate_staging.%s;" % (t, t.split(".")[1]) for t in PUBLIC]
        + ["SELECT 'production', '%s', count(*), coalesce(sum(hashtextextended(id::text, 0)::numeric), 0)"
           " FROM %s;" % (t, t) for t in PUBLIC]
        + ["SELECT 'dependent', '%s', count(*) FROM %s;" % (t, t) for t in facts["dependents"]]
        + ["SELECT 'new_auth_users', count(*) FROM migrate_staging.auth_users AS s"
           " WHERE NOT EXISTS (SELECT 1 FROM auth.users AS u WHERE u.id = s.id);"]), DB, timeout=600)
    for kind in ("staging", "production"):
        facts[kind] = {t: {"rows": int(n), "ids": d} for t, n, d in sb.tagged(counted, kind)}
    facts["dependent_rows"] = {t: int(n) for t, n in sb.tagged(counted, "dependent")}
    facts["new_auth_users"] = int(sb.tagged(counted, "new_auth_users")[0][0])
    facts["rows"] = sum(v["rows"] for v in facts["staging"].values())
    return facts


def clone(name):
    """A copy of bench_launch (FILE_COPY: the same blocks for every method), owned by postgres as
    on Supabase (the launch creates a schema and moves tables into public, which belongs to the
    database's owner); returns the seconds it took."""
    t = time.time()
    sb.psql("DROP DATABASE IF EXISTS %s;\nCREATE DATABASE %s TEMPLATE %s OWNER postgres STRATEGY FILE_COPY;"
            % (name, name, DB), "postgres", timeout=vb.LOAD_TIMEOUT)
    sb.psql("CHECKPOINT;", name, timeout=600)
    return time.time() - t


# ---------------------------------------------------------------------------------------------
# Step 3: the methods

def mark(label):
    """psql: a row with the server clock, named label."""
    return "SELECT 'mark', '%s', extract(epoch FROM clock_timestamp());" % label


def copy_rows(target, source, cols):
    """INSERT of every row of source into target (OVERRIDING SYSTEM VALUE: identity columns keep
    their values)."""
    return "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s;" % (target, cols, cols, source)


def method_body(method, facts):
    """The statements of one method (run as postgres), a mark after each step.  The mark 'locked'
    is taken just before the first statement that blocks the application (DELETE or TRUNCATE)."""
    if method == "launch":
        return ["SELECT 'result', migrate_ext.launch_clean_production();"]
    keep = {t: "keep_%d" % i for i, t in enumerate(facts["dependents"])}
    cols = facts["columns"]
    body = ["BEGIN;",
            "SELECT 'created', migrate_ext.create_auth_users();",
            mark("auth_users")]
    # the rows of the tables that reference production: the DELETEs would delete them (CASCADE),
    # change them (SET NULL) or be refused (RESTRICT, NO ACTION), TRUNCATE ... CASCADE empties them
    body += ["CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT * FROM %s;" % (keep[t], t) for t in facts["dependents"]]
    body.append(mark("locked"))
    if method == "delete_insert":
        body += ["DELETE FROM %s;" % t for t in reversed(facts["dependents"])]
        body.append(mark("delete_dependents"))
        for t in DELETE_ORDER:
            body += ["DELETE FROM %s;" % t, mark("DELETE " + t.split(".")[1])]
    else:
        body.append("TRUNCATE %s CASCADE;" % ", ".join(PUBLIC))
        body += ["SELECT 'emptied', '%s', count(*) FROM %s;" % (t, t) for t in facts["dependents"]]
        body.append(mark("TRUNCATE"))
    for t in INSERT_ORDER:
        body += [copy_rows(t, "migrate_staging." + t.split(".")[1], cols[t]), mark("INSERT " + t.split(".")[1])]
    body += [copy_rows(t, keep[t], cols[t]) for t in facts["dependents"]]
    body.append(mark("restore_dependents"))
    body.append("COMMIT;")
    return body


READER = ("SELECT 'probe', extract(epoch FROM statement_timestamp()), "
          "extract(epoch FROM clock_timestamp() - statement_timestamp()), n "
          "FROM (SELECT count(*) AS n FROM public.transactions WHERE false) AS s;")
WRITER = ("WITH u AS (UPDATE public.transactions SET metadata = metadata WHERE id = '{id}' RETURNING 1) "
          "SELECT 'probe', extract(epoch FROM statement_timestamp()), "
          "extract(epoch FROM clock_timestamp() - statement_timestamp()), n FROM (SELECT count(*) AS n FROM u) AS c;")


class Probe(threading.Thread):
    """Another session that runs one short statement every PROBE_MS ms, each after the previous
    one has returned; each reports when it started and how long it took on the server clock
    (lock waits included)."""

    def __init__(self, db, kind, sql):
        """Start the probe's psql session on db (kind: reader or writer)."""
        super().__init__(daemon=True)
        self.kind, self.sql = kind, sql
        self.samples = []                     # (start, seconds, rows)
        self.stop = threading.Event()
        self.error = None
        self.proc = subprocess.Popen([sb.PSQL, "-X", "-q", "-At", "-F", sb.SEP, "-v", "ON_ERROR_STOP=1", "-d", db],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)

    def run(self):
        """One statement, wait for its row, sleep PROBE_MS, until stopped."""
        try:
            self.proc.stdin.write("SET application_name = 'bench_probe_%s';\n" % self.kind)
            while not self.stop.is_set():
                self.proc.stdin.write(self.sql + "\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
                if not line:
                    raise BenchError("the %s probe's session ended: %s" % (self.kind, self.proc.stderr.read().strip()[-500:]))
                _, start, secs, n = line.rstrip("\n").split(sb.SEP)
                self.samples.append((float(start), float(secs), int(n)))
                self.stop.wait(PROBE_MS / 1000)
        except Exception as e:                # reported by finish()
            self.error = str(e)

    def finish(self, t0, t1):
        """Stop after the statement in flight; summarize the statements that ran while the method
        did (between t0 and t1, its start and end): how many, the longest wait, when it began."""
        self.stop.set()
        self.join(METHOD_TIMEOUT)
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        if self.error:
            raise BenchError(self.error)
        during = [s for s in self.samples if s[0] <= t1 and s[0] + s[1] >= t0]
        worst = max(during, key=lambda s: s[1]) if during else None
        return {"statements": len(self.samples), "during": len(during),
                "max_wait_s": worst[1] if worst else None,
                "max_wait_started_s": (worst[0] - t0) if worst else None,
                "waited_over_10ms": sum(1 for s in during if s[1] > 0.010),
                "rows_updated_during": sum(s[2] for s in during) if self.kind == "writer" else None,
                "slow": [[round(s[0] - t0, 4), s[1], s[2]] for s in self.samples if s[1] > 0.005]}


def loadavg():
    """The 1-minute load average."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_method(db, method, facts):
    """One method in the copy db, in a superuser session that reads its backend's CPU time before
    and after and runs the method as postgres (SET ROLE), while the probes run."""
    script = "\n".join(["SET application_name = 'bench_%s';" % method,
                        "SET client_min_messages = warning;",
                        "SET statement_timeout = '%s';" % sb.STATEMENT_TIMEOUT,
                        sb.PROC_SELF.format(tag="proc_before"),
                        "SET ROLE postgres;",
                        mark("start")]
                       + method_body(method, facts)
                       + [mark("end"),
                          "RESET ROLE;",
                          sb.PROC_SELF.format(tag="proc_after")])
    probes = []
    if PROBE_MS > 0:
        probes = [Probe(db, "reader", READER), Probe(db, "writer", WRITER.format(id=facts["probe_row"]))]
        for p in probes:
            p.start()
        time.sleep(0.3)                       # the probes are running before the method starts
    load = loadavg()
    try:
        rows = sb.psql(script, db, timeout=METHOD_TIMEOUT)
    finally:
        for p in probes:
            p.stop.set()
    marks = {label: float(t) for label, t in sb.tagged(rows, "mark")}
    before = sb.proc_row(next(r for r in rows if r[0] == "proc_before"))
    after = sb.proc_row(next(r for r in rows if r[0] == "proc_after"))
    info = {"load_before": load, "marks": {k: v - marks["start"] for k, v in marks.items()},
            "total_s": marks["end"] - marks["start"], "backend_cpu_s": after["cpu_s"] - before["cpu_s"]}
    info["probes"] = {p.kind: p.finish(marks["start"], marks["end"]) for p in probes}
    if method == "launch":
        (info["result"],), = sb.tagged(rows, "result")
        lock = sb.psql("SELECT 'lock', counts->>'lock_ms', counts->>'lock_attempts', counts->>'auth_users_created'"
                       " FROM migrate_ext.migrations WHERE state = 'launched' ORDER BY launched_at DESC LIMIT 1;", db)
        (lock_ms, attempts, created), = sb.tagged(lock, "lock")
        info.update({"lock_s": float(lock_ms) / 1000, "lock_attempts": int(attempts),
                     "auth_users_created": int(created)})
    else:
        (created,), = sb.tagged(rows, "created")
        info.update({"lock_s": marks["end"] - marks["locked"], "auth_users_created": int(created)})
        if method == "truncate_insert":
            info["emptied"] = {t: {"before": facts["dependent_rows"][t], "after_truncate": int(n)}
                               for t, n in sb.tagged(rows, "emptied")}
    return info


def check_production(db, facts, method):
    """Fails unless production holds exactly staging's rows (counts and id digests) and every
    table that references it holds as many rows as before; returns what migration_log gained and
    the sequential scans of those tables (pg_stat_user_tables of the copy: the method's)."""
    rows = sb.psql("\n".join(
        ["SELECT 'production', '%s', count(*), coalesce(sum(hashtextextended(id::text, 0)::numeric), 0)"
         " FROM %s;" % (t, t) for t in PUBLIC]
        + ["SELECT 'dependent', '%s', count(*) FROM %s;" % (t, t) for t in facts["dependents"]]
        + ["SELECT 'log', count(*) FROM public.migration_log;",
           "SELECT 'scans', format('%I.%I', s.schemaname, s.relname), s.seq_scan, io.heap_blks_hit + io.heap_blks_read"
           " FROM pg_stat_user_tables AS s JOIN pg_statio_user_tables AS io USING (relid);"]),
        db, timeout=600)
    for t, n, ids in sb.tagged(rows, "production"):
        want = facts["staging"][t]
        if int(n) != want["rows"] or ids != want["ids"]:
            raise BenchError("%s: after the %s, %s holds %s rows (ids digest %s); staging had %d (ids digest %s)"
                             % (db, method, t, n, ids, want["rows"], want["ids"]))
    for t, n in sb.tagged(rows, "dependent"):
        if int(n) != facts["dependent_rows"][t]:
            raise BenchError("%s: after the %s, %s holds %s rows, %d before"
                             % (db, method, t, n, facts["dependent_rows"][t]))
    scans = {t: (int(n), int(b)) for t, n, b in sb.tagged(rows, "scans") if t in facts["dependent_rows"]}
    return {"production_equals_staging": True, "dependents_kept": True,
            "migration_log_written": int(sb.tagged(rows, "log")[0][0]) - facts["migration_log"],
            "dependent_seq_scans": {t: {"scans": n, "heap_blocks": b} for t, (n, b) in scans.items()}}


PROFILE_SCHEMA = "migrate_backup_2000_01_01_00_00_00"
PROFILE = r"""
BEGIN;
SELECT migrate_ext.create_private_schema('{schema}');
SELECT 'created', migrate_ext.create_auth_users();
CREATE TEMP TABLE bench_steps (step integer, phase text, statement text, ms float8);
DO $$
DECLARE
    s record;
    t timestamptz;
BEGIN
    FOR s IN SELECT * FROM migrate_ext.swap_plan('migrate_staging', '{schema}') ORDER BY 1 LOOP
        t := clock_timestamp();
        EXECUTE s.statement;
        INSERT INTO bench_steps VALUES (s.step, s.phase, s.statement, 1000 * extract(epoch FROM clock_timestamp() - t));
    END LOOP;
END
$$;
SELECT 'step', step, phase, ms, left(regexp_replace(statement, '\s+', ' ', 'g'), 200) FROM bench_steps ORDER BY step;
ROLLBACK;
"""


def launch_profile(db):
    """The launch's swap plan (migrate_ext.swap_plan(), what run_swap() executes) run statement
    by statement as postgres, each timed, then rolled back: where the lock-hold time goes."""
    rows = vb.psql_as("SET client_min_messages = warning;\nSET statement_timeout = '%s';\n%s"
                      % (sb.STATEMENT_TIMEOUT, PROFILE.format(schema=PROFILE_SCHEMA)), db, "postgres",
                      timeout=METHOD_TIMEOUT)
    steps = [{"step": int(n), "phase": ph, "ms": float(ms), "statement": st} for n, ph, ms, st in sb.tagged(rows, "step")]
    phases = {}
    for st in steps:
        phases[st["phase"]] = phases.get(st["phase"], 0.0) + st["ms"]
    swap = [st for st in steps if st["phase"] == "swap"]
    return {"steps": steps, "phase_ms": phases, "swap_statements": len(swap),
            "validate_ms": sum(st["ms"] for st in swap if " VALIDATE CONSTRAINT " in st["statement"]),
            "validate_statements": sum(1 for st in swap if " VALIDATE CONSTRAINT " in st["statement"])}


def straight_delete(db):
    """A plain DELETE of the three tables in one transaction (SET CONSTRAINTS ALL DEFERRED, the
    rows of the other tables left where they are), as postgres, rolled back: the error it ends with
    and the seconds it took to get there."""
    script = "\n".join(["SET client_min_messages = warning;", "SET statement_timeout = '%s';" % sb.STATEMENT_TIMEOUT,
                        "SET ROLE postgres;", "BEGIN;", "SET CONSTRAINTS ALL DEFERRED;", mark("start")]
                       + ["DELETE FROM %s;\n%s" % (t, mark(t)) for t in DELETE_ORDER] + ["ROLLBACK;"])
    t = time.time()
    try:
        p = subprocess.run([sb.PSQL, "-X", "-q", "-At", "-F", sb.SEP, "-v", "ON_ERROR_STOP=1", "-d", db],
                           input=script + "\n", capture_output=True, text=True, timeout=METHOD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError("the plain DELETE did not finish within %d s" % METHOD_TIMEOUT)
    out = {"seconds": time.time() - t, "deleted_before_error": [r.split(sb.SEP)[1] for r in p.stdout.splitlines()
                                                                 if r.startswith("mark") and "start" not in r]}
    out["error"] = " ".join(l.strip() for l in p.stderr.splitlines()
                            if l.startswith(("ERROR", "DETAIL"))) if p.returncode else None
    return out


# ---------------------------------------------------------------------------------------------

def measure(args):
    """Steps 1-4 at one scale; everything goes to args.out."""
    out = {"scale": args.scale, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": sb.machine(),
           "probe_ms": PROBE_MS}
    out["pg_version"] = sb.psql("SHOW server_version;", "postgres")[0][0]
    out["settings"] = dict(sb.psql("SELECT name, current_setting(name) FROM pg_settings WHERE name IN"
                                   " ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'jit', 'fsync',"
                                   " 'synchronous_commit');", "postgres"))
    out["extension"] = vb.extension_version()
    out["prepare"] = vb.generate(args)
    out["prepare"].update(vb.build_database(args))       # schema.sql makes postgres the owner
    out["load"] = vb.load_raw(args)
    out["production_counts"] = vb.counts("production")
    out["staging_build"] = prepare_staging(args)
    out["facts"] = facts = template_facts()
    log("scale %s: %d staged rows; %d tables reference production: %s" % (
        args.scale, facts["rows"], len(facts["dependents"]),
        ", ".join("%s %d" % (t.replace("public.", ""), facts["dependent_rows"][t]) for t in facts["dependents"])))
    out["methods"] = {}
    for key, title in METHODS:
        name = "%s_%s" % (DB, key)
        log("scale %s: %s, in a copy of %s" % (args.scale, title, DB))
        clone_s = clone(name)
        info = run_method(name, key, facts)
        info["clone_seconds"] = clone_s
        info["check"] = check_production(name, facts, key)
        sb.psql("DROP DATABASE %s;" % name, "postgres", timeout=600)
        out["methods"][key] = info
        pr = info["probes"]
        log("  total %.3f s, lock held %.3f s%s" % (
            info["total_s"], info["lock_s"],
            "; reader waited up to %s s, writer %s s" % (seconds(pr["reader"]["max_wait_s"]), seconds(pr["writer"]["max_wait_s"]))
            if pr else ""))
    name = DB + "_profile"
    log("scale %s: the launch's swap plan statement by statement, timed, in a copy (rolled back)" % args.scale)
    clone(name)
    out["launch_profile"] = prof = launch_profile(name)
    sb.psql("DROP DATABASE %s;" % name, "postgres", timeout=600)
    log("  %s; %d VALIDATE CONSTRAINT under the locks: %.1f ms" % (
        ", ".join("%s %.1f ms" % kv for kv in prof["phase_ms"].items()), prof["validate_statements"],
        prof["validate_ms"]))
    if args.scale <= STRAIGHT_DELETE_MAX_SCALE:
        name = DB + "_straight"
        log("scale %s: a plain DELETE of the three tables, in a copy (rolled back)" % args.scale)
        clone(name)
        out["straight_delete"] = straight_delete(name)
        sb.psql("DROP DATABASE %s;" % name, "postgres", timeout=600)
        log("  %s" % (out["straight_delete"]["error"] or "no error"))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)


# ---------------------------------------------------------------------------------------------
# The report

STEPS = {"auth_users": "create_auth_users()", "locked": "copy dependents aside",
         "delete_dependents": "DELETE dependents", "restore_dependents": "dependents back", "end": "COMMIT"}


def seconds(x, digits=3):
    """A number of seconds for the tables, or '-'."""
    return "-" if x is None else "%.*f" % (digits, x)


def report(args):
    """Print the tables of the measured scales; write them to args.results_file and its .json."""
    runs = []
    for path in args.json:
        with open(path) as f:
            got = json.load(f)
        runs += got if isinstance(got, list) else [got]     # a results .json holds every scale
    runs.sort(key=lambda r: float(r["scale"]))
    lines = []
    w = lines.append
    first = runs[0]
    w("migrate_ext launch benchmark, %s" % time.strftime("%Y-%m-%d %H:%M"))
    w("machine: %s; PostgreSQL %s; %s" % (first["machine"], first["pg_version"],
                                         ", ".join("%s %s" % kv for kv in sorted(first["settings"].items()))))
    for r in runs:
        w("scale %s: migrate_ext %s" % (r["scale"], r["extension"]))
    w("")
    w("Putting the staged rows into production, each method in its own copy of the same database, as role postgres:")
    titles = dict(METHODS)
    hdr = ("scale", "method", "total s", "lock held s", "rows", "reader waited s", "writer waited s", "load")
    fmt = "%5s | %-42s | %8s | %11s | %8s | %15s | %15s | %4s"
    w(fmt % hdr)
    w("-" * len(fmt % hdr))
    for r in runs:
        for key, _ in METHODS:
            m = r["methods"][key]
            pr = m["probes"]
            w(fmt % (r["scale"], titles[key], seconds(m["total_s"]), seconds(m["lock_s"]), r["facts"]["rows"],
                     seconds(pr["reader"]["max_wait_s"]) if pr else "-",
                     seconds(pr["writer"]["max_wait_s"]) if pr else "-", "%.1f" % m["load_before"]))
        w("")
    w("total s: wall time on the server clock, from the statement's start to the end of its COMMIT.")
    w("lock held s: launch: ACCESS EXCLUSIVE locks, from the moment lock_for_swap() has them to the end of")
    w("  the swap (migrations.counts->'lock_ms'; the COMMIT right after is not counted);")
    w("  DELETE + INSERT: from the first DELETE to the end of COMMIT (ROW EXCLUSIVE on the tables and a row")
    w("  lock on every old row: writers of those rows wait, readers do not);")
    w("  TRUNCATE + INSERT: from TRUNCATE to the end of COMMIT (ACCESS EXCLUSIVE: everybody waits).")
    w("rows: rows production holds afterwards (staging's unified_profiles + transactions + enrollments).")
    w("reader / writer waited s: the longest any statement of the probe sessions took (one statement every")
    w("  %s ms, started after the previous one returned): SELECT count(*) FROM public.transactions WHERE false,"
      % first["probe_ms"])
    w("  and an UPDATE of one transaction that production and staging both hold.  load: 1-minute load")
    w("  average just before the method (2 cores; other jobs on the machine show up here).")
    w("")
    w("Where the time goes (seconds from the start of the method):")
    for r in runs:
        for key, _ in METHODS:
            m = r["methods"][key]
            mk = m["marks"]
            if key == "launch":
                detail = "lock %.1f ms in %d attempt(s); %d auth users created" % (
                    m["lock_s"] * 1000, m["lock_attempts"], m["auth_users_created"])
            else:
                prev, parts = 0.0, []
                for label, t in mk.items():
                    if label != "start":
                        parts.append("%s %.3f" % (STEPS.get(label, label), t - prev))
                        prev = t
                detail = ", ".join(parts)
            sc = m["check"].get("dependent_seq_scans", {})
            w("  scale %-3s %-15s total %8.3f, backend CPU %7.2f; migration_log rows written by triggers %d;"
              " referencing tables: %d sequential scans, %d heap blocks touched"
              % (r["scale"], key, m["total_s"], m["backend_cpu_s"], m["check"]["migration_log_written"],
                 sum(v["scans"] for v in sc.values()), sum(v["heap_blocks"] for v in sc.values())))
            w("            %s" % detail)
    w("")
    w("The launch's swap plan run statement by statement (each timed; a separate copy, rolled back):")
    for r in runs:
        pf = r.get("launch_profile")
        if not pf:
            continue
        w("  scale %-3s %s; under the locks %d statements, of which %d VALIDATE CONSTRAINT %.1f ms" % (
            r["scale"], ", ".join("%s %.1f ms" % kv for kv in pf["phase_ms"].items()), pf["swap_statements"],
            pf["validate_statements"], pf["validate_ms"]))
        for st in sorted((st for st in pf["steps"] if st["phase"] == "swap"), key=lambda st: -st["ms"])[:TOP]:
            w("            %8.1f ms  step %3d  %s" % (st["ms"], st["step"], vb.short(st["statement"], 110)))
    w("")
    w("Probes: statements issued during the method / of them waiting over 10 ms / the longest wait began at (s):")
    for r in runs:
        for key, _ in METHODS:
            pr = r["methods"][key]["probes"]
            if pr:
                w("  scale %-3s %-15s %s" % (r["scale"], key, "; ".join(
                    "%s %d / %d / %s" % (k, p["during"], p["waited_over_10ms"], seconds(p["max_wait_started_s"]))
                    for k, p in sorted(pr.items()))))
    w("")
    w("Tables whose foreign keys reach the swapped tables (directly or through each other); DELETE + INSERT")
    w("and TRUNCATE + INSERT copy their rows aside and insert them back in the same transaction:")
    for r in runs:
        f = r["facts"]
        w("  scale %-3s %s" % (r["scale"], ", ".join("%s %d" % (t.replace("public.", ""), f["dependent_rows"][t])
                                                    for t in f["dependents"])))
        em = r["methods"]["truncate_insert"].get("emptied", {})
        emptied = [t for t, v in em.items() if v["after_truncate"] == 0 and v["before"] > 0]
        w("            TRUNCATE ... CASCADE emptied %d of them (%d rows)" % (
            len(emptied), sum(em[t]["before"] for t in emptied)))
    w("  their foreign keys (ON DELETE action):")
    for k in first["facts"]["dependent_fks"]:
        w("    %-24s %-44s -> %-17s %s%s" % (k["child"].replace("public.", ""), k["name"],
                                           k["parent"].replace("public.", ""), k["on_delete"],
                                           ", DEFERRABLE" if k["deferrable"] else ""))
    for r in runs:
        sd = r.get("straight_delete")
        if sd:
            w("Plain DELETE of the three tables (SET CONSTRAINTS ALL DEFERRED, nothing set aside), scale %s:"
              % r["scale"])
            w("  after %.2f s (deleted: %s): %s" % (sd["seconds"], ", ".join(sd["deleted_before_error"]) or "nothing",
                                                  sd["error"] or "no error"))
    w("")
    w("Preparation (not measured above):")
    for r in runs:
        pr, ld, sg = r["prepare"], r["load"], r["staging_build"]
        w("  scale %-3s generate.py %.1f s, production_data.py %.1f s, production.sql loaded in %.1f s, raw tables %.1f s"
          % (r["scale"], pr["generate"]["seconds"], pr["production_data"]["seconds"], pr["production_seconds"],
             ld["seconds"]))
        w("            validation %.1f s (%d errors), %s exclusions, validation again %.1f s (%d errors, %d warnings),"
          " VACUUM ANALYZE %.1f s"
          % (sg["first_seconds"], sg["first_errors"], sum(sg["exclusions"].values()), sg["second_seconds"],
             sg["errors"], sg["warnings"], sg["vacuum_analyze_seconds"]))
        w("            each copy of the database: %s s" % "/".join(
            "%.1f" % r["methods"][k]["clone_seconds"] for k, _ in METHODS))
        if pr.get("duplicate_rows_dropped"):
            w("            production.sql repeated ids (a production_data.py bug); rows dropped before loading: %s"
              % ", ".join("%s %d" % kv for kv in sorted(pr["duplicate_rows_dropped"].items())))
    sb.write_report(lines, runs, args.results_file)


def main():
    """The launch benchmark's command line."""
    sb.run_cli(__doc__, measure, report, scale_type=int, errors=(OSError,))


if __name__ == "__main__":
    main()
