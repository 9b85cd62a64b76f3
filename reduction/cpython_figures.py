#!/usr/bin/env python3
"""CPython's side of reduction/reduction_figures.cc: calls per second of pickle.dumps / pickle.loads
(protocol 4) of '0' * 256 and list(range(1000)). Prints one JSON object.
usage: python3 reduction/cpython_figures.py [--cpu]   (--cpu: per second of process CPU time, not wall time)"""
import json
import pickle
import sys
import time
import timeit

TIMER = time.process_time if "--cpu" in sys.argv else time.perf_counter
VALUES = {"str256": "0" * 256, "list1000_ints": list(range(1000))}


def rate(fn):
    number, elapsed = 1, 0.0
    while elapsed < 0.2:
        number *= 2
        elapsed = min(timeit.repeat(fn, number=number, repeat=3, timer=TIMER))
    return number / elapsed


def main():
    out = {}
    for name, value in VALUES.items():
        data = pickle.dumps(value, protocol=4)
        out["pickle_dumps_%s_per_s" % name] = round(rate(lambda: pickle.dumps(value, protocol=4)))
        out["pickle_loads_%s_per_s" % name] = round(rate(lambda: pickle.loads(data)))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
