#!/usr/bin/python3
"""Self-check of generate.py and emulator.py: exact figures, paging, auth, limits, gzip, keep-alive, faults.

Run: /usr/bin/python3 test/emulator/selftest.py [--scale N] [--quick]
Prints one line per failed check, timings, and 'N passed, N failed'; exits 1 on any failure.
"""

import argparse
import base64
import gzip
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import generate  # noqa: E402

PYTHON = sys.executable or "/usr/bin/python3"
XKEY = "xnd_development_selftest"
SKEY = "systemeio_selftest_key"
XAUTH = {"Authorization": "Basic " + base64.b64encode((XKEY + ":").encode()).decode()}
SAUTH = {"X-API-Key": SKEY, "Accept": "application/json"}
SAMPLES = "/work/shared/reference/api-samples"


class Checks:
    """Pass/fail counters."""

    def __init__(self):
        """Nothing checked yet."""
        self.passed = 0
        self.failed = 0

    def ok(self, name, condition, detail=""):
        """Record one check; print it when it fails."""
        if condition:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return condition


class Emulator:
    """A running emulator process on free ports."""

    def __init__(self, scale, tmp, extra=()):
        """Start it and wait for its port file."""
        self.port_file = os.path.join(tmp, f"port.{scale}")
        self.trap_file = os.path.join(tmp, f"trap.{scale}")
        self.log = os.path.join(tmp, f"emu.{scale}.log")
        cmd = [PYTHON, os.path.join(HERE, "emulator.py"), "--port", "0", "--port-file", self.port_file,
               "--trap-port-file", self.trap_file, "--scale", str(scale), "--xendit-key", XKEY,
               "--systemeio-key", SKEY, "--log", self.log, *extra]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("emulator did not start: " + self.proc.stderr.read())
            time.sleep(0.05)
        self.startup = time.monotonic() - self.started
        self.port = int(open(self.port_file).read())
        self.trap_port = int(open(self.trap_file).read())

    def stop(self):
        """SIGTERM and wait; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def request(port, path, headers=None, conn=None, method="GET"):
    """(status, lower-case headers, raw body) of one request; a new connection unless one is given."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        if own:
            conn.close()


def outcome(port, path, headers):
    """Like request, but a transport failure comes back as its exception class name."""
    try:
        return request(port, path, headers)
    except (http.client.HTTPException, ConnectionError, OSError) as e:
        return type(e).__name__, {}, b""


def urlopen_json(url, headers):
    """GET a URL with urllib and parse the JSON body (exact decimals)."""
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read().decode("utf-8"), parse_float=Decimal), resp


def page_xendit(base, limit=100, cursor_param="last_invoice_id"):
    """Page every invoice with urllib as a client would: cursor = last id, stop on a short page."""
    records, cursor, pages = [], None, 0
    while True:
        url = f"{base}/v2/invoices?limit={limit}" + (f"&{cursor_param}={cursor}" if cursor else "")
        page, _ = urlopen_json(url, XAUTH)
        pages += 1
        records += page
        if len(page) < limit:
            return records, pages
        cursor = page[-1]["id"]


def page_systeme(base, limit=100, order=None):
    """Page every contact with urllib: startingAfter = last id while hasMore."""
    records, cursor, pages = [], None, 0
    while True:
        url = f"{base}/api/contacts?limit={limit}" + (f"&startingAfter={cursor}" if cursor else "")
        url += f"&order={order}" if order else ""
        page, _ = urlopen_json(url, SAUTH)
        pages += 1
        records += page["items"]
        if not page["hasMore"]:
            return records, pages
        cursor = page["items"][-1]["id"]


def page_keepalive(port, prefix=""):
    """Page both sources over one kept-alive gzip connection; returns (bodies, requests, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    bodies, count, cursor = [], 0, None
    while True:
        path = f"{prefix}/v2/invoices?limit=100" + (f"&last_invoice_id={cursor}" if cursor else "")
        _, h, body = request(port, path, {**XAUTH, "Accept-Encoding": "gzip"}, conn)
        body = gzip.decompress(body) if h.get("content-encoding") == "gzip" else body
        page = json.loads(body)
        count += 1
        bodies.append(body)
        if len(page) < 100:
            break
        cursor = page[-1]["id"]
    cursor = None
    while True:
        path = f"{prefix}/api/contacts?limit=100" + (f"&startingAfter={cursor}" if cursor else "")
        _, h, body = request(port, path, {**SAUTH, "Accept-Encoding": "gzip"}, conn)
        body = gzip.decompress(body) if h.get("content-encoding") == "gzip" else body
        page = json.loads(body)
        count += 1
        bodies.append(body)
        if not page["hasMore"]:
            break
        cursor = page["items"][-1]["id"]
    conn.close()
    return bodies, count, time.monotonic() - started


def stats(port, tag):
    """The emulator's stats for a tag."""
    return json.loads(request(port, "/_emu/stats?tag=" + tag)[2])


# ---------------------------------------------------------------------------------------------
# Checks.


def check_generator(c, tmp, scale):
    """Exact figures, determinism across hash seeds, the CLI files."""
    data = generate.generate(scale)
    t = data.truth
    c.ok("invoice count", len(data.invoices) == 9025 * scale, len(data.invoices))
    c.ok("contact count", len(data.contacts) == 15270 * scale, len(data.contacts))
    for status, row in generate.EXPECTED_STATUS.items():
        for product, n in row.items():
            got = t["invoices_by_status_product"][status][product]
            c.ok(f"truth {status}/{product}", got == n * scale, got)
    c.ok("truth PaidP2P", t["contact_tags"]["PaidP2P"] == 3664 * scale)
    c.ok("truth Canva", t["contact_tags"]["Canva"] == 4916 * scale)
    c.ok("truth both", t["contacts_paidp2p_and_canva"] == 2893 * scale)
    c.ok("one unstorable invoice", len(t["unstorable"]["invoice_ids"]) == 1)
    c.ok("one unstorable contact", len(t["unstorable"]["contact_ids"]) == 1)
    raw_inv = [x for x in data.invoices if "\\u0000" in x]
    raw_con = [x for x in data.contacts if "\\u0000" in x]
    c.ok("\\u0000 escape only in the unstorable invoice", len(raw_inv) == 1 and
         json.loads(raw_inv[0])["id"] == t["unstorable"]["invoice_ids"][0])
    c.ok("\\u0000 escape only in the unstorable contact", len(raw_con) == 1 and
         json.loads(raw_con[0])["id"] == t["unstorable"]["contact_ids"][0])
    for kind, n in t["mess_counts"]["invoices"].items():
        c.ok(f"invoice mess {kind} planted", n > 0, n)
    for kind, n in t["mess_counts"]["contacts"].items():
        c.ok(f"contact mess {kind} planted", n > 0, n)
    by_id = {i: x for i, x in zip(data.invoice_ids, data.invoices)}
    for s in t["amount_samples"]:
        c.ok(f"amount text {s['amount']}", f'"amount":{s["amount"]},' in by_id[s["id"]], s["id"])
    c.ok("some two-decimal samples", any(s["amount"].endswith(".50") for s in t["amount_samples"]))
    created = [json.loads(x)["created"] for x in data.invoices]
    c.ok("invoices newest first", all(a > b for a, b in zip(created, created[1:])))
    c.ok("contacts id descending", all(a > b for a, b in zip(data.contact_ids, data.contact_ids[1:])))
    c.ok("invoice ids 24 hex", all(len(i) == 24 and all(ch in "0123456789abcdef" for ch in i)
                                   for i in data.invoice_ids))
    c.ok("created within 2023-01..2025-06", created[-1] >= "2023-01-01" and created[0] < "2025-07-01")
    digests = []
    for seed in ("1", "2"):
        out = subprocess.run([PYTHON, "-c", "import sys,hashlib,json; sys.path.insert(0, sys.argv[1]);"
                              "import generate; d=generate.generate(int(sys.argv[2]));"
                              "h=hashlib.sha256(); [h.update(x.encode()) for x in d.invoices+d.contacts];"
                              "h.update(json.dumps(d.truth,sort_keys=True).encode()); print(h.hexdigest())",
                              HERE, str(scale)], env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True)
        digests.append(out.stdout.strip())
    c.ok("byte-identical across runs", digests[0] == digests[1] and len(digests[0]) == 64, digests)
    out_dir = os.path.join(tmp, "gen")
    subprocess.run([PYTHON, os.path.join(HERE, "generate.py"), "--scale", str(scale), "--out", out_dir],
                   check=True, capture_output=True)
    inv = json.load(open(os.path.join(out_dir, "invoices.json")))
    con = json.load(open(os.path.join(out_dir, "contacts.json")))
    tr = json.load(open(os.path.join(out_dir, "truth.json")))
    c.ok("CLI invoices.json", [x["id"] for x in inv] == data.invoice_ids)
    c.ok("CLI contacts.json", [x["id"] for x in con] == data.contact_ids)
    c.ok("CLI truth.json", tr["counts"] == t["counts"])
    ch = generate.changed(data, 7)
    diff_i = sum(1 for a, b in zip(data.invoices, ch.invoices) if a != b)
    diff_c = sum(1 for a, b in zip(data.contacts, ch.contacts) if a != b)
    c.ok("changed(7) invoices", diff_i == 7 and ch.invoice_ids == data.invoice_ids, diff_i)
    c.ok("changed(7) contacts", diff_c == 7 and ch.contact_ids == data.contact_ids, diff_c)
    return data


def check_paging(c, emu, data, scale):
    """Full paging of both sources with urllib, compared with the generator."""
    base = f"http://127.0.0.1:{emu.port}"
    started = time.monotonic()
    invoices, xpages = page_xendit(base)
    contacts, spages = page_systeme(base)
    took = time.monotonic() - started
    print(f"full paging (urllib, new connection per page): {xpages}+{spages} pages, {took:.2f}s", flush=True)
    c.ok("paged invoice count", len(invoices) == 9025 * scale, len(invoices))
    c.ok("paged invoice ids", [x["id"] for x in invoices] == data.invoice_ids)
    c.ok("paged contact count", len(contacts) == 15270 * scale, len(contacts))
    c.ok("paged contact ids", [x["id"] for x in contacts] == data.contact_ids)
    table = {}
    for x in invoices:
        key = (x["status"], generate.product_of(x.get("description")))
        table[key] = table.get(key, 0) + 1
    for status, row in generate.EXPECTED_STATUS.items():
        for product, n in row.items():
            c.ok(f"paged {status}/{product}", table.get((status, product), 0) == n * scale)
    tags = {}
    both = 0
    for x in contacts:
        names = [t["name"] for t in x.get("tags", [])]
        both += "PaidP2P" in names and "Canva" in names
        for n in names:
            tags[n] = tags.get(n, 0) + 1
    c.ok("paged PaidP2P", tags.get("PaidP2P") == 3664 * scale, tags.get("PaidP2P"))
    c.ok("paged Canva", tags.get("Canva") == 4916 * scale, tags.get("Canva"))
    c.ok("paged both", both == 2893 * scale, both)
    by_id = {x["id"]: x for x in invoices}
    for s in data.truth["amount_samples"]:
        got = by_id[s["id"]]["amount"]
        want = json.loads(s["amount"], parse_float=Decimal)
        c.ok(f"paged amount {s['amount']}", str(got) == str(want) and type(got) is type(want), got)
    asc, _ = urlopen_json(f"{base}/api/contacts?limit=100&order=asc", SAUTH)
    ids = [x["id"] for x in asc["items"]]
    c.ok("order=asc", ids == sorted(ids) and ids[0] == min(data.contact_ids), ids[:3])
    asc2, _ = urlopen_json(f"{base}/api/contacts?limit=100&order=asc&startingAfter={ids[-1]}", SAUTH)
    c.ok("order=asc page 2", asc2["items"][0]["id"] > ids[-1])
    _, _, b = request(emu.port, f"/v2/invoices?limit=100&last_invoice_id={data.invoice_ids[-1]}", XAUTH)
    c.ok("cursor past the end gives []", b == b"[]", b[:50])
    _, _, b = request(emu.port, f"/api/contacts?limit=10&startingAfter={data.contact_ids[-1]}", SAUTH)
    c.ok("startingAfter past the end", json.loads(b) == {"items": [], "hasMore": False}, b[:80])


def check_auth_limits(c, emu, data):
    """401 bodies, limit validation, the ignored cursor name, rate-limit headers."""
    p = emu.port
    s, h, b = request(p, "/v2/invoices")
    c.ok("xendit no auth 401", s == 401 and json.loads(b) == {"error_code": "INVALID_API_KEY",
                                                               "message": "Your API key is invalid"}, (s, b))
    bad = {"Authorization": "Basic " + base64.b64encode(b"wrong:").decode()}
    c.ok("xendit bad key 401", request(p, "/v2/invoices", bad)[0] == 401)
    pw = {"Authorization": "Basic " + base64.b64encode((XKEY + ":pw").encode()).decode()}
    c.ok("xendit key with password 401", request(p, "/v2/invoices", pw)[0] == 401)
    c.ok("xendit key as bearer 401", request(p, "/v2/invoices", {"Authorization": "Bearer " + XKEY})[0] == 401)
    s, h, b = request(p, "/api/contacts")
    c.ok("systeme no key 401", s == 401 and json.loads(b) == {"title": "An error occurred",
                                                               "detail": "Invalid API key"}, (s, b))
    c.ok("systeme bad key 401", request(p, "/api/contacts", {"X-API-Key": "nope"})[0] == 401)
    for bad_limit in ("0", "101", "abc", "-1"):
        s, h, b = request(p, f"/v2/invoices?limit={bad_limit}", XAUTH)
        c.ok(f"xendit limit={bad_limit} 400", s == 400 and json.loads(b)["error_code"] == "API_VALIDATION_ERROR",
             (s, b))
    s, h, b = request(p, "/v2/invoices", XAUTH)
    c.ok("xendit default limit 10", s == 200 and len(json.loads(b)) == 10)
    c.ok("xendit limit=1", len(json.loads(request(p, "/v2/invoices?limit=1", XAUTH)[2])) == 1)
    c.ok("xendit limit=100", len(json.loads(request(p, "/v2/invoices?limit=100", XAUTH)[2])) == 100)
    sample = os.path.join(SAMPLES, "systemeio-error.json")
    want = json.load(open(sample)) if os.path.exists(sample) else None
    for bad_limit in ("9", "101", "0", "x"):
        s, h, b = request(p, f"/api/contacts?limit={bad_limit}", SAUTH)
        c.ok(f"systeme limit={bad_limit} 422", s == 422 and (want is None or json.loads(b) == want), (s, b))
    s, h, b = request(p, "/api/contacts", SAUTH)
    c.ok("systeme default limit 10", s == 200 and len(json.loads(b)["items"]) == 10)
    c.ok("systeme limit=100", len(json.loads(request(p, "/api/contacts?limit=100", SAUTH)[2])["items"]) == 100)
    s, h, b = request(p, f"/v2/invoices?limit=5&last_invoice={data.invoice_ids[4]}", XAUTH)
    c.ok("unknown cursor name ignored (page 1 again)", [x["id"] for x in json.loads(b)] == data.invoice_ids[:5])
    s, h, b = request(p, f"/v2/invoices?limit=5&last_invoice_id={data.invoice_ids[4]}", XAUTH)
    c.ok("cursor advances", [x["id"] for x in json.loads(b)] == data.invoice_ids[5:10])
    c.ok("xendit rate headers", int(h["rate-limit-remaining"]) > 0 and float(h["rate-limit-reset"]) > 0
         and int(h["rate-limit-limit"]) > 0 and h.get("request-id", "").isdigit(), h)
    c.ok("content-length always", "content-length" in h and int(h["content-length"]) == len(b))
    c.ok("content-type json", h.get("content-type", "").startswith("application/json"))
    s, h, b = request(p, "/api/contacts", SAUTH)
    c.ok("systeme rate headers", int(h["x-ratelimit-remaining"]) > 0 and "x-ratelimit-limit" in h
         and "x-ratelimit-refill" in h, h)
    s, h, b = request(p, "/v2/nothing", XAUTH)
    c.ok("unknown path 404", s == 404)


def check_gzip_keepalive(c, emu, scale):
    """gzip over 1 KB, one connection for many requests, page latency."""
    p = emu.port
    s, h, b = request(p, "/t/gz/v2/invoices?limit=100", {**XAUTH, "Accept-Encoding": "gzip"})
    s2, h2, plain = request(p, "/t/plain/v2/invoices?limit=100", XAUTH)
    c.ok("gzip encoding", h.get("content-encoding") == "gzip" and gzip.decompress(b) == plain, h)
    c.ok("gzip content-length", int(h["content-length"]) == len(b))
    c.ok("no gzip when not asked", "content-encoding" not in h2)
    s, h, b = request(p, "/t/gz/v2/invoices", {"Accept-Encoding": "gzip"})
    c.ok("small body not gzipped", "content-encoding" not in h and s == 401)
    c.ok("stats gzip", stats(p, "gz")["gzip"] == 1, stats(p, "gz"))
    conn = http.client.HTTPConnection("127.0.0.1", p, timeout=30)
    times = []
    for _ in range(30):
        t0 = time.monotonic()
        s, h, b = request(p, "/t/ka/v2/invoices?limit=100", {**XAUTH, "Accept-Encoding": "gzip"}, conn)
        times.append(time.monotonic() - t0)
        s, h, b = request(p, "/t/ka/api/contacts?limit=100", {**SAUTH, "Accept-Encoding": "gzip"}, conn)
    conn.close()
    st = stats(p, "ka")
    c.ok("keep-alive: one connection", st["connections"] == 1 and st["requests"] == 60, st)
    times.sort()
    print(f"100-invoice gzip page over keep-alive: median {times[15] * 1000:.2f} ms, "
          f"max {times[-1] * 1000:.2f} ms", flush=True)
    c.ok("100-record page in a few ms", times[15] < 0.02, times[15])
    bodies, count, took = page_keepalive(p, "/t/full")
    st = stats(p, "full")
    print(f"full paging (http.client keep-alive + gzip): {count} pages, {took:.2f}s "
          f"({count / took:.0f} pages/s)", flush=True)
    c.ok("full paging keep-alive stats", st["connections"] == 1 and st["requests"] == count
         and st["gzip"] == count, st)


class FaultProbe:
    """Sends requests with a fault spec to one source under its own tag."""

    def __init__(self, emu, data, source):
        """Paths of page 1 and page 2 of the source, and its normal page-1 body."""
        self.emu, self.source = emu, source
        self.tag = "f" + source
        if source == "xendit":
            self.auth, self.path = XAUTH, "/v2/invoices?limit=10"
            self.page2 = f"/v2/invoices?limit=10&last_invoice_id={data.invoice_ids[9]}"
        else:
            self.auth, self.path = SAUTH, "/api/contacts?limit=10"
            self.page2 = f"/api/contacts?limit=10&startingAfter={data.contact_ids[9]}"
        self.normal = request(emu.port, self.path, self.auth)[2]

    def get(self, spec, rel=None, headers=None):
        """One request with a fault spec: (status or exception name, headers, body)."""
        return outcome(self.emu.port, f"/t/{self.tag}/f/{spec}{rel or self.path}", headers or self.auth)


def check_status_faults(c, f):
    """429, 5xx with empty bodies, 4xx in the source's error format."""
    src = f.source
    s, h, b = f.get("429")
    if src == "xendit":
        c.ok("xendit 429", s == 429 and json.loads(b)["error_code"] == "RATE_LIMIT_EXCEEDED"
             and h["rate-limit-remaining"] == "0" and h["rate-limit-reset"] == "0.3"
             and "retry-after" not in h, (s, h, b))
        s, h, b = f.get("429.w1.5.n1", f.page2)
        c.ok("xendit 429 w1.5", s == 429 and h["rate-limit-reset"] == "1.5", h)
    else:
        c.ok("systeme 429", s == 429 and json.loads(b) == {"detail": "Too Many Requests"}
             and h["retry-after"] == "1" and h["x-ratelimit-remaining"] == "0", (s, h, b))
        s, h, b = f.get("429.w1.5", f.page2)
        c.ok("systeme 429 w1.5 -> Retry-After 2", s == 429 and h["retry-after"] == "2", h)
    for code in ("500", "502", "503"):
        s, h, b = f.get(code)
        c.ok(f"{src} {code} empty", s == int(code) and b == b"" and h.get("content-length") == "0", (s, h))
    for code in ("400", "403", "404", "422"):
        s, h, b = f.get(code)
        doc = json.loads(b) if b else {}
        fmt = "error_code" in doc and "message" in doc if src == "xendit" else "detail" in doc
        c.ok(f"{src} {code} body", s == int(code) and fmt, (s, b))
    if src == "xendit":
        c.ok("xendit 403 ACCESS_SUSPENDED", json.loads(f.get("403", f.page2)[2])["error_code"] == "ACCESS_SUSPENDED")
    s, h, b = f.get("remaining0")
    if src == "xendit":
        c.ok("xendit remaining0", s == 200 and b == f.normal and h["rate-limit-remaining"] == "0"
             and h["rate-limit-reset"] == "0.5", h)
    else:
        c.ok("systeme remaining0", s == 200 and b == f.normal and h["x-ratelimit-remaining"] == "0"
             and h["x-ratelimit-refill"] == "0.5", h)


def check_transport_faults(c, f):
    """slow (without blocking others), drop, cutoff, redirect to the trap."""
    src, p, trap = f.source, f.emu.port, f.emu.trap_port
    fast = {}

    def side():
        """A request without faults while the slow one sleeps."""
        t1 = time.monotonic()
        request(p, f.path, f.auth)
        fast["t"] = time.monotonic() - t1

    th = threading.Thread(target=side)
    timer = threading.Timer(0.2, th.start)
    t0 = time.monotonic()
    timer.start()
    s, h, b = f.get("slow.w1.2")
    took = time.monotonic() - t0
    timer.join()
    th.join()
    c.ok(f"{src} slow waits", s == 200 and b == f.normal and took >= 1.2, (s, took))
    c.ok(f"{src} slow does not block others", fast.get("t", 9) < 0.5, fast)
    s, h, b = f.get("drop")
    c.ok(f"{src} drop", s in ("RemoteDisconnected", "ConnectionResetError", "BadStatusLine"), s)
    s, h, b = f.get("cutoff")
    c.ok(f"{src} cutoff", s == "IncompleteRead", s)
    s, h, b = f.get("redirect")
    loc = h.get("location", "")
    c.ok(f"{src} redirect", s == 302 and loc == f"http://127.0.0.1:{trap}/t/{f.tag}/f/redirect{f.path}", loc)
    before = json.loads(request(p, "/_emu/trap")[2])
    request(trap, loc[len(f"http://127.0.0.1:{trap}"):], f.auth)
    after = json.loads(request(p, "/_emu/trap")[2])
    c.ok(f"{src} trap records credentials", after["requests"] == before["requests"] + 1 and
         after["requests_with_credentials"] == before["requests_with_credentials"] + 1, after)
    c.ok(f"{src} trap keeps no header values", all(isinstance(x, str) and ":" not in x
                                                   for it in after["items"] for x in it["header_names"]))


def check_body_faults(c, f):
    """truncate, invalid, envelope, huge, stuck."""
    src = f.source
    s, h, b = f.get("truncate")
    c.ok(f"{src} truncate", s == 200 and int(h["content-length"]) == len(b) and
         b == f.normal[: len(f.normal) // 2] and not parses(b), (s, len(b)))
    s, h, b = f.get("invalid")
    c.ok(f"{src} invalid", s == 200 and not parses(b) and b.lstrip().startswith(b"<"), b[:40])
    s, h, b = f.get("envelope")
    doc = json.loads(b)
    if src == "xendit":
        c.ok("xendit envelope", s == 200 and isinstance(doc, dict) and len(doc["data"]) == 10, str(doc)[:80])
    else:
        c.ok("systeme envelope", s == 200 and isinstance(doc, list) and len(doc) == 10, str(doc)[:80])
    s, h, b = f.get("huge")
    c.ok(f"{src} huge", s == 200 and len(b) >= 2_000_000 and parses(b), len(b))
    s, h, b = f.get("huge.b300000", f.page2)
    c.ok(f"{src} huge.b300000", s == 200 and 300_000 <= len(b) < 400_000 and parses(b), len(b))
    s, h, b = f.get("huge.n0", headers={**f.auth, "Accept-Encoding": "gzip"})
    c.ok(f"{src} huge gzipped", h.get("content-encoding") == "gzip" and len(gzip.decompress(b)) >= 2_000_000)
    s, h, b = f.get("stuck.n0", f.page2)
    c.ok(f"{src} stuck serves page 1", s == 200 and
         b == f.normal.replace(b'"hasMore":false', b'"hasMore":true'), b[:60])


def check_counting_faults(c, f):
    """p/n selection, n0, '+' combinations, bad specs, fractional w."""
    src = f.source
    seq = [f.get("503.p2.n2", rel)[0] for rel in (f.path, f.page2, f.page2, f.page2, f.path)]
    c.ok(f"{src} 503.p2.n2 sequence", seq == [200, 503, 503, 200, 200], seq)
    seq = [f.get("500.n0")[0] for _ in range(3)]
    c.ok(f"{src} n0 always", seq == [500, 500, 500], seq)
    seq = [f.get("429.p1+503.p2", rel)[0] for rel in (f.path, f.path, f.page2, f.page2)]
    c.ok(f"{src} combined faults", seq == [429, 200, 503, 200], seq)
    c.ok(f"{src} bad fault spec 400", f.get("bogus")[0] == 400)
    s, h, b = f.get("429.w0.25")
    c.ok(f"{src} fractional w", s == 429 and (h.get("rate-limit-reset") == "0.25" or
                                             h.get("retry-after") == "1"), h)


def check_faults(c, emu, data, source):
    """Every fault kind against one source."""
    probe = FaultProbe(emu, data, source)
    check_status_faults(c, probe)
    check_transport_faults(c, probe)
    check_body_faults(c, probe)
    check_counting_faults(c, probe)


def parses(body):
    """True when a body is valid JSON."""
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


def check_changed(c, emu, data):
    """/changed/N serves N different records of each source, same ids and order."""
    base = f"http://127.0.0.1:{emu.port}/changed/5"
    invoices, _ = page_xendit(base)
    contacts, _ = page_systeme(base)
    c.ok("changed ids same", [x["id"] for x in invoices] == data.invoice_ids and
         [x["id"] for x in contacts] == data.contact_ids)
    orig_i = [json.loads(x, parse_float=Decimal) for x in data.invoices]
    orig_c = [json.loads(x, parse_float=Decimal) for x in data.contacts]
    di = [a["id"] for a, b in zip(orig_i, invoices) if a != b]
    dc = [a["id"] for a, b in zip(orig_c, contacts) if a != b]
    c.ok("changed/5: 5 invoices differ", len(di) == 5, len(di))
    c.ok("changed/5: 5 contacts differ", len(dc) == 5, len(dc))
    changed = [x for x in invoices if x["id"] in set(di)]
    c.ok("changed invoices became PAID", all(x["status"] == "PAID" and "paid_at" in x for x in changed))
    s, h, b = request(emu.port, "/changed/999999999/v2/invoices", XAUTH)
    c.ok("changed too large 400", s == 400, s)


def check_transactions(c, emu):
    """The optional /transactions ledger."""
    p = emu.port
    s, h, b = request(p, "/transactions?limit=50&currency=PHP", XAUTH)
    doc = json.loads(b)
    c.ok("transactions envelope", s == 200 and doc["has_more"] is True and len(doc["data"]) == 50
         and doc["links"][0]["rel"] == "next", str(doc)[:100])
    s, h, b = request(p, f"/transactions?limit=50&currency=PHP&after_id={doc['data'][-1]['id']}", XAUTH)
    doc2 = json.loads(b)
    c.ok("transactions after_id", doc2["data"][0]["id"] != doc["data"][-1]["id"] and
         doc2["data"][0]["created"] <= doc["data"][-1]["created"])
    s, h, b = request(p, "/transactions?invalid_query=1", XAUTH)
    c.ok("transactions unknown param 400", s == 400 and "invalid_query" in json.loads(b)["message"])
    s, h, b = request(p, "/transactions?limit=51&currency=PHP", XAUTH)
    c.ok("transactions limit 51 400", s == 400)
    s, h, b = request(p, "/transactions", XAUTH)
    c.ok("transactions default IDR is empty", json.loads(b) == {"has_more": False, "data": [], "links": []}, b)


def check_control(c, emu):
    """Stats by status and auth, reset, emuctl output, SIGTERM exit."""
    p = emu.port
    request(p, "/t/ctl/v2/invoices", XAUTH)
    request(p, "/t/ctl/v2/invoices")
    request(p, "/t/ctl/f/503/api/contacts", SAUTH)
    st = stats(p, "ctl")
    c.ok("stats by_status", st["by_status"] == {"200": 1, "401": 1, "503": 1}, st)
    c.ok("stats auth", st["auth_ok"] == 2 and st["auth_bad"] == 1, st)
    env = {**os.environ, "EMULATOR_URL": f"http://127.0.0.1:{p}"}
    out = subprocess.run([PYTHON, os.path.join(HERE, "emuctl.py"), "stats", "ctl"], env=env,
                         capture_output=True, text=True).stdout.strip()
    c.ok("emuctl stats line", out == "requests=3 connections=3 gzip=0 200=1 401=1 503=1", out)
    out = subprocess.run([PYTHON, os.path.join(HERE, "emuctl.py"), "reset"], env=env,
                         capture_output=True, text=True).stdout.strip()
    st = stats(p, "ctl")
    c.ok("reset clears", out == "reset" and st["requests"] == 0, st)
    out = subprocess.run([PYTHON, os.path.join(HERE, "emuctl.py"), "trap"], env=env,
                         capture_output=True, text=True).stdout.strip()
    c.ok("emuctl trap line", out == "trap requests=0 with_credentials=0", out)
    log = open(emu.log).read()
    c.ok("log has no keys", XKEY not in log and SKEY not in log and "Basic " not in log)
    c.ok("log has lines", log.count("\n") > 100)


def main():
    """Run every check and print the totals."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1)
    args = ap.parse_args()
    c = Checks()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        data = check_generator(c, tmp, args.scale)
        emu = Emulator(args.scale, tmp)
        print(f"emulator started in {emu.startup:.2f}s on port {emu.port} (trap {emu.trap_port})", flush=True)
        try:
            check_paging(c, emu, data, args.scale)
            check_auth_limits(c, emu, data)
            check_gzip_keepalive(c, emu, args.scale)
            check_faults(c, emu, data, "xendit")
            check_faults(c, emu, data, "systemeio")
            check_changed(c, emu, data)
            check_transactions(c, emu)
            check_control(c, emu)
        finally:
            code = emu.stop()
            err = emu.proc.stderr.read()
        c.ok("SIGTERM exits 0", code == 0, code)
        c.ok("no stderr from the emulator", err.strip() == "", err[-500:])
        c.ok("stdout has no keys", XKEY not in emu.proc.stdout.read())
    print(f"selftest took {time.monotonic() - started:.1f}s")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
