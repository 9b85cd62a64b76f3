#!/usr/bin/env bash
# Runs an example and checks that its standard output holds exactly the lines
# of an expected-output file, in any order (for examples whose processes print
# concurrently). The example must exit with status 0.
#
#   expect_lines_any_order.sh EXPECTED BINARY [ARGS...]
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
if ! diff <(LC_ALL=C sort "$expected") <(LC_ALL=C sort "$actual") >&2; then
  echo "FAIL: the lines differ (sorted expected vs sorted output above)" >&2
  echo "--- output was:" >&2
  cat "$actual" >&2
  exit 1
fi
