"""The README's multiplier example works as written (the front door stays true)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_c_example_registers_and_multiplies(tmp_path, monkeypatch):
    monkeypatch.setenv("APPROXTRAIN_HOME", str(tmp_path / "home"))
    from approxtrain import core, multipliers

    blocks = re.findall(r"```c\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no C example"
    src = tmp_path / "mine.c"
    src.write_text(blocks[0])
    m = multipliers.register("mine", src, mantissa_bits=7)
    try:
        # The example keeps 4 fraction bits of the exact product of 7-bit operands.
        a = np.float32(1.5078125)  # 1 + 65/128
        b = np.float32(1.25)
        exact = np.float32(a * b)
        want = (exact.view(np.uint32) & ~np.uint32((1 << 19) - 1)).view(np.float32)
        assert core.multiply(a, b, m) == want
        assert core.multiply(-a, b * 4, m) == -4 * want
    finally:
        multipliers.unregister("mine")


def test_readme_python_api_example_runs():
    # The README's Python block is the front door of the API: it must run as written.
    import pytest

    pytest.importorskip("tensorflow")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no Python example"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["am_model"].get_layer("predictions").__class__.__name__ == "Dense"
    assert sum(type(layer).__name__ == "AMConv2D" for layer in namespace["am_model"].layers) == 1
