#!/usr/bin/python3
"""Validation benchmark of migrate_ext (run by `bench/run.sh validate` inside the sandbox).

  validate_bench.py measure --scale N --dataset DIR --out FILE.json
      In the running sandbox (PGHOST, PGPORT, PGUSER=supabase_admin, PG_BIN and SANDBOX set),
      measure validate_and_prepare_clean_data() at one scale:
        1. generate the API data set (test/emulator/generate.py --scale N) and the contaminated
           production of the same people (test/fixture/production_data.py --scale N) into DIR,
           timed (not part of the validation time);
        2. a fresh database: roles.sql (cluster-wide), schema.sql, production.sql (timed), then
           CREATE EXTENSION migrate_ext as role postgres (not a superuser, as on Supabase);
        3. the raw tables filled from the generated files without HTTP: one COPY per file into a
           temp table, then migrate_ext.store_page() in pages of 1,000 records (the SQL the sync
           runs for each page), and one succeeded row per source in migrate_ext.sync_runs
           (validation refuses to run without a successful sync); then VACUUM ANALYZE of the
           database (what autovacuum would have done; it is off during the measurements);
        4. SELECT * FROM migrate_ext.validate_and_prepare_clean_data() as postgres, twice, each in
           a new session: the first run (identity_map empty) and a re-run (identity_map holds
           every id); time (server clock), backend CPU, backend memory (as sync_bench.py), issues,
           staging rows.  auto_explain is loaded in each run (log_nested_statements, no ANALYZE,
           log_min_duration BENCH_EXPLAIN_MIN_MS, default 10 ms): the server log then times every
           statement inside the function that took longer, at the cost of one EXPLAIN (no
           ANALYZE) per such statement.  Each run has a statement_timeout of
           BENCH_VALIDATE_TIMEOUT seconds (default 1200); a cancelled run is reported as such,
           with the statement it was in.  The re-run (and step 5) only happen when the first run
           took at most BENCH_RERUN_MAX seconds (default 600);
        5. unless BENCH_PROFILE=0, a third run (a re-run) with auto_explain.log_analyze on: the
           plans of the slowest statements with actual times and rows, and JIT times.
      Writes everything to FILE.json; exits non-zero with a message when a step fails.

  validate_bench.py report --results-file FILE.txt SCALE.json...
      Print the tables of the measured scales and write them to FILE.txt (every measurement,
      with the full plans of the slowest statements, to FILE.json).
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sync_bench as sb  # noqa: E402  (psql helpers, the memory sampler, the file loader)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable or "/usr/bin/python3"
DB = "bench_validate"
PAGE = 1000                                   # records per store_page() call
SOURCES = sb.SOURCES
KB, MB = sb.KB, sb.MB
# a validation at scale 100 runs for minutes: longer limits than the sync benchmark's
sb.STATEMENT_TIMEOUT = os.environ.get("BENCH_STATEMENT_TIMEOUT", "3600s")
VALIDATE_TIMEOUT = int(os.environ.get("BENCH_VALIDATE_TIMEOUT", "1200"))   # one validation run, s
RERUN_MAX = int(os.environ.get("BENCH_RERUN_MAX", "600"))   # re-run and profile only below this
LOAD_TIMEOUT = int(os.environ.get("BENCH_LOAD_TIMEOUT", "3600"))      # one generator or load step
PROFILE = os.environ.get("BENCH_PROFILE", "1") != "0"
EXPLAIN_MIN_MS = int(os.environ.get("BENCH_EXPLAIN_MIN_MS", "10"))
TOP = 3                                       # slowest statements shown per scale

BenchError = sb.BenchError
log = sb.log


# ---------------------------------------------------------------------------------------------
# Helpers

def timed_child(argv, timeout, what):
    """Run a command (its output to a log file next to its own); returns (wall seconds, peak RSS
    in MB of the command and its children, from wait4)."""
    logf = open(os.path.join(os.environ.get("SANDBOX") or "/tmp", "bench_%s.log" % os.path.basename(argv[1])), "w+")
    t = time.time()
    p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t
    if wall >= timeout:
        raise BenchError("%s did not finish within %d s" % (what, timeout))
    if p.returncode != 0:
        logf.seek(0)
        raise BenchError("%s failed (exit %d): %s" % (what, p.returncode, logf.read()[-2000:].strip()))
    logf.close()
    return wall, ru.ru_maxrss / 1024


def psql_file(path, db, user=None, timeout=LOAD_TIMEOUT):
    """psql -f PATH (ON_ERROR_STOP); returns wall seconds."""
    env = dict(os.environ)
    if user:
        env["PGUSER"] = user
    t = time.time()
    try:
        p = subprocess.run([sb.PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", path],
                           capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise BenchError("psql -f %s did not finish within %d s" % (path, timeout))
    if p.returncode != 0:
        raise BenchError("psql -f %s on %s failed (exit %d): %s"
                         % (path, db, p.returncode, p.stderr.strip()[-2000:]))
    return time.time() - t


def psql_as(sql, db, user, timeout=120):
    """sb.psql as another role (a new login, not SET ROLE)."""
    old = os.environ.get("PGUSER")
    os.environ["PGUSER"] = user
    try:
        return sb.psql(sql, db, timeout=timeout)
    finally:
        if old is None:
            del os.environ["PGUSER"]
        else:
            os.environ["PGUSER"] = old


def count_records(path):
    """Records in a generator file: one per line between the "[" and "]" lines."""
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip() not in (b"[", b"]", b""):
                n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Steps 1-3: data set, production, raw tables

def generate(args):
    os.makedirs(args.dataset, exist_ok=True)
    os.chmod(args.dataset, 0o755)
    out = {}
    for key, script in (("generate", "test/emulator/generate.py"),
                        ("production_data", "test/fixture/production_data.py")):
        log("scale %s: %s --scale %s" % (args.scale, script, args.scale))
        wall, rss = timed_child([PY, os.path.join(ROOT, script), "--scale", str(args.scale),
                                 "--out", args.dataset], LOAD_TIMEOUT, script)
        out[key] = {"seconds": wall, "max_rss_mb": rss}
        log("  %.1f s, peak RSS %.0f MB" % (wall, rss))
    out["file_mb"] = {f: os.path.getsize(os.path.join(args.dataset, f)) / MB
                      for f in ("invoices.json", "contacts.json", "production.sql")}
    return out


COPY_ID = re.compile(r'^COPY (\S+) \("id"[,)].* FROM STDIN;$')


def drop_duplicate_ids(path):
    """Work around generator output that production.sql cannot load: rows of one table that
    repeat an id (test/fixture/production_data.py at scale 100 writes one enrollment twice, which
    the primary key rejects).  Rewrites the file without the repeated rows (first one kept) and
    lowers the row count its closing check expects; returns {table: rows dropped}."""
    dropped, seen = {}, {}
    table = None
    tmp = path + ".tmp"
    with open(path, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as dst:
        for line in src:
            if table is None:
                m = COPY_ID.match(line.rstrip("\n"))
                if m:
                    table = m.group(1)
                    ids = seen.setdefault(table, set())
            elif line.startswith("\\."):
                table = None
            else:
                rid = line.split("\t", 1)[0]
                if rid in ids:
                    dropped[table] = dropped.get(table, 0) + 1
                    continue
                ids.add(rid)
            dst.write(line)
    if not dropped:
        os.unlink(tmp)
        return {}
    with open(tmp, encoding="utf-8") as src, open(path, "w", encoding="utf-8") as dst:
        for line in src:
            for t, n in dropped.items():
                m = re.match(r"(\s*SELECT count\(\*\) INTO n FROM %s; IF n <> )(\d+)( THEN .*expected )(\d+)(.*)$"
                             % re.escape(t), line.rstrip("\n"))
                if m:
                    line = "%s%d%s%d%s\n" % (m.group(1), int(m.group(2)) - n, m.group(3), int(m.group(4)) - n,
                                             m.group(5))
            dst.write(line)
    os.unlink(tmp)
    return dropped


def build_database(args):
    out = {}
    sb.psql("ALTER SYSTEM SET autovacuum = off;\nSELECT pg_reload_conf();", "postgres")
    psql_file(os.path.join(ROOT, "test/fixture/roles.sql"), "postgres")
    sb.psql("DROP DATABASE IF EXISTS %s;\nCREATE DATABASE %s;" % (DB, DB), "postgres")
    out["schema_seconds"] = psql_file(os.path.join(ROOT, "test/fixture/schema.sql"), DB)
    out["duplicate_rows_dropped"] = drop_duplicate_ids(os.path.join(args.dataset, "production.sql"))
    if out["duplicate_rows_dropped"]:
        log("  production.sql repeats ids; dropped the repeated rows: %s" % out["duplicate_rows_dropped"])
    log("scale %s: loading production.sql (%.0f MB)" % (args.scale,
                                                        os.path.getsize(os.path.join(args.dataset, "production.sql")) / MB))
    out["production_seconds"] = psql_file(os.path.join(args.dataset, "production.sql"), DB)
    log("  %.1f s" % out["production_seconds"])
    # as on Supabase: postgres, not a superuser, owns the tables and installs the extension
    rows = psql_as("SELECT rolsuper FROM pg_roles WHERE rolname = current_user;\n"
                   "CREATE EXTENSION migrate_ext;", DB, "postgres")
    if rows != [["f"]]:
        raise BenchError("role postgres should not be a superuser here: %s" % rows)
    return out


def load_raw(args):
    """The generator's files into the raw tables with store_page(), in pages of PAGE records, by
    the superuser (server-side COPY of the files); then one succeeded sync_runs row per source."""
    expected = {s: count_records(os.path.join(args.dataset, sb.FILES[s])) for s in SOURCES}
    log("scale %s: storing %s records with store_page() in pages of %d"
        % (args.scale, " + ".join("%d %s" % (expected[s], s) for s in SOURCES), PAGE))
    body = "\n".join(
        ["SET client_min_messages = warning;",
         "SET statement_timeout = '%s';" % sb.STATEMENT_TIMEOUT,
         "SELECT nextval('migrate_ext.sync_runs_run_id_seq') AS run_id \\gset",
         "SELECT clock_timestamp() AS t0 \\gset",
         "SELECT 'run', :run_id, :'t0';"]
        + [sb.file_block(s, os.path.join(args.dataset, sb.FILES[s]), PAGE) for s in SOURCES]
        + ["SELECT 'total', extract(epoch FROM clock_timestamp() - :'t0'::timestamptz), clock_timestamp();"])
    rows = sb.psql(body, DB, timeout=LOAD_TIMEOUT)
    (run_id, started), = sb.tagged(rows, "run")
    (secs, finished), = sb.tagged(rows, "total")
    out = {"seconds": float(secs), "run_id": int(run_id), "sources": {}}
    inserts = []
    for source, ins, upd, rej, _skipped, pages in sb.tagged(rows, "store"):
        ins, upd, rej, pages = int(ins), int(upd), int(rej), int(pages)
        if upd or ins + rej != expected[source]:
            raise BenchError("storing %s: %d new, %d updated, %d rejected; the file holds %d records"
                             % (source, ins, upd, rej, expected[source]))
        out["sources"][source] = {"records": expected[source], "inserted": ins, "rejected": rej,
                                  "pages": pages}
        inserts.append("(%d, '%s', '%s', '%s', 'succeeded', %d, %d, %d, 0, 0, %d)"
                       % (int(run_id), source, started, finished, pages, expected[source], ins, rej))
    for source, copy_s, s in sb.tagged(rows, "time"):
        out["sources"][source].update({"copy_seconds": float(copy_s), "seconds": float(s)})
    if sorted(out["sources"]) != sorted(SOURCES):
        raise BenchError("the file load reported sources %s" % sorted(out["sources"]))
    sb.psql("INSERT INTO migrate_ext.sync_runs (run_id, source, started_at, finished_at, status, pages,"
            " fetched, inserted, updated, unchanged, rejected) VALUES %s;" % ", ".join(inserts), DB)
    log("  %.1f s" % out["seconds"])
    # what autovacuum would have done after the load (it is off, so it cannot run in a measurement)
    t = time.time()
    sb.psql("VACUUM (ANALYZE);\nCHECKPOINT;", DB, timeout=LOAD_TIMEOUT)
    out["vacuum_analyze_seconds"] = time.time() - t
    return out


def counts(kind):
    tables = {"raw": ("migrate_ext.xendit_raw", "migrate_ext.systemeio_raw"),
              "production": ("auth.users", "public.unified_profiles", "public.transactions",
                             "public.enrollments"),
              "staging": ("migrate_staging.unified_profiles", "migrate_staging.transactions",
                          "migrate_staging.enrollments", "migrate_staging.auth_users",
                          "migrate_ext.identity_map")}[kind]
    rows = sb.psql("\n".join("SELECT '%s', count(*) FROM %s;" % (t, t) for t in tables), DB, timeout=600)
    return {t: int(n) for t, n in rows}


# ---------------------------------------------------------------------------------------------
# Step 4: the validation runs

VALIDATE_BODY = r"""
LOAD 'auto_explain';
SET auto_explain.log_min_duration = {ms};
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = {analyze};
SET auto_explain.log_timing = on;
SET auto_explain.log_buffers = off;
SET auto_explain.log_format = text;
SET ROLE postgres;
SET statement_timeout = '{timeout}s';
SELECT clock_timestamp() AS t0 \gset
SELECT 'report', section, item, rows, amount, replace(coalesce(detail, ''), E'\n', ' ')
  FROM migrate_ext.validate_and_prepare_clean_data();
SELECT 'total', extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
RESET ROLE;
RESET statement_timeout;
"""


def validation_session(app, body, timeout):
    """sync_bench.measured_session, but a failing statement (a statement_timeout) does not end the
    session: the memory and CPU readings after it are still taken.  Returns (rows, info, error)."""
    script = "\n".join([
        "SET application_name = '%s';" % app,
        "SET client_min_messages = warning;",
        "LOAD 'migrate_ext';",
        sb.PROC_SELF.format(tag="proc_before"),
        "SELECT pg_sleep(0.5);",
        "SELECT 'sampler_ready';",
        body,
        sb.PROC_SELF.format(tag="proc_after"),
    ])
    sampler = sb.Sampler(DB, app)
    sampler.start()
    try:
        p = subprocess.run([sb.PSQL, "-X", "-q", "-At", "-F", sb.SEP, "-v", "ON_ERROR_STOP=0", "-d", DB],
                           input=script + "\n", capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("the validation session %s did not finish within %d s" % (app, timeout))
    finally:
        sampler.stop.set()
        sampler.join(5)
    if sampler.error:
        raise BenchError(sampler.error)
    if sampler.pid is None or sampler.samples == 0:
        raise BenchError("could not sample the memory of the backend of %s" % app)
    rows = [line.split(sb.SEP) for line in p.stdout.splitlines() if line]
    before = sb.proc_row(next(r for r in rows if r[0] == "proc_before"))
    after = sb.proc_row(next(r for r in rows if r[0] == "proc_after"))
    info = {
        "backend_pid": sampler.pid,
        "baseline_vmhwm_mb": before["vmhwm_kb"] / KB,
        "baseline_rssanon_mb": before["rssanon_kb"] / KB,
        "peak_mb": (after["vmhwm_kb"] - before["vmhwm_kb"]) / KB,
        "private_mb": (max(sampler.max_anon, after["rssanon_kb"]) - before["rssanon_kb"]) / KB,
        "memory_samples": sampler.samples,
        "backend_cpu_s": after["cpu_s"] - before["cpu_s"],
    }
    error = p.stderr.strip() if ("ERROR:" in p.stderr or p.returncode != 0) else None
    return [r for r in rows if r[0] not in ("proc_before", "proc_after", "sampler_ready")], info, error


def run_validation(app, profile=False):
    """One SELECT * FROM validate_and_prepare_clean_data() as postgres in a new session, with
    auto_explain timing every statement inside it (log_analyze only when profile)."""
    log_path = os.path.join(os.environ.get("SANDBOX", ""), "server.log")
    log_offset = os.path.getsize(log_path)
    body = VALIDATE_BODY.format(ms=EXPLAIN_MIN_MS, analyze="on" if profile else "off",
                                timeout=VALIDATE_TIMEOUT)
    rows, info, error = validation_session(app, body, VALIDATE_TIMEOUT + 600)
    (secs,), = sb.tagged(rows, "total")
    info["seconds"] = float(secs)
    info["statements"] = slow_statements(log_path, log_offset, info["backend_pid"])
    if error:
        if "statement timeout" not in error:
            raise BenchError("the validation failed: %s" % error[-2000:])
        frames = re.findall(r"^(?:CONTEXT:\s+)?((?:PL/pgSQL|SQL) function .*)$", error, re.M)
        frames = [re.sub(r"^PL/pgSQL function ", "", f.strip()) for f in frames]
        info.update({"timed_out": True, "error": error,
                     "cancelled_in": frames[0] if frames else "?",
                     "cancelled_at": frames[-1] if frames else "?"})
        return info
    info["timed_out"] = False
    info["report"] = [{"section": r[0], "item": r[1], "rows": int(r[2]) if r[2] else None,
                       "amount": r[3] or None, "detail": r[4]} for r in sb.tagged(rows, "report")]
    last = sb.psql("""
        SELECT 'run', run_id, errors, warnings, extract(epoch FROM finished_at - started_at)
          FROM migrate_ext.validation_runs ORDER BY run_id DESC LIMIT 1;
        SELECT 'issues', severity, count(*) FROM migrate_ext.validation_issues
         WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) GROUP BY 2 ORDER BY 2;
        SELECT 'rules', severity, rule, count(*) FROM migrate_ext.validation_issues
         WHERE run_id = (SELECT max(run_id) FROM migrate_ext.validation_runs) GROUP BY 2, 3 ORDER BY 2, 3;
        """, DB, timeout=600)
    (run_id, errors, warnings, in_function), = sb.tagged(last, "run")
    info.update({"run_id": int(run_id), "errors": int(errors), "warnings": int(warnings),
                 "function_seconds": float(in_function),
                 "issues": {sev: int(n) for sev, n in sb.tagged(last, "issues")},
                 "rules": [[sev, rule, int(n)] for sev, rule, n in sb.tagged(last, "rules")]})
    info["issues_total"] = sum(info["issues"].values())
    info["staging"] = counts("staging")
    return info


# ---------------------------------------------------------------------------------------------
# Step 5: the slowest statements, from auto_explain's entries in the server log

PREFIX = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+ \[(\d+)\] \S* (\w+):  (.*)$")
DURATION = re.compile(r"^duration: ([\d.]+) ms  plan:$")


def slow_statements(log_path, offset, pid):
    """auto_explain entries of one backend: each with its duration, end time, nesting depth (the
    PL/pgSQL frames of its CONTEXT) and self time (its duration less the logged statements
    directly inside it)."""
    entries = []
    cur = None
    with open(log_path, errors="replace") as f:
        f.seek(offset or 0)
        for line in f:
            line = line.rstrip("\n")
            m = PREFIX.match(line)
            if m:
                ts, p, level, msg = m.groups()
                if int(p) != pid:
                    cur = None
                    continue
                d = DURATION.match(msg) if level == "LOG" else None
                if d:
                    cur = {"end": datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f"),
                           "ms": float(d.group(1)), "plan": [], "context": []}
                    entries.append(cur)
                elif level == "CONTEXT" and cur is not None:
                    cur["context"].append(msg)
                    cur["in_context"] = True
                else:
                    cur = None
            elif cur is not None:
                (cur["context"] if cur.get("in_context") else cur["plan"]).append(line)
    for e in entries:
        ctx = e.pop("context")
        e.pop("in_context", None)
        frames = [c.strip() for c in ctx if re.match(r"\s*(PL/pgSQL|SQL) function ", c)]
        e["depth"] = len(frames)
        e["where"] = re.sub(r"^PL/pgSQL function ", "", frames[0]) if frames else "top level"
        e["start"] = e["end"] - timedelta(milliseconds=e["ms"])
        text = "\n".join(e["plan"])
        query = []
        for i, pl in enumerate(e["plan"]):       # Query Text: ... up to the first plan node
            if i > 0 and "(cost=" in pl:
                break
            query.append(pl)
        e["query"] = re.sub(r"\s+", " ", " ".join(query)).replace("Query Text: ", "", 1).strip()
        e["plan"] = text
    slack = timedelta(milliseconds=2)     # log timestamps are to the millisecond
    for e in entries:
        inner = [c for c in entries if c is not e and c["depth"] == e["depth"] + 1
                 and c["start"] >= e["start"] - slack and c["end"] <= e["end"] + slack]
        e["self_ms"] = max(0.0, e["ms"] - sum(c["ms"] for c in inner))
        e["inner"] = len(inner)
    out = []
    for e in sorted(entries, key=lambda e: -e["self_ms"]):
        jit = re.search(r"Timing: .*Total ([\d.]+) ms", e["plan"])
        out.append({"ms": e["ms"], "self_ms": e["self_ms"], "jit_ms": float(jit.group(1)) if jit else 0.0, "depth": e["depth"], "inner": e["inner"],
                    "where": e["where"], "query": e["query"], "plan": e["plan"],
                    "end": e["end"].strftime("%H:%M:%S.%f")[:-3]})
    return out


# ---------------------------------------------------------------------------------------------

def extension_version():
    """The commit of the working tree and the md5 of the install script the sandbox installed (the
    working tree may hold changes not committed yet)."""
    import hashlib
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    for d, _, files in os.walk(os.path.join(os.environ.get("SANDBOX", "/nonexistent"), "pg")):
        if "migrate_ext--1.0.sql" in files:
            with open(os.path.join(d, "migrate_ext--1.0.sql"), "rb") as f:
                return "commit %s, install script md5 %s" % (head, hashlib.md5(f.read()).hexdigest()[:12])
    return "commit %s" % head


def measure(args):
    out = {"scale": args.scale, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": sb.machine(), "page": PAGE, "explain_min_ms": EXPLAIN_MIN_MS}
    out["pg_version"] = sb.psql("SHOW server_version;", "postgres")[0][0]
    out["settings"] = dict(sb.psql("SELECT name, current_setting(name) FROM pg_settings WHERE name IN"
                                   " ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'temp_buffers',"
                                   " 'max_parallel_workers_per_gather', 'jit');", "postgres"))
    out["extension"] = extension_version()
    out["prepare"] = generate(args)
    out["prepare"].update(build_database(args))
    out["load"] = load_raw(args)
    out["raw"] = counts("raw")
    out["production"] = counts("production")

    out["validate_timeout"] = VALIDATE_TIMEOUT
    out["rerun_max"] = RERUN_MAX
    log("scale %s: validate_and_prepare_clean_data(), first run (limit %d s)" % (args.scale, VALIDATE_TIMEOUT))
    out["first"] = first = run_validation("bench_validate_1")
    if first["timed_out"]:
        log("  cancelled by statement_timeout after %.0f s in %s" % (first["seconds"], first["cancelled_in"]))
        out["skipped"] = ("the first run did not finish within BENCH_VALIDATE_TIMEOUT (%d s): no re-run"
                          % VALIDATE_TIMEOUT)
    else:
        log("  %.2f s, %d issues" % (first["seconds"], first["issues_total"]))
        if first["staging"]["migrate_staging.unified_profiles"] == 0:
            raise BenchError("the first validation staged no profile")
        if first["seconds"] > RERUN_MAX:
            out["skipped"] = ("the first run took %.0f s, more than BENCH_RERUN_MAX (%d s): no re-run and no"
                              " profiled run" % (first["seconds"], RERUN_MAX))
    if "skipped" in out:
        log("  " + out["skipped"])
    else:
        log("scale %s: validate_and_prepare_clean_data(), re-run" % args.scale)
        out["rerun"] = rerun = run_validation("bench_validate_2")
        if rerun["timed_out"]:
            raise BenchError("the re-run did not finish within %d s (the first run took %.0f s)"
                             % (VALIDATE_TIMEOUT, first["seconds"]))
        log("  %.2f s, %d issues" % (rerun["seconds"], rerun["issues_total"]))
        # same inputs, same staging: a re-run draws no new id
        if first["staging"] != rerun["staging"]:
            raise BenchError("the re-run staged other counts: %s, then %s" % (first["staging"], rerun["staging"]))
        if PROFILE:
            log("scale %s: a third run with auto_explain's ANALYZE (statements over %d ms)"
                % (args.scale, EXPLAIN_MIN_MS))
            out["profile"] = run_validation("bench_validate_3", profile=True)
            if out["profile"]["timed_out"]:
                raise BenchError("the profiled run did not finish within %d s" % VALIDATE_TIMEOUT)
            log("  %.2f s" % out["profile"]["seconds"])
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)


# ---------------------------------------------------------------------------------------------
# The report

def short(q, n):
    return q if len(q) <= n else q[:n - 3] + "..."


def top_statements(w, run, title):
    """The TOP statements with the most self time (nested ones: depth > 0)."""
    st = run["statements"]
    w("  %s" % title)
    for s in [s for s in st if s["depth"] > 0][:TOP]:
        w("    self %8.2f s (total %8.2f s)  %s" % (s["self_ms"] / 1000, s["ms"] / 1000, short(s["where"], 90)))
        w("        %s" % short(s["query"], 150))
    outer = [s for s in st if s["depth"] == 0]
    if outer:
        w("    in no statement over the threshold (short statements, DDL, CREATE INDEX, ANALYZE): %.2f s"
          % (outer[0]["self_ms"] / 1000))
    jit = [s for s in st if s.get("jit_ms")]
    if jit:
        w("    JIT compilation in %d of the logged statements: %.2f s"
          % (len(jit), sum(s["jit_ms"] for s in jit) / 1000))


def report(args):
    runs = []
    for path in args.json:
        with open(path) as f:
            runs.append(json.load(f))
    runs.sort(key=lambda r: float(r["scale"]))
    lines = []
    w = lines.append
    first = runs[0]
    w("migrate_ext validation benchmark, %s" % time.strftime("%Y-%m-%d %H:%M"))
    w("machine: %s; PostgreSQL %s; %s" % (first["machine"], first["pg_version"],
                                         ", ".join("%s %s" % kv for kv in sorted(first["settings"].items()))))
    for r in runs:
        if r.get("extension"):
            w("scale %s: migrate_ext %s" % (r["scale"], r["extension"]))
    w("")
    w("validate_and_prepare_clean_data(), as role postgres, each run in a new session:")
    hdr = ("scale", "raw records", "production rows", "first s", "re-run s", "CPU s", "private MB", "issues")
    fmt = "%5s | %11s | %15s | %8s | %8s | %13s | %10s | %s"
    w(fmt % hdr)
    w("-" * (len(fmt % hdr) + 12))
    for r in runs:
        f, re_ = r["first"], r.get("rerun")
        if f["timed_out"]:
            first_s, issues = "> %.0f" % f["seconds"], "(cancelled by statement_timeout)"
        else:
            first_s = "%.2f" % f["seconds"]
            issues = "%d (%d errors, %d warnings)" % (f["issues_total"], f["errors"], f["warnings"])
        cpu = "%.1f" % f["backend_cpu_s"] + ("/%.1f" % re_["backend_cpu_s"] if re_ else "")
        mem = "%.0f" % f["private_mb"] + ("/%.0f" % re_["private_mb"] if re_ else "")
        w(fmt % (r["scale"], sum(r["raw"].values()), sum(r["production"].values()), first_s,
                 "%.2f" % re_["seconds"] if re_ else "-", cpu, mem, issues))
    w("")
    w("raw records = xendit_raw + systemeio_raw; production rows = auth.users + unified_profiles +")
    w("transactions + enrollments; first s / re-run s: wall time of the SELECT (server clock); the")
    w("re-run finds every id in identity_map.  CPU s and private MB: first run/re-run, the backend's")
    w("CPU time and its highest RssAnon (10 ms samples) less RssAnon before.  issues: rows of")
    w("validation_issues of the first run (the re-run reports the same unless noted below).")
    for r in runs:
        if r.get("skipped"):
            w("scale %s: %s." % (r["scale"], r["skipped"]))
        if r["first"]["timed_out"]:
            f = r["first"]
            w("scale %s: the first run was cancelled after %.0f s in %s%s." % (
                r["scale"], f["seconds"], f["cancelled_in"],
                "" if f["cancelled_in"] == f["cancelled_at"] else ", inside " + f["cancelled_at"]))
    w("")
    w("Rows:")
    fmt2 = "%5s | %9s %9s | %9s %9s %9s %9s | %9s %9s %9s %9s | %9s"
    w(fmt2 % ("scale", "xendit", "systemeio", "auth", "profiles", "transact", "enroll",
              "profiles", "transact", "enroll", "new auth", "id map"))
    w(fmt2 % ("", "raw", "raw", "production", "", "", "", "staging", "", "", "", ""))
    for r in runs:
        p, s = r["production"], r["first"].get("staging")
        st = (s["migrate_staging.unified_profiles"], s["migrate_staging.transactions"],
              s["migrate_staging.enrollments"], s["migrate_staging.auth_users"],
              s["migrate_ext.identity_map"]) if s else ("-",) * 5
        w(fmt2 % ((r["scale"], r["raw"]["migrate_ext.xendit_raw"], r["raw"]["migrate_ext.systemeio_raw"],
                   p["auth.users"], p["public.unified_profiles"], p["public.transactions"],
                   p["public.enrollments"]) + st))
    w("")
    w("Issues by severity and rule (first run):")
    for r in runs:
        if r["first"]["timed_out"]:
            continue
        w("  scale %-3s %s" % (r["scale"], "; ".join("%s %s %d" % tuple(x) for x in r["first"]["rules"])))
        if r.get("rerun") and r["rerun"]["rules"] != r["first"]["rules"]:
            w("            re-run: %s" % "; ".join("%s %s %d" % tuple(x) for x in r["rerun"]["rules"]))
    w("")
    w("Preparation (not part of the validation time):")
    for r in runs:
        pr, ld = r["prepare"], r["load"]
        recs = sum(s["records"] for s in ld["sources"].values())
        w("  scale %-3s generate.py %.1f s (peak RSS %.0f MB), production_data.py %.1f s (peak RSS %.0f MB);"
          % (r["scale"], pr["generate"]["seconds"], pr["generate"]["max_rss_mb"],
             pr["production_data"]["seconds"], pr["production_data"]["max_rss_mb"]))
        w("            production.sql (%.0f MB) loaded in %.1f s; %d records stored with store_page()"
          % (pr["file_mb"]["production.sql"], pr["production_seconds"], recs))
        w("            in pages of %d in %.1f s (%.0f records/s); VACUUM ANALYZE %.1f s"
          % (r["page"], ld["seconds"], recs / ld["seconds"], ld["vacuum_analyze_seconds"]))
        if pr.get("duplicate_rows_dropped"):
            w("            production.sql repeated ids (a production_data.py bug); rows dropped before loading: %s"
              % ", ".join("%s %d" % kv for kv in sorted(pr["duplicate_rows_dropped"].items())))
    w("")
    w("Memory: peak MB (VmHWM after - before: counts the shared buffers first touched), first/re-run:")
    w("  " + "; ".join("scale %s %.0f%s MB" % (r["scale"], r["first"]["peak_mb"],
                                               "/%.0f" % r["rerun"]["peak_mb"] if r.get("rerun") else "")
                      for r in runs))
    w("")
    w("Slowest statements inside the function (auto_explain, log_nested_statements, over %s ms;"
      % first.get("explain_min_ms"))
    w("self = the statement's time less the logged statements inside it):")
    for r in runs:
        top_statements(w, r["first"], "scale %s, first run (%s s):" % (
            r["scale"], ("> %.0f" if r["first"]["timed_out"] else "%.2f") % r["first"]["seconds"]))
        if r.get("profile"):
            top_statements(w, r["profile"], "scale %s, a third run with auto_explain.log_analyze (%.2f s):"
                           % (r["scale"], r["profile"]["seconds"]))
    sb.write_report(lines, runs, args.results_file, "all measurements and plans")


def main():
    """The validation benchmark's command line."""
    sb.run_cli(__doc__, measure, report, scale_type=int)


if __name__ == "__main__":
    main()
