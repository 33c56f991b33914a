"""Turns a multiplier model into a table (docs/design.md, "Multipliers and tables").

A model is ``float NAME(float a, float b)`` in a C or C++ file (compiled by
compiler.py), or a Python callable on float32 arrays (python_model.py).  The
builder calls it for every pair a = 1.ia, b = 1.ib (exponent 0, ia and ib on
the top M fraction bits; one call fills the whole table), checks the results,
and converts them to entries: bit 15 = carry (r >= 2), bits 14..0 = the top 15
fraction bits of r.

A C file may describe its multipliers in comment lines the builder reads::

    approxtrain: name=mbm7 symbol=mbm7 mantissa_bits=7 rounding=truncate description="..."
"""

import hashlib
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._multiplier import ROUNDINGS
from .compiler import (  # noqa: F401
    COMPILE_FLAGS,
    FLOAT_SIGNATURE,
    CompiledModel,
    ModelError,
    check_language,
    check_symbol,
)

_SPEC_LINE = re.compile(r"approxtrain:\s*(.*?)\s*(\*/)?\s*$")
_SPEC_KEYS = {"name", "symbol", "mantissa_bits", "rounding", "description", "integer_bits", "signed"}
_SIGNEDNESS = {"true": True, "false": False}
# (p, q) exponent shifts under which a model must satisfy f(2^p a, 2^q b) = 2^(p+q) f(a, b).
EXPONENT_SHIFTS = ((1, 0), (0, 1), (-1, 3), (5, -7), (-20, 17), (40, 30), (-45, -30))
_EXPONENT_SAMPLE = 256


@dataclass(frozen=True)
class ModelSpec:
    """One multiplier declared in a C file's header comment: a float one (mantissa_bits and
    operand_rounding) or an integer one (integer_bits and signed; mantissa_bits None)."""

    name: str
    symbol: str
    mantissa_bits: int | None
    operand_rounding: str | None
    description: str
    source: Path
    integer_bits: int | None = None
    signed: bool | None = None

    @property
    def is_integer(self):
        return self.integer_bits is not None


def check_mantissa_bits(mantissa_bits):
    if (
        isinstance(mantissa_bits, bool)
        or not isinstance(mantissa_bits, (int, np.integer))
        or not 1 <= mantissa_bits <= 11
    ):
        raise ValueError(f"mantissa_bits must be an integer in [1, 11], got {mantissa_bits!r}")
    return int(mantissa_bits)


def check_rounding(rounding):
    if rounding not in ROUNDINGS:
        raise ValueError(f"operand rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    return rounding


def read_specs(c_file):
    """The ModelSpecs declared by ``approxtrain:`` lines in a C file's comments."""
    c_file = Path(c_file)
    specs = []
    for lineno, line in enumerate(c_file.read_text(encoding="utf-8").splitlines(), 1):
        match = _SPEC_LINE.search(line)
        if not match:
            continue
        where = f"{c_file}:{lineno}"
        try:
            fields = dict(item.split("=", 1) for item in shlex.split(match.group(1)))
        except ValueError as e:
            raise ModelError(f"{where}: cannot parse the approxtrain line (expected key=value pairs): {e}") from e
        unknown = set(fields) - _SPEC_KEYS
        if unknown:
            raise ModelError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_SPEC_KEYS)})")
        if "integer_bits" in fields:
            specs.append(_integer_spec(fields, where, c_file))
            continue
        for key in ("name", "mantissa_bits", "rounding"):
            if key not in fields:
                raise ModelError(f"{where}: the approxtrain line needs {key}=")
        try:
            m = check_mantissa_bits(int(fields["mantissa_bits"]))
            rounding = check_rounding(fields["rounding"])
        except ValueError as e:
            raise ModelError(f"{where}: {e}") from e
        specs.append(
            ModelSpec(
                fields["name"], fields.get("symbol", fields["name"]), m, rounding, fields.get("description", ""), c_file
            )
        )
    return specs


def _integer_spec(fields, where, c_file):
    """The ModelSpec of an integer multiplier's line: name=, integer_bits=8, signed=true|false."""
    for key in ("name", "signed"):
        if key not in fields:
            raise ModelError(f"{where}: the approxtrain line of an integer multiplier needs {key}=")
    extra = sorted({"mantissa_bits", "rounding"} & set(fields))
    if extra:
        raise ModelError(f"{where}: {', '.join(extra)} apply to float multipliers, not to integer_bits=")
    if fields["integer_bits"] != "8":
        raise ModelError(f"{where}: integer_bits must be 8, got {fields['integer_bits']!r}")
    if fields["signed"] not in _SIGNEDNESS:
        raise ModelError(f"{where}: signed must be true or false, got {fields['signed']!r}")
    return ModelSpec(
        fields["name"],
        fields.get("symbol", fields["name"]),
        None,
        None,
        fields.get("description", ""),
        c_file,
        integer_bits=8,
        signed=_SIGNEDNESS[fields["signed"]],
    )


def source_digest(c_file):
    """SHA-256 of a C file's bytes (stored in tables to spot stale ones)."""
    return hashlib.sha256(Path(c_file).read_bytes()).digest()


def table_operands(mantissa_bits):
    """The 2^M values 1.i (exponent 0, i on the top M fraction bits), as float32."""
    i = np.arange(1 << mantissa_bits, dtype=np.uint32)
    return ((np.uint32(127) << np.uint32(23)) | (i << np.uint32(23 - mantissa_bits))).view(np.float32)


def _pair_text(a, b, m):
    ia = int(np.float32(a).view(np.uint32) & 0x7FFFFF) >> (23 - m)
    ib = int(np.float32(b).view(np.uint32) & 0x7FFFFF) >> (23 - m)
    return f"f({float(a)!r}, {float(b)!r}) [ia={ia}, ib={ib}]"


def _check_range(label, a, b, r, m):
    bad = ~(np.isfinite(r) & (r >= 1.0) & (r < 4.0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ModelError(
            f"{label}: {_pair_text(a[k], b[k], m)} = {float(r[k])!r}; every table result must be "
            f"finite and in [1, 4) ({int(bad.sum())} of {r.size} pairs are not)"
        )


def _check_exponent_and_sign(label, evaluate, a, b, r, m):
    """f(2^p a, 2^q b) == 2^(p+q) f(a, b) and f(-a, b) == -f(a, b) on a sample of pairs."""
    n = a.size
    corners = [0, n - 1, (1 << m) - 1, n - (1 << m)]
    rng = np.random.default_rng(0)
    pick = np.unique(np.concatenate([corners, rng.integers(0, n, min(n, _EXPONENT_SAMPLE))]))
    a, b, r = a[pick], b[pick], r[pick]
    for p, q in EXPONENT_SHIFTS:
        got = evaluate(np.ldexp(a, p), np.ldexp(b, q))
        want = np.ldexp(r, p + q).astype(np.float32)
        bad = got.view(np.uint32) != want.view(np.uint32)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ModelError(
                f"{label} depends on the exponent: for {_pair_text(a[k], b[k], m)} = {float(r[k])!r}, "
                f"f(2^{p} a, 2^{q} b) = {float(got[k])!r} but 2^{p + q} f(a, b) = {float(want[k])!r}; "
                "a table can only hold a function of the two fractions (sign and exponent must be exact)"
            )
    for sa, sb in ((-1, 1), (1, -1), (-1, -1)):
        got = evaluate((sa * a).astype(np.float32), (sb * b).astype(np.float32))
        want = (sa * sb * r).astype(np.float32)
        bad = got.view(np.uint32) != want.view(np.uint32)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ModelError(
                f"{label} mishandles signs: f({sa * float(a[k])!r}, {sb * float(b[k])!r}) = {float(got[k])!r}, "
                f"expected {float(want[k])!r} (the sign of a product is the xor of the operand signs)"
            )


def entries_from_products(r):
    """Table entries of significand products r in [1, 4): carry << 15 | top 15 fraction bits."""
    bits = np.asarray(r, np.float32).view(np.uint32)
    carry = (bits >> np.uint32(23)) - np.uint32(127)  # exponent 0 -> 0, 1 -> 1
    return ((carry << np.uint32(15)) | ((bits & np.uint32(0x7FFFFF)) >> np.uint32(8))).astype(np.uint16)


def table_of(evaluate, mantissa_bits, label):
    """The uint16 table of a model given as evaluate(a, b) -> float32 array, after every check of
    docs/design.md, "Multipliers and tables" (finite and in [1, 4), exponent-independent, signs)."""
    m = check_mantissa_bits(mantissa_bits)
    ops = table_operands(m)
    a = np.repeat(ops, ops.size)  # ia = index >> M: the table row is the left operand
    b = np.tile(ops, ops.size)
    r = evaluate(a, b)
    _check_range(label, a, b, r, m)
    _check_exponent_and_sign(label, evaluate, a, b, r, m)
    return entries_from_products(r)


def make_table(model, symbol, mantissa_bits, operand_rounding, label=None):
    """The uint16 table of ``symbol`` in a CompiledModel (None: its only float(float, float) function)."""
    m = check_mantissa_bits(mantissa_bits)
    check_rounding(operand_rounding)
    symbol = model.default_symbol(label) if symbol is None else check_symbol(symbol)
    model.function(symbol)
    label = f"multiplier {label or symbol} ({model.source}:{symbol})"
    return table_of(lambda a, b: model.evaluate(symbol, a, b), m, label)


def build_table(c_file, symbol, mantissa_bits, operand_rounding="truncate", label=None, language=None):
    """Compiles a C or C++ model file and returns the table of its function ``symbol``
    (None: the file's only ``float f(float, float)`` function)."""
    check_mantissa_bits(mantissa_bits)
    check_rounding(operand_rounding)
    check_language(language)
    if symbol is not None:
        check_symbol(symbol)
    return make_table(CompiledModel(c_file, language), symbol, mantissa_bits, operand_rounding, label)


# --- building in a child process -------------------------------------------------------------
# A user's model runs inside whatever process calls it: a crash (a stray pointer, a
# division by zero trap) or an endless loop would take the caller with it.  register()
# therefore builds user tables in a child Python process (_build_child.py) and turns its
# death into an error.  The child reports through files, never through its stderr, so
# nothing the interpreter prints there (warnings) can reach the user's error message.
CHILD_MODEL_ERROR = 3
CHILD_INTERNAL_ERROR = 4
# The default time limit of a build grows with the table: 60 s, plus 120 s per million entries
# (M = 7: about 62 s; M = 11, 4.2 million entries: about 563 s).
BUILD_TIMEOUT_BASE_S = 60
BUILD_TIMEOUT_PER_MILLION_S = 120
BUILD_TIMEOUT_TEXT = f"{BUILD_TIMEOUT_BASE_S} s + {BUILD_TIMEOUT_PER_MILLION_S} s per million table entries"


def default_build_timeout(mantissa_bits):
    """Seconds a table build of 2^(2M) entries may take by default (BUILD_TIMEOUT_TEXT)."""
    entries = 1 << (2 * check_mantissa_bits(mantissa_bits))
    return BUILD_TIMEOUT_BASE_S + BUILD_TIMEOUT_PER_MILLION_S * entries / 1e6


@dataclass(frozen=True)
class BuiltTable:
    entries: np.ndarray
    symbol: str  # the function the table came from (qualified C++ name)
    language: str  # "c" or "c++"


def _kill_group(process):
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)  # the child and any compiler it started
    except ProcessLookupError:
        pass
    process.wait()


def build_table_isolated(
    c_file, symbol, mantissa_bits, operand_rounding="truncate", label=None, timeout=None, language=None
):
    """build_table() in a child process, returning a BuiltTable: same checks and errors, and a model
    that crashes, ends the process or hangs (past ``timeout`` seconds, default
    default_build_timeout(mantissa_bits)) is a ModelError instead of the end of the caller."""
    check_mantissa_bits(mantissa_bits)
    check_rounding(operand_rounding)
    check_language(language)
    if symbol is not None:
        check_symbol(symbol)
    timeout = default_build_timeout(mantissa_bits) if timeout is None else timeout
    request = {"kind": "float", "mantissa_bits": int(mantissa_bits), "rounding": operand_rounding}
    table, result = run_build_child(c_file, symbol, label, language, timeout, request)
    return BuiltTable(table, result["symbol"], result["language"])


def check_timeout(timeout):
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return timeout


def run_build_child(c_file, symbol, label, language, timeout, request):
    """Builds a table in a child process (_build_child.py) and returns (table array, result dict
    with "symbol", "language" and what the kind adds).  request holds the kind's own fields
    ("kind": "float" or "integer", ...).  A model that crashes, ends the process or runs past
    timeout seconds is a ModelError; nothing is left behind."""
    import json
    import signal
    import subprocess
    import sys
    import tempfile

    check_timeout(timeout)
    c_file = Path(c_file)
    what = f"{label or symbol or c_file.name} ({c_file})"
    with tempfile.TemporaryDirectory(prefix="approxtrain-build-") as tmp:
        out = Path(tmp)
        request = json.dumps(
            {
                **request,
                "path": str(c_file.resolve()),
                "symbol": symbol,
                "label": label,
                "language": language,
                "out": str(out),
            }
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "approxtrain.multipliers._build_child", request],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise ModelError(
                f"building the table of {what} did not finish within {timeout:g} s: does the model "
                "loop forever for some pair? Nothing was registered (a slow model needs a longer "
                "time limit: timeout=, --timeout on the command line)"
            ) from None
        except BaseException:
            _kill_group(process)
            raise
        code = process.returncode
        # The child answers through exactly one of these files; none means the process ended
        # before answering, which only the model (exit(), or a signal) can do.
        if code == 0 and (out / "result.json").is_file():
            return np.load(out / "table.npy"), json.loads((out / "result.json").read_text())
        if code == CHILD_MODEL_ERROR and (out / "error.txt").is_file():
            raise ModelError((out / "error.txt").read_text(encoding="utf-8"))
        if code < 0:
            name = signal.Signals(-code).name
            raise ModelError(f"the model {what} crashed with {name} while its table was built; nothing was registered")
        if not (out / "internal.txt").is_file():
            raise ModelError(
                f"the model {what} ended the build process (exit status {code}) while its table "
                "was built: a multiplier function must return, not exit; nothing was registered"
            )
        tail = "\n".join(((out / "internal.txt").read_text(encoding="utf-8") + stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"the table builder failed (exit {code}):\n{tail}")
