"""CPU GEMM of the native core against NumPy float32 matmul (same run, same cores).

    PYTHONPATH=. python benchmarks/core_gemm.py            # 256..2048 (M = 7) and M = 10 at 1024
    PYTHONPATH=. python benchmarks/core_gemm.py --quick    # 256 and 512 only
    PYTHONPATH=. python benchmarks/core_gemm.py --json out.json

The same section runs inside `approxtrain bench --section core_cpu`.
"""
import argparse
import json
import sys

from approxtrain.bench import core_cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes 256 and 512 only, 3 repeats")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    core_cpu.add_arguments(parser)
    args = parser.parse_args(argv)
    rows = core_cpu.run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
