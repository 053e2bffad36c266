#!/usr/bin/python3
"""Sync throughput benchmark of migrate_ext (run by bench/run.sh inside the sandbox).

  sync_bench.py measure --scale N --dataset DIR --out FILE.json
      In the running sandbox (PGHOST, PGPORT, PGUSER, PG_BIN, XENDIT_KEY, SYSTEMEIO_KEY set;
      EMULATOR_PID optional), measure at one scale, each step in a fresh database:
        1. migrate_ext: sync_raw_api_data() (time, records/s per source, backend memory, WAL),
           then, after a VACUUM ANALYZE, a second sync of the unchanged data (time, WAL);
        2. the floor: the generator's files of the same data set loaded with one COPY per source
           into a temp table and one migrate_ext.store_page() call per source (the whole file as
           one page: the same SQL the sync runs for every page);
        3. the same files stored with store_page() in pages of migrate_ext.page_size records:
           the sync's work without HTTP;
        4. a check that the three databases hold the same records.
      --repeat N runs all of it N times; each method keeps its fastest round.
      Writes everything to FILE.json; exits non-zero with a message when a step fails.

  sync_bench.py report --results-file FILE.txt SCALE.json...
      Print the table of the measured scales and write it to FILE.txt (and every measurement,
      per round, to FILE.json).

Backend memory: the syncing backend's /proc/<pid>/status is read by the backend itself
(pg_read_file, superuser) just before and just after the measured statement, and sampled by this
script every 10 ms while it runs.  "peak MB" is VmHWM after minus VmHWM before (the baseline is
an idle backend that has loaded migrate_ext); "private MB" is the highest RssAnon seen minus
RssAnon before: the backend's own heap, without the shared buffers it touched.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
PSQL = os.path.join(PG_BIN, "psql")
SEP = "\x1f"                      # psql field separator: never in our values
STATEMENT_TIMEOUT = os.environ.get("BENCH_STATEMENT_TIMEOUT", "300s")   # one SQL statement
SESSION_TIMEOUT = int(os.environ.get("BENCH_SESSION_TIMEOUT", "600"))    # one measured session
SOURCES = ("xendit", "systemeio")
FILES = {"xendit": "invoices.json", "systemeio": "contacts.json"}
KB = 1024
MB = 1024 * 1024


class BenchError(Exception):
    pass


def log(msg):
    print("bench: " + msg, flush=True)


# ---------------------------------------------------------------------------------------------
# psql sessions

def psql(sql, db, timeout=120):
    """Run SQL in one new session (stdin); return the rows as lists of fields."""
    try:
        p = subprocess.run([PSQL, "-X", "-q", "-At", "-F", SEP, "-v", "ON_ERROR_STOP=1", "-d", db],
                           input=sql + "\n", capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("psql on %s did not finish within %d s" % (db, timeout))
    if p.returncode != 0:
        raise BenchError("psql on %s failed (exit %d): %s" % (db, p.returncode, p.stderr.strip()))
    return [line.split(SEP) for line in p.stdout.splitlines() if line]


# The backend's own memory and CPU figures, read by the backend (superuser: pg_read_file may read
# /proc/self/...).  Tagged so the output can be picked out of the session's other rows.
PROC_SELF = r"""
SELECT '{tag}',
       (regexp_match(s, 'VmHWM:\s+(\d+) kB'))[1], (regexp_match(s, 'VmRSS:\s+(\d+) kB'))[1],
       (regexp_match(s, 'RssAnon:\s+(\d+) kB'))[1], (regexp_match(s, 'RssShmem:\s+(\d+) kB'))[1],
       split_part(split_part(t, ') ', 2), ' ', 12), split_part(split_part(t, ') ', 2), ' ', 13)
  FROM pg_read_file('/proc/self/status') AS s, pg_read_file('/proc/self/stat') AS t;
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_row(row):
    """A PROC_SELF row as a dict (memory in kB, CPU in seconds)."""
    _, hwm, rss, anon, shmem, utime, stime = row
    return {"vmhwm_kb": int(hwm), "vmrss_kb": int(rss), "rssanon_kb": int(anon),
            "rssshmem_kb": int(shmem), "cpu_s": (int(utime) + int(stime)) / CLK_TCK}


def read_status(pid):
    """RssAnon, VmRSS and VmHWM (kB) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for key in ("RssAnon", "VmRSS", "VmHWM"):
        m = re.search(r"^%s:\s+(\d+) kB" % key, text, re.M)
        out[key] = int(m.group(1)) if m else 0
    return out


def cpu_seconds(pid):
    """User + system CPU seconds of a process, or None."""
    if not pid:
        return None
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sampler(threading.Thread):
    """Finds the backend of a session by application_name, then samples its memory every 10 ms."""

    def __init__(self, db, app):
        super().__init__(daemon=True)
        self.db, self.app = db, app
        self.pid = None
        self.max_anon = 0
        self.max_rss = 0
        self.samples = 0
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            deadline = time.time() + 30
            while self.pid is None and not self.stop.is_set():
                rows = psql("SELECT pid FROM pg_stat_activity WHERE application_name = '%s'" % self.app,
                            "postgres", timeout=30)
                if rows:
                    self.pid = int(rows[0][0])
                    break
                if time.time() > deadline:
                    raise BenchError("the session %s did not appear in pg_stat_activity" % self.app)
                time.sleep(0.05)
            while self.pid is not None and not self.stop.is_set():
                st = read_status(self.pid)
                if st is None:
                    break
                self.max_anon = max(self.max_anon, st["RssAnon"])
                self.max_rss = max(self.max_rss, st["VmRSS"])
                self.samples += 1
                time.sleep(0.01)
        except Exception as e:          # reported by the caller
            self.error = str(e)


def measured_session(db, app, body, timeout=SESSION_TIMEOUT):
    """Run `body` (psql script) in one session between two PROC_SELF readings, while a sampler
    watches the backend.  The session pauses 0.5 s after its baseline so that the sampler has
    found the backend before the measured work starts.  Returns (rows of body, info dict)."""
    script = "\n".join([
        "SET application_name = '%s';" % app,
        "SET client_min_messages = warning;",
        "SET statement_timeout = '%s';" % STATEMENT_TIMEOUT,
        "LOAD 'migrate_ext';",
        PROC_SELF.format(tag="proc_before"),
        "SELECT pg_sleep(0.5);",
        "SELECT 'sampler_ready';",
        body,
        PROC_SELF.format(tag="proc_after"),
    ])
    sampler = Sampler(db, app)
    sampler.start()
    emu0 = cpu_seconds(EMULATOR_PID)
    try:
        rows = psql(script, db, timeout=timeout)
    finally:
        sampler.stop.set()
        sampler.join(5)
    emu1 = cpu_seconds(EMULATOR_PID)
    if sampler.error:
        raise BenchError(sampler.error)
    if sampler.pid is None or sampler.samples == 0:
        raise BenchError("could not sample the memory of the backend of %s" % app)
    before = proc_row(next(r for r in rows if r[0] == "proc_before"))
    after = proc_row(next(r for r in rows if r[0] == "proc_after"))
    info = {
        "backend_pid": sampler.pid,
        "baseline_vmhwm_mb": before["vmhwm_kb"] / KB,
        "baseline_rssanon_mb": before["rssanon_kb"] / KB,
        "peak_mb": (after["vmhwm_kb"] - before["vmhwm_kb"]) / KB,
        "private_mb": (max(sampler.max_anon, after["rssanon_kb"]) - before["rssanon_kb"]) / KB,
        "shmem_touched_mb": (after["rssshmem_kb"] - before["rssshmem_kb"]) / KB,
        "memory_samples": sampler.samples,
        "backend_cpu_s": after["cpu_s"] - before["cpu_s"],
        "emulator_cpu_s": (emu1 - emu0) if emu0 is not None and emu1 is not None else None,
    }
    body_rows = [r for r in rows if r[0] not in ("proc_before", "proc_after", "sampler_ready")]
    return body_rows, info


def tagged(rows, tag):
    return [r[1:] for r in rows if r[0] == tag]


# ---------------------------------------------------------------------------------------------
# The steps

def fresh_database(name):
    psql("DROP DATABASE IF EXISTS %s;\nCREATE DATABASE %s;" % (name, name), "postgres")
    psql("CREATE EXTENSION migrate_ext;", name)


def set_keys(db):
    """The API keys travel over stdin as psql variables, never on a command line."""
    for var in ("XENDIT_KEY", "SYSTEMEIO_KEY"):
        if not re.fullmatch(r"[A-Za-z0-9_]+", os.environ.get(var, "")):
            raise BenchError("%s is not set (run from bench/run.sh)" % var)
    psql("\\set xendit_key '%s'\n\\set systemeio_key '%s'\n"
         "SELECT migrate_ext.set_api_key('xendit', :'xendit_key');\n"
         "SELECT migrate_ext.set_api_key('systemeio', :'systemeio_key');"
         % (os.environ["XENDIT_KEY"], os.environ["SYSTEMEIO_KEY"]), db)


SYNC_BODY = r"""
CHECKPOINT;
SELECT pg_current_wal_insert_lsn() AS lsn0, clock_timestamp() AS t0 \gset
SELECT 'sync', source, status, pages, fetched, inserted, updated, unchanged, rejected, seconds,
       coalesce(replace(error, E'\n', ' '), '')
  FROM migrate_ext.sync_raw_api_data();
SELECT 'total', extract(epoch FROM clock_timestamp() - :'t0'::timestamptz),
       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'lsn0');
"""


def run_sync(db, app):
    rows, info = measured_session(db, app, SYNC_BODY)
    per_source = {}
    for source, status, pages, fetched, ins, upd, unch, rej, secs, error in tagged(rows, "sync"):
        if status != "succeeded":
            raise BenchError("the sync of %s failed: %s" % (source, error))
        per_source[source] = {"pages": int(pages), "records": int(fetched), "inserted": int(ins),
                              "updated": int(upd), "unchanged": int(unch), "rejected": int(rej),
                              "seconds": float(secs)}
    if sorted(per_source) != sorted(SOURCES):
        raise BenchError("the sync returned sources %s" % sorted(per_source))
    (secs, wal), = tagged(rows, "total")
    info.update({"sources": per_source, "seconds": float(secs), "wal_bytes": int(float(wal)),
                 "records": sum(s["records"] for s in per_source.values())})
    return info


# A record holding the JSON escape \u0000 (not preceded by an escaped backslash) cannot be stored
# in jsonb: the sync rejects it (sync_rejects).  The one-statement floor leaves such lines out,
# because one of them in its single big page would send store_page() to its record-by-record
# fallback for the whole file.  The paged load keeps them: like the sync, it rejects them.
NUL_ESCAPE = r"(^|[^\\])(\\\\)*\\u0000"
ENVELOPE = {"xendit": ("[", "]"), "systemeio": ('{"items": [', '], "hasMore": false}')}


def file_block(source, path, page_size):
    """psql script: load one generator file with one COPY into a temp table (one line per row; CSV
    mode with delimiter and quote characters that never occur, so backslashes stay as they are),
    then store its records with store_page(): all of them as one page (page_size None) or in
    pages of page_size records.  Prints 'store' and 'time' rows."""
    table = source + "_lines"
    opening, closing = ENVELOPE[source]
    out = ["SELECT clock_timestamp() AS ta \\gset",
           "CREATE TEMP TABLE %s (n bigserial, line text);" % table,
           "COPY %s (line) FROM '%s' WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01');"
           % (table, path.replace("'", "''")),
           "SELECT clock_timestamp() AS tb \\gset"]
    if page_size is None:
        out.append("""
SELECT 'store', '{src}', s.inserted, s.updated, s.rejected, l.skipped, 1
  FROM (SELECT '{op}' || string_agg(rtrim(line, ','), ',' ORDER BY n) FILTER (WHERE line !~ '{nul}')
               || '{cl}' AS page,
               count(*) FILTER (WHERE line ~ '{nul}') AS skipped
          FROM {t} WHERE line NOT IN ('[', ']')) AS l,
       migrate_ext.store_page('{src}', l.page, :run_id) AS s;""".format(
            src=source, op=opening, cl=closing, nul=NUL_ESCAPE, t=table))
    else:
        # line 1 is "[": records are lines 2..N+1
        out.append("""
SELECT 'store', '{src}', sum(s.inserted), sum(s.updated), sum(s.rejected), 0, count(*)
  FROM (SELECT (n - 2) / {ps} AS p, '{op}' || string_agg(rtrim(line, ','), ',' ORDER BY n) || '{cl}' AS page
          FROM {t} WHERE line NOT IN ('[', ']') GROUP BY 1 ORDER BY 1) AS l,
       LATERAL migrate_ext.store_page('{src}', l.page, :run_id) AS s;""".format(
            src=source, op=opening, cl=closing, ps=int(page_size), t=table))
    out.append("SELECT 'time', '%s', extract(epoch FROM :'tb'::timestamptz - :'ta'::timestamptz), "
               "extract(epoch FROM clock_timestamp() - :'ta'::timestamptz);" % source)
    return "\n".join(out)


def run_file(db, app, dataset, expected, page_size=None):
    """Load the generator's files of the data set; `expected` maps each source to (records the
    sync stored, records it rejected)."""
    body = "\n".join(
        ["CHECKPOINT;",
         "SELECT nextval('migrate_ext.sync_runs_run_id_seq') AS run_id \\gset",
         "SELECT pg_current_wal_insert_lsn() AS lsn0, clock_timestamp() AS t0 \\gset"]
        + [file_block(s, os.path.join(dataset, FILES[s]), page_size) for s in SOURCES]
        + ["SELECT 'total', extract(epoch FROM clock_timestamp() - :'t0'::timestamptz), "
           "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'lsn0');"])
    rows, info = measured_session(db, app, body)
    per_source = {}
    for source, ins, upd, rej, skipped, pages in tagged(rows, "store"):
        stored, rejected = expected[source]
        ins, upd, rej, skipped = int(ins), int(upd), int(rej), int(skipped)
        if upd or ins != stored or rej + skipped != rejected or (page_size is None and rej):
            raise BenchError("loading %s from the file: %d new, %d updated, %d rejected, %d left out; "
                             "expected %d new and %d rejected or left out, as the sync did"
                             % (source, ins, upd, rej, skipped, stored, rejected))
        per_source[source] = {"records": ins + rej + skipped, "inserted": ins, "rejected": rej,
                              "left_out": skipped, "pages": int(pages)}
    for source, copy_s, secs in tagged(rows, "time"):
        per_source[source].update({"copy_seconds": float(copy_s), "seconds": float(secs)})
    if sorted(per_source) != sorted(SOURCES):
        raise BenchError("the file load reported sources %s" % sorted(per_source))
    (secs, wal), = tagged(rows, "total")
    info.update({"sources": per_source, "seconds": float(secs), "wal_bytes": int(float(wal)),
                 "records": sum(s["records"] for s in per_source.values())})
    return info


def content_digest(db):
    """Count and order-independent digest of the stored records of both raw tables."""
    rows = psql("""
        SELECT 'x', count(*), coalesce(sum(hashtextextended(id || ' ' || api_response::text, 0)::numeric), 0)
          FROM migrate_ext.xendit_raw;
        SELECT 'c', count(*), coalesce(sum(hashtextextended(id || ' ' || api_response::text, 0)::numeric), 0)
          FROM migrate_ext.systemeio_raw;""", db, timeout=600)
    return {r[0]: (int(r[1]), r[2]) for r in rows}


def one_round(args, page_size):
    """All four measurements at one scale, each in a fresh database; returns {method: info}."""
    out = {}
    log("scale %s: migrate_ext.sync_raw_api_data() in a fresh database" % args.scale)
    fresh_database("bench_sync")
    set_keys("bench_sync")
    first = run_sync("bench_sync", "bench_sync_1")
    for s, r in first["sources"].items():
        if r["inserted"] + r["rejected"] != r["records"] or r["updated"]:
            raise BenchError("first sync of %s: %d records but %d inserted, %d updated, %d rejected"
                             % (s, r["records"], r["inserted"], r["updated"], r["rejected"]))
    out["sync"] = first
    log("  %d records in %.2f s" % (first["records"], first["seconds"]))

    # what autovacuum would have done between two syncs (it is off, so it cannot run during one)
    t = time.time()
    psql("VACUUM (ANALYZE) migrate_ext.xendit_raw, migrate_ext.systemeio_raw;", "bench_sync", timeout=600)
    first["vacuum_after_s"] = time.time() - t

    log("scale %s: second sync, nothing changed" % args.scale)
    second = run_sync("bench_sync", "bench_sync_2")
    for s, r in second["sources"].items():
        if (r["records"] != first["sources"][s]["records"] or r["inserted"] or r["updated"]
                or r["unchanged"] + r["rejected"] != r["records"]):
            raise BenchError("second sync of %s: %d records, %d inserted, %d updated (expected %d records,"
                             " none written)" % (s, r["records"], r["inserted"], r["updated"],
                                                 first["sources"][s]["records"]))
    out["sync2"] = second
    log("  %d records in %.2f s, %d bytes of WAL" % (second["records"], second["seconds"], second["wal_bytes"]))

    expected = {s: (first["sources"][s]["inserted"], first["sources"][s]["rejected"]) for s in SOURCES}
    log("scale %s: the floor, the generator's files: one COPY and one store_page() per source" % args.scale)
    fresh_database("bench_file")
    out["file"] = run_file("bench_file", "bench_file", args.dataset, expected)
    log("  %d records in %.2f s" % (out["file"]["records"], out["file"]["seconds"]))

    log("scale %s: the same files stored in pages of %d (no HTTP)" % (args.scale, page_size))
    fresh_database("bench_pages")
    out["file_pages"] = run_file("bench_pages", "bench_pages", args.dataset, expected, page_size)
    log("  %d records in %.2f s" % (out["file_pages"]["records"], out["file_pages"]["seconds"]))

    digests = {db: content_digest(db) for db in ("bench_sync", "bench_file", "bench_pages")}
    if len(set(json.dumps(d, sort_keys=True) for d in digests.values())) != 1:
        raise BenchError("the sync and the file loads stored different records: %s" % digests)
    return out


def measure(args):
    out = {"scale": args.scale, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": machine(), "repeat": args.repeat}
    psql("ALTER SYSTEM SET autovacuum = off;\nSELECT pg_reload_conf();", "postgres")
    out["pg_version"] = psql("SHOW server_version;", "postgres")[0][0]
    out["page_size"] = int(psql("LOAD 'migrate_ext';\nSHOW migrate_ext.page_size;", "postgres")[0][0])
    rounds = []
    for i in range(args.repeat):
        if args.repeat > 1:
            log("scale %s: round %d of %d" % (args.scale, i + 1, args.repeat))
        rounds.append(one_round(args, out["page_size"]))
    # each method: its fastest round (the least disturbed by anything else on the machine)
    for key in rounds[0]:
        runs = sorted((r[key] for r in rounds), key=lambda m: m["seconds"])
        best = dict(runs[0])
        best["all_seconds"] = [m["seconds"] for m in runs]
        out[key] = best
    out["same_records"] = True
    out["rounds"] = rounds
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)


def machine():
    cores = os.cpu_count()
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            model = m.group(1).strip() if m else ""
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    return "%d cores%s, %.0f GB RAM" % (cores, " (%s)" % model if model else "", mem)


# ---------------------------------------------------------------------------------------------
# The report

def rate(n, s):
    return n / s if s > 0 else float("inf")


METHODS = (("file", "file: COPY + 1 statement"),
           ("file_pages", "file: COPY + pages (no HTTP)"),
           ("sync", "migrate_ext sync"),
           ("sync2", "migrate_ext 2nd sync, unchanged"))


def report(args):
    runs = []
    for path in args.json:
        with open(path) as f:
            runs.append(json.load(f))
    runs.sort(key=lambda r: float(r["scale"]))
    lines = []
    w = lines.append
    first = runs[0]
    w("migrate_ext sync benchmark, %s" % time.strftime("%Y-%m-%d %H:%M"))
    w("machine: %s; PostgreSQL %s; local API emulator (Python, same machine); pages of %s"
      % (first["machine"], first["pg_version"], first["page_size"]))
    if first.get("repeat", 1) > 1:
        w("each figure: the fastest of %d rounds (all rounds under \"Where the time goes\")" % first["repeat"])
    w("")
    hdr = ("scale", "method", "records", "seconds", "records/s", "peak MB", "private MB", "x file")
    fmt = "%5s | %-42s | %8s | %7s | %9s | %7s | %10s | %6s"
    w(fmt % hdr)
    w("-" * len(fmt % hdr))
    for r in runs:
        floor = r["file"]
        for key, label in METHODS:
            m = r[key]
            w(fmt % (r["scale"], label, m["records"], "%.2f" % m["seconds"],
                     "%.0f" % rate(m["records"], m["seconds"]), "%.1f" % m["peak_mb"],
                     "%.1f" % m["private_mb"], "%.2f" % (m["seconds"] / floor["seconds"])))
            for s in SOURCES:
                src = m["sources"][s]
                w(fmt % ("", "  %s" % s, src["records"], "%.2f" % src["seconds"],
                         "%.0f" % rate(src["records"], src["seconds"]), "", "",
                         "%.2f" % (src["seconds"] / floor["sources"][s]["seconds"])))
        w("")
    w("records/s = records / wall seconds of the statement(s); x file = seconds / seconds of")
    w("\"file: COPY + 1 statement\" (the floor) at the same scale, per source and in total.")
    w("peak MB = VmHWM after - VmHWM before, the baseline being an idle backend with migrate_ext")
    w("loaded (counts shared buffers the backend touched for the first time); private MB = highest")
    w("RssAnon seen (10 ms samples and the end) - RssAnon before: the backend's own memory.")
    w("")
    w("WAL of the second sync (nothing changed) against the first:")
    for r in runs:
        w("  scale %-3s first sync %7.1f MB, second %6.1f kB, ratio %.6f (file floor %.1f MB)"
          % (r["scale"], r["sync"]["wal_bytes"] / MB, r["sync2"]["wal_bytes"] / KB,
             r["sync2"]["wal_bytes"] / r["sync"]["wal_bytes"], r["file"]["wal_bytes"] / MB))
    w("")
    w("Where the time goes (seconds of the measured statements):")
    for r in runs:
        for key, label in METHODS:
            m = r[key]
            emu = m.get("emulator_cpu_s")
            pages = sum(s.get("pages", 0) for s in m["sources"].values())
            extra = ""
            if key.startswith("file"):
                extra = ", of which COPY %.2f" % sum(s["copy_seconds"] for s in m["sources"].values())
            elif emu is not None:
                extra = ", emulator CPU %.2f" % emu
            if len(m.get("all_seconds", [])) > 1:
                extra += "; rounds %s s" % "/".join("%.2f" % x for x in m["all_seconds"])
            w("  scale %-3s %-32s wall %6.2f, backend CPU %6.2f%s; %d pages"
              % (r["scale"], label, m["seconds"], m["backend_cpu_s"], extra, pages))
    w("")
    w("Idle backend with migrate_ext loaded: VmHWM %.1f MB, RssAnon %.1f MB.  Shared buffers first"
      % (first["sync"]["baseline_vmhwm_mb"], first["sync"]["baseline_rssanon_mb"]))
    w("touched by the first sync: %s (shared_buffers = 256MB)."
      % ", ".join("%.1f MB at scale %s" % (r["sync"]["shmem_touched_mb"], r["scale"]) for r in runs))
    write_report(lines, runs, args.results_file)


def write_report(lines, runs, results_file, what="all measurements"):
    """Print a report's lines and write them to results_file, with every run's measurements beside it as .json."""
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if results_file:
        os.makedirs(os.path.dirname(results_file) or ".", exist_ok=True)
        with open(results_file, "w") as f:
            f.write(text)
        with open(os.path.splitext(results_file)[0] + ".json", "w") as f:
            json.dump(runs, f, indent=2)
        print("written to %s (%s: %s.json)" % (results_file, what, os.path.splitext(results_file)[0]))


EMULATOR_PID = int(os.environ["EMULATOR_PID"]) if os.environ.get("EMULATOR_PID", "").isdigit() else None


def run_cli(doc, measure, report, scale_type=str, dataset_help="folder for the generated files",
            add_measure_args=None, errors=()):
    """The measure and report subcommands of a benchmark; a failure prints bench: FAILED: ... and exits 1."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="measure one scale in the running sandbox")
    m.add_argument("--scale", required=True, type=scale_type)
    m.add_argument("--dataset", required=True, help=dataset_help)
    m.add_argument("--out", required=True, help="JSON file for the measurements")
    if add_measure_args:
        add_measure_args(m)
    r = sub.add_parser("report", help="print and write the tables")
    r.add_argument("--results-file")
    r.add_argument("json", nargs="+")
    args = ap.parse_args()
    try:
        if args.cmd == "measure":
            measure(args)
        else:
            report(args)
    except (BenchError, StopIteration, KeyError, ValueError) + tuple(errors) as e:
        print("bench: FAILED: %s" % (e or type(e).__name__), file=sys.stderr)
        sys.exit(1)


def main():
    """The sync benchmark's command line."""
    run_cli(__doc__, measure, report, dataset_help="generate.py --out folder of the same scale",
            add_measure_args=lambda m: m.add_argument("--repeat", type=int, default=1,
                                                      help="rounds; each method reports its fastest"))


if __name__ == "__main__":
    main()
