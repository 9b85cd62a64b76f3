#!/usr/bin/env bash
# The remote manager example: a server serving a queue on a free port, one client putting 'hello' and
# another getting it, with every mix of these C++ programs and the documentation's Python ones (server,
# put and get); then a server whose queue a local worker process filled, read by a client.
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

# The documentation's programs, in Python.
dir="$(mktemp -d)"
cleanup_all() { cleanup; rm -rf "$dir"; }
trap cleanup_all EXIT
cat >"$dir/server.py" <<'PY'
import queue, sys
from multiprocessing.managers import BaseManager
queue = queue.Queue()
class QueueManager(BaseManager): pass
QueueManager.register('get_queue', callable=lambda:queue)
m = QueueManager(address=('', int(sys.argv[1])), authkey=b'abracadabra')
s = m.get_server()
s.serve_forever()
PY
# The two clients, 'put' and 'get', in one program.
cat >"$dir/client.py" <<'PY'
import sys
from multiprocessing.managers import BaseManager
class QueueManager(BaseManager): pass
QueueManager.register('get_queue')
m = QueueManager(address=('127.0.0.1', int(sys.argv[1])), authkey=b'abracadabra')
m.connect()
queue = m.get_queue()
if sys.argv[2] == 'put':
    queue.put('hello')
else:
    print(repr(queue.get()))
PY

for server_kind in cpp python; do
  port="$(free_port)"
  if [[ "$server_kind" == cpp ]]; then "$server" "$port" & pids+=($!)
  else python3 "$dir/server.py" "$port" & pids+=($!); fi
  wait_port "$port"
  for put_kind in cpp python; do
    for get_kind in cpp python; do
      mix="server $server_kind, put $put_kind, get $get_kind"
      if [[ "$put_kind" == cpp ]]; then timeout 20 "$put" "$port"
      else timeout 20 python3 "$dir/client.py" "$port" put; fi || { echo "FAIL: put ($mix)" >&2; exit 1; }
      if [[ "$get_kind" == cpp ]]; then got="$(timeout 20 "$get" "$port")"
      else got="$(timeout 20 python3 "$dir/client.py" "$port" get)"; fi || { echo "FAIL: get ($mix)" >&2; exit 1; }
      [[ "$got" == "'hello'" ]] || { echo "FAIL: the second client got '$got', expected 'hello' ($mix)" >&2; exit 1; }
      echo "ok: $mix"
    done
  done
  # A wrong key is refused.
  if timeout 20 "$get" "$port" wrongkey 2>/dev/null; then echo "FAIL: a wrong key was accepted ($server_kind server)" >&2; exit 1; fi
done

port2="$(free_port)"
"$local_server" "$port2" & pids+=($!)
wait_port "$port2"
got="$(timeout 20 "$get" "$port2")"
[[ "$got" == "'local hello'" ]] || { echo "FAIL: got '$got' from the local worker's queue" >&2; exit 1; }
echo PASS
