#!/usr/bin/env bash
# Runs mp_synchronize in one mode and checks the shape of its output.
#
#   mp_synchronize_test.sh CHECKER BINARY MODE
set -euo pipefail
checker="$1"
binary="$2"
mode="$3"
actual="$(mktemp)"
trap 'rm -f "$actual"' EXIT
if ! "$binary" "$mode" >"$actual"; then
  echo "FAIL: $binary $mode exited with status $?" >&2
  cat "$actual" >&2
  exit 1
fi
python3 "$checker" "$mode" <"$actual"
