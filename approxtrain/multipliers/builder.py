"""Turns a C multiplier model into a table (docs/design.md, "Multipliers and tables").

A model is ``float NAME(float a, float b)`` in a C file.  The builder
compiles it with the system C compiler ($CC, default ``cc``) into a shared
library, calls it for every pair a = 1.ia, b = 1.ib (exponent 0, ia and ib on
the top M fraction bits) through a small compiled driver (one call fills the
whole table), checks the results, and converts them to entries:
bit 15 = carry (r >= 2), bits 14..0 = the top 15 fraction bits of r.

A C file may describe its multipliers in comment lines the builder reads::

    approxtrain: name=mbm7 symbol=mbm7 mantissa_bits=7 rounding=truncate description="..."
"""
import ctypes
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._multiplier import ROUNDINGS

COMPILE_FLAGS = ("-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SPEC_LINE = re.compile(r"approxtrain:\s*(.*?)\s*(\*/)?\s*$")
_SPEC_KEYS = {"name", "symbol", "mantissa_bits", "rounding", "description"}
# (p, q) exponent shifts under which a model must satisfy f(2^p a, 2^q b) = 2^(p+q) f(a, b).
EXPONENT_SHIFTS = ((1, 0), (0, 1), (-1, 3), (5, -7), (-20, 17), (40, 30), (-45, -30))
_EXPONENT_SAMPLE = 256

_DRIVER_SOURCE = r"""
#include <stdint.h>
typedef float (*approxtrain_model)(float, float);
void approxtrain_evaluate(approxtrain_model f, const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
}
"""


class ModelError(ValueError):
    """A C model that cannot be turned into a table (does not compile, wrong results, ...)."""


@dataclass(frozen=True)
class ModelSpec:
    """One multiplier declared in a C file's header comment."""

    name: str
    symbol: str
    mantissa_bits: int
    operand_rounding: str
    description: str
    source: Path


def check_mantissa_bits(mantissa_bits):
    if isinstance(mantissa_bits, bool) or not isinstance(mantissa_bits, (int, np.integer)) \
            or not 1 <= mantissa_bits <= 11:
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
        for key in ("name", "mantissa_bits", "rounding"):
            if key not in fields:
                raise ModelError(f"{where}: the approxtrain line needs {key}=")
        try:
            m = check_mantissa_bits(int(fields["mantissa_bits"]))
            rounding = check_rounding(fields["rounding"])
        except ValueError as e:
            raise ModelError(f"{where}: {e}") from e
        specs.append(ModelSpec(fields["name"], fields.get("symbol", fields["name"]), m, rounding,
                               fields.get("description", ""), c_file))
    return specs


def source_digest(c_file):
    """SHA-256 of a C file's bytes (stored in tables to spot stale ones)."""
    return hashlib.sha256(Path(c_file).read_bytes()).digest()


def _compiler():
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler found (tried {cc!r}); install one or point $CC at it "
                           "to build multiplier tables")
    return cc


def _compile(sources, out_dir, what):
    """Compiles C sources into a uniquely named shared library in out_dir and loads it."""
    lib_path = Path(out_dir) / f"lib{uuid.uuid4().hex}.so"
    cmd = [_compiler(), *COMPILE_FLAGS, "-o", str(lib_path), *map(str, sources), "-lm"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelError(f"{what} does not compile ({' '.join(cmd)}):\n{result.stderr.strip()}")
    return ctypes.CDLL(str(lib_path))


_driver = None


def _evaluate_all():
    """The compiled driver's approxtrain_evaluate (compiled once per process)."""
    global _driver
    if _driver is None:
        with tempfile.TemporaryDirectory(prefix="approxtrain-driver-") as tmp:
            src = Path(tmp) / "driver.c"
            src.write_text(_DRIVER_SOURCE)
            lib = _compile([src], tmp, "the table builder's driver")
        fn = lib.approxtrain_evaluate
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64]
        _driver = (lib, fn)
    return _driver[1]


class CompiledModel:
    """A C model file compiled and loaded; evaluates its functions on numpy arrays."""

    def __init__(self, c_file):
        self.source = Path(c_file)
        if not self.source.is_file():
            raise FileNotFoundError(f"C model file not found: {self.source}")
        # The library stays mapped after its temporary directory is removed.
        with tempfile.TemporaryDirectory(prefix="approxtrain-model-") as tmp:
            self._lib = _compile([self.source.resolve()], tmp, f"C model {self.source}")

    def function(self, symbol):
        """The address of ``float symbol(float, float)``; ModelError if the file has no such function."""
        if not isinstance(symbol, str) or not _IDENTIFIER.match(symbol):
            raise ValueError(f"symbol must be a C identifier, got {symbol!r}")
        try:
            fn = getattr(self._lib, symbol)
        except AttributeError:
            found = re.findall(r"\bfloat\s+([A-Za-z_]\w*)\s*\(\s*float\b",
                               self.source.read_text(encoding="utf-8", errors="replace"))
            hint = f"; functions taking floats in the file: {', '.join(found)}" if found else ""
            raise ModelError(f"C model {self.source} has no function {symbol!r} (expected a non-static "
                             f"'float {symbol}(float a, float b)'){hint}") from None
        return ctypes.cast(fn, ctypes.c_void_p).value

    def evaluate(self, symbol, a, b):
        """symbol(a[i], b[i]) for float32 arrays of equal shape, as float32."""
        address = self.function(symbol)
        a = np.ascontiguousarray(a, dtype=np.float32)
        b = np.ascontiguousarray(b, dtype=np.float32)
        if a.shape != b.shape:
            raise ValueError(f"evaluate: shapes differ: {a.shape} vs {b.shape}")
        out = np.empty_like(a)
        _evaluate_all()(address, a.ctypes.data, b.ctypes.data, out.ctypes.data, a.size)
        return out


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
        raise ModelError(f"{label}: {_pair_text(a[k], b[k], m)} = {float(r[k])!r}; every table result must be "
                         f"finite and in [1, 4) ({int(bad.sum())} of {r.size} pairs are not)")


def _check_exponent_and_sign(label, model, symbol, a, b, r, m):
    """f(2^p a, 2^q b) == 2^(p+q) f(a, b) and f(-a, b) == -f(a, b) on a sample of pairs."""
    n = a.size
    corners = [0, n - 1, (1 << m) - 1, n - (1 << m)]
    rng = np.random.default_rng(0)
    pick = np.unique(np.concatenate([corners, rng.integers(0, n, min(n, _EXPONENT_SAMPLE))]))
    a, b, r = a[pick], b[pick], r[pick]
    for p, q in EXPONENT_SHIFTS:
        got = model.evaluate(symbol, np.ldexp(a, p), np.ldexp(b, q))
        want = np.ldexp(r, p + q).astype(np.float32)
        bad = got.view(np.uint32) != want.view(np.uint32)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ModelError(
                f"{label} depends on the exponent: for {_pair_text(a[k], b[k], m)} = {float(r[k])!r}, "
                f"f(2^{p} a, 2^{q} b) = {float(got[k])!r} but 2^{p + q} f(a, b) = {float(want[k])!r}; "
                "a table can only hold a function of the two fractions (sign and exponent must be exact)")
    for sa, sb in ((-1, 1), (1, -1), (-1, -1)):
        got = model.evaluate(symbol, sa * a, sb * b)
        want = (sa * sb * r).astype(np.float32)
        bad = got.view(np.uint32) != want.view(np.uint32)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ModelError(
                f"{label} mishandles signs: f({sa * float(a[k])!r}, {sb * float(b[k])!r}) = {float(got[k])!r}, "
                f"expected {float(want[k])!r} (the sign of a product is the xor of the operand signs)")


def entries_from_products(r):
    """Table entries of significand products r in [1, 4): carry << 15 | top 15 fraction bits."""
    bits = np.asarray(r, np.float32).view(np.uint32)
    carry = (bits >> np.uint32(23)) - np.uint32(127)  # exponent 0 -> 0, 1 -> 1
    return ((carry << np.uint32(15)) | ((bits & np.uint32(0x7FFFFF)) >> np.uint32(8))).astype(np.uint16)


def make_table(model, symbol, mantissa_bits, operand_rounding, label=None):
    """The uint16 table of ``symbol`` in a CompiledModel, after every check of docs/design.md ("Multipliers and tables")."""
    m = check_mantissa_bits(mantissa_bits)
    check_rounding(operand_rounding)
    label = f"multiplier {label or symbol} ({model.source}:{symbol})"
    model.function(symbol)
    ops = table_operands(m)
    a = np.repeat(ops, ops.size)  # ia = index >> M: the table row is the left operand
    b = np.tile(ops, ops.size)
    r = model.evaluate(symbol, a, b)
    _check_range(label, a, b, r, m)
    _check_exponent_and_sign(label, model, symbol, a, b, r, m)
    return entries_from_products(r)


def build_table(c_file, symbol, mantissa_bits, operand_rounding="truncate", label=None):
    """Compiles c_file and returns the table of its function ``symbol``."""
    check_mantissa_bits(mantissa_bits)
    check_rounding(operand_rounding)
    return make_table(CompiledModel(c_file), symbol, mantissa_bits, operand_rounding, label)


# --- building in a child process -------------------------------------------------------------
# A user's model runs inside whatever process calls it: a crash (a stray pointer, a
# division by zero trap) or an endless loop would take the caller with it.  register()
# therefore builds user tables in a child Python process and turns its death into an error.
_CHILD_MODEL_ERROR = 3
BUILD_TIMEOUT_S = 600


def build_table_isolated(c_file, symbol, mantissa_bits, operand_rounding="truncate", label=None, timeout=None):
    """build_table() in a child process: same result and errors, and a model that crashes
    or hangs is a ModelError instead of the end of the caller."""
    import json
    import signal
    import sys

    check_mantissa_bits(mantissa_bits)
    check_rounding(operand_rounding)
    timeout = BUILD_TIMEOUT_S if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="approxtrain-build-") as tmp:
        out = Path(tmp) / "table.npy"
        request = json.dumps([str(Path(c_file).resolve()), symbol, int(mantissa_bits), operand_rounding,
                              label, str(out)])
        try:
            result = subprocess.run([sys.executable, "-m", "approxtrain.multipliers.builder", request],
                                    capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ModelError(f"building the table of {label or symbol} ({c_file}) did not finish within "
                             f"{timeout} s: does the model loop forever for some pair?") from None
        if result.returncode == 0:
            return np.load(out)
        message = result.stderr.strip().splitlines()
        if result.returncode == _CHILD_MODEL_ERROR:
            raise ModelError("\n".join(message))
        if result.returncode < 0:
            name = signal.Signals(-result.returncode).name
            raise ModelError(f"the C model {c_file} ({symbol}) crashed with {name} while the table was built")
        raise RuntimeError(f"the table builder failed (exit {result.returncode}):\n" + "\n".join(message[-20:]))


def _child_main(request):
    import json
    import sys

    c_file, symbol, m, rounding, label, out = json.loads(request)
    try:
        entries = build_table(c_file, symbol, m, rounding, label)
    except (ModelError, ValueError, FileNotFoundError) as e:
        print(str(e), file=sys.stderr)
        sys.exit(_CHILD_MODEL_ERROR)
    np.save(out, entries)


if __name__ == "__main__":
    import sys

    _child_main(sys.argv[1])
