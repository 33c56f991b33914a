"""Name -> Multiplier: the shipped multipliers and the user's own.

Shipped multipliers are declared by the ``approxtrain:`` comment lines of the
repository's multipliers/*.c.  Their tables are built at package build time
into approxtrain/tables/; when a table is missing or older than its C source
(a source checkout), it is built on first use into
$APPROXTRAIN_HOME/cache/tables/.

User multipliers live in $APPROXTRAIN_HOME/multipliers/ (default
~/.approxtrain): NAME.amlut is the registration, NAME.c (NAME.cpp, NAME.inl,
...) a copy of its model file; Python models and imported tables have no
copy.  Registering needs no rebuild of anything: a table is data.

The store is changed only under an exclusive lock on its file .lock
(fcntl.flock), which covers the check "is the name taken?" and the writes of the
table and its model's copy, so concurrent registrations (several processes)
end with exactly one of them, whole: its table next to its own source (the
table's header holds the source's SHA-256).  A new name is published with a
call that fails if the name exists (table_file.publish_new_bytes).
"""

import contextlib
import fcntl
import os
import re
import warnings
from functools import cache
from pathlib import Path

from . import builder, integer_builder, integer_formats, integer_table_file, python_model, table_file, table_formats
from ._integer import IntegerMultiplier
from ._multiplier import Multiplier
from .compiler import MODEL_SUFFIXES

PACKAGE_TABLES = Path(__file__).resolve().parent.parent / "tables"
SOURCE_DIR = Path(__file__).resolve().parents[2] / "multipliers"  # present in a source checkout
NATIVE = "fp32"
SOURCE_SUFFIXES = MODEL_SUFFIXES  # a user model's copy keeps its file's suffix
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")

_cache = {}  # (table path, mtime_ns, size) -> Multiplier
_resolved = {}  # (home, name) -> table path found by get()
_in_memory = {}  # shipped name -> Multiplier whose table could not be cached on disk
_rejected_packaged = set()  # shipped names whose packaged table is damaged (rebuilt into the cache)


def home():
    """$APPROXTRAIN_HOME, default ~/.approxtrain."""
    return Path(os.environ.get("APPROXTRAIN_HOME") or Path.home() / ".approxtrain").expanduser()


def user_dir():
    return home() / "multipliers"


def cache_dir():
    return home() / "cache" / "tables"


@cache
def _source_specs(source_dir):
    """{name: (ModelSpec, source digest)} declared by the C files of source_dir."""
    specs = {}
    for c_file in sorted(Path(source_dir).glob("*.c")):
        digest = builder.source_digest(c_file)
        for spec in builder.read_specs(c_file):
            if spec.name in specs:
                raise builder.ModelError(
                    f"multiplier {spec.name!r} declared twice: in {specs[spec.name][0].source} and {c_file}"
                )
            specs[spec.name] = (spec, digest)
    return specs


def shipped_specs():
    return _source_specs(str(SOURCE_DIR)) if SOURCE_DIR.is_dir() else {}


def shipped_names():
    names = set(shipped_specs())
    if PACKAGE_TABLES.is_dir():
        names.update(p.stem for p in PACKAGE_TABLES.glob("*" + table_file.SUFFIX))
    return sorted(names)


def user_names():
    d = user_dir()
    return sorted(p.stem for p in d.glob("*" + table_file.SUFFIX)) if d.is_dir() else []


def names():
    """Every multiplier name, shipped and user, sorted."""
    return sorted(set(shipped_names()) | set(user_names()))


def _not_a_table(name):
    return ValueError(
        f"{name!r} is not a table: it means the native float32 op (exact, fused); "
        "use it as a layer's multiplier, not with approxtrain.multipliers.get"
    )


class UnknownMultiplierError(ValueError):
    """No multiplier of that name (a ValueError, as every caller of get() and resolve() expects).
    A name whose table exists but cannot be read is a table_file.DamagedTableError instead."""


class AlreadyRegisteredError(ValueError):
    """register() without overwrite of a name that is taken (also when another process took it
    while the table was being built)."""

    def __init__(self, message, name=None, path=None):
        super().__init__(message)
        self.name = name
        self.path = path


def _unknown(name):
    return UnknownMultiplierError(
        f"unknown multiplier {name!r}; available: {', '.join(names())} (and {NATIVE!r} for the native op)"
    )


def _already_registered(name, path):
    return AlreadyRegisteredError(
        f"multiplier {name!r} is already registered ({path}); unregister it first or pass overwrite=True", name, path
    )


@contextlib.contextmanager
def _store_lock():
    """Holds the user store's exclusive lock (blocking): every check-and-write of the store runs in it."""
    d = user_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield d
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _check_file_name(path, header):
    """A table file is named after the multiplier in it: a copy other.amlut of good.amlut is an error."""
    stem = Path(path).stem
    if header.name != stem:
        raise table_file.damaged(
            path,
            f"the file holds the table of multiplier {header.name!r}, not {stem!r} (a copied or renamed "
            f"table file?): rename it back to {header.name}{table_file.SUFFIX}, or register the model "
            f"again as {stem!r}",
        )


def _load(path):
    """The Multiplier stored in a table file (cached while the file is unchanged); a
    DamagedTableError naming the file and the reason if it cannot be used."""
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _cache:
        if integer_table_file.is_integer_file(path):
            header, products = integer_table_file.read_table(path)
            _check_file_name(path, header)
            try:
                _cache[key] = integer_table_file.multiplier_of(header, products)
            except ValueError as e:  # checksum right but products out of range: written wrong
                raise table_file.damaged(path, f"invalid integer table: {e}") from e
        else:
            header, entries = table_file.read_table(path)
            _check_file_name(path, header)
            _cache[key] = Multiplier(
                header.name, header.mantissa_bits, header.operand_rounding, entries, header.description
            )
    return _cache[key]


def _read_header(path):
    """The header of a table file of either kind (TableHeader or IntegerTableHeader)."""
    if integer_table_file.is_integer_file(path):
        return integer_table_file.read_header(path)
    return table_file.read_header(path)


def _fresh(path, digest):
    """True when path is a readable table built from a source with this digest (None: any)."""
    try:
        return path.is_file() and (digest is None or _read_header(path).source_sha256 == digest)
    except table_file.TableFileError:
        return False


def _header(spec, digest):
    if spec.is_integer:
        return integer_table_file.IntegerTableHeader(
            spec.name,
            spec.signed,
            spec.integer_bits,
            spec.symbol,
            spec.description,
            **integer_builder.read_figures(spec.source),
            source_sha256=digest,
        )
    return table_file.TableHeader(
        spec.name, spec.mantissa_bits, spec.operand_rounding, spec.symbol, spec.description, digest
    )


def _write_shipped(path, spec, digest, table):
    writer = integer_table_file.write_table if spec.is_integer else table_file.write_table
    writer(path, _header(spec, digest), table)


def _build_shipped(spec, model=None):
    """The table (float entries or integer products) of a shipped spec, in this process."""
    if spec.is_integer:
        if model is None:
            model = builder.CompiledModel(spec.source, None, integer_builder.INTEGER_SIGNATURE)
        return integer_builder.make_products(model, spec.symbol, spec.signed, spec.integer_bits, spec.name)
    if model is None:
        model = builder.CompiledModel(spec.source)
    return builder.make_table(model, spec.symbol, spec.mantissa_bits, spec.operand_rounding, spec.name)


def build_shipped_tables(source_dir, out_dir):
    """Builds every table declared in source_dir/*.c into out_dir (setup.py's build step)."""
    if not sorted(Path(source_dir).glob("*.c")):
        raise FileNotFoundError(f"no multiplier models (*.c) in {source_dir}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_file = {}  # (file, integer?) -> specs: a file compiles once per kind of signature
    for spec, digest in _source_specs(str(source_dir)).values():
        by_file.setdefault((spec.source, spec.is_integer), []).append((spec, digest))
    written = []
    for (c_file, integer), specs in by_file.items():
        signature = integer_builder.INTEGER_SIGNATURE if integer else builder.FLOAT_SIGNATURE
        model = builder.CompiledModel(c_file, None, signature)
        for spec, digest in specs:
            path = out_dir / (spec.name + table_file.SUFFIX)
            _write_shipped(path, spec, digest, _build_shipped(spec, model))
            written.append(path)
    return written


def _shipped_table_path(name):
    """A fresh table file of a shipped multiplier, building it into the cache dir if needed."""
    spec, digest = shipped_specs().get(name, (None, None))
    packaged = PACKAGE_TABLES / (name + table_file.SUFFIX)
    if name not in _rejected_packaged and _fresh(packaged, digest):
        return packaged, None
    cached = cache_dir() / (name + table_file.SUFFIX)
    if spec is None:  # an installed package: no source to rebuild from, so say what is wrong with the table
        if packaged.is_file():
            return packaged, None  # _load names the damage
        raise _unknown(name)
    if _fresh(cached, digest):
        return cached, None
    table = _build_shipped(spec)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _write_shipped(cached, spec, digest, table)
    except OSError as e:
        warnings.warn(
            f"cannot cache the table of {name!r} in {cached.parent} ({e}); keeping it in memory", stacklevel=2
        )
        if spec.is_integer:
            _in_memory[name] = integer_table_file.multiplier_of(_header(spec, digest), table)
        else:
            _in_memory[name] = Multiplier(name, spec.mantissa_bits, spec.operand_rounding, table, spec.description)
        return None, _in_memory[name]
    return cached, None


def get(name):
    """The Multiplier (or IntegerMultiplier) called name, shipped or user; ValueError naming the
    choices if unknown."""
    if isinstance(name, (Multiplier, IntegerMultiplier)):
        return name
    if not isinstance(name, str):
        raise TypeError(f"multiplier name must be a str, got {type(name).__name__}")
    if name == NATIVE:
        raise _not_a_table(name)
    key = (str(home()), name)
    if key in _resolved:  # fast path: ops look their multiplier up on every call
        try:
            return _load(_resolved[key])
        except (FileNotFoundError, table_file.TableFileError):
            del _resolved[key]  # gone or damaged: resolve it again below
    if name in _in_memory:
        return _in_memory[name]
    if name in shipped_names():
        for _ in range(3):  # a damaged packaged table, then a damaged cache entry, then a fresh build
            path, in_memory = _shipped_table_path(name)
            if path is None:
                return in_memory
            if not (path.parent == cache_dir() or (path.parent == PACKAGE_TABLES and name in shipped_specs())):
                break  # no source to rebuild from: _load below names the damage
            try:
                _load(path)
                break
            except table_file.DamagedTableError:  # a damaged table with its source at hand: build it again
                if path.parent == cache_dir():
                    path.unlink()
                else:
                    _rejected_packaged.add(name)
    else:
        path = user_dir() / (name + table_file.SUFFIX)
        if not (_NAME.match(name) and path.is_file()):
            raise _unknown(name)
    multiplier = _load(path)
    _resolved[key] = path
    return multiplier


def resolve(multiplier):
    """The Multiplier a ``multiplier`` argument stands for, or None for NATIVE (the native float32 op).

    The one reading of every multiplier argument in approxtrain (core, ops, layers, models):
    a registry name, NATIVE, a Multiplier or an IntegerMultiplier.  An integer name gives its
    IntegerMultiplier (callers dispatch on ``.kind``: "float" or "integer").  An unknown name is
    get()'s ValueError, which names the choices; any other type is a TypeError.
    """
    if isinstance(multiplier, (Multiplier, IntegerMultiplier)):
        return multiplier
    if not isinstance(multiplier, str):
        raise TypeError(f"multiplier must be a name, {NATIVE!r} or a Multiplier, got {type(multiplier).__name__}")
    return None if multiplier == NATIVE else get(multiplier)


def _check_new_name(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid multiplier name {name!r}: use 1-64 characters, a lowercase letter first, "
            "then lowercase letters, digits or '_'"
        )
    if name == NATIVE:
        raise ValueError(f"{NATIVE!r} is reserved for the native float32 op")
    if name in shipped_names():
        raise ValueError(f"{name!r} is a shipped multiplier and cannot be replaced; choose another name")


def _source_copies(name):
    """The copies of a user multiplier's model file (NAME.c, NAME.cpp, ...) present in user_dir()."""
    d = user_dir()
    return [d / (name + suffix) for suffix in SOURCE_SUFFIXES if (d / (name + suffix)).is_file()]


def _install(name, header, entries, source=None, overwrite=False):
    """Writes a registration under the store's lock: the model's copy (source = (suffix, bytes))
    first, the table last.

    The .amlut file is the registration: if it cannot be written, the copy is undone, so a
    failure leaves what was there before.  Without overwrite, a name taken meanwhile (by
    another process) is an AlreadyRegisteredError and nothing is written.  Copies of an earlier
    model of the name in another language go once the table is written.
    """
    if isinstance(header, integer_table_file.IntegerTableHeader):
        data = integer_table_file.encode(header, entries)
    else:
        data = table_file.encode(header, entries)
    with _store_lock() as d:
        table_path = d / (name + table_file.SUFFIX)
        if not overwrite and table_path.exists():
            raise _already_registered(name, table_path)
        source_path = d / (name + source[0]) if source else None
        old_source = source_path.read_bytes() if source_path and source_path.exists() else None
        if source_path:
            table_file.atomic_write_bytes(source_path, source[1])
        try:
            if overwrite:
                table_file.atomic_write_bytes(table_path, data)
            else:
                try:
                    table_file.publish_new_bytes(table_path, data)
                except FileExistsError:  # written by a process that ignores the lock
                    raise _already_registered(name, table_path) from None
        except BaseException:
            if source_path and old_source is None:
                source_path.unlink(missing_ok=True)
            elif source_path:
                table_file.atomic_write_bytes(source_path, old_source)
            raise
        for stale in _source_copies(name):
            if stale != source_path:
                stale.unlink(missing_ok=True)
        _resolved.pop((str(home()), name), None)
        return get(name)


def _prepare(name, mantissa_bits, operand_rounding, overwrite):
    _check_new_name(name)
    builder.check_mantissa_bits(mantissa_bits)
    builder.check_rounding(operand_rounding)
    _prepare_name(name, overwrite)


def _prepare_integer(name, integer_bits, signed, mantissa_bits, operand_rounding, overwrite):
    """The checks of an integer registration before any build; returns (bits, signed)."""
    _check_new_name(name)
    if mantissa_bits is not None:
        raise ValueError("mantissa_bits applies to float multipliers; an integer multiplier takes integer_bits=")
    if operand_rounding != "truncate":
        raise ValueError("operand_rounding applies to float multipliers; an integer multiplier takes integer_bits=")
    bits = integer_builder.check_integer_bits(integer_bits)
    signed = integer_builder.check_signed(signed)
    _prepare_name(name, overwrite)
    return bits, signed


def _prepare_name(name, overwrite):
    _resolved.pop((str(home()), name), None)
    table_path = user_dir() / (name + table_file.SUFFIX)
    if table_path.exists() and not overwrite:  # early, before a build; _install checks again under the lock
        raise _already_registered(name, table_path)


def _is_python_model(model):
    return callable(model) and not isinstance(model, (str, bytes, os.PathLike))


def register(
    name,
    model,
    *,
    mantissa_bits=None,
    operand_rounding="truncate",
    symbol=None,
    language=None,
    description="",
    overwrite=False,
    timeout=None,
    integer_bits=None,
    signed=None,
):
    """Builds the table of a multiplier model and registers it as name.

    A float multiplier takes mantissa_bits (and operand_rounding); an 8-bit integer circuit takes
    integer_bits=8 and signed=True|False instead (integer_builder.py: the C signatures accepted,
    ``int16_t f(int8_t, int8_t)``, ``uint16_t f(uint8_t, uint8_t)``, ``uint64_t f(uint64_t,
    uint64_t)``, or a Python fn(a, b) on int64 operand values; the PDK45_PWR/AREA/DELAY figures
    of an EvoApproxLib-style header comment are kept with it).

    model is either
    - a C or C++ file (.c .h .inl .cc .cpp .cxx .hpp) with a function ``float f(float a, float b)``:
      symbol names it (a C identifier or a qualified C++ name, ``ns::mbm<7>``); without symbol, the
      file's only such function, or the one called name.  language (``"c"``, ``"c++"``) overrides
      the choice by suffix (.c is C, .cc .cpp .cxx .hpp are C++, others are tried as C, then C++).
      The table is built in a child process: a model that crashes, ends the process, or runs
      longer than timeout seconds (default builder.default_build_timeout(mantissa_bits):
      60 s + 120 s per million table entries), is a ModelError;
    - a Python callable ``fn(a, b)`` on float32 arrays returning float32 products (python_model.py).

    The table (and a copy of a model file) go to $APPROXTRAIN_HOME/multipliers/; on any error
    nothing is left there.
    """
    if integer_bits is not None or signed is not None:
        return _register_integer(
            name,
            model,
            integer_bits,
            signed,
            mantissa_bits,
            operand_rounding,
            symbol,
            language,
            description,
            overwrite,
            timeout,
        )
    if mantissa_bits is None:
        raise TypeError(
            "register() needs mantissa_bits= (a float multiplier) or integer_bits= and signed= (an integer one)"
        )
    _prepare(name, mantissa_bits, operand_rounding, overwrite)
    if _is_python_model(model):
        if symbol is not None or language is not None or timeout is not None:
            raise ValueError("symbol, language and timeout apply to C and C++ model files, not to a Python model")
        entries = python_model.table_from_function(model, mantissa_bits, name)
        header = table_file.TableHeader(
            name, int(mantissa_bits), operand_rounding, python_model.model_name(model), description
        )
        return _install(name, header, entries, overwrite=overwrite)
    builder.check_language(language)
    if symbol is not None:
        builder.check_symbol(symbol)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    source = path.read_bytes()
    built = builder.build_table_isolated(
        path, symbol, mantissa_bits, operand_rounding, name, timeout=timeout, language=language
    )
    header = table_file.TableHeader(
        name, int(mantissa_bits), operand_rounding, built.symbol, description, builder.source_digest(path)
    )
    suffix = path.suffix if path.suffix in SOURCE_SUFFIXES else (".c" if built.language == "c" else ".cpp")
    return _install(name, header, built.entries, (suffix, source), overwrite=overwrite)


def _register_integer(
    name,
    model,
    integer_bits,
    signed,
    mantissa_bits,
    operand_rounding,
    symbol,
    language,
    description,
    overwrite,
    timeout,
):
    bits, signed = _prepare_integer(name, integer_bits, signed, mantissa_bits, operand_rounding, overwrite)
    if _is_python_model(model):
        if symbol is not None or language is not None or timeout is not None:
            raise ValueError("symbol, language and timeout apply to C and C++ model files, not to a Python model")
        products = integer_builder.products_from_function(model, signed, f"multiplier {name}")
        header = integer_table_file.IntegerTableHeader(name, signed, bits, python_model.model_name(model), description)
        return _install(name, header, products, overwrite=overwrite)
    builder.check_language(language)
    if symbol is not None:
        builder.check_symbol(symbol)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    source = path.read_bytes()
    figures = integer_builder.read_figures(path)
    products, built_symbol, built_language, _ = integer_builder.build_products_isolated(
        path, symbol, signed, bits, name, timeout=timeout, language=language
    )
    header = integer_table_file.IntegerTableHeader(
        name,
        signed,
        bits,
        built_symbol,
        description,
        **figures,
        source_sha256=builder.source_digest(path),
    )
    suffix = path.suffix if path.suffix in SOURCE_SUFFIXES else (".c" if built_language == "c" else ".cpp")
    return _install(name, header, products, (suffix, source), overwrite=overwrite)


def register_table(
    name,
    path,
    *,
    mantissa_bits=None,
    format=None,
    operand_rounding="truncate",
    description="",
    overwrite=False,
    integer_bits=None,
    signed=None,
):
    """Imports a table file and registers it as name (table_formats.py describes the formats).

    format is ``"approxtrain"`` (ApproxTrain's .bin tables, uint8 or uint32 entries) or ``"npy"``
    (approxtrain's uint16 entries); None tells them by suffix (.bin, .npy).  operand_rounding is how
    approxtrain reduces operands before the lookup (ApproxTrain truncates).

    With integer_bits=8 and signed=True|False the file is an integer multiplier's products
    (integer_formats.py): ``"tfapprox"`` (TFApprox's .bin multiplication maps) or ``"npy"``.
    """
    if integer_bits is not None or signed is not None:
        bits, signed = _prepare_integer(name, integer_bits, signed, mantissa_bits, operand_rounding, overwrite)
        path = Path(path)
        format = integer_formats.table_format(path, format)
        products = integer_formats.read_products(path, format, signed)
        header = integer_table_file.IntegerTableHeader(
            name,
            signed,
            bits,
            f"{format}:{path.name}",
            description or f"imported from {path.name} ({format} format)",
            source_sha256=builder.source_digest(path),
        )
        return _install(name, header, products, overwrite=overwrite)
    if mantissa_bits is None:
        raise TypeError(
            "register_table() needs mantissa_bits= (a float table) or integer_bits= and signed= (an integer one)"
        )
    _prepare(name, mantissa_bits, operand_rounding, overwrite)
    path = Path(path)
    format = table_formats.table_format(path, format)
    entries = table_formats.read_entries(path, format, int(mantissa_bits))
    header = table_file.TableHeader(
        name,
        int(mantissa_bits),
        operand_rounding,
        f"{format}:{path.name}",
        description or f"imported from {path.name} ({format} format)",
        builder.source_digest(path),
    )
    return _install(name, header, entries, overwrite=overwrite)


def export_table(name, path, format=None):
    """Writes the table of multiplier name to path in another format (atomically); returns the path.

    format: ``"approxtrain"`` (ApproxTrain's uint8 .bin: only tables of M <= 7 whose products have
    M fraction bits fit it) or ``"npy"``; None tells them by the path's suffix (.bin, .npy).
    An integer multiplier's formats are ``"tfapprox"`` (.bin) and ``"npy"`` (integer_formats.py).
    """
    path = Path(path)
    m = get(name)
    if m.kind == "integer":
        data = integer_formats.export_bytes(m.products, integer_formats.table_format(path, format))
    else:
        format = table_formats.table_format(path, format)
        data = table_formats.export_bytes(m.lut, m.mantissa_bits, format, m.name)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {path.parent} does not exist")
    table_file.atomic_write_bytes(path, data)
    return path


def unregister(name):
    """Removes a user multiplier (its table and the copy of its model file)."""
    if name in shipped_names():
        raise ValueError(f"{name!r} is a shipped multiplier; only user multipliers can be unregistered")
    table_path = user_dir() / (name + table_file.SUFFIX) if isinstance(name, str) else None
    if table_path is None or not _NAME.match(name) or not table_path.is_file():
        raise ValueError(f"no user multiplier {name!r}; user multipliers: {', '.join(user_names()) or 'none'}")
    with _store_lock():
        _resolved.pop((str(home()), name), None)
        table_path.unlink(missing_ok=True)
        for source in _source_copies(name):
            source.unlink(missing_ok=True)


def describe(name):
    """A dict describing a multiplier without building anything (for listings); a damaged table
    is its DamagedTableError (the whole table is checked: length, checksum, name).

    Keys: name, type ("float" or "integer", the multiplier's .kind), kind ("shipped" or "user"),
    description, source, table; a float one adds mantissa_bits and operand_rounding, an integer
    one bits, signed, power_mw, area_um2 and delay_ns.
    """
    if name == NATIVE:
        raise _not_a_table(name)
    spec = shipped_specs().get(name)
    if spec is not None:
        spec = spec[0]
        packaged = PACKAGE_TABLES / (name + table_file.SUFFIX)
        row = {
            "name": name,
            "type": "integer" if spec.is_integer else "float",
            "description": spec.description,
            "kind": "shipped",
            "source": str(spec.source),
            "table": str(packaged) if packaged.is_file() else None,
        }
        if spec.is_integer:
            return {
                **row,
                "bits": spec.integer_bits,
                "signed": spec.signed,
                **integer_builder.read_figures(spec.source),
            }
        return {**row, "mantissa_bits": spec.mantissa_bits, "operand_rounding": spec.operand_rounding}
    if name in shipped_names():
        path, kind, source = PACKAGE_TABLES / (name + table_file.SUFFIX), "shipped", None
    elif name in user_names():
        path, kind = user_dir() / (name + table_file.SUFFIX), "user"
        sources = _source_copies(name)
        source = str(sources[0]) if sources else None
    else:
        raise _unknown(name)
    m = _load(path)
    row = {
        "name": name,
        "type": m.kind,
        "description": m.description,
        "kind": kind,
        "source": source,
        "table": str(path),
    }
    if m.kind == "integer":
        figures = {"power_mw": m.power_mw, "area_um2": m.area_um2, "delay_ns": m.delay_ns}
        return {**row, "bits": m.bits, "signed": m.signed, **figures}
    return {**row, "mantissa_bits": m.mantissa_bits, "operand_rounding": m.operand_rounding}
