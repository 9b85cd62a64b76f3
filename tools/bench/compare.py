#!/usr/bin/env python3
"""Runs //tools/bench:baseline and CPython's multiprocessing (and pickle, for the pickle_* figures) on the
same figures, several times each, alternating (and, for the mpi_* figures, //mpi:figures beside mpi4py.futures
under mpirun), and prints a table: figure, this library (min / median),
CPython (min / median), how many times faster this library is (median against median; for latencies,
CPython's time over ours), and the same ratio run by run (each of our runs against the CPython run right
after it: the median and the lowest), which a machine whose speed changes from minute to minute moves
less.

usage: tools/bench/compare.py [--runs N] [KEY...]        (from the workspace root; no key: all figures)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, cwd=ROOT).stdout
    return json.loads(out)


# mpi/figures.cc and mpi4py.futures (mpi/mpi4py_figures.py, Debian's python3-mpi4py, hence /usr/bin/python3)
# on the same work, each under mpirun -n 3: the master and 2 workers, on this machine's loopback.
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl": "self,vader,tcp", "OMPI_MCA_btl_tcp_if_include": "lo",
    "OMPI_MCA_oob_tcp_if_include": "lo", "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
}


def run_mpi_json(program):
    cmd = ["mpirun", "--oversubscribe", "-n", "3"] + program
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, **MPI_ENV},
                         timeout=900).stdout
    return json.loads(out.decode().strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("keys", nargs="*")
    args = parser.parse_args()

    bazel = os.path.join(ROOT, "tools", "bazel")
    subprocess.run([bazel, "build", "-c", "opt", "//tools/bench:baseline"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bin_dir = subprocess.run([bazel, "info", "-c", "opt", "bazel-bin"], check=True, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    binary = os.path.join(bin_dir, "tools", "bench", "baseline")
    mpi_keys = [k for k in args.keys if k.startswith("mpi_")]
    base_keys = [k for k in args.keys if not k.startswith("mpi_")]
    if mpi_keys or not args.keys:
        subprocess.run([bazel, "build", "-c", "opt", "//mpi:figures"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours, theirs = {}, {}
    for _ in range(args.runs):
        if mpi_keys or not args.keys:
            mine = run_mpi_json([os.path.join(bin_dir, "mpi", "figures")])
            mpi4py = run_mpi_json(["/usr/bin/python3", "-m", "mpi4py.futures", "mpi/mpi4py_figures.py"])
            for figures, into in ((mine, ours), (mpi4py, theirs)):
                for key, value in figures.items():
                    if not mpi_keys or key in mpi_keys:
                        into.setdefault(key, []).append(value)
        if args.keys and not base_keys:
            continue
        for key, value in run_json([binary] + base_keys).items():
            if isinstance(value, (int, float)):
                ours.setdefault(key, []).append(value)
        # CPython's pickle figures come from reduction/cpython_figures.py, the rest from the baseline script.
        pickle_keys = [k for k in base_keys if k.startswith("pickle_")]
        other_keys = [k for k in base_keys if not k.startswith("pickle_")]
        cpython = {}
        if other_keys or not args.keys:
            cpython.update(run_json([sys.executable, os.path.join(HERE, "cpython_baseline.py")] + other_keys))
        if pickle_keys or not args.keys:
            figures = run_json([sys.executable, os.path.join(ROOT, "reduction", "cpython_figures.py")])
            cpython.update({k: v for k, v in figures.items() if not args.keys or k in pickle_keys})
        for key, value in cpython.items():
            if isinstance(value, (int, float)):
                theirs.setdefault(key, []).append(value)

    keys = args.keys or sorted(set(ours) | set(theirs))
    rows = [("figure", "this library (min / median)", "CPython (min / median)", "faster",
             "run by run (median, lowest)")]
    for key in keys:
        a, b = ours.get(key), theirs.get(key)
        fmt = lambda v: "-" if not v else f"{min(v):,.1f} / {statistics.median(v):,.1f}"
        ratio = by_run = "-"
        if a and b:
            latency = key.endswith("_us") or "_us_" in key
            faster = lambda x, y: y / x if latency else x / y
            ratio = f"{faster(statistics.median(a), statistics.median(b)):,.1f}x"
            if len(a) == len(b):
                runs = [faster(x, y) for x, y in zip(a, b)]
                by_run = f"{statistics.median(runs):,.1f}x, {min(runs):,.1f}x"
        rows.append((key, fmt(a), fmt(b), ratio, by_run))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    main()
