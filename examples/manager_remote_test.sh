#!/usr/bin/env bash
# The remote manager example: a server serving a queue on a free port, one client putting 'hello' and
# another getting it; then a server whose queue a local worker process filled, read by a client.
#
#   manager_remote_test.sh SERVER PUT GET LOCAL
set -euo pipefail
server="$1" put="$2" get="$3" local_server="$4"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits (at most 20 s) until something listens on port $1.
wait_port() {
  python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.time() + 20
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("nothing listens on port " + sys.argv[1])
PY
}

port="$(free_port)"
"$server" "$port" & pids+=($!)
wait_port "$port"
timeout 20 "$put" "$port"
got="$(timeout 20 "$get" "$port")"
[[ "$got" == "'hello'" ]] || { echo "FAIL: the second client got '$got', expected 'hello'" >&2; exit 1; }
# A wrong key is refused.
if timeout 20 "$get" "$port" wrongkey 2>/dev/null; then echo "FAIL: a wrong key was accepted" >&2; exit 1; fi

port2="$(free_port)"
"$local_server" "$port2" & pids+=($!)
wait_port "$port2"
got="$(timeout 20 "$get" "$port2")"
[[ "$got" == "'local hello'" ]] || { echo "FAIL: got '$got' from the local worker's queue" >&2; exit 1; }
echo PASS
