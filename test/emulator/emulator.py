#!/usr/bin/python3
"""Local HTTP emulator of the Xendit invoices API and the Systeme.io contacts API, for migrate_ext tests.

Serves the deterministic data set of generate.py with the real envelopes, cursors, auth checks and
rate-limit headers, plus fault injection chosen through path modifiers:

    /t/<tag>          group the request under a tag in /_emu/stats
    /f/<faultspec>    inject faults, e.g. 503.p2.n2 or 429.w0.5+slow.p3.w2
    /changed/<n>      serve the data set with n invoices and n contacts changed

Example: GET /t/ka1/f/503.p2.n2/v2/invoices?limit=100&last_invoice_id=...
Control (no auth): GET /_emu/stats?tag=X, GET /_emu/trap, POST /_emu/reset, GET /_emu/truth, GET /_emu/health.
API keys are never printed or logged.
"""

import argparse
import base64
import bisect
import gzip
import hashlib
import hmac
import json
import math
import os
import random
import re
import signal
import socket
import ssl
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402

XENDIT_RATE_LIMIT = 3000
SYSTEMEIO_RATE_LIMIT = 1000
RATE_WINDOW = 60.0
GZIP_MIN_BYTES = 1024
GZIP_CACHE_MAX_BYTES = 256 * 1024 * 1024
REQUEST_ID_BASE = 8622343692433230874
FAULT_KINDS = ("429", "500", "502", "503", "400", "403", "404", "422", "slow", "drop", "cutoff",
               "truncate", "invalid", "envelope", "redirect", "huge", "stuck", "remaining0")
FAULT_RE = re.compile(r"^([a-z0-9]+)((?:\.[pnwb]\d+(?:\.\d+)?)*)$")
FAULT_OPT_RE = re.compile(r"\.([pnwb])(\d+(?:\.\d+)?)")
JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_TYPE = "application/problem+json"
CDN_ERROR_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n"
                  b"<body><h1>Error 15</h1><p>This request was blocked by the security service.</p>"
                  b"<p>Incident ID: 588627785-13-588617801</p><hr><address>Imperva</address></body></html>\n")

XENDIT_ERRORS = {
    400: {"error_code": "API_VALIDATION_ERROR", "message": "Invalid input data. Please check your request"},
    401: {"error_code": "INVALID_API_KEY", "message": "Your API key is invalid"},
    403: {"error_code": "ACCESS_SUSPENDED", "message": "Your access to this API has been suspended"},
    404: {"error_code": "NOT_FOUND", "message": "The requested resource was not found"},
    422: {"error_code": "UNPROCESSABLE_ENTITY", "message": "The request could not be processed"},
    429: {"error_code": "RATE_LIMIT_EXCEEDED", "message": "Too many requests"},
}
SYSTEMEIO_ERRORS = {
    400: {"title": "An error occurred", "detail": "Bad Request"},
    401: {"title": "An error occurred", "detail": "Invalid API key"},
    403: {"title": "An error occurred", "detail": "Access Denied."},
    404: {"title": "An error occurred", "detail": "Not Found"},
    422: {"detail": "startingAfter: This value is not valid.",
          "violations": [{"propertyPath": "startingAfter", "message": "This value is not valid."}]},
    429: {"detail": "Too Many Requests"},
}
SYSTEMEIO_LIMIT_ERROR = {
    "detail": "pagination.limit: Wrong value of pagination limit parameter",
    "violations": [{"propertyPath": "pagination.limit", "message": "Wrong value of pagination limit parameter"}],
}
TRANSACTION_PARAMS = {"limit", "after_id", "before_id", "currency", "types", "statuses", "channel_categories",
                      "reference_id", "product_id", "account_identifier", "amount", "created[gte]",
                      "created[lte]", "updated[gte]", "updated[lte]"}
CHANNEL_CATEGORY = {"EWALLET": "EWALLET", "CREDIT_CARD": "CARDS", "BANK_TRANSFER": "BANK",
                    "RETAIL_OUTLET": "RETAIL_OUTLET", "QR_CODE": "QR_CODE", "DIRECT_DEBIT": "DIRECT_DEBIT"}


def jbytes(value):
    """Compact JSON bytes of a small control or error document."""
    return json.dumps(value, separators=(",", ":")).encode()


class ApiError(Exception):
    """An error answer: HTTP status plus the body in the source's own format."""

    def __init__(self, status, body):
        """Keep the status and the body (a dict)."""
        super().__init__(status)
        self.status = status
        self.body = body


# ---------------------------------------------------------------------------------------------
# Page-ready data.


class Store:
    """Page-ready bytes of one data set with id -> position indexes."""

    def __init__(self, dataset):
        """Encode every record once and index the cursors."""
        self.truth = dataset.truth
        self.invoices = [t.encode() for t in dataset.invoices]
        self.invoice_pos = {i: n for n, i in enumerate(dataset.invoice_ids)}
        self.contacts_desc = [t.encode() for t in dataset.contacts]
        self.contact_ids_desc = list(dataset.contact_ids)
        self.neg_ids = [-i for i in self.contact_ids_desc]
        self.contacts_asc = self.contacts_desc[::-1]
        self.contact_ids_asc = self.contact_ids_desc[::-1]
        self.transactions = None
        self.txn_filters = {}
        self.lock = threading.Lock()

    def contact_start(self, order, cursor):
        """Index of the first contact after the cursor id in the given order."""
        if cursor is None:
            return 0
        if order == "asc":
            return bisect.bisect_right(self.contact_ids_asc, cursor)
        return bisect.bisect_right(self.neg_ids, -cursor)

    def contact_list(self, order):
        """Contact texts in the requested order."""
        return self.contacts_asc if order == "asc" else self.contacts_desc

    def transaction_list(self):
        """The Xendit transactions ledger derived from paid invoices (built on first use)."""
        with self.lock:
            if self.transactions is None:
                self.transactions = build_transactions(self.invoices)
            return self.transactions


def money(value):
    """Two-decimal Decimal."""
    return Decimal(value).quantize(Decimal("0.01"))


def transaction_of(d):
    """One ledger row for a paid invoice, or None when the invoice cannot make one."""
    amount = d.get("amount")
    if not isinstance(amount, (int, Decimal)) or amount <= 0 or "paid_at" not in d:
        return None
    digest = hashlib.md5(d["id"].encode()).hexdigest()
    fee = money(Decimal(amount) * Decimal("0.025"))
    vat = money(fee * Decimal("0.12"))
    net = money(Decimal(amount) - fee - vat)
    settled = d.get("status") == "SETTLED"
    currency = d.get("currency", "PHP")
    return {
        "id": f"txn_{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}",
        "product_id": d["id"],
        "type": "PAYMENT",
        "status": "SUCCESS",
        "channel_category": CHANNEL_CATEGORY.get(d.get("payment_method"), "OTHER"),
        "channel_code": "PH_" + d.get("payment_channel", "OTHER"),
        "reference_id": d.get("external_id"),
        "account_identifier": None,
        "currency": currency,
        "amount": amount,
        "net_amount": net,
        "net_amount_currency": currency,
        "cashflow": "MONEY_IN",
        "settlement_status": "SETTLED" if settled else "PENDING",
        "estimated_settlement_time": d.get("updated") if settled else None,
        "business_id": d.get("user_id", generate.USER_ID),
        "created": d["paid_at"],
        "updated": d.get("updated", d["paid_at"]),
        "fee": {"xendit_fee": fee, "value_added_tax": vat, "xendit_withholding_tax": 0,
                "third_party_withholding_tax": 0, "status": "COMPLETED"},
        "product_data": {"payment_link_id": d["id"]},
    }


def build_transactions(invoice_texts):
    """Ledger rows (dict, text) of all paid invoices, newest payment first."""
    rows = []
    for text in invoice_texts:
        if b'"status":"PAID"' not in text and b'"status":"SETTLED"' not in text:
            continue
        row = transaction_of(generate.loads(text))
        if row is not None:
            rows.append(row)
    rows.sort(key=lambda r: (r["created"], r["id"]), reverse=True)
    return [(r, generate.dumps(r).encode()) for r in rows]


# ---------------------------------------------------------------------------------------------
# Faults.


class Fault:
    """One parsed fault: kind, page filter, firing count, wait seconds, size."""

    def __init__(self, spec, index, kind, options):
        """Build from the parsed parts of a fault spec."""
        self.spec = spec
        self.index = index
        self.kind = kind
        self.page = int(options["p"]) if "p" in options else None
        self.times = int(options["n"]) if "n" in options else 1
        self.wait = float(options["w"]) if "w" in options else None
        self.size = int(options["b"]) if "b" in options else None


def parse_faults(spec):
    """Parse '<kind>[.p<k>][.n<m>][.w<s>][.b<bytes>]' items joined by '+'; raises ValueError."""
    faults = []
    if not spec:
        return faults
    for index, item in enumerate(spec.split("+")):
        m = FAULT_RE.match(item)
        if not m or m.group(1) not in FAULT_KINDS:
            raise ValueError(f"bad fault '{item}'")
        options = {}
        for key, value in FAULT_OPT_RE.findall(m.group(2)):
            if key != "w" and "." in value:
                raise ValueError(f"bad fault option '{key}{value}'")
            options[key] = value
        faults.append(Fault(spec, index, m.group(1), options))
    return faults


def split_modifiers(path):
    """Strip the /t/<tag>, /f/<spec> and /changed/<n> pairs from the front of a path."""
    segs = path.split("/")[1:]
    tag, specs, changed_n = "", [], 0
    while len(segs) >= 2 and segs[0] in ("t", "f", "changed"):
        key, value = segs[0], unquote(segs[1])
        segs = segs[2:]
        if key == "t":
            tag = value
        elif key == "f":
            specs.append(value)
        else:
            if not value.isdigit():
                raise ValueError(f"bad changed count '{value}'")
            changed_n = int(value)
    return tag, "+".join(s for s in specs if s), changed_n, "/" + "/".join(segs)


# ---------------------------------------------------------------------------------------------
# Shared state.


class TagStats:
    """Counters of one tag."""

    def __init__(self):
        """All zero."""
        self.requests = 0
        self.connections = set()
        self.gzip = 0
        self.by_status = {}
        self.auth_ok = 0
        self.auth_bad = 0

    def as_dict(self):
        """JSON view."""
        return {"requests": self.requests, "connections": len(self.connections), "gzip": self.gzip,
                "by_status": dict(sorted(self.by_status.items())), "auth_ok": self.auth_ok,
                "auth_bad": self.auth_bad}


class State:
    """Everything the handlers share: data, keys, counters, log."""

    def __init__(self, args, dataset):
        """Hold the configuration and the base data set."""
        self.scale = args.scale
        self.xendit_key = args.xendit_key
        self.systemeio_key = args.systemeio_key
        self.cursor_param = args.xendit_cursor_param
        self.trap_port = 0
        self.dataset = dataset
        self.stores = {0: Store(dataset)}
        self.store_lock = threading.Lock()
        self.lock = threading.Lock()
        self.stats = {}
        self.fault_counts = {}
        self.trap_items = []
        self.request_seq = 0
        self.conn_seq = 0
        self.window_start = time.monotonic()
        self.window_counts = {"xendit": 0, "systemeio": 0}
        self.gzip_cache = {}
        self.gzip_cache_bytes = 0
        self.padding = {}
        self.log = open(args.log, "a", encoding="utf-8", buffering=1) if args.log else None

    def store(self, n):
        """The data set with n changed records of each source (built once, then cached)."""
        with self.store_lock:
            if n not in self.stores:
                self.stores[n] = Store(generate.changed(self.dataset, n))
            return self.stores[n]

    def next_conn(self):
        """A new connection number."""
        with self.lock:
            self.conn_seq += 1
            return self.conn_seq

    def rate(self, source):
        """(remaining, seconds left in the window) after counting one request of a source."""
        with self.lock:
            now = time.monotonic()
            if now - self.window_start >= RATE_WINDOW:
                self.window_start = now - (now - self.window_start) % RATE_WINDOW
                self.window_counts = {"xendit": 0, "systemeio": 0}
            self.window_counts[source] += 1
            self.request_seq += 1
            limit = XENDIT_RATE_LIMIT if source == "xendit" else SYSTEMEIO_RATE_LIMIT
            remaining = max(1, limit - self.window_counts[source])
            left = max(0.001, RATE_WINDOW - (now - self.window_start))
            return remaining, left, self.request_seq

    def fires(self, tag, fault, source, page):
        """Count a request that matches a fault and tell whether the fault fires on it."""
        if fault.page is not None and fault.page != page:
            return False
        key = (tag, fault.spec, fault.index, source, page)
        with self.lock:
            seen = self.fault_counts.get(key, 0)
            self.fault_counts[key] = seen + 1
        return fault.times == 0 or seen < fault.times

    def record(self, tag, conn, status, gzipped, auth):
        """Add one API request to the stats of its tag."""
        with self.lock:
            s = self.stats.setdefault(tag, TagStats())
            s.requests += 1
            s.connections.add(conn)
            if gzipped:
                s.gzip += 1
            key = str(status)
            s.by_status[key] = s.by_status.get(key, 0) + 1
            if auth is True:
                s.auth_ok += 1
            elif auth is False:
                s.auth_bad += 1

    def stats_of(self, tag):
        """Stats of one tag, or of all tags together when tag is None."""
        with self.lock:
            if tag is not None:
                return self.stats.get(tag, TagStats()).as_dict()
            total = TagStats()
            for s in self.stats.values():
                total.requests += s.requests
                total.connections |= s.connections
                total.gzip += s.gzip
                total.auth_ok += s.auth_ok
                total.auth_bad += s.auth_bad
                for k, v in s.by_status.items():
                    total.by_status[k] = total.by_status.get(k, 0) + v
            return total.as_dict()

    def reset(self):
        """Clear every counter and the trap's records."""
        with self.lock:
            self.stats = {}
            self.fault_counts = {}
            self.trap_items = []

    def add_trap(self, method, path, header_names):
        """Record one request that reached the trap listener."""
        with self.lock:
            self.trap_items.append({"method": method, "path": path, "header_names": header_names})

    def trap_view(self):
        """JSON view of the trap's records."""
        with self.lock:
            items = list(self.trap_items)
        creds = sum(1 for it in items
                    if any(h.lower() in ("authorization", "x-api-key") for h in it["header_names"]))
        return {"requests": len(items), "requests_with_credentials": creds, "items": items}

    def gzip_body(self, key, body):
        """gzip a body, reusing the compressed bytes of pages already sent."""
        if key is not None:
            with self.lock:
                hit = self.gzip_cache.get(key)
            if hit is not None:
                return hit
        packed = gzip.compress(body, compresslevel=5, mtime=0)
        if key is not None:
            with self.lock:
                if self.gzip_cache_bytes + len(packed) > GZIP_CACHE_MAX_BYTES:
                    self.gzip_cache.clear()
                    self.gzip_cache_bytes = 0
                self.gzip_cache[key] = packed
                self.gzip_cache_bytes += len(packed)
        return packed

    def pad(self, size):
        """A deterministic, poorly compressible ASCII string of the given length."""
        with self.lock:
            if size not in self.padding:
                raw = random.Random(size).randbytes(size * 3 // 4 + 3)
                self.padding[size] = base64.b64encode(raw)[:size]
            return self.padding[size]

    def write_log(self, method, path, status, nbytes, started):
        """One log line per request: method, path, status, bytes, milliseconds."""
        if self.log is None:
            return
        ms = (time.monotonic() - started) * 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        with self.lock:
            self.log.write(f"{stamp} {method} {path} {status} {nbytes} {ms:.1f}ms\n")


# ---------------------------------------------------------------------------------------------
# Request handling.


class Reply:
    """A response being prepared: status, headers, body, and how to send it."""

    def __init__(self, status=200, body=b"", content_type=JSON_TYPE):
        """A plain response."""
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = []
        self.cache_key = None
        self.mode = "normal"


def query_args(query):
    """Query string as a dict of lists (blank values kept)."""
    return parse_qs(query, keep_blank_values=True)


def first(args, name):
    """The first value of a query parameter, or None when absent or empty."""
    values = args.get(name)
    if not values or values[0] == "":
        return None
    return values[0]


def parse_limit(args, default, low, high):
    """The limit parameter as an int in [low, high], else None (absent gives the default)."""
    raw = first(args, "limit")
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,9}", raw):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def xendit_limit_error(raw):
    """The API_VALIDATION_ERROR body for a bad limit."""
    return {"message": "Invalid input data. Please check your request", "error_code": "API_VALIDATION_ERROR",
            "errors": [{"field": ["limit"], "location": "query",
                        "messages": [f"\"limit\" must be between 1 and 100, got {raw!r}"],
                        "types": ["number.range"]}]}


def check_xendit_auth(header, key):
    """True when Basic auth carries the key as user name and an empty password."""
    if not header or header[:6].lower() != "basic ":
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    return bool(sep) and password == "" and hmac.compare_digest(user.encode(), key.encode())


def check_systemeio_auth(header, key):
    """True when the X-API-Key header holds the key."""
    return bool(header) and hmac.compare_digest(header.encode(), key.encode())


def xendit_invoices_page(state, store, args, stuck):
    """(body, start, limit, records) of one invoices page; raises ApiError on bad input."""
    limit = parse_limit(args, 10, 1, 100)
    if limit is None:
        raise ApiError(400, xendit_limit_error(first(args, "limit")))
    cursor = first(args, state.cursor_param)
    start = 0
    if cursor is not None and not stuck:
        if cursor not in store.invoice_pos:
            raise ApiError(400, {"error_code": "API_VALIDATION_ERROR",
                                 "message": f"{state.cursor_param} does not name an invoice"})
        start = store.invoice_pos[cursor] + 1
    records = store.invoices[start:start + limit]
    return b"[" + b",".join(records) + b"]", start, limit, records


def systemeio_contacts_page(store, args, stuck):
    """(body, start, limit, records, has_more) of one contacts page; raises ApiError on bad input."""
    limit = parse_limit(args, 10, 10, 100)
    if limit is None:
        raise ApiError(422, SYSTEMEIO_LIMIT_ERROR)
    order = first(args, "order") or "desc"
    if order not in ("asc", "desc"):
        raise ApiError(422, {"detail": "order: The value you selected is not a valid choice.",
                             "violations": [{"propertyPath": "order",
                                             "message": "The value you selected is not a valid choice."}]})
    raw = first(args, "startingAfter")
    cursor = None
    if raw is not None:
        if not re.fullmatch(r"-?\d{1,18}", raw):
            raise ApiError(422, {"detail": "startingAfter: This value should be of type int.",
                                 "violations": [{"propertyPath": "startingAfter",
                                                 "message": "This value should be of type int."}]})
        cursor = int(raw)
    start = 0 if stuck else store.contact_start(order, cursor)
    items = store.contact_list(order)
    records = items[start:start + limit]
    more = stuck or start + limit < len(items)
    body = b'{"items":[' + b",".join(records) + b'],"hasMore":' + (b"true" if more else b"false") + b"}"
    return body, start, limit, records, more, order


def systemeio_tags_page(args):
    """(body, start, limit) of the tags list."""
    limit = parse_limit(args, 10, 10, 100)
    if limit is None:
        raise ApiError(422, SYSTEMEIO_LIMIT_ERROR)
    tags = [{"id": i, "name": n, "createdAt": "2023-01-15T00:00:00+00:00"}
            for n, i in sorted(generate.TAG_IDS.items(), key=lambda t: -t[1])]
    query = first(args, "query")
    if query:
        tags = [t for t in tags if query.lower() in t["name"].lower()]
    if first(args, "order") == "asc":
        tags.reverse()
    raw = first(args, "startingAfter")
    start = 0
    if raw is not None and raw.lstrip("-").isdigit():
        ids = [t["id"] for t in tags]
        start = ids.index(int(raw)) + 1 if int(raw) in ids else len(ids)
    page = tags[start:start + limit]
    return jbytes({"items": page, "hasMore": start + limit < len(tags)}), start, limit


def filtered_transactions(store, args):
    """Ledger rows that match the query's filters (cached per filter set)."""
    currency = first(args, "currency") or "IDR"
    key = (currency, tuple(sorted((k, tuple(v)) for k, v in args.items()
                                  if k not in ("limit", "after_id", "before_id", "currency"))))
    with store.lock:
        hit = store.txn_filters.get(key)
    if hit is not None:
        return hit
    rows = []
    for row, text in store.transaction_list():
        if row["currency"] != currency:
            continue
        if not all(matches(row, name, values) for name, values in key[1]):
            continue
        rows.append((row, text))
    with store.lock:
        store.txn_filters[key] = rows
    return rows


def matches(row, name, values):
    """True when a ledger row passes one query filter."""
    plain = {"types": "type", "statuses": "status", "channel_categories": "channel_category"}
    if name in plain:
        return row[plain[name]] in values
    if name in ("reference_id", "product_id", "account_identifier"):
        return row[name] in values
    if name == "amount":
        return str(row["amount"]) in values
    field, op = name[:-5], name[-4:-1]
    if op == "gte":
        return row[field] >= values[0]
    return row[field] <= values[0]


def xendit_transactions_page(store, args, stuck):
    """(body, start, limit, records) of the ledger; raises ApiError on bad input."""
    for name in args:
        if name not in TRANSACTION_PARAMS:
            msg = f"Unknown query parameter '{name}'"
            raise ApiError(400, {"message": msg, "error": "API_VALIDATION_ERROR",
                                 "error_code": "API_VALIDATION_ERROR", "status_code": 400,
                                 "validation": {"errors": [{"path": ".query." + name, "message": msg}]}})
    limit = parse_limit(args, 10, 1, 50)
    if limit is None:
        raise ApiError(400, {"message": "\"limit\" must be less than or equal to 50",
                             "error": "API_VALIDATION_ERROR", "error_code": "API_VALIDATION_ERROR",
                             "status_code": 400})
    rows = filtered_transactions(store, args)
    ids = [r["id"] for r, _ in rows]
    start = 0
    after, before = first(args, "after_id"), first(args, "before_id")
    if after and not stuck:
        start = ids.index(after) + 1 if after in ids else len(ids)
    elif before and not stuck:
        start = max(0, ids.index(before) - limit) if before in ids else 0
    records = [t for _, t in rows[start:start + limit]]
    more = start + limit < len(rows)
    links = []
    if more and records:
        query = {"currency": first(args, "currency") or "IDR", "limit": str(limit), "after_id": ids[start + limit - 1]}
        links = [{"href": "/transactions?" + urlencode(query), "method": "GET", "rel": "next"}]
    body = (b'{"has_more":' + (b"true" if more else b"false") + b',"data":[' + b",".join(records) +
            b'],"links":' + jbytes(links) + b"}")
    return body, start, limit, records


def wants_gzip(header):
    """True when Accept-Encoding lists gzip with a non-zero quality."""
    for token in (header or "").lower().split(","):
        name, _, params = token.strip().partition(";")
        if name.strip() != "gzip":
            continue
        q = params.replace(" ", "")
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def padded_first(records, pad):
    """Records with a long 'emu_padding' string added to the first one."""
    first_rec = records[0]
    return [b'{"emu_padding":"' + pad + b'",' + first_rec[1:]] + list(records[1:])


class Handler(BaseHTTPRequestHandler):
    """API and control endpoints (HTTP/1.1 keep-alive, Nagle off)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "migrate-ext-emulator/1.0"
    sys_version = ""
    timeout = 300
    state = None

    def version_string(self):
        """Server header value."""
        return self.server_version

    def setup(self):
        """Number the connection."""
        super().setup()
        self.conn_id = self.state.next_conn()

    def log_message(self, format, *args):
        """Silence the default stderr log (it would print request lines)."""

    def do_GET(self):
        """Dispatch control and API requests."""
        started = time.monotonic()
        parts = urlsplit(self.path)
        if parts.path.startswith("/_emu/"):
            self.control("GET", parts, started)
            return
        self.api(parts, started)

    def do_POST(self):
        """Only POST /_emu/reset exists."""
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parts = urlsplit(self.path)
        if parts.path == "/_emu/reset":
            self.control("POST", parts, started)
            return
        self.send_plain(405, jbytes({"error_code": "METHOD_NOT_ALLOWED", "message": "Only GET is supported"}),
                        started)

    def do_PUT(self):
        """Not supported."""
        self.do_POST()

    do_DELETE = do_PUT
    do_PATCH = do_PUT

    # -- control ---------------------------------------------------------------------------

    def control(self, method, parts, started):
        """The /_emu/ endpoints."""
        state = self.state
        args = query_args(parts.query)
        if parts.path == "/_emu/stats" and method == "GET":
            tag = args["tag"][0] if "tag" in args else None
            body = jbytes(state.stats_of(tag))
        elif parts.path == "/_emu/trap" and method == "GET":
            body = jbytes(state.trap_view())
        elif parts.path == "/_emu/reset" and method == "POST":
            state.reset()
            body = jbytes({"reset": True})
        elif parts.path == "/_emu/truth" and method == "GET":
            body = jbytes(state.dataset.truth)
        elif parts.path == "/_emu/health" and method == "GET":
            body = jbytes({"ok": True, "scale": state.scale, "invoices": len(state.dataset.invoices),
                           "contacts": len(state.dataset.contacts), "cursor_param": state.cursor_param,
                           "trap_port": state.trap_port})
        else:
            body = jbytes({"error": "unknown control endpoint"})
            self.send_plain(404, body, started)
            return
        self.send_plain(200, body, started)

    def send_plain(self, status, body, started):
        """Send a small JSON answer (no gzip, no stats)."""
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.state.write_log(self.command, self.path, status, len(body), started)

    # -- API -------------------------------------------------------------------------------

    def api(self, parts, started):
        """One API request: modifiers, auth, validation, faults, page."""
        state = self.state
        try:
            tag, spec, changed_n, route = split_modifiers(parts.path)
            faults = parse_faults(spec)
        except ValueError as e:
            self.send_plain(400, jbytes({"emulator_error": str(e)}), started)
            return
        source = "systemeio" if route.startswith("/api/") else "xendit"
        remaining, left, seq = state.rate(source)
        reply = Reply()
        auth = None
        try:
            if route not in ("/v2/invoices", "/transactions", "/api/contacts", "/api/tags"):
                raise ApiError(404, (SYSTEMEIO_ERRORS if source == "systemeio" else XENDIT_ERRORS)[404])
            auth = self.authorized(source)
            if not auth:
                raise ApiError(401, (SYSTEMEIO_ERRORS if source == "systemeio" else XENDIT_ERRORS)[401])
            store = state.store(changed_n) if changed_n else state.stores[0]
            reply = self.page(store, route, source, query_args(parts.query), faults, tag, changed_n)
        except ApiError as e:
            reply = Reply(e.status, jbytes(e.body), PROBLEM_TYPE if source == "systemeio" else JSON_TYPE)
        except ValueError as e:
            reply = Reply(400, jbytes({"emulator_error": str(e)}))
        self.add_rate_headers(reply, source, remaining, left, seq)
        self.finish_reply(reply, tag, auth, started)

    def authorized(self, source):
        """Check the source's credentials."""
        if source == "xendit":
            return check_xendit_auth(self.headers.get("Authorization"), self.state.xendit_key)
        return check_systemeio_auth(self.headers.get("X-API-Key"), self.state.systemeio_key)

    def page(self, store, route, source, args, faults, tag, changed_n):
        """Build the page, then let the matching faults change it."""
        page_no = self.page_number(store, route, args)
        active = [f for f in faults if self.state.fires(tag, f, source, page_no)] if page_no else []
        kinds = {f.kind: f for f in active}
        stuck = "stuck" in kinds
        if route == "/v2/invoices":
            body, start, limit, records = xendit_invoices_page(self.state, store, args, stuck)
        elif route == "/transactions":
            body, start, limit, records = xendit_transactions_page(store, args, stuck)
        elif route == "/api/contacts":
            body, start, limit, records, more, order = systemeio_contacts_page(store, args, stuck)
        else:
            body, start, limit = systemeio_tags_page(args)
            records = None
        reply = Reply(200, body)
        reply.cache_key = (changed_n, route, str(sorted(args.items())), stuck)
        for f in active:
            if f.kind == "slow":
                time.sleep(f.wait if f.wait is not None else 5.0)
        if "huge" in kinds and records:
            size = kinds["huge"].size or 2_000_000
            pad = self.state.pad(max(size - len(body), 0) + 64)
            recs = padded_first(records, pad)
            if route == "/v2/invoices":
                reply.body = b"[" + b",".join(recs) + b"]"
            elif route == "/api/contacts":
                reply.body = (b'{"items":[' + b",".join(recs) + b'],"hasMore":' +
                              (b"true" if more else b"false") + b"}")
            else:
                reply.body = body.replace(records[0], recs[0], 1)
            reply.cache_key = None
        if "envelope" in kinds and records is not None:
            inner = b",".join(records)
            reply.body = b'{"data":[' + inner + b"]}" if source == "xendit" else b"[" + inner + b"]"
            reply.cache_key = None
        for f in active:
            if self.apply_fault(reply, f, source):
                break
        return reply

    def page_number(self, store, route, args):
        """1-based page number of the request (from cursor position and limit), 0 if invalid."""
        try:
            if route == "/v2/invoices":
                limit = parse_limit(args, 10, 1, 100)
                cursor = first(args, self.state.cursor_param)
                start = store.invoice_pos[cursor] + 1 if cursor is not None else 0
            elif route == "/api/contacts":
                limit = parse_limit(args, 10, 10, 100)
                raw = first(args, "startingAfter")
                start = store.contact_start(first(args, "order") or "desc", int(raw) if raw else None)
            elif route == "/transactions":
                limit = parse_limit(args, 10, 1, 50)
                after = first(args, "after_id")
                ids = [r["id"] for r, _ in filtered_transactions(store, args)] if after else []
                start = ids.index(after) + 1 if after in ids else 0
            else:
                limit = parse_limit(args, 10, 10, 100)
                start = 0
            return start // limit + 1 if limit else 0
        except (KeyError, ValueError):
            return 0

    def apply_fault(self, reply, fault, source):
        """Turn the reply into the fault's answer; True when no later fault should apply."""
        kind = fault.kind
        errors = SYSTEMEIO_ERRORS if source == "systemeio" else XENDIT_ERRORS
        ctype = PROBLEM_TYPE if source == "systemeio" else JSON_TYPE
        if kind == "429":
            wait = fault.wait if fault.wait is not None else (1.0 if source == "systemeio" else 0.3)
            reply.status, reply.body, reply.content_type = 429, jbytes(errors[429]), ctype
            reply.cache_key = None
            reply.mode = ("rate429", wait)
            return True
        if kind in ("500", "502", "503"):
            reply.status, reply.body, reply.cache_key = int(kind), b"", None
            return True
        if kind in ("400", "403", "404", "422"):
            reply.status, reply.body, reply.content_type = int(kind), jbytes(errors[int(kind)]), ctype
            reply.cache_key = None
            return True
        if kind == "remaining0":
            reply.mode = ("remaining0", fault.wait if fault.wait is not None else 0.5)
            return False
        if kind in ("drop", "cutoff"):
            reply.mode = kind
            return True
        if kind == "truncate":
            reply.body = reply.body[: len(reply.body) // 2]
            reply.cache_key = None
            return True
        if kind == "invalid":
            reply.body, reply.cache_key = CDN_ERROR_PAGE, None
            return True
        if kind == "redirect":
            reply.status, reply.body, reply.cache_key = 302, b"", None
            reply.headers.append(("Location", f"http://127.0.0.1:{self.state.trap_port}{self.path}"))
            return True
        return False

    def add_rate_headers(self, reply, source, remaining, left, seq):
        """Rate-limit headers of the source (and their fault overrides)."""
        mode = reply.mode if isinstance(reply.mode, tuple) else (None, None)
        if source == "xendit":
            reset = f"{left:.3f}"
            if mode[0] in ("rate429", "remaining0"):
                remaining, reset = 0, fmt_seconds(mode[1])
            reply.headers += [("Rate-Limit-Limit", str(XENDIT_RATE_LIMIT)),
                              ("Rate-Limit-Remaining", str(remaining)), ("Rate-Limit-Reset", reset),
                              ("Request-Id", str(REQUEST_ID_BASE + seq))]
        else:
            refill = str(math.ceil(left))
            if mode[0] == "rate429":
                remaining, refill = 0, str(max(1, math.ceil(mode[1])))
                reply.headers.append(("Retry-After", refill))
            elif mode[0] == "remaining0":
                remaining, refill = 0, fmt_seconds(mode[1])
            reply.headers += [("X-RateLimit-Limit", str(SYSTEMEIO_RATE_LIMIT)),
                              ("X-RateLimit-Remaining", str(remaining)), ("X-RateLimit-Refill", refill)]

    def finish_reply(self, reply, tag, auth, started):
        """Compress if asked, send (or drop, or cut off), record stats and log."""
        state = self.state
        if reply.mode == "drop":
            state.record(tag, self.conn_id, "drop", False, auth)
            state.write_log(self.command, self.path, "drop", 0, started)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body = reply.body
        gzipped = False
        if len(body) > GZIP_MIN_BYTES and wants_gzip(self.headers.get("Accept-Encoding")):
            body = state.gzip_body(reply.cache_key, body)
            gzipped = True
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Vary", "Accept-Encoding")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        for name, value in reply.headers:
            self.send_header(name, value)
        sent = body
        if reply.mode == "cutoff":
            sent = body[: len(body) // 2]
            self.close_connection = True
        state.record(tag, self.conn_id, reply.status, gzipped, auth)
        try:
            self.end_headers()
            self.wfile.write(sent)
            if reply.mode == "cutoff":
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            self.close_connection = True
        state.write_log(self.command, self.path, reply.status, len(sent), started)


def fmt_seconds(value):
    """Seconds as short text: 0.5, 2, 0.3."""
    return f"{value:g}"


class TrapHandler(BaseHTTPRequestHandler):
    """The redirect target: records every request (no header values) and answers 200 []."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "trap/1.0"
    sys_version = ""
    timeout = 300
    state = None

    def log_message(self, format, *args):
        """Silence the default stderr log."""

    def version_string(self):
        """Server header value."""
        return self.server_version

    def answer(self):
        """Record and answer any method."""
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.state.add_trap(self.command, self.path, list(self.headers.keys()))
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.state.write_log("TRAP-" + self.command, self.path, 200, len(body), started)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = answer


# ---------------------------------------------------------------------------------------------
# Start and stop.


class Server(ThreadingHTTPServer):
    """Threaded HTTP server with daemon threads and a deeper accept queue."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        """Stay quiet when a client goes away; report anything else briefly."""
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError, socket.timeout)):
            return
        print(f"emulator: error while serving a request: {type(err).__name__}: {err}", file=sys.stderr)


def write_port_file(path, port):
    """Write the port number and a newline, atomically, world-readable."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def parse_args(argv):
    """Command line; keys may also come from EMU_XENDIT_KEY / EMU_SYSTEMEIO_KEY."""
    ap = argparse.ArgumentParser(description="Xendit / Systeme.io emulator for migrate_ext tests.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--trap-port-file")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--xendit-key", default=os.environ.get("EMU_XENDIT_KEY"))
    ap.add_argument("--systemeio-key", default=os.environ.get("EMU_SYSTEMEIO_KEY"))
    ap.add_argument("--xendit-cursor-param", default="last_invoice_id")
    ap.add_argument("--log")
    ap.add_argument("--tls-cert", help="also serve HTTPS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    ap.add_argument("--tls-port-file", help="where to write the HTTPS port")
    args = ap.parse_args(argv)
    if not args.xendit_key or not args.systemeio_key:
        ap.error("--xendit-key and --systemeio-key are required")
    return args


def serve(server):
    """Run one server in a daemon thread."""
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    return t


def main(argv=None):
    """Generate the data, listen, write the port files, wait for SIGTERM/SIGINT."""
    args = parse_args(argv)
    dataset = generate.generate(args.scale)
    state = State(args, dataset)
    Handler.state = state
    TrapHandler.state = state
    trap = Server(("127.0.0.1", 0), TrapHandler)
    state.trap_port = trap.server_address[1]
    server = Server(("127.0.0.1", args.port), Handler)
    port = server.server_address[1]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tls = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        tls = Server(("127.0.0.1", 0), Handler)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        serve(tls)
        if args.tls_port_file:
            write_port_file(args.tls_port_file, tls.server_address[1])
    serve(trap)
    serve(server)
    if args.trap_port_file:
        write_port_file(args.trap_port_file, state.trap_port)
    if args.port_file:
        write_port_file(args.port_file, port)
    print(f"emulator listening on 127.0.0.1:{port} (trap {state.trap_port}), scale {args.scale}", flush=True)
    while not stop.wait(0.2):
        pass
    server.shutdown()
    trap.shutdown()
    if tls:
        tls.shutdown()
        tls.server_close()
    server.server_close()
    trap.server_close()
    if state.log:
        state.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
