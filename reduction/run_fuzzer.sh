#!/usr/bin/env bash
# Fuzzes the pickle decoders for a bounded time: reduction/run_fuzzer.sh SECONDS [extra libFuzzer flags]
#
# Builds //reduction:pickle_fuzzer with libFuzzer, ASan and UBSan (--config=fuzz), seeds it with the golden
# vectors (reduction/testdata), and runs it for SECONDS (default 60). Exits non-zero if the fuzzer finds a
# crash, leak or timeout; the input that caused it is kept in $FUZZ_ARTIFACTS (default: a new temp dir)
# and can be replayed with the plain build: tools/bazel run //reduction:pickle_fuzzer -- <file>.
# Set OUTPUT_BASE to build in a separate Bazel output base.
set -euo pipefail
seconds="${1:-60}"
shift || true
cd "$(dirname "$0")/.."

bazel=(tools/bazel)
if [ -n "${OUTPUT_BASE:-}" ]; then bazel+=("--output_base=$OUTPUT_BASE"); fi
log="$(mktemp)"
if ! "${bazel[@]}" build --config=fuzz //reduction:pickle_fuzzer >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
binary="$("${bazel[@]}" info --config=fuzz bazel-bin 2>/dev/null)/reduction/pickle_fuzzer"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
artifacts="${FUZZ_ARTIFACTS:-$(mktemp -d -t pickle_fuzzer_artifacts.XXXXXX)}"
mkdir -p "$work/corpus" "$artifacts"
python3 - "$work/corpus" reduction/testdata/golden.txt reduction/testdata/errors.txt <<'PY'
import os, sys
out = sys.argv[1]
n = 0
for path in sys.argv[2:]:
    for line in open(path):
        fields = line.rstrip("\n").split("\t")
        data = bytes.fromhex(fields[1] if len(fields) == 3 else fields[0])  # golden rows: protocol, hex, repr
        if len(data) <= 4096:
            with open(os.path.join(out, "seed%04d" % n), "wb") as f:
                f.write(data)
            n += 1
PY

echo "fuzzing for ${seconds}s; crashing inputs go to $artifacts" >&2
status=0
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" "$binary" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -artifact_prefix="$artifacts/" -print_final_stats=1 "$@" "$work/corpus" || status=$?
if [ "$status" -eq 0 ] && [ -z "${FUZZ_ARTIFACTS:-}" ]; then rmdir "$artifacts" 2>/dev/null || true; fi
exit "$status"
