"""The AM products of one LeNet-5 training step (batch 128, Fashion-MNIST shapes), one by one.

    PYTHONPATH=. python benchmarks/lenet5_ops.py                # mbm7, 2 threads, median of 7
    PYTHONPATH=. python benchmarks/lenet5_ops.py --threads 1 --multiplier bf16

Each row is one `approxtrain.core` call (no TensorFlow): the forward conv/matmul and
the gradients a training step computes (conv1's input gradient is not needed by a
step and is not counted in the total). Where the time of
`approxtrain bench --section tf_train` goes, layer by layer.
"""

import argparse
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--multiplier", default="mbm7")
    parser.add_argument("--threads", type=int, default=None, help="_core threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    from approxtrain import core, multipliers

    if args.threads:
        core.set_num_threads(args.threads)
    m = multipliers.get(args.multiplier)
    rng = np.random.default_rng(0)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x1, w1, dy1 = f32(128, 28, 28, 1), f32(5, 5, 1, 6), f32(128, 28, 28, 6)
    x2, w2, dy2 = f32(128, 14, 14, 6), f32(5, 5, 6, 16), f32(128, 10, 10, 16)
    dense = [(400, 120), (120, 84), (84, 10)]
    rows = [
        ("conv1 forward", lambda: core.conv2d(x1, w1, m, padding="SAME")),
        ("conv1 filter grad", lambda: core.conv2d_filter_grad(x1, w1.shape, dy1, m, padding="SAME")),
        ("conv2 forward", lambda: core.conv2d(x2, w2, m, padding="VALID")),
        ("conv2 input grad", lambda: core.conv2d_input_grad(x2.shape, w2, dy2, m, padding="VALID")),
        ("conv2 filter grad", lambda: core.conv2d_filter_grad(x2, w2.shape, dy2, m, padding="VALID")),
    ]
    for i, (fan_in, fan_out) in enumerate(dense, start=1):
        x, w, dy = f32(128, fan_in), f32(fan_in, fan_out), f32(128, fan_out)
        rows += [
            (f"dense{i} forward", lambda x=x, w=w: core.matmul(x, w, m)),
            (f"dense{i} input grad", lambda dy=dy, w=w: core.matmul(dy, w, m, transpose_b=True)),
            (f"dense{i} weight grad", lambda x=x, dy=dy: core.matmul(x, dy, m, transpose_a=True)),
        ]
    rows.append(("(conv1 input grad)", lambda: core.conv2d_input_grad(x1.shape, w1, dy1, m, padding="SAME")))

    print(
        f"LeNet-5 step products, batch 128, multiplier {m.name}, _core threads {core.num_threads()}, "
        f"median of {args.repeats}"
    )
    total = 0.0
    for name, fn in rows:
        fn()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        ms = float(np.median(times)) * 1e3
        if not name.startswith("("):
            total += ms
        print(f"  {name:<22} {ms:8.2f} ms")
    print(f"  {'total (a step)':<22} {total:8.2f} ms")


if __name__ == "__main__":
    main()
