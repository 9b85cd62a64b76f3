#!/usr/bin/env bash
# Checks that another Bazel workspace can depend on single targets of this project through deps.bzl:
# it makes a throwaway workspace in a temporary directory whose WORKSPACE holds only
#
#   local_repository(name = "multiprocessing", path = <this project>)
#   load("@multiprocessing//:deps.bzl", "multiprocessing_deps")
#   multiprocessing_deps()
#
# builds two cc_binary targets there with the project's tools/bazel, one with
# deps = ["@multiprocessing//pool"] and one with deps = ["@multiprocessing//connection"], runs them and
# checks what they print. Then it stops that workspace's Bazel server and removes its output base and the
# directory.
#
#   tools/consumer_workspace_test.sh
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
bazel="$project/tools/bazel"
work=$(mktemp -d "${TMPDIR:-/tmp}/mp_consumer.XXXXXX")
ws="$work/ws"
output_base="$work/output_base"
mkdir -p "$ws"

cleanup() {
  if [ -f "$ws/WORKSPACE" ]; then
    (cd "$ws" && "$bazel" --output_base="$output_base" shutdown >/dev/null 2>&1) || true
  fi
  # Bazel makes parts of its output base read-only.
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$ws/WORKSPACE" <<EOF
workspace(name = "consumer")

local_repository(
    name = "multiprocessing",
    path = "$project",
)

load("@multiprocessing//:deps.bzl", "multiprocessing_deps")

multiprocessing_deps()
EOF

# What the project's .bazelrc sets for every build: clang, C++20.
cat >"$ws/.bazelrc" <<'EOF'
build --repo_env=CC=clang
build --cxxopt=-std=c++20 --host_cxxopt=-std=c++20
build --nosandbox_debug
build --symlink_prefix=/
EOF

cat >"$ws/BUILD.bazel" <<'EOF'
cc_binary(
    name = "use_pool",
    srcs = ["use_pool.cc"],
    deps = ["@multiprocessing//pool"],
)

cc_binary(
    name = "use_connection",
    srcs = ["use_connection.cc"],
    deps = ["@multiprocessing//connection"],
)
EOF

cat >"$ws/use_pool.cc" <<'EOF'
#include <iostream>
#include <vector>

#include "pool/pool.h"

int square(int x) { return x * x; }
MP_REGISTER_FUNCTION(square);

// The default start method (fork) needs no freeze_support(), which is in
// //process; MP_REGISTER_FUNCTION lets spawn children find square.
int main() {
  multiprocessing::Pool pool(2);
  std::cout << multiprocessing::reduction::repr(
                   pool.map(square, std::vector<int>{1, 2, 3}))
            << "\n";
  pool.close();
  pool.join();
}
EOF

cat >"$ws/use_connection.cc" <<'EOF'
#include <iostream>
#include <string>
#include <vector>

#include "connection/connection.h"

int main() {
  auto [a, b] = multiprocessing::Pipe();
  a.send(std::vector<int>{1, 2});
  std::cout << multiprocessing::reduction::repr(b.recv<std::vector<int>>())
            << "\n";
  b.send_bytes("thank you");
  std::cout << a.recv_bytes() << "\n";
}
EOF

cd "$ws"
echo "consumer_workspace_test: building in $ws" >&2
"$bazel" --output_base="$output_base" build //:use_pool //:use_connection
bin=$("$bazel" --output_base="$output_base" info bazel-bin 2>/dev/null)

fail=0
check() {
  local name=$1 want=$2 got
  got=$(timeout 120 "$bin/$name") || { echo "FAIL $name: exit status $?"; fail=1; return; }
  if [ "$got" == "$want" ]; then
    echo "PASS $name"
  else
    echo "FAIL $name: printed"
    printf '%s\n' "$got"
    echo "expected"
    printf '%s\n' "$want"
    fail=1
  fi
}
check use_pool "[1, 4, 9]"
check use_connection "$(printf '[1, 2]\nthank you')"
passed=$(( fail ? 0 : 2 ))
echo "$passed passed, $(( 2 - passed )) failed"
exit "$fail"
