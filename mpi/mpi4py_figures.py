"""mpi4py.futures' figures on the same work as mpi/figures.cc, for tools/bench/compare.py:

    mpirun -n 3 python3 -m mpi4py.futures mpi/mpi4py_figures.py

(rank 0 runs this script, ranks 1 and 2 are MPIPoolExecutor's workers). Prints one JSON object with
mpi_pool_map_tasks_per_s_chunksize1 and mpi_pool_apply_roundtrip_us, each the best of 3.
"""
import json
import time

from mpi4py.futures import MPIPoolExecutor


def square(x):
    return x * x


def main():
    tasks, applies = 20000, 2000
    rate, roundtrip = 0.0, float("inf")
    with MPIPoolExecutor(max_workers=2) as executor:
        executor.submit(square, 1).result()
        for _ in range(3):
            start = time.perf_counter()
            out = list(executor.map(square, range(tasks), chunksize=1))
            rate = max(rate, tasks / (time.perf_counter() - start))
            assert out[-1] == (tasks - 1) ** 2
        for _ in range(3):
            start = time.perf_counter()
            for i in range(applies):
                executor.submit(square, i).result()
            roundtrip = min(roundtrip, (time.perf_counter() - start) * 1e6 / applies)
    print(json.dumps({"mpi_pool_map_tasks_per_s_chunksize1": rate,
                      "mpi_pool_apply_roundtrip_us": roundtrip}))


if __name__ == "__main__":
    main()
