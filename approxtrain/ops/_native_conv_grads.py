"""Native (fp32) gradients of convolutions, dilated and grouped ones included, on every backend.

TensorFlow's own Conv2DBackpropInput / Conv2DBackpropFilter handle dilations > 1 and
groups > 1 on GPUs and in the oneDNN CPU kernels only, and the oneDNN kernels only without
explicit padding. TF turns oneDNN off by default on CPUs without AVX-512, and the plain CPU
kernels then raise "Current CPU implementations do not yet support dilation rates larger
than 1" / "Gradients for grouped convolutions are not supported on CPU". So:

- plain convs (groups 1, no dilation): TF's kernels, which handle them everywhere;
- depthwise-shaped filters (one input channel per group) without dilation:
  DepthwiseConv2dNativeBackpropInput/Filter, which every backend has (not with dilation:
  the plain CPU kernels ignore the dilations attribute without a word);
- otherwise, with oneDNN on: TF's kernels, explicit padding applied to the input first;
- otherwise, portable forward convolutions (TF's forward Conv2D handles dilations and
  groups on every backend). They sum the same products as the native gradients, in
  another float32 order (plus, in the input gradient of a strided conv, products with
  the zeros between dy's upsampled rows: +-0 terms that change no finite sum):
  - input gradient: the transposed convolution, i.e. a forward conv of dy, zero-upsampled by
    the strides and padded, by the spatially flipped filter transposed within each group,
    with the conv's dilations;
  - filter gradient: a forward conv of the padded input with its batch and channel axes
    swapped, by dy as the filter: stride = the conv's dilation, dilation = the conv's
    stride; the groups are folded into the channel axis, so one grouped conv does them all.
"""

import dataclasses
import functools

import tensorflow as tf

from approxtrain.ops._shapes import dims


def is_plain(attrs, groups):
    """True for convs whose gradients TF's own kernels compute on every backend.

    ``groups``: an int, or None when the channel counts are not known statically."""
    return groups == 1 and tuple(attrs.dilations) == (1, 1, 1, 1)


@functools.cache
def onednn_enabled():
    """Whether TF's oneDNN CPU kernels are on (read once, at TF import, from TF_ENABLE_ONEDNN_OPTS
    and the CPU). Unknown counts as off: the portable formulation works everywhere."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def input_grad(input_sizes, w, dy, attrs, groups):
    """dx of the conv ``attrs`` with ``groups`` (int, or None = input channels / filter in-channels)."""
    input_sizes = tf.cast(input_sizes, tf.int32)
    if is_plain(attrs, groups):
        return tf.raw_ops.Conv2DBackpropInput(input_sizes=input_sizes, filter=w, out_backprop=dy, **attrs.kwargs())
    if _depthwise_shaped(w.shape[2], attrs, groups):
        return tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
            input_sizes=input_sizes, filter=_as_depthwise_filter(w, groups), out_backprop=dy, **attrs.kwargs()
        )
    if onednn_enabled():
        return _onednn_input_grad(input_sizes, w, dy, attrs)
    return portable_input_grad(input_sizes, w, dy, attrs, groups)


def filter_grad(x, filter_sizes, dy, attrs, groups):
    """dw of the conv ``attrs`` with ``groups`` (int, or None = input channels / filter in-channels)."""
    filter_sizes = tf.cast(filter_sizes, tf.int32)
    if is_plain(attrs, groups):
        return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=filter_sizes, out_backprop=dy, **attrs.kwargs())
    static_sizes = tf.get_static_value(filter_sizes)
    if _depthwise_shaped(None if static_sizes is None else static_sizes[2], attrs, groups):
        dw = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
            input=x,
            filter_sizes=tf.stack([filter_sizes[0], filter_sizes[1], groups, filter_sizes[3] // groups]),
            out_backprop=dy,
            **attrs.kwargs(),
        )
        return tf.reshape(dw, filter_sizes)
    if onednn_enabled():
        valid, x = _explicit_padding_applied(x, attrs)
        return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=filter_sizes, out_backprop=dy, **valid.kwargs())
    return portable_filter_grad(x, filter_sizes, dy, attrs, groups)


def _depthwise_shaped(filter_in, attrs, groups):
    return groups is not None and groups > 1 and filter_in == 1 and tuple(attrs.dilations) == (1, 1, 1, 1)


def _explicit_padding_applied(x, attrs):
    """(VALID attrs, padded x) for an EXPLICIT conv (oneDNN's kernels take no explicit padding); else unchanged."""
    if attrs.padding != "EXPLICIT":
        return attrs, x
    _, _, top, bottom, left, right, _, _ = attrs.explicit_paddings
    valid = dataclasses.replace(attrs, padding="VALID", explicit_paddings=())
    return valid, tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])


def _onednn_input_grad(input_sizes, w, dy, attrs):
    """TF's kernel; with explicit padding: the gradient of the padded input, VALID, with the padding cropped off."""
    if attrs.padding != "EXPLICIT":
        return tf.raw_ops.Conv2DBackpropInput(input_sizes=input_sizes, filter=w, out_backprop=dy, **attrs.kwargs())
    _, _, top, bottom, left, right, _, _ = attrs.explicit_paddings
    valid = dataclasses.replace(attrs, padding="VALID", explicit_paddings=())
    padded = input_sizes + tf.constant([0, top + bottom, left + right, 0], tf.int32)
    dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=padded, filter=w, out_backprop=dy, **valid.kwargs())
    return tf.slice(dx, [0, top, left, 0], input_sizes)


# --- the portable formulation --------------------------------------------------------------------


def portable_input_grad(input_sizes, w, dy, attrs, groups):
    """dx as one forward conv (see the module docstring); any strides, padding, dilations, groups."""
    input_sizes = tf.cast(input_sizes, tf.int32)
    if groups is None:
        groups = input_sizes[3] // tf.shape(w)[2]
    kh, kw, cg, o = dims(w)
    (sh, sw), (dh, dw) = attrs.strides[1:3], attrs.dilations[1:3]
    before = _pads_before(attrs, input_sizes[1:3], (kh, kw))
    # Flipped filter, transposed within each group: [KH, KW, C/g, g, O/g] -> [KH, KW, O/g, g * C/g].
    flipped = tf.reverse(w, [0, 1])
    flipped = tf.reshape(flipped, tf.stack([kh, kw, cg, groups, o // groups]))
    flipped = tf.reshape(tf.transpose(flipped, [0, 1, 4, 3, 2]), tf.stack([kh, kw, o // groups, groups * cg]))
    # dy upsampled by the strides, then placed so that a VALID conv of it yields exactly H x W.
    up = _upsample(_upsample(dy, 1, sh), 2, sw)
    spans = ((input_sizes[1], kh, dh, sh, before[0]), (input_sizes[2], kw, dw, sw, before[1]))
    lead, begin, size = [], [0], [-1]
    for axis, (length, k, d, _stride, pad_before) in zip((1, 2), spans):
        reach = (k - 1) * d
        front = reach - pad_before  # zeros in front of dy's first row (< 0: crop)
        back = length + reach - front - tf.shape(up)[axis]  # zeros after the last row (< 0: crop)
        lead.append([tf.maximum(front, 0), tf.maximum(back, 0)])
        begin.append(tf.maximum(-front, 0))
        size.append(length + reach)
    padded = tf.pad(up, tf.stack([[0, 0], *[tf.stack(p) for p in lead], [0, 0]]))
    padded = tf.slice(padded, tf.stack(begin + [0]), tf.stack(size + [-1]))
    dx = tf.raw_ops.Conv2D(
        input=padded, filter=flipped, strides=[1, 1, 1, 1], padding="VALID", dilations=[1, dh, dw, 1]
    )
    return tf.reshape(dx, input_sizes)


def portable_filter_grad(x, filter_sizes, dy, attrs, groups):
    """dw as one grouped forward conv (see the module docstring); any strides, padding, dilations, groups."""
    filter_sizes = tf.cast(filter_sizes, tf.int32)
    kh, kw, cg, o = (filter_sizes[i] for i in range(4))
    if groups is None:
        groups = tf.shape(x)[3] // cg
    (sh, sw), (dh, dw) = attrs.strides[1:3], attrs.dilations[1:3]
    before = _pads_before(attrs, tf.shape(x)[1:3], (kh, kw))
    after = _pads_after(attrs, tf.shape(x)[1:3], (kh, kw), before)
    xpad = tf.pad(x, tf.stack([[0, 0], [before[0], after[0]], [before[1], after[1]], [0, 0]]))
    # [N, Hp, Wp, g, C/g] -> [C/g, Hp, Wp, g * N]: channel block j of the result pairs group j's
    # input channels with filter block j, i.e. the grouped conv below computes each group's dw.
    n, hp, wp = tf.shape(xpad)[0], tf.shape(xpad)[1], tf.shape(xpad)[2]
    swapped = tf.reshape(xpad, tf.stack([n, hp, wp, groups, cg]))
    swapped = tf.reshape(tf.transpose(swapped, [4, 1, 2, 3, 0]), tf.stack([cg, hp, wp, groups * n]))
    dy_filter = tf.transpose(dy, [1, 2, 0, 3])  # [OH, OW, N, O]
    dw_t = tf.raw_ops.Conv2D(
        input=swapped, filter=dy_filter, strides=[1, dh, dw, 1], padding="VALID", dilations=[1, sh, sw, 1]
    )  # [C/g, >= KH, >= KW, O]
    dw_t = tf.slice(dw_t, [0, 0, 0, 0], tf.stack([-1, kh, kw, -1]))
    return tf.reshape(tf.transpose(dw_t, [1, 2, 0, 3]), filter_sizes)


# --- helpers -----------------------------------------------------------------------------------


def _as_depthwise_filter(w, groups):
    """The grouped filter [KH, KW, 1, C * mult] is the depthwise filter [KH, KW, C, mult] in memory."""
    kh, kw, _, o = dims(w)
    return tf.reshape(w, tf.stack([kh, kw, groups, o // groups]))


def _upsample(t, axis, stride):
    """Insert stride - 1 zeros after every element along ``axis`` (1 or 2) of an NHWC tensor."""
    if stride == 1:
        return t
    shape = tf.shape(t)
    t = tf.expand_dims(t, axis + 1)
    paddings = [[0, 0]] * 5
    paddings[axis + 1] = [0, stride - 1]
    t = tf.pad(t, paddings)
    new_shape = [shape[i] for i in range(4)]
    new_shape[axis] = shape[axis] * stride
    return tf.reshape(t, tf.stack(new_shape))


def _pads_before(attrs, input_hw, filter_hw):
    """Rows above / columns left of the input that the conv pads, as TF computes them."""
    if attrs.padding == "VALID":
        return 0, 0
    if attrs.padding == "EXPLICIT":
        return attrs.explicit_paddings[2], attrs.explicit_paddings[4]
    return tuple(
        _same_total(input_hw[i], filter_hw[i], attrs.strides[1 + i], attrs.dilations[1 + i]) // 2 for i in range(2)
    )


def _pads_after(attrs, input_hw, filter_hw, before):
    if attrs.padding == "VALID":
        return 0, 0
    if attrs.padding == "EXPLICIT":
        return attrs.explicit_paddings[3], attrs.explicit_paddings[5]
    return tuple(
        _same_total(input_hw[i], filter_hw[i], attrs.strides[1 + i], attrs.dilations[1 + i]) - before[i]
        for i in range(2)
    )


def _same_total(size, k, stride, dilation):
    """SAME padding: total padding so that ceil(size / stride) outputs fit (TF's rule, top/left gets the floor half)."""
    out = (size + stride - 1) // stride
    return tf.maximum((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
