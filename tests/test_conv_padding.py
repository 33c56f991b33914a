"""Padding arguments are read once (approxtrain/_conv_padding.py) for the numpy core and the TF ops."""

import ast
from pathlib import Path

import pytest

from approxtrain import _conv_padding as padding
from approxtrain import core

PACKAGE = Path(core.__file__).parent


def test_same_follows_tensorflows_rule():
    # TF: out = ceil(in / stride); total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0),
    # the odd pixel at the bottom/right.
    assert padding.conv_paddings("SAME", (5, 6), (3, 4), (1, 2), (1, 1)) == [1, 1, 1, 1]
    assert padding.conv_paddings("same", (7, 6), (3, 2), (1, 2), (2, 1)) == [2, 2, 0, 0]
    assert padding.conv_paddings("SAME", (8, 8), (1, 3), (2, 2), (1, 2)) == [0, 0, 1, 2]
    assert padding.conv_paddings("VALID", (5, 5), (3, 3), (1, 1), (1, 1)) == [0, 0, 0, 0]
    assert padding.conv_paddings([[1, 2], [0, 3]], None, None, None, None) == [1, 2, 0, 3]
    assert core.conv_paddings is padding.conv_paddings


def test_bad_padding_is_one_clear_error():
    with pytest.raises(
        ValueError,
        match=r"padding must be 'SAME', 'VALID' or \[\[top, bottom\], \[left, right\]\], "
        r"got 'full'",
    ):
        padding.padding_mode("full")
    with pytest.raises(ValueError, match="explicit padding must be .* non-negative ints, got \\[\\[1, -1\\]"):
        padding.explicit_paddings([[1, -1], [0, 0]])
    assert [padding.padding_mode(p) for p in ("valid", "Same", [[0, 0], [1, 1]])] == ["VALID", "SAME", "EXPLICIT"]


def test_the_tf_ops_do_not_import_the_native_core():
    tree = ast.parse((PACKAGE / "ops" / "_conv.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "approxtrain.core" not in imported and "approxtrain._conv_padding" in imported
