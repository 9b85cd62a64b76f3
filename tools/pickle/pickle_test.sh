#!/usr/bin/env bash
# Tests //tools/pickle:pickle against CPython: repr of CPython's pickles, round trips that CPython loads back
# equal, and one-line errors with exit status 1 on bad input.
set -euo pipefail
tool="${TEST_SRCDIR:-.}/${TEST_WORKSPACE:-multiprocessing}/tools/pickle/pickle"
[ -x "$tool" ] || tool="tools/pickle/pickle"
tmp="$(mktemp -d "${TEST_TMPDIR:-/tmp}/pickle_test.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

value='{"a": [1, 2.5, None, True], "b": (b"\x00\xff", bytearray(b"x")), "c": {1, 2}, "d": frozenset({"z"}), "e": 2**100, "f": "it'"'"'s \u00e9\n"}'
for protocol in 2 3 4 5; do
  timeout 60 python3 -c "import pickle, sys; sys.stdout.buffer.write(pickle.dumps($value, $protocol))" >"$tmp/in"
  expected="$(timeout 60 python3 -c "print(repr($value))")"
  got="$(timeout 60 "$tool" repr <"$tmp/in")"
  [ "$got" == "$expected" ] || fail "repr protocol $protocol: got $got, expected $expected"
  for out_protocol in 2 3 4 5; do
    timeout 60 "$tool" roundtrip --protocol "$out_protocol" <"$tmp/in" >"$tmp/out"
    timeout 60 python3 -c "
import pickle, sys
v = pickle.load(open('$tmp/out', 'rb'))
assert v == $value, v
assert pickle.load(open('$tmp/out', 'rb'))['b'][1].__class__ is bytearray
" || fail "CPython does not load the protocol $out_protocol round trip of protocol $protocol back equal"
  done
done

# Bad input: exit 1 and one line on stderr.
check_error() {
  local name="$1" status=0
  timeout 60 "$tool" repr <"$tmp/bad" >"$tmp/stdout" 2>"$tmp/stderr" || status=$?
  [ "$status" -eq 1 ] || fail "$name: exit status $status, expected 1"
  [ "$(wc -l <"$tmp/stderr")" -eq 1 ] || fail "$name: expected one line on stderr, got: $(cat "$tmp/stderr")"
  grep -q "^pickle: " "$tmp/stderr" || fail "$name: unexpected message $(cat "$tmp/stderr")"
}
printf 'not a pickle' >"$tmp/bad"
check_error garbage
: >"$tmp/bad"
check_error empty
timeout 60 python3 -c "import pickle, sys, collections; sys.stdout.buffer.write(pickle.dumps(collections.OrderedDict(a=1)))" >"$tmp/bad"
check_error global
grep -q "not allowed" "$tmp/stderr" || fail "global: $(cat "$tmp/stderr")"
timeout 60 python3 -c "import pickle, sys; sys.stdout.buffer.write(pickle.dumps([1, 2, 3])[:-4])" >"$tmp/bad"
check_error truncated
grep -q "truncated" "$tmp/stderr" || fail "truncated: $(cat "$tmp/stderr")"

# Usage errors.
status=0
"$tool" frobnicate </dev/null 2>/dev/null || status=$?
[ "$status" -eq 2 ] || fail "unknown command: exit status $status"
echo PASS
