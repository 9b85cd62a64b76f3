#!/usr/bin/env bash
# Runs an MPI program the way a user would, bounded in time, on this machine's loopback only:
#   mpirun_test.sh static N PROGRAM [ARGS...]   mpirun --enable-recovery -n N PROGRAM (ranks 1..N-1 are workers)
#   mpirun_test.sh dynamic PROGRAM [ARGS...]    PROGRAM alone (an MPI singleton whose pools spawn workers)
# Then checks that nothing is left behind: no process of PROGRAM, no Open MPI session directory.
set -uo pipefail

mode=$1
shift
if [ "$mode" = static ]; then
  ranks=$1
  shift
fi
program=$1
shift

# Root may run MPI here (tests run as root in containers); only loopback; no shared-memory single copy
# (CMA needs ptrace rights a container may lack).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
# Open MPI's session directory in the test's own temporary directory, to check that it is cleaned up.
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/mpi.XXXXXX")
export OMPI_MCA_orte_tmpdir_base=$tmp TMPDIR=$tmp
# The shared-memory transport's segments too: their names in /dev/shm derive from pids, which are the same
# in every test's PID namespace, so that tests running side by side mapped each other's segments (and
# crashed in mca_btl_vader_poll_handle_frag).
export OMPI_MCA_btl_vader_backing_directory=$tmp

status=0
if [ "$mode" = static ]; then
  timeout -k 10 600 mpirun --oversubscribe --enable-recovery -n "$ranks" "$program" "$@" || status=$?
else
  timeout -k 10 600 "$program" "$@" || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "mpirun_test.sh: $mode run of $program exited with $status" >&2
fi

# Processes running PROGRAM (by their executable, not their arguments).
running() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = "$exe" ] && echo "${p#/proc/}"
  done
}

# The runtime (mpirun, or the singleton's orted) and the workers leave within seconds; give them 30.
exe=$(readlink -f "$program")
for _ in $(seq 300); do
  [ -z "$(running)" ] && [ -z "$(ls -A "$tmp" 2>/dev/null)" ] && break
  sleep 0.1
done
left=$(running)
if [ -n "$left" ]; then
  echo "mpirun_test.sh: processes of $program left behind: $left" >&2
  kill -9 $left
  status=1
fi
if [ -n "$(ls -A "$tmp" 2>/dev/null)" ]; then
  echo "mpirun_test.sh: Open MPI's session directory left behind in $tmp:" >&2
  find "$tmp" >&2
  status=1
fi
rm -rf "$tmp"
exit "$status"
