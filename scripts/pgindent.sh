#!/usr/bin/env bash
# Format src/ the way PostgreSQL's pgindent does (pg_bsd_indent with
# pgindent's options and our typedefs).  Needs Debian's pg-bsd-indent.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pg_bsd_indent >/dev/null || { echo "apt-get install pg-bsd-indent" >&2; exit 1; }
for f in src/*.c src/*.h; do
    pg_bsd_indent -bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1 -i4 -l79 -lp -lpl \
        -nip -npro -sac -tpg -ts4 -Uscripts/typedefs.list "$f" "$f.tmp" 2>/dev/null || true
    # as pgindent does: a function's return type stays "type *" on its own line
    sed -E 's/^([A-Za-z_][A-Za-z0-9_]*)\t+ *\*$/\1 */' "$f.tmp" >"$f" && rm -f "$f.tmp"
done
