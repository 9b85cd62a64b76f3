#!/usr/bin/env bash
# Checks connection_wait's output: 40 lines (i, 'Process-N'), each of the 4 processes' i = 0..9 in
# order, interleaved in any way.
set -euo pipefail
out="$("$1")"
echo "$out" | awk '
  /^\(([0-9]), '\''Process-[1-4]'\''\)$/ {
    i = substr($0, 2, 1); n = substr($0, length($0) - 2, 1)
    if (i != next_i[n] + 0) { print "out of order: " $0 > "/dev/stderr"; bad = 1 }
    next_i[n] = i + 1; lines++; next
  }
  { print "unexpected line: " $0 > "/dev/stderr"; bad = 1 }
  END {
    for (n = 1; n <= 4; n++) if (next_i[n] != 10) { print "Process-" n " sent " next_i[n] + 0 > "/dev/stderr"; bad = 1 }
    if (lines != 40) { print "expected 40 lines, got " lines > "/dev/stderr"; bad = 1 }
    exit bad
  }' || { echo "--- output was:" >&2; echo "$out" >&2; exit 1; }
