"""Error metrics of the shipped multipliers against the published figures (docs/multipliers.md).

The published figures are for 16-bit integer operands; ours are float32
significands cut to M bits, measured on 10^6 random float32 pairs
(significands uniform in [1, 2)) against the exact product of the
*unreduced* inputs.  With 10^6 samples and errors of a few percent the
standard error of a mean is ~0.003 percentage points (pp), so the
tolerances below are set by the difference of operand formats, not noise.
"""

import numpy as np
import pytest

from approxtrain import multipliers
from approxtrain.multipliers import metrics

SAMPLES = 10**6


@pytest.fixture(autouse=True, scope="module")
def private_home(tmp_path_factory):
    """Tables built on first use (no package build) go to a temporary home, not ~/.approxtrain."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APPROXTRAIN_HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="module")
def measured():
    cache = {}

    def get(name):
        if name not in cache:
            m = multipliers.get(name)
            cache[name] = (
                metrics.summarize(metrics.table_relative_errors(m)),
                metrics.summarize(metrics.random_relative_errors(m, SAMPLES, seed=0)),
            )
        return cache[name]

    return get


def test_mbm7_matches_published_bias_and_mean(measured):
    # Published MBM (16-bit): bias -0.09 %, mean |error| 2.58 %.  Cutting each
    # operand to 7 bits with the lowest kept bit forced to 1 replaces it by
    # the midpoint of its 2^-7 cell: a zero-mean perturbation of < 2^-8
    # relative, which moves these averages by a small fraction of that
    # (0.01-0.02 pp measured).  Tolerances: 0.05 pp (bias), 0.1 pp (mean).
    _, rnd = measured("mbm7")
    assert abs(100 * rnd["bias"] - -0.09) < 0.05
    assert abs(100 * rnd["mred"] - 2.58) < 0.1


def test_mbm7_peak_is_published_peak_plus_the_operand_midpoints(measured):
    # Published peak 7.81 % = C = 2^-4 + 2^-6 (at x = y = 0, where Mitchell is
    # exact).  At M = 7 both operands at the bottom of their cell are raised
    # to its midpoint, adding 2 * 2^-8 = 2^-6 to the fraction sum: the table
    # peak is exactly C + 2^-6 = 9.375 %, and random inputs approach it from below.
    table, rnd = measured("mbm7")
    assert table["max"] == pytest.approx(2**-4 + 2**-6 + 2**-6, abs=1e-15)
    assert 0.0781 < rnd["max"] <= 0.09375
    assert -0.0781 - 2**-6 < rnd["min"] < 0


def test_mitchell7_peak_matches_published(measured):
    # Published Mitchell peak -11.1 % = -1/9 (x = y = 1/2: 2 instead of 2.25),
    # reached exactly by the table.  Truncating each unreduced operand to 7
    # bits lowers it by < 2^-7 relative, so random inputs reach at most
    # (1 - 1/9)(1 - 2^-7)^2 - 1 = -12.49 %.
    table, rnd = measured("mitchell7")
    assert table["min"] == pytest.approx(-1 / 9, abs=1e-15)
    assert table["max"] == 0.0  # Mitchell never overestimates
    assert -0.1249 < rnd["min"] < -0.111
    assert rnd["max"] <= 0.0


@pytest.mark.parametrize("name, published_mred", [("drum4", 5.89), ("drum5", 2.94), ("drum6", 1.47)])
def test_drum_mean_error_matches_published(measured, name, published_mred):
    # DRUM's error comes from replacing the dropped bits by their midpoint.
    # Uniform 16-bit integers have near-uniform bits below the leading one,
    # as our uniform significands do, so the mean |error| should agree up to
    # the integers' small-value cases (fewer than k bits: exact); we allow 3 %
    # of the published value (0.18 / 0.09 / 0.04 pp).
    _, rnd = measured(name)
    assert 100 * rnd["mred"] == pytest.approx(published_mred, rel=0.03)
    assert abs(rnd["bias"]) < 0.01  # nearly unbiased: +0.52 % (drum4) down to +0.03 % (drum6) measured


def test_bf16_table_is_exact_and_random_error_is_half_an_ulp(measured):
    table, rnd = measured("bf16")
    assert table["max"] == table["min"] == 0.0
    # nearest rounding of two operands: |error| <= (1 + 2^-8)^2 - 1
    assert max(rnd["max"], -rnd["min"]) <= (1 + 2**-8) ** 2 - 1


def test_summarize_and_table_errors_on_a_known_table():
    m = multipliers.get("mitchell1")  # x, y in {0, 1/2}: products 1, 1.5, 1.5, 2 vs exact 1, 1.5, 1.5, 2.25
    errors = metrics.table_relative_errors(m)
    np.testing.assert_allclose(errors, [[0, 0], [0, 2 / 2.25 - 1]], atol=1e-15)
    s = metrics.summarize(errors)
    assert s["bias"] == pytest.approx((2 / 2.25 - 1) / 4)
    assert s["mred"] == pytest.approx(-s["bias"])
    assert s["count"] == 4


def test_random_operands_are_normal_with_uniform_significands():
    a, b = metrics.random_operands(10**5, seed=3)
    for x in (a, b):
        assert x.dtype == np.float32 and np.all(np.isfinite(x)) and np.all(np.abs(x) >= 2.0**-30)
        significand = np.abs(x) / np.exp2(np.floor(np.log2(np.abs(x))))
        assert abs(significand.mean() - 1.5) < 0.01
        assert 0.45 < (x < 0).mean() < 0.55


def test_random_errors_are_what_approxtrain_core_computes():
    # metrics calls the compiled kernel itself (approxtrain.core reads multipliers through this
    # package, so the package does not import it back): the products are core.multiply's, bit for bit.
    from approxtrain import core

    m = multipliers.get("drum5")
    a, b = metrics.random_operands(4096, seed=7)
    want = core.multiply(a, b, m).astype(np.float64) / (a.astype(np.float64) * b.astype(np.float64)) - 1.0
    np.testing.assert_array_equal(metrics.random_relative_errors(m, 4096, seed=7), want)


def test_the_multipliers_package_does_not_import_approxtrain_core():
    import ast
    from pathlib import Path

    package = Path(multipliers.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "approxtrain":
                assert "core" not in [a.name for a in node.names], path.name
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert "approxtrain.core" not in modules, path.name
