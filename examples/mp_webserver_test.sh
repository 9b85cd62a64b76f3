#!/usr/bin/env bash
# Runs mp_webserver_test.py (the checks) against the mp_webserver binary.
#
#   mp_webserver_test.sh TEST_PY BINARY
set -euo pipefail
exec python3 "$1" "$2"
