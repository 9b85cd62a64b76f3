#!/usr/bin/env bash
# Runs an example and checks its standard output against an expected-output file, line by line.
#
#   expect_output.sh EXPECTED BINARY [ARGS...]
#
# A line of EXPECTED is matched literally, unless it starts with "re:", in which case the rest is an
# extended regular expression the whole output line must match (for pids and other run-dependent
# values). The example must exit with status 0 within the test's timeout.
set -euo pipefail
expected="$1"
shift
actual="$(mktemp)"
trap 'rm -f "$actual"' EXIT
if ! "$@" >"$actual"; then
  echo "FAIL: $* exited with status $?" >&2
  cat "$actual" >&2
  exit 1
fi
mapfile -t want <"$expected"
mapfile -t got <"$actual"
status=0
if ((${#want[@]} != ${#got[@]})); then
  echo "FAIL: expected ${#want[@]} lines, got ${#got[@]}" >&2
  status=1
fi
for i in "${!want[@]}"; do
  w="${want[$i]}"
  g="${got[$i]-<missing>}"
  if [[ "$w" == re:* ]]; then
    [[ "$g" =~ ^${w#re:}$ ]] && continue
  else
    [[ "$g" == "$w" ]] && continue
  fi
  echo "FAIL: line $((i + 1)): expected '$w', got '$g'" >&2
  status=1
done
if ((status != 0)); then
  echo "--- output was:" >&2
  cat "$actual" >&2
fi
exit "$status"
