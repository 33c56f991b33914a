"""The counts' large reductions as TensorFlow ops, traced into the counting step (profile.py).

Each function reduces a layer's operands (0/1 indicators of their non-zero entries) to the small
sums that approxtrain.cost.counts turns into counts (`conv2d_from_sums`, `einsum_from_sums`); only
those sums leave the graph. All sums are integer: int32 where a sum is bounded by one tensor's
size, float64 (exact below 2^53) where products of two sums add up.
"""

import tensorflow as tf

from approxtrain.cost import counts


def nonzero(t):
    """int32 0/1 of t != 0, decided on the bits: a subnormal counts as non-zero as in NumPy,
    whatever the CPU's denormals-are-zero mode (TensorFlow sets it), NaN and inf too."""
    t = tf.convert_to_tensor(t)
    if t.dtype != tf.float32:
        t = tf.cast(t, tf.float32)  # float16/bfloat16 widen exactly
    magnitude = tf.bitwise.bitwise_and(tf.bitcast(t, tf.int32), 0x7FFFFFFF)
    return tf.cast(tf.not_equal(magnitude, 0), tf.int32)


def _tap(t, g, i, j, spatial=(0, 1)):
    """The padded t's values under tap (i, j) of every output: a strided slice, [.., OH, OW, ..]."""
    (sh, sw), (dh, dw) = g.strides, g.dilations
    begin, end, step = [0] * t.shape.rank, list(t.shape), [1] * t.shape.rank
    for axis, start, stride, size in ((spatial[0], i * dh, sh, g.oh), (spatial[1], j * dw, sw, g.ow)):
        begin[axis], end[axis], step[axis] = start, start + (size - 1) * stride + 1, stride
    return tf.strided_slice(t, begin, end, step)


def conv2d_sums(x, w, dy, g):
    """The arguments of counts.conv2d_from_sums (after g) for x [N, H, W, C], w [KH, KW, C/G, O],
    dy [N, OH, OW, O] of ConvGeometry g."""
    og = g.o // g.groups
    ix = nonzero(x)
    xp = tf.pad(ix, [[0, 0], list(g.pads[0]), list(g.pads[1]), [0, 0]])
    idy = nonzero(dy)
    # Forward: the non-zeros under each tap, over all samples and outputs.
    x_sum = tf.reduce_sum(xp, axis=0)  # [HP, WP, C]
    tap_nnz = tf.stack(
        [tf.stack([tf.reduce_sum(_tap(x_sum, g, i, j), axis=(0, 1)) for j in range(g.kw)]) for i in range(g.kh)]
    )
    # Weight gradient: non-zeros in each output's receptive field (its group's channels) times
    # the non-zero dy of that group at that output.
    x_group = tf.reduce_sum(tf.reshape(xp, [g.n, xp.shape[1], xp.shape[2], g.groups, g.cg]), axis=-1)
    field = tf.add_n([_tap(x_group, g, i, j, spatial=(1, 2)) for i in range(g.kh) for j in range(g.kw)])
    dy_group = tf.reduce_sum(tf.reshape(idy, [g.n, g.oh, g.ow, g.groups, og]), axis=-1)
    gw_nonzero = tf.reduce_sum(tf.cast(field, tf.float64) * tf.cast(dy_group, tf.float64))
    return {
        "tap_nnz": tap_nnz,
        "gw_nonzero": gw_nonzero,
        "dy_nnz_at": tf.reduce_sum(idy, axis=0),
        "x_plane": tf.reduce_sum(ix, axis=(1, 2)),
        "dy_plane": tf.reduce_sum(idy, axis=(1, 2)),
        "iw": nonzero(w),
    }


def einsum_sums(equation, a, b, dy):
    """The `reduced` argument of counts.einsum_from_sums: per phase, each operand's non-zeros
    summed over the letters the other operand lacks."""
    phases = counts.einsum_phases(equation)
    ia, ib, idy = nonzero(a), nonzero(b), nonzero(dy)
    operands = {"forward": (ia, ib), "grad_input": (idy, ib), "grad_weight": (ia, idy)}
    reduced = {}
    for phase, l1, l2 in phases:
        reduced[phase] = tuple(
            tf.reduce_sum(t, axis=[k for k, letter in enumerate(mine) if letter not in other])
            for t, mine, other in zip(operands[phase], (l1, l2), (l2, l1))
        )
    return reduced
