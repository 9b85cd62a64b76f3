#!/usr/bin/env bash
# Runs listener_server on a free port with listener_client, then with the documentation's Python
# client, and checks what each side prints.
#
#   listener_example_test.sh SERVER CLIENT
set -euo pipefail
server="$1"
client="$2"
dir="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

# Starts the server on port 0 and sets $port from the address it reports on stderr.
start_server() {
  mkfifo "$dir/err"
  "$server" 0 >"$dir/server.out" 2>"$dir/err" &
  server_pid=$!
  local line
  read -r -t 60 line <"$dir/err" || { echo "FAIL: the server reported no address" >&2; exit 1; }
  rm -f "$dir/err"
  [[ "$line" =~ ^listening\ on\ \(\'127\.0\.0\.1\',\ ([0-9]+)\)$ ]] || { echo "FAIL: '$line'" >&2; exit 1; }
  port="${BASH_REMATCH[1]}"
}

check() {  # check NAME EXPECTED-REGEX FILE
  local got
  got="$(cat "$3")"
  if ! [[ "$got" =~ ^$2$ ]]; then
    echo "FAIL: $1 printed:" >&2
    echo "$got" >&2
    exit 1
  fi
}

accepted="connection accepted from \('127\.0\.0\.1', [0-9]+\)"

start_server
"$client" "$port" >"$dir/client.out"
wait "$server_pid"
check server "$accepted" "$dir/server.out"
check client "\[2\.25, None, 'junk', <class 'float'>\]
b'hello'
8
array\('i', \[42, 1729, 0, 0, 0\]\)" "$dir/client.out"

# The documentation's client, in Python.
cat >"$dir/client.py" <<'PY'
import sys
from multiprocessing.connection import Client
from array import array

address = ('localhost', int(sys.argv[1]))

with Client(address, authkey=b'secret password') as conn:
    print(conn.recv())                  # => [2.25, None, 'junk', float]

    print(conn.recv_bytes())            # => 'hello'

    arr = array('i', [0, 0, 0, 0, 0])
    print(conn.recv_bytes_into(arr))    # => 8
    print(arr)                          # => array('i', [42, 1729, 0, 0, 0])
PY
start_server
python3 "$dir/client.py" "$port" >"$dir/client.out"
wait "$server_pid"
check server "$accepted" "$dir/server.out"
check "python client" "\[2\.25, None, 'junk', <class 'float'>\]
b'hello'
8
array\('i', \[42, 1729, 0, 0, 0\]\)" "$dir/client.out"

# The documentation's server, in Python, with the C++ client.
cat >"$dir/server.py" <<'PY'
from multiprocessing.connection import Listener
from array import array

address = ('localhost', 0)

with Listener(address, authkey=b'secret password') as listener:
    print(listener.address[1], flush=True)
    with listener.accept() as conn:
        conn.send([2.25, None, 'junk', float])

        conn.send_bytes(b'hello')

        conn.send_bytes(array('i', [42, 1729]))
PY
mkfifo "$dir/pyout"
python3 "$dir/server.py" >"$dir/pyout" &
py_pid=$!
read -r -t 60 port <"$dir/pyout" || { echo "FAIL: the Python server reported no port" >&2; exit 1; }
"$client" "$port" >"$dir/client.out"
wait "$py_pid"
check "client against Python" "\[2\.25, None, 'junk', <class 'float'>\]
b'hello'
8
array\('i', \[42, 1729, 0, 0, 0\]\)" "$dir/client.out"
echo PASS
