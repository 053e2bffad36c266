#!/usr/bin/python3
"""Tiny client of the emulator's control endpoints, for test scripts (base URL from EMULATOR_URL).

    emuctl.py stats TAG   ->  requests=12 connections=1 gzip=12 200=12
    emuctl.py auth TAG    ->  auth_ok=12 auth_bad=0
    emuctl.py json TAG    ->  the raw stats document
    emuctl.py trap        ->  trap requests=0 with_credentials=0
    emuctl.py reset       ->  reset
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

USAGE = "usage: emuctl.py stats TAG | auth TAG | json TAG | trap | reset"


def base_url():
    """The emulator base URL from EMULATOR_URL, without a trailing slash."""
    url = os.environ.get("EMULATOR_URL", "").rstrip("/")
    if not url:
        raise SystemExit("emuctl: EMULATOR_URL is not set (e.g. http://127.0.0.1:PORT)")
    return url


def call(method, path):
    """Send one control request and return the decoded JSON answer."""
    req = urllib.request.Request(base_url() + path, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError) as e:
        raise SystemExit(f"emuctl: cannot reach the emulator: {e}")


def stats(tag):
    """Stats document of one tag."""
    return call("GET", "/_emu/stats?tag=" + urllib.parse.quote(tag, safe=""))


def stats_line(doc):
    """requests=N connections=N gzip=N then one status=count per status, sorted."""
    parts = [f"requests={doc['requests']}", f"connections={doc['connections']}", f"gzip={doc['gzip']}"]
    parts += [f"{k}={v}" for k, v in sorted(doc["by_status"].items())]
    return " ".join(parts)


def main(argv):
    """Run one command."""
    if not argv:
        raise SystemExit(USAGE)
    cmd, rest = argv[0], argv[1:]
    if cmd in ("stats", "auth", "json") and len(rest) == 1:
        doc = stats(rest[0])
        if cmd == "stats":
            print(stats_line(doc))
        elif cmd == "auth":
            print(f"auth_ok={doc['auth_ok']} auth_bad={doc['auth_bad']}")
        else:
            print(json.dumps(doc, sort_keys=True))
    elif cmd == "trap" and not rest:
        doc = call("GET", "/_emu/trap")
        print(f"trap requests={doc['requests']} with_credentials={doc['requests_with_credentials']}")
    elif cmd == "reset" and not rest:
        call("POST", "/_emu/reset")
        print("reset")
    else:
        raise SystemExit(USAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
