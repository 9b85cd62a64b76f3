#!/usr/bin/env bash
# Checks that every tracked C/C++ file is as clang-format (with the repo's
# .clang-format) writes it, and every BUILD / .bzl / WORKSPACE file as buildifier
# writes it. Prints the files that are not, with the fix, and exits 1 if any.
#
#   tools/format_check.sh            # from anywhere in the workspace
#
# buildifier is not in Debian's archive: the script uses one on PATH, else the
# npm registry's @bazel/buildifier (a pinned version, installed once under
# ~/.cache), else checks C/C++ files only and says so.
set -euo pipefail

cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"

BUILDIFIER_NPM_VERSION=8.2.1
status=0

clang_format=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$clang_format" ]; then
  echo "format_check: clang-format not found (Debian package clang-format)" >&2
  exit 2
fi

bad=()
while IFS= read -r -d '' f; do
  if ! "$clang_format" --style=file "$f" | cmp -s - "$f"; then
    bad+=("$f")
  fi
done < <(git ls-files -z -- '*.h' '*.cc' '*.c' '*.cpp' '*.hpp')
if ((${#bad[@]})); then
  echo "format_check: ${#bad[@]} C/C++ file(s) not clang-format clean (fix: $clang_format -i FILE):"
  printf '  %s\n' "${bad[@]}"
  status=1
fi

find_buildifier() {
  if command -v buildifier >/dev/null; then
    command -v buildifier
    return
  fi
  command -v npm >/dev/null || return 0
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/multiprocessing/buildifier-$BUILDIFIER_NPM_VERSION"
  if [ ! -x "$dir/node_modules/.bin/buildifier" ]; then
    npm install --silent --no-audit --no-fund --prefix "$dir" \
      "@bazel/buildifier@$BUILDIFIER_NPM_VERSION" >/dev/null 2>&1 || return 0
  fi
  [ -x "$dir/node_modules/.bin/buildifier" ] && echo "$dir/node_modules/.bin/buildifier"
  return 0
}

buildifier=$(find_buildifier)
if [ -z "$buildifier" ]; then
  echo "format_check: buildifier not available (not in Debian's archive; no npm): BUILD files not checked"
else
  mapfile -d '' build_files < <(git ls-files -z -- '*BUILD' '*BUILD.bazel' '*.bzl' 'WORKSPACE' '*.BUILD')
  if ((${#build_files[@]})); then
    # --mode=check prints "<file> # reformat" for each file it would change.
    if ! out=$("$buildifier" --mode=check --lint=off "${build_files[@]}" 2>&1); then
      echo "format_check: BUILD/.bzl file(s) not buildifier clean (fix: buildifier FILE):"
      sed 's/^/  /' <<<"$out"
      status=1
    fi
  fi
fi

if ((status == 0)); then
  echo "format_check: all C/C++ files clang-format clean${buildifier:+, all BUILD/.bzl files buildifier clean}"
fi
exit "$status"
