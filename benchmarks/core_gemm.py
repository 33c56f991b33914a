"""CPU GEMM of the native core against NumPy float32 matmul (same run, same cores).

    PYTHONPATH=. python benchmarks/core_gemm.py              # 256..2048 (M = 7) and M = 10 at 1024
    PYTHONPATH=. python benchmarks/core_gemm.py --quick      # 256 and 512 only
    PYTHONPATH=. python benchmarks/core_gemm.py --threads 1  # one core for both sides
    PYTHONPATH=. python benchmarks/core_gemm.py --json out.json

--threads also limits NumPy's BLAS (set before NumPy loads), so both sides
use the same number of cores.  The same section runs inside
`approxtrain bench --section core_cpu` (there NumPy keeps its own threads).
"""

import argparse
import json
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes 256 and 512 only, 3 repeats")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    threads = _threads_arg(argv)
    if threads is not None and "numpy" not in sys.modules:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    from approxtrain.bench import core_cpu

    core_cpu.add_arguments(parser)
    args = parser.parse_args(argv)
    rows = core_cpu.run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def _threads_arg(argv):
    """--threads N from the command line, read before NumPy is imported."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int)
    return pre.parse_known_args(argv)[0].threads


if __name__ == "__main__":
    sys.exit(main())
