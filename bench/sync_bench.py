#!/usr/bin/python3
"""Sync throughput benchmark of migrate_ext (run by bench/run.sh inside the sandbox).

  sync_bench.py measure --scale N --dataset DIR --out FILE.json
      In the running sandbox (PGHOST, PGPORT, PGUSER, PG_BIN, XENDIT_KEY, SYSTEMEIO_KEY set;
      EMULATOR_PID optional), measure at one scale:
        1. migrate_ext: sync_raw_api_data() in a fresh database (time, records/s per source,
           backend memory, WAL), then a second sync of the unchanged data (time, WAL);
        2. the floor: the generator's files of the same data set loaded with one COPY per source
           into a temp table and one migrate_ext.store_page() call per source (the whole file as
           one page: the same SQL the sync runs for every page), in another fresh database;
        3. a check that both databases hold the same records.
      Writes everything to FILE.json; exits non-zero with a message when a step fails.

  sync_bench.py report --results-file FILE.txt SCALE.json...
      Print the table of the measured scales and write it to FILE.txt.

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
STATEMENT_TIMEOUT = os.environ.get("BENCH_STATEMENT_TIMEOUT", "600s")
SESSION_TIMEOUT = int(os.environ.get("BENCH_SESSION_TIMEOUT", "900"))
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


FILE_BODY = r"""
CHECKPOINT;
SELECT nextval('migrate_ext.sync_runs_run_id_seq') AS run_id \gset
SELECT pg_current_wal_insert_lsn() AS lsn0, clock_timestamp() AS t0 \gset
CREATE TEMP TABLE invoice_lines (n bigserial, line text);
COPY invoice_lines (line) FROM :'invoices_file' WITH (FORMAT csv, DELIMITER E'\x02', QUOTE E'\x01');
SELECT 'store', 'xendit', inserted, updated, rejected
  FROM migrate_ext.store_page('xendit',
                              (SELECT string_agg(line, E'\n' ORDER BY n) FROM invoice_lines), :run_id);
SELECT clock_timestamp() AS t1 \gset
CREATE TEMP TABLE contact_lines (n bigserial, line text);
COPY contact_lines (line) FROM :'contacts_file' WITH (FORMAT csv, DELIMITER E'\x02', QUOTE E'\x01');
SELECT 'store', 'systemeio', inserted, updated, rejected
  FROM migrate_ext.store_page('systemeio',
                              '{"items": ' || (SELECT string_agg(line, E'\n' ORDER BY n) FROM contact_lines)
                              || ', "hasMore": false}', :run_id);
SELECT 'total', extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz),
       extract(epoch FROM clock_timestamp() - :'t1'::timestamptz),
       extract(epoch FROM clock_timestamp() - :'t0'::timestamptz),
       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'lsn0');
"""


def run_file(db, dataset, records):
    """The floor: each file with one COPY into a temp table (one line per row; CSV mode with
    delimiter and quote characters that never occur, so backslashes stay as they are) and one
    store_page() call with the file's whole array as one page."""
    body = "\\set invoices_file '%s'\n\\set contacts_file '%s'\n%s" % (
        os.path.join(dataset, FILES["xendit"]), os.path.join(dataset, FILES["systemeio"]), FILE_BODY)
    rows, info = measured_session(db, "bench_file", body)
    per_source = {}
    for source, ins, upd, rej in tagged(rows, "store"):
        if int(rej) or int(upd) or int(ins) != records[source]:
            raise BenchError("loading %s from the file stored %s new, %s updated, %s rejected; expected %d new"
                             % (source, ins, upd, rej, records[source]))
        per_source[source] = {"records": int(ins)}
    (s_x, s_c, secs, wal), = tagged(rows, "total")
    per_source["xendit"]["seconds"] = float(s_x)
    per_source["systemeio"]["seconds"] = float(s_c)
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


def measure(args):
    global EMULATOR_PID
    out = {"scale": args.scale, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": machine(), "page_size": None}
    psql("ALTER SYSTEM SET autovacuum = off;\nSELECT pg_reload_conf();", "postgres")
    out["pg_version"] = psql("SHOW server_version;", "postgres")[0][0]
    out["page_size"] = int(psql("LOAD 'migrate_ext';\nSHOW migrate_ext.page_size;", "postgres")[0][0])

    log("scale %s: migrate_ext.sync_raw_api_data() in a fresh database" % args.scale)
    fresh_database("bench_sync")
    set_keys("bench_sync")
    first = run_sync("bench_sync", "bench_sync_1")
    for s, r in first["sources"].items():
        if r["inserted"] != r["records"] or r["rejected"]:
            raise BenchError("first sync of %s: %d records but %d inserted, %d rejected"
                             % (s, r["records"], r["inserted"], r["rejected"]))
    out["sync"] = first
    log("  %d records in %.2f s" % (first["records"], first["seconds"]))

    # what autovacuum would have done between two syncs (it is off, so it cannot run during one)
    t = time.time()
    psql("VACUUM (ANALYZE) migrate_ext.xendit_raw, migrate_ext.systemeio_raw;", "bench_sync", timeout=600)
    out["vacuum_between_s"] = time.time() - t

    log("scale %s: second sync, nothing changed" % args.scale)
    second = run_sync("bench_sync", "bench_sync_2")
    for s, r in second["sources"].items():
        if r["unchanged"] != r["records"] or r["records"] != first["sources"][s]["records"]:
            raise BenchError("second sync of %s: %d records, %d unchanged (expected all %d unchanged)"
                             % (s, r["records"], r["unchanged"], first["sources"][s]["records"]))
    out["sync2"] = second
    log("  %d records in %.2f s, %d bytes of WAL" % (second["records"], second["seconds"], second["wal_bytes"]))

    log("scale %s: the floor, COPY from the generator's files + one store_page() per source" % args.scale)
    fresh_database("bench_file")
    records = {s: first["sources"][s]["records"] for s in SOURCES}
    floor = run_file("bench_file", args.dataset, records)
    out["file"] = floor
    log("  %d records in %.2f s" % (floor["records"], floor["seconds"]))

    a, b = content_digest("bench_sync"), content_digest("bench_file")
    if a != b:
        raise BenchError("the sync and the file load stored different records: %s vs %s" % (a, b))
    out["same_records"] = True
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
    w("")
    hdr = ("scale", "method", "records", "seconds", "records/s", "peak MB", "private MB", "x file time")
    fmt = "%-5s | %-28s | %8s | %7s | %9s | %7s | %10s | %11s"
    w(fmt % hdr)
    w("-" * len(fmt % hdr))
    for r in runs:
        floor = r["file"]
        for key, label in (("file", "file floor (COPY+store_page)"), ("sync", "migrate_ext sync"),
                           ("sync2", "migrate_ext 2nd sync (same)")):
            m = r[key]
            for s in SOURCES:
                src = m["sources"][s]
                ratio = src["seconds"] / floor["sources"][s]["seconds"]
                w(fmt % (r["scale"], "%s: %s" % (label.split(" (")[0], s), src["records"],
                         "%.2f" % src["seconds"], "%.0f" % rate(src["records"], src["seconds"]),
                         "", "", "%.2f" % ratio))
            w(fmt % (r["scale"], label, m["records"], "%.2f" % m["seconds"],
                     "%.0f" % rate(m["records"], m["seconds"]), "%.1f" % m["peak_mb"],
                     "%.1f" % m["private_mb"], "%.2f" % (m["seconds"] / floor["seconds"])))
        w("")
    w("WAL of the second sync (nothing changed) against the first:")
    for r in runs:
        w("  scale %-3s first %9.1f MB, second %8.1f kB, ratio %.5f (file floor: %.1f MB)"
          % (r["scale"], r["sync"]["wal_bytes"] / MB, r["sync2"]["wal_bytes"] / KB,
             r["sync2"]["wal_bytes"] / r["sync"]["wal_bytes"], r["file"]["wal_bytes"] / MB))
    w("")
    w("Where the time goes (CPU seconds during the measured statement; wall = elapsed):")
    for r in runs:
        for key, label in (("file", "file floor"), ("sync", "sync"), ("sync2", "2nd sync")):
            m = r[key]
            emu = m.get("emulator_cpu_s")
            w("  scale %-3s %-10s wall %6.2f s, backend CPU %6.2f s, emulator CPU %s, pages %s"
              % (r["scale"], label, m["seconds"], m["backend_cpu_s"],
                 "%6.2f s" % emu if emu is not None and key != "file" else "     - ",
                 sum(s.get("pages", 0) for s in m["sources"].values()) or "1 per source"))
    w("")
    w("Memory baseline (idle backend with migrate_ext loaded): VmHWM %.1f MB, RssAnon %.1f MB; "
      "shared buffers touched by the sync at the largest scale: %.1f MB"
      % (first["sync"]["baseline_vmhwm_mb"], first["sync"]["baseline_rssanon_mb"],
         runs[-1]["sync"]["shmem_touched_mb"]))
    w("peak MB = VmHWM after - VmHWM before (includes shared buffers first touched); "
      "private MB = max RssAnon - RssAnon before (the backend's own memory)")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.results_file:
        os.makedirs(os.path.dirname(args.results_file) or ".", exist_ok=True)
        with open(args.results_file, "w") as f:
            f.write(text)
        print("written to %s" % args.results_file)


EMULATOR_PID = int(os.environ["EMULATOR_PID"]) if os.environ.get("EMULATOR_PID", "").isdigit() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="measure one scale in the running sandbox")
    m.add_argument("--scale", required=True)
    m.add_argument("--dataset", required=True, help="generate.py --out folder of the same scale")
    m.add_argument("--out", required=True, help="JSON file for the measurements")
    r = sub.add_parser("report", help="print and write the table")
    r.add_argument("--results-file")
    r.add_argument("json", nargs="+")
    args = ap.parse_args()
    try:
        if args.cmd == "measure":
            measure(args)
        else:
            report(args)
    except (BenchError, StopIteration, KeyError, ValueError) as e:
        print("bench: FAILED: %s" % (e or type(e).__name__), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
