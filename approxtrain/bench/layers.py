"""Bench section `layers`: each AM layer's forward + backward against its native Keras twin.

Per layer, at a typical size: one tf.function computing the output and the gradients with
respect to the input and the kernel, for the AM layer (mbm7 in all three phases) and for its
Keras twin with the same weights. The two take turns repeat by repeat
(interleaved_medians), so machine load hits both alike; rows report the median times and
the ratio AM / native. AMDense and AMConv2D are there for reference.
"""

import numpy as np

from approxtrain.bench import bench_multiplier, interleaved_medians


def _cases(quick):
    """(name, AM class, layer kwargs, input shape); --quick shrinks the shapes."""
    from approxtrain import layers as am

    s = 2 if quick else 1  # spatial/feature divisor
    return [
        ("AMDense", am.AMDense, dict(units=256 // s), (64, 256 // s)),
        ("AMConv2D", am.AMConv2D, dict(filters=32, kernel_size=3, padding="same"), (8, 32 // s, 32 // s, 32)),
        (
            "AMEinsumDense",
            am.AMEinsumDense,
            dict(equation="abc,cde->abde", output_shape=(None, 4, 32)),
            (8, 64 // s, 128),
        ),
        ("AMConv3D", am.AMConv3D, dict(filters=16, kernel_size=3, padding="same"), (4, 8 // s, 16 // s, 16 // s, 16)),
        (
            "AMConv1DTranspose",
            am.AMConv1DTranspose,
            dict(filters=32, kernel_size=3, strides=2, padding="same"),
            (8, 128 // s, 32),
        ),
        (
            "AMConv2DTranspose",
            am.AMConv2DTranspose,
            dict(filters=32, kernel_size=3, strides=2, padding="same"),
            (8, 16 // s, 16 // s, 32),
        ),
        (
            "AMConv3DTranspose",
            am.AMConv3DTranspose,
            dict(filters=16, kernel_size=3, strides=2, padding="same"),
            (2, 4 // s, 8 // s, 8 // s, 16),
        ),
    ]


def add_arguments(parser):
    parser.add_argument(
        "--layer-repeats", type=int, help="timed repeats per layer (median reported; default 7, 2 with --quick)"
    )
    parser.add_argument(
        "--layers", metavar="NAMES", help="only these layers, comma separated (e.g. AMConv3D,AMEinsumDense)"
    )


def _step(layer, x):
    """A tf.function: the layer's output at x and its gradients w.r.t. x and the kernel."""
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, layer.kernel])

    return lambda: [g.numpy() for g in step()]


def run(args):
    import tensorflow as tf

    quick = bool(getattr(args, "quick", False))
    repeats = getattr(args, "layer_repeats", None) or (2 if quick else 7)
    only = getattr(args, "layers", None)
    mult = bench_multiplier()
    rng = np.random.default_rng(0)
    rows = []
    for name, cls, kwargs, shape in _cases(quick):
        if only and name not in only.split(","):
            continue
        native, layer = cls.keras_twin(**kwargs), cls(**kwargs, multiplier=mult)
        native.build(shape)
        layer.build(shape)
        layer.set_weights(native.get_weights())
        x = tf.constant(rng.standard_normal(shape).astype(np.float32))
        am_s, native_s = interleaved_medians([_step(layer, x), _step(native, x)], repeats)
        rows.append(
            {
                "section": "layers",
                "layer": name,
                "shape": "x".join(map(str, shape)),
                "multiplier": mult.name,
                "am_ms": am_s * 1e3,
                "native_ms": native_s * 1e3,
                "ratio": am_s / native_s,
            }
        )
    print(
        f"[layers] AM layer vs Keras twin, forward + backward (dX, dW), multiplier {mult.name}, "
        f"median of {repeats} interleaved repeats"
    )
    print(f"  {'layer':<19} {'input':<18} {'AM ms':>9} {'Keras ms':>9} {'ratio':>7}")
    for r in rows:
        print(
            f"  {r['layer']:<19} {r['shape']:<18} {r['am_ms']:>9.2f} {r['native_ms']:>9.2f} {r['ratio']:>7.2f}",
            flush=True,
        )
    return rows
