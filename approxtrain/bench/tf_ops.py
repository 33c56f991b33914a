"""Benchmark section `tf_ops`: the AM TensorFlow ops against the native ones.

AM matmul 1024^3 vs tf.linalg.matmul, and AM conv2d (x 32x32x32x64, w 3x3x64x64,
SAME) vs tf.nn.conv2d, forward only.  Both run eagerly in the same process on
TF's intra-op thread pool, interleaved repeat by repeat so machine load hits
both alike; rows report median times and the ratio AM / native.
"""

import os

import numpy as np

from approxtrain.bench import bench_multiplier, interleaved_medians

# (op, operand shapes) -- the sizes the section measures; --quick shrinks them.
MATMUL = (1024, 1024, 1024)
CONV = ((32, 32, 32, 64), (3, 3, 64, 64))
QUICK_MATMUL = (256, 256, 256)
QUICK_CONV = ((8, 16, 16, 32), (3, 3, 32, 32))


def add_arguments(parser):
    parser.add_argument(
        "--tf-repeats", type=int, help="timed repeats per op (median reported; default 15, 2 with --quick)"
    )


def _threads():
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()


def _row(op, shape, macs, mult, am, native):
    return {
        "section": "tf_ops",
        "op": op,
        "shape": shape,
        "multiplier": mult.name,
        "mantissa_bits": int(mult.mantissa_bits),
        "threads": _threads(),
        "am_ms": am * 1e3,
        "native_ms": native * 1e3,
        "am_gmacs": macs / am / 1e9,
        "native_gmacs": macs / native / 1e9,
        "ratio": am / native,
    }


def run(args):
    import tensorflow as tf

    from approxtrain import ops

    quick = bool(getattr(args, "quick", False))
    repeats = getattr(args, "tf_repeats", None) or (2 if quick else 15)
    mult = bench_multiplier()
    rng = np.random.default_rng(0)
    rows = []

    m, k, n = QUICK_MATMUL if quick else MATMUL
    a = tf.constant(rng.standard_normal((m, k)).astype(np.float32))
    b = tf.constant(rng.standard_normal((k, n)).astype(np.float32))
    am, native = interleaved_medians(
        [lambda: ops.matmul(a, b, mult).numpy(), lambda: tf.linalg.matmul(a, b).numpy()], repeats
    )
    rows.append(_row("matmul", f"{m}x{k} . {k}x{n}", float(m) * k * n, mult, am, native))

    x_shape, w_shape = QUICK_CONV if quick else CONV
    x = tf.constant(rng.standard_normal(x_shape).astype(np.float32))
    w = tf.constant(rng.standard_normal(w_shape).astype(np.float32))
    am, native = interleaved_medians(
        [lambda: ops.conv2d(x, w, mult, padding="SAME").numpy(), lambda: tf.nn.conv2d(x, w, 1, "SAME").numpy()], repeats
    )
    macs = float(np.prod(x_shape[:3])) * np.prod(w_shape)  # SAME, stride 1: one output pixel per input pixel
    rows.append(
        _row(
            "conv2d", f"x {'x'.join(map(str, x_shape))}, w {'x'.join(map(str, w_shape))}, SAME", macs, mult, am, native
        )
    )

    print(
        f"[tf_ops] AM ops vs native TF ops, forward, {rows[0]['threads']} intra-op threads, "
        f"multiplier {mult.name}, median of {repeats}"
    )
    print(f"  {'op':<7} {'shape':<36} {'AM ms':>10} {'TF ms':>9} {'AM GMAC/s':>10} {'TF GMAC/s':>10} {'ratio':>7}")
    for r in rows:
        print(
            f"  {r['op']:<7} {r['shape']:<36} {r['am_ms']:>10.1f} {r['native_ms']:>9.1f} {r['am_gmacs']:>10.2f} "
            f"{r['native_gmacs']:>10.2f} {r['ratio']:>7.1f}",
            flush=True,
        )
    return rows
