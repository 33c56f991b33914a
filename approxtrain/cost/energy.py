"""Per-multiply energy of each multiplier, with its source (docs/multipliers.md, "Energy and area").

Figures are published (fp32, fp16m) or estimates built from published 45 nm component figures
by a stated rule (labelled `estimate`); a multiplier with neither (a user's, unless given
`--energy-pj`) has none: its energy is reported as null, never guessed.
Every sum is a float32 addition whatever the multiplier (docs/design.md, "Accumulation"), so the
accumulate energy is the fp32 add's for all of them.
"""

import json
import math
import os

from approxtrain.multipliers import registry

HOROWITZ = "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm"
ACCUMULATE_PJ = 0.9  # fp32 add, Horowitz ISSCC 2014, 45 nm

# name: (pJ per multiply, estimate?, source)
_BF16_PJ = round(1.1 * (8 / 11) ** 2, 3)  # fp16 multiply scaled by the significand widths squared
FIGURES = {
    "fp32": (3.7, False, f"fp32 multiply, {HOROWITZ}"),
    "fp16m": (1.1, False, f"fp16 multiply (11-bit significands), {HOROWITZ}"),
    "bf16": (
        _BF16_PJ,
        True,
        "estimate: fp16 multiply 1.1 pJ (Horowitz ISSCC 2014, 45 nm) x (8/11)^2, "
        "the ratio of the significand widths squared",
    ),
    "bf16_trunc": (_BF16_PJ, True, "estimate: as bf16 (an 8x8-bit significand product, truncated result)"),
}

# The logarithmic and truncating multipliers have no published per-multiply energy at these
# significand widths; their estimates are built from the same 45 nm figures by what the circuit
# does on a normalised float significand (no leading-one detector or shifter is needed there).
ADD_PJ_PER_BIT = 0.03 / 8  # 8-bit integer add 0.03 pJ (32-bit: 0.1 pJ, 0.0031 per bit), Horowitz
EXPONENT_BITS = 8


def _adder_pj(bits):
    return round(bits * ADD_PJ_PER_BIT, 4)


def _log_multiplier_figures():
    """mitchellM: one M-bit fraction add and the 8-bit exponent add; mbmM adds its correction
    constant with a second M-bit add (mbm5, mbm7; mbm1 and mbm3 have none); drumK: a K x K
    significand multiplier, fp16's multiply scaled by (K/11)^2 as bf16's is."""
    figures = {}
    for m in (1, 3, 5, 7):
        figures[f"mitchell{m}"] = (
            _adder_pj(m + EXPONENT_BITS),
            True,
            f"estimate: a {m}-bit fraction add plus the {EXPONENT_BITS}-bit exponent add, at the 8-bit integer "
            f"add's 0.03 pJ / 8 bits (Horowitz ISSCC 2014, 45 nm)",
        )
        corrected = m >= 5
        figures[f"mbm{m}"] = (
            _adder_pj((2 * m if corrected else m) + EXPONENT_BITS),
            True,
            f"estimate: Mitchell's {m}-bit fraction add"
            + (f", a second {m}-bit add for the bias correction," if corrected else " (no correction at this width)")
            + f" plus the {EXPONENT_BITS}-bit exponent add, at 0.03 pJ / 8 bits (Horowitz ISSCC 2014, 45 nm)",
        )
    for k in (4, 5, 6):
        figures[f"drum{k}"] = (
            round(1.1 * (k / 11) ** 2, 3),
            True,
            f"estimate: fp16 multiply 1.1 pJ (Horowitz ISSCC 2014, 45 nm) x ({k}/11)^2, a {k}x{k}-bit "
            "significand product",
        )
    return figures


FIGURES.update(_log_multiplier_figures())
SIDECAR_SUFFIX = ".energy.json"


def sidecar_path(name):
    """User multiplier `name`'s energy file, next to its registered table."""
    return registry.user_dir() / f"{name}{SIDECAR_SUFFIX}"


def check_pj(pj):
    if isinstance(pj, bool) or not isinstance(pj, (int, float)) or not math.isfinite(pj) or pj <= 0:
        raise ValueError(f"--energy-pj must be a positive number of picojoules, got {pj!r}")


def set_user_energy(name, pj):
    """Records `pj` picojoules per multiply for user multiplier `name` (written atomically)."""
    check_pj(pj)
    path = sidecar_path(name)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"name": name, "multiply_pj": float(pj), "source": "user (multipliers add --energy-pj)"}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_user_energy(name):
    sidecar_path(name).unlink(missing_ok=True)


def figure(name):
    """{"multiply_pj", "accumulate_pj", "estimate", "source"} of multiplier `name`, or None."""
    if name in FIGURES:
        pj, estimate, source = FIGURES[name]
        return {"multiply_pj": pj, "accumulate_pj": ACCUMULATE_PJ, "estimate": estimate, "source": source}
    path = sidecar_path(name)
    if name not in registry.shipped_names() and path.exists():
        with open(path) as f:
            data = json.load(f)
        return {
            "multiply_pj": float(data["multiply_pj"]),
            "accumulate_pj": ACCUMULATE_PJ,
            "estimate": False,
            "source": data.get("source", "user"),
        }
    return _integer_figure(name)


def _integer_figure(name):
    """An integer multiplier's published power x delay (mW x ns = pJ), labelled an estimate; None
    for any other multiplier or one without both figures."""
    try:
        d = registry.describe(name)  # builds nothing
    except ValueError:
        return None
    if d["type"] != "integer" or d["power_mw"] is None or d["delay_ns"] is None:
        return None
    return {
        "multiply_pj": d["power_mw"] * d["delay_ns"],
        "accumulate_pj": ACCUMULATE_PJ,
        "estimate": True,
        "source": f"estimate: power x delay of the circuit's published figures "
        f"({d['power_mw']:g} mW x {d['delay_ns']:g} ns, e.g. EvoApproxLib's PDK45_PWR and PDK45_DELAY)",
    }


def energy_pj(fig, macs, skipped):
    """(dense, zero-skipping) energy of `macs` products of which `skipped` need not run; None without a figure."""
    if fig is None:
        return None
    per = fig["multiply_pj"] + fig["accumulate_pj"]
    return {"dense": macs * per, "zero_skipping": (macs - skipped) * per}
