"""The filter gradients of the zoo's narrow convs, one `approxtrain.core` call each (no TensorFlow).

    PYTHONPATH=. python benchmarks/filter_grad_ops.py                  # mbm7, one _core thread
    PYTHONPATH=. python benchmarks/filter_grad_ops.py --multiplier bf16 --threads 2

Each row is `core.conv2d_filter_grad` on one shape (ResNet-20's convs at batch 128, AMConv2D's
bench layer, LeNet-5's two convs): process CPU time per call, median of --repeats calls, and
the multiply-adds per second it makes. Where the dW phase of a training step goes, layer
kind by layer kind (docs/cpu-kernels.md, "Filter gradients without patch matrices").
"""

import argparse
import time

import numpy as np

# name, input shape (NHWC), filter shape (KH, KW, C, O), padding
SHAPES = [
    ("LeNet-5 conv1", (128, 28, 28, 1), (5, 5, 1, 6), "SAME"),
    ("LeNet-5 conv2", (128, 14, 14, 6), (5, 5, 6, 16), "VALID"),
    ("ResNet-20 first conv", (128, 32, 32, 3), (3, 3, 3, 16), "SAME"),
    ("ResNet-20 16 channels", (128, 32, 32, 16), (3, 3, 16, 16), "SAME"),
    ("ResNet-20 32 channels", (128, 16, 16, 32), (3, 3, 32, 32), "SAME"),
    ("ResNet-20 64 channels", (128, 8, 8, 64), (3, 3, 64, 64), "SAME"),
    ("AMConv2D bench layer", (8, 32, 32, 32), (3, 3, 32, 32), "SAME"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--multiplier", default="mbm7")
    parser.add_argument("--threads", type=int, default=1, help="_core threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)

    from approxtrain import core, multipliers

    core.set_num_threads(args.threads)
    m = multipliers.get(args.multiplier)
    rng = np.random.default_rng(0)
    print(
        f"conv2d_filter_grad, multiplier {m.name}, _core threads {core.num_threads()}, "
        f"CPU time per call, median of {args.repeats}"
    )
    for name, x_shape, w_shape, padding in SHAPES:
        x = rng.standard_normal(x_shape).astype(np.float32)
        y_shape = core.conv2d(x[:1], np.zeros(w_shape, np.float32), m, padding=padding).shape[1:3]
        dy = rng.standard_normal((x_shape[0], *y_shape, w_shape[3])).astype(np.float32)
        core.conv2d_filter_grad(x, w_shape, dy, m, padding=padding)  # warm
        times = []
        for _ in range(args.repeats):
            start = time.process_time()
            core.conv2d_filter_grad(x, w_shape, dy, m, padding=padding)
            times.append(time.process_time() - start)
        seconds = float(np.median(times))
        macs = np.prod(w_shape) * x_shape[0] * y_shape[0] * y_shape[1]
        print(f"  {name:<22} {seconds * 1e3:8.2f} ms  {macs / seconds / 1e9:6.2f} GMAC/s")


if __name__ == "__main__":
    main()
