"""Where a layer bench step spends its time, by TensorFlow's profiler, per op type.

    python benchmarks/profile_layer_step.py AMConv3D,AMConv3DTranspose --steps 10 [--serial]

For each named case of `approxtrain bench --section layers` (approxtrain/bench/layers.py), the
AM layer's step (output, dX, dW; mbm7 or the bench's multiplier) and its Keras twin's: the
unprofiled step time, then per op type the summed execution time over --steps profiled steps
and the op count per step.  Op times overlap where TF runs ops side by side; --serial runs one
op at a time (inter-op parallelism 1), so they add up to the step and show the kernels' share.
"""

import argparse
import collections
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("layers", help="bench case names, comma separated (e.g. AMConv3D,AMConv3DTranspose)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--serial", action="store_true", help="one op at a time (inter-op parallelism 1)")
    a = p.parse_args(argv)

    import tensorflow as tf

    if a.serial:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from approxtrain.bench import bench_multiplier
    from approxtrain.bench import layers as bench_layers
    from profile_zoo_step import _op_events, _read_trace

    names = a.layers.split(",")
    cases = [c for c in bench_layers._cases(False) if c[0] in names]
    if len(cases) != len(names):
        known = [c[0] for c in bench_layers._cases(False)]
        raise SystemExit(f"unknown layer in {names}; the bench's cases are {known}")
    mult, rng = bench_multiplier(), np.random.default_rng(0)
    for name, cls, kwargs, shape in cases:
        native = cls.keras_twin(**kwargs)
        native.build(shape)
        layer = cls(**kwargs, multiplier=mult)
        layer.build(shape)
        layer.set_weights(native.get_weights())
        x = tf.constant(rng.standard_normal(shape).astype(np.float32))
        for which, lay in (("AM", layer), ("Keras", native)):
            step = bench_layers._step(lay, x)
            for _ in range(3):
                step()
            start = time.perf_counter()
            for _ in range(a.steps):
                step()
            plain = (time.perf_counter() - start) / a.steps
            logdir = tempfile.mkdtemp(prefix="layer_profile_")
            tf.profiler.experimental.start(logdir)
            for _ in range(a.steps):
                step()
            tf.profiler.experimental.stop()
            by_type, count = collections.defaultdict(float), collections.Counter()
            for op_name, op_type, _, _, dur in _op_events(_read_trace(logdir)):
                if op_name.startswith("__inference") or op_type.startswith("__inference"):
                    continue
                by_type[op_type] += dur / 1e6 / a.steps
                count[op_type] += 1
            total = sum(by_type.values())
            print(
                f"{name} {which} {'x'.join(map(str, shape))}: step {plain * 1e3:.2f} ms unprofiled, op time "
                f"{total:.2f} ms, {sum(count.values()) / a.steps:.0f} ops per step (load {os.getloadavg()[0]:.1f})"
            )
            for op_type, ms in sorted(by_type.items(), key=lambda kv: -kv[1])[: a.top]:
                print(f"   {op_type:<34} {ms:8.3f} ms {ms / total * 100:5.1f}%  x{count[op_type] / a.steps:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
