"""A convolution's `padding` argument, read once for the numpy core and the TF ops.

"SAME" and "VALID" (any case) follow TensorFlow's rules; explicit padding is
[[top, bottom], [left, right]] of non-negative ints. Plain Python: no
TensorFlow, no native core.
"""

PADDING_CHOICES = "'SAME', 'VALID' or [[top, bottom], [left, right]]"


def padding_mode(padding):
    """ "SAME", "VALID" or "EXPLICIT" (not a string); ValueError for any other string."""
    if not isinstance(padding, str):
        return "EXPLICIT"
    mode = padding.upper()
    if mode not in ("SAME", "VALID"):
        raise ValueError(f"padding must be {PADDING_CHOICES}, got {padding!r}")
    return mode


def explicit_paddings(padding):
    """[top, bottom, left, right] of an explicit [[top, bottom], [left, right]]."""
    pads = [int(t) for pair in padding for t in pair]
    if len(pads) != 4 or min(pads) < 0:
        raise ValueError(
            f"explicit padding must be [[top, bottom], [left, right]] of non-negative ints, got {padding!r}"
        )
    return pads


def conv_paddings(padding, input_hw, filter_hw, strides, dilations):
    """Explicit [top, bottom, left, right] paddings of a 2-D convolution for any padding argument."""
    mode = padding_mode(padding)
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode == "EXPLICIT":
        return explicit_paddings(padding)
    out = []
    for size, k, s, d in zip(input_hw, filter_hw, strides, dilations):
        eff = (k - 1) * d + 1
        total = max((-(-size // s) - 1) * s + eff - size, 0)
        out += [total // 2, total - total // 2]
    return out
