#!/usr/bin/python3
"""Checks that the documentation says what the code does (part of `make test`; run it alone with
`python3 test/check_docs.py` after changing messages, the runbook or the demo).

1. runbook: the commands of doc/runbook.md (its ```sql blocks, in order) are the commands
   demo/demo.sql marks with a line "-- runbook" (in order), and the demo changes nothing with an
   unmarked command.  A psql variable :'name' in the demo stands for '<name>' in the runbook; the
   demo may end a command with \\gx or "AS name \\gset" instead of ";".
2. troubleshooting: every text quoted in a heading of the README's Troubleshooting section exists
   in the code, and every user-facing error of the code is quoted there: RAISE EXCEPTION in sql/,
   the launch refusals (launch_refusals()), errmsg() of ereport(ERROR|WARNING|FATAL) and
   GUC_check_errmsg() in src/, and the messages set_api_key() rejects a key with.  Placeholders
   (%s, %, %ld, ...) compare equal to each other.

Prints what differs; exit status 1 if anything does.
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANGING = re.compile(r"migrate_ext\.(sync_raw_api_data|validate_and_prepare_clean_data|launch_clean_production|"
                      r"rollback_migration|drop_backup|set_api_key|nightly_reconcile)\s*\(|cron\.schedule|"
                      r"INSERT\s+INTO\s+migrate_ext\.|CREATE\s+EXTENSION\s+migrate_ext", re.I)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def normalize_command(text):
    """One command as comparable text: no comments, one space, no terminator."""
    lines = [re.sub(r"\s--\s.*$|^--.*$", "", l) for l in text.splitlines()]
    s = " ".join(l.strip() for l in lines if l.strip())
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"(\s+AS\s+\w+)?\s*\\g\w*\s*$", "", s)
    s = re.sub(r"\s*;\s*$", "", s)
    return re.sub(r":'(\w+)'", r"'<\1>'", s)


def statements(block_lines):
    """Split lines into statements ending with ';' or a psql \\g... at the end of a line."""
    out, cur = [], []
    for line in block_lines:
        if not cur and not line.strip():
            continue
        cur.append(line)
        if re.search(r";\s*$|\\g\w*\s*$", line):
            out.append("\n".join(cur))
            cur = []
    if any(l.strip() and not l.strip().startswith("--") for l in cur):
        out.append("\n".join(cur))
    return out


def runbook_commands():
    cmds, block, inside = [], [], False
    for line in read("doc/runbook.md").splitlines():
        if inside and line.startswith("```"):
            cmds += statements(block)
            block, inside = [], False
        elif inside:
            block.append(line)
        elif line.strip() == "```sql":
            inside = True
    return [normalize_command(c) for c in cmds]


def demo_commands():
    marked, unmarked = [], []
    lines = read("demo/demo.sql").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "-- runbook":
            cur = []
            i += 1
            while i < len(lines):
                cur.append(lines[i])
                if re.search(r";\s*$|\\g\w*\s*$", lines[i]):
                    break
                i += 1
            marked.append(normalize_command("\n".join(cur)))
        elif not lines[i].lstrip().startswith(("--", "\\")) and CHANGING.search(lines[i]):
            unmarked.append("%d: %s" % (i + 1, lines[i].strip()))
        i += 1
    return marked, unmarked


def check_runbook():
    problems = []
    book = runbook_commands()
    demo, unmarked = demo_commands()
    if book != demo:
        for n in range(max(len(book), len(demo))):
            b = book[n] if n < len(book) else "(none)"
            d = demo[n] if n < len(demo) else "(none)"
            if b != d:
                problems.append("command %d differs:\n  runbook: %s\n  demo:    %s" % (n + 1, b, d))
    for u in unmarked:
        problems.append("demo/demo.sql changes something outside the runbook's commands, line %s" % u)
    if not book:
        problems.append("doc/runbook.md has no ```sql commands")
    return problems, len(book)


def c_string_args(text, start):
    """The C string literals (and INT64_FORMAT) of a call's first argument, from start."""
    out, i = [], start
    while i < len(text):
        c = text[i]
        if c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i + 1:j].replace('\\"', '"'))
            i = j + 1
        elif text.startswith("INT64_FORMAT", i):
            out.append("%lld")
            i += len("INT64_FORMAT")
        elif c in " \t\n":
            i += 1
        else:
            break
    return "".join(out)


def code_messages():
    msgs = set()
    for path in sorted(glob.glob(os.path.join(ROOT, "sql", "*.sql"))):
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"RAISE\s+EXCEPTION\s+'((?:[^']|'')*)'", text):
            msgs.add(m.group(1).replace("''", "'"))
        body = re.search(r"FUNCTION migrate_ext\.launch_refusals\(\).*?\n\$\$;", text, re.S)
        if body:
            for m in re.finditer(r"(?:problem := |THEN |ELSE |problem IN SELECT )(?:format\()?'((?:[^']|'')*)'", body.group(0)):
                msgs.add(m.group(1).replace("''", "'"))
        # the rollback's refusals: the messages its format() calls build
        body = re.search(r"FUNCTION migrate_ext\.rollback_refusals\(.*?\n\$\$;", text, re.S)
        if body:
            for m in re.finditer(r"format\('((?:[^']|'')* (?:[^']|'')*)'", body.group(0)):
                msgs.add(m.group(1).replace("''", "'"))
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "*.c"))):
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"ereport\(\s*(\w+)", text):
            level = m.group(1)
            if level not in ("ERROR", "FATAL", "WARNING", "elevel"):
                continue
            e = text.find("errmsg(", m.end())
            nxt = text.find("ereport(", m.end())
            if e < 0 or (0 <= nxt < e):
                continue
            msgs.add(c_string_args(text, e + len("errmsg(")))
        for m in re.finditer(r"GUC_check_errmsg\(|RejectKey\(", text):
            msgs.add(c_string_args(text, m.end()))
    return {m for m in msgs if m and normalize_message(m) not in ("%", "% %", "%: %")}


def normalize_message(m):
    m = re.sub(r"%(\d+\$)?[-#0 +]*\d*(\.\d+)?(ll|l|z)?[sdiuLIfgx]", "%", m)
    return re.sub(r"\s+", " ", m).strip()


def readme_quotes():
    text = read("README.md")
    sec = re.search(r"^## Troubleshooting\n(.*?)(?=^## )", text, re.S | re.M)
    if not sec:
        return None
    quotes = set()
    for line in sec.group(1).splitlines():
        # "#### PostgreSQL: `...`" quotes PostgreSQL's own message, not the extension's
        if line.startswith("####") and not line.startswith("#### PostgreSQL:"):
            quotes.update(re.findall(r"`([^`]+)`", line))
    return quotes


def check_troubleshooting():
    problems = []
    code = {normalize_message(m): m for m in code_messages()}
    quotes = readme_quotes()
    if quotes is None:
        return ["README.md has no '## Troubleshooting' section"], 0
    quoted = {normalize_message(q): q for q in quotes}
    for n, m in sorted(code.items()):
        if n not in quoted:
            problems.append("not in the README's Troubleshooting: %s" % m)
    for n, q in sorted(quoted.items()):
        if n not in code:
            problems.append("quoted in the README but raised nowhere in the code: %s" % q)
    return problems, len(code)


def main():
    failed = False
    for name, check in (("runbook", check_runbook), ("troubleshooting", check_troubleshooting)):
        problems, n = check()
        if problems:
            failed = True
            print("FAIL: docs/%s (%d items)" % (name, n))
            for p in problems:
                print("  " + p.replace("\n", "\n  "))
        else:
            print("ok:   docs/%s (%d items)" % (name, n))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
