"""_core's GEMM at 1 and at N threads, interleaved: the thread pool's speedup.

    python benchmarks/thread_speedup.py --size 1024 --threads 2 --repeats 7 --paths auto,no-avx512

Per CPU path (APPROXTRAIN_CPU_PATH), core.matmul(a, b, mbm7) of size^3 is timed with the pool
at 1 thread and at --threads threads in turn, run by run (the pool is resized between runs),
so machine load hits both alike; prints the medians and their ratio.
"""

import argparse
import os
import sys
import time

import numpy as np

from approxtrain import core, multipliers


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--paths", default="auto")
    p.add_argument("--multiplier", default="mbm7")
    a = p.parse_args(argv)
    mult = multipliers.get(a.multiplier)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.size, a.size)).astype(np.float32)
    y = rng.standard_normal((a.size, a.size)).astype(np.float32)
    saved = core.num_threads()
    print(
        f"matmul {a.size}^3 {mult.name}, 1 vs {a.threads} threads, median of {a.repeats} interleaved runs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for path in a.paths.split(","):
        if path == "auto":
            os.environ.pop("APPROXTRAIN_CPU_PATH", None)
        else:
            os.environ["APPROXTRAIN_CPU_PATH"] = path
        times = {1: [], a.threads: []}
        for i in range(a.repeats + 1):
            for n in (1, a.threads):
                core.set_num_threads(n)
                start = time.perf_counter()
                core.matmul(x, y, mult)
                if i:  # the first round warms up
                    times[n].append(time.perf_counter() - start)
        one, many = (float(np.median(times[n])) for n in (1, a.threads))
        print(
            f"  {path:<10} 1 thread {one * 1e3:8.1f} ms, {a.threads} threads {many * 1e3:8.1f} ms, "
            f"speedup {one / many:.2f}x"
        )
    core.set_num_threads(saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
