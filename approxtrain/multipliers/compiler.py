"""Compiles a C or C++ multiplier model into a library the table builder can call.

A model is written the way people write them: a `.c`, `.h` or `.inl` file of
C, or a `.cc`, `.cpp`, `.cxx`, `.hpp` (or `.inl`) file of C++, with or without
its own #includes, with static helpers, namespaces, templates and overloads,
and no ``extern "C"``.  The user's file is never compiled on its own: it is
#included by a generated wrapper translation unit that

- puts the standard headers in front of it (STANDARD_HEADERS), so files
  written to be #included somewhere else (ApproxTrain's .inl models) compile
  unchanged;
- ends with one small trampoline per model function, with C linkage,
  ``float approxtrain_entry_<i>(float a, float b)``, that calls the user's
  function; in C++ an overload set or a function template is resolved to its
  ``float(float, float)`` member by the conversion to a function pointer.

Which functions are models is found by compiling the wrapper once to an
object file and listing its defined functions (``nm -C``); the trampoline
library then tells, per candidate, whether its type is ``float(float, float)``
(``__builtin_types_compatible_p`` in C, overload resolution in C++).
"""

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import numpy as np


class ModelError(ValueError):
    """A model that cannot be turned into a table (does not compile, wrong results, ...)."""


LANGUAGES = ("c", "c++")
LANGUAGE_NAMES = {"c": "C", "c++": "C++"}
# Suffixes whose language is certain; any other file is tried as C, then as C++.
C_SUFFIXES = (".c",)
CXX_SUFFIXES = (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx")
MODEL_SUFFIXES = (".c", ".h", ".inl") + CXX_SUFFIXES
STANDARD_HEADERS = {
    "c": ("stdint.h", "stdbool.h", "math.h", "string.h", "stdlib.h"),
    "c++": ("cstdint", "cmath", "cstring", "cstdlib", "algorithm", "bitset"),
}
# -fno-strict-aliasing: models often read a float's bits through a pointer cast.
COMPILE_FLAGS = ("-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-fno-strict-aliasing")
PROBE_FLAGS = ("-O0", "-c", "-fPIC")  # -O0 keeps unused static functions in the object file
MAX_ERROR_LINES = 40
_COMPILER_ENV = {"LC_ALL": "C"}  # plain ASCII quotes in diagnostics

# A C identifier, or a qualified C++ name with template arguments (ns::mbm<7>).
_C_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CXX_NAME = re.compile(r"(::)?[A-Za-z_]\w*(<[^;{}\"'\\#\n]*>)?(::[A-Za-z_]\w*(<[^;{}\"'\\#\n]*>)?)*\Z")
_ANONYMOUS = "(anonymous namespace)::"
_MODEL_SIGNATURE = "(float, float)"
_LIBRARY_PREFIXES = ("std::", "__gnu_cxx::", "__cxxabiv1::", "__", "approxtrain_")


def check_symbol(symbol):
    """A function name a wrapper may spell: a C identifier or a qualified C++ name."""
    if not isinstance(symbol, str) or not (_C_NAME.match(symbol) or _CXX_NAME.match(symbol)):
        raise ValueError(f"symbol must be a C identifier or a qualified C++ name (ns::f, ns::f<7>), got {symbol!r}")
    return symbol


def check_language(language):
    if language is not None and language not in LANGUAGES:
        raise ValueError(
            f"language must be one of {', '.join(LANGUAGES)} (or None to try C, then C++), got {language!r}"
        )
    return language


def languages_to_try(path, language=None):
    """The languages a model file is compiled as, in order."""
    if check_language(language) is not None:
        return (language,)
    suffix = Path(path).suffix.lower()
    if suffix in CXX_SUFFIXES or Path(path).suffix == ".C":
        return ("c++",)
    if suffix in C_SUFFIXES:
        return ("c",)
    return ("c", "c++")


def _compiler(language):
    variable, default = ("CC", "cc") if language == "c" else ("CXX", "c++")
    compiler = os.environ.get(variable, default)
    if shutil.which(compiler) is None:
        raise RuntimeError(
            f"no {LANGUAGE_NAMES[language]} compiler found (tried {compiler!r}); install one or "
            f"point ${variable} at it to build multiplier tables"
        )
    return compiler


def _include_line(path):
    text = str(path)
    if "\n" in text or "\r" in text:
        raise ValueError(f"a model file's path cannot contain a line break: {text!r}")
    return '#include "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrapper_source(path, language, symbols=()):
    """The wrapper translation unit: standard headers, the user's file, one trampoline per symbol."""
    lines = [f"#include <{header}>" for header in STANDARD_HEADERS[language]]
    lines.append(_include_line(Path(path).resolve()))
    if not symbols:
        return "\n".join(lines) + "\n"
    if language == "c":
        lines.append(
            "#define APPROXTRAIN_IS_MODEL(f) __builtin_types_compatible_p(__typeof__(&(f)), float (*)(float, float))"
        )
        lines += [
            f"float approxtrain_entry_{i}(float a, float b) {{ return ((float (*)(float, float))&({s}))(a, b); }}"
            for i, s in enumerate(symbols)
        ]
        lines.append("void approxtrain_model_flags(int* out) {")
        lines += [f"  out[{i}] = APPROXTRAIN_IS_MODEL({s});" for i, s in enumerate(symbols)]
    else:
        # The non-template overloads win whenever &f converts to float (*)(float, float): that selects
        # the float(float, float) member of an overload set or instantiates a template; anything else
        # (another return type, a member function) falls to the templates and is flagged as not a model.
        lines += [
            "template <class F> static bool approxtrain_is_model(F) { return false; }",
            "static bool approxtrain_is_model(float (*)(float, float)) { return true; }",
            "template <class F> static float approxtrain_call(F, float, float) { return 0.0f; }",
            "static float approxtrain_call(float (*f)(float, float), float a, float b) { return f(a, b); }",
        ]
        lines += [
            f'extern "C" float approxtrain_entry_{i}(float a, float b) {{ return approxtrain_call(&{s}, a, b); }}'
            for i, s in enumerate(symbols)
        ]
        lines.append('extern "C" void approxtrain_model_flags(int* out) {')
        lines += [f"  out[{i}] = approxtrain_is_model(&{s});" for i, s in enumerate(symbols)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _trim(stderr, wrapper):
    """The compiler's diagnostics without the lines about approxtrain's wrapper, at most MAX_ERROR_LINES."""
    lines = [
        line
        for line in stderr.strip().splitlines()
        if not (line.lstrip().startswith(("In file included from", "from ")) and str(wrapper) in line)
    ]
    if len(lines) > MAX_ERROR_LINES:
        lines = lines[:MAX_ERROR_LINES] + [f"... ({len(lines) - MAX_ERROR_LINES} more lines)"]
    return "\n".join(lines)


class CompileFailure(Exception):
    """The compiler rejected a wrapper; .diagnostics holds its trimmed messages."""

    def __init__(self, compiler, language, diagnostics):
        super().__init__(diagnostics)
        self.compiler, self.language, self.diagnostics = compiler, language, diagnostics


def _run_compiler(path, language, symbols, out_dir, flags, output):
    compiler = _compiler(language)
    wrapper = Path(out_dir) / f"approxtrain_wrapper_{uuid.uuid4().hex[:8]}.{'c' if language == 'c' else 'cc'}"
    wrapper.write_text(wrapper_source(path, language, symbols))
    cmd = [compiler, "-x", language, "-fdiagnostics-color=never", *flags, "-o", str(output), str(wrapper)]
    if "-shared" in flags:
        cmd.append("-lm")
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **_COMPILER_ENV})
    if result.returncode != 0:
        raise CompileFailure(compiler, language, _trim(result.stderr, wrapper))


def _defined_functions(obj):
    """Demangled names of the functions an object file defines (nm -C)."""
    nm = os.environ.get("NM", "nm")
    if shutil.which(nm) is None:
        raise RuntimeError(
            f"'{nm}' (binutils) is needed to find the functions of a model; install binutils or point $NM at it"
        )
    result = subprocess.run(
        [nm, "--defined-only", "-C", str(obj)], capture_output=True, text=True, env={**os.environ, **_COMPILER_ENV}
    )
    if result.returncode != 0:
        raise RuntimeError(f"{nm} failed on {obj}: {result.stderr.strip()}")
    names = []
    for line in result.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] in "TtWwi":
            names.append(parts[2])
    return names


def _split_return_type(signature):
    """('float', 'ns::mbm<7>') from 'float ns::mbm<7>' (templates carry their return type), ('', 'f') from 'f'."""
    depth = 0
    for i in range(len(signature) - 1, -1, -1):
        c = signature[i]
        if c == ">":
            depth += 1
        elif c == "<":
            depth -= 1
        elif c == " " and depth == 0:
            return signature[:i].strip(), signature[i + 1 :]
    return "", signature


def model_candidates(functions, language):
    """The names, in order, of the defined functions that may be ``float f(float, float)``."""
    found = []
    for name in functions:
        if language == "c++":
            if not name.endswith(_MODEL_SIGNATURE):
                continue
            returns, name = _split_return_type(name[: -len(_MODEL_SIGNATURE)].replace(_ANONYMOUS, ""))
            if returns not in ("", "float") or not _CXX_NAME.match(name):
                continue  # another return type, a lambda, a local class, an operator...
        elif not _C_NAME.match(name):
            continue
        if name.startswith(_LIBRARY_PREFIXES) or name == "main" or name in found:
            continue
        found.append(name)
    return found


class CompiledModel:
    """A C or C++ model file compiled and loaded; evaluates its model functions on numpy arrays.

    Args:
        path: the model file.
        language: ``"c"``, ``"c++"`` or None (by suffix: .c is C, .cc/.cpp/.cxx/.hpp are C++,
            anything else, .h and .inl included, is tried as C, then as C++).
    """

    def __init__(self, path, language=None):
        self.source = Path(path)
        if not self.source.is_file():
            raise FileNotFoundError(f"model file not found: {self.source}")
        self._tmp = tempfile.TemporaryDirectory(prefix="approxtrain-model-")
        self._libraries = []  # keep every loaded library alive
        self._entries = {}  # symbol -> (address, is float(float, float))
        failures = []
        for lang in languages_to_try(self.source, language):
            try:
                obj = Path(self._tmp.name) / f"probe_{lang.replace('+', 'x')}.o"
                _run_compiler(self.source, lang, (), self._tmp.name, PROBE_FLAGS, obj)
            except CompileFailure as e:
                failures.append(e)
                continue
            self.language = lang
            self.candidates = model_candidates(_defined_functions(obj), lang)
            break
        else:
            raise self._compile_error(failures)
        self._models = None

    def _compile_error(self, failures):
        tried = " or ".join(LANGUAGE_NAMES[f.language] for f in failures)
        hint = (
            "" if len(failures) == 1 else " (pass language='c' or 'c++', --language on the command line, to pick one)"
        )
        parts = [f"model {self.source} does not compile as {tried}{hint}:"]
        for f in failures:
            if len(failures) > 1:
                parts.append(f"--- as {LANGUAGE_NAMES[f.language]} ({f.compiler} -x {f.language}):")
            parts.append(f.diagnostics)
        return ModelError("\n".join(parts))

    @property
    def label(self):
        return f"{LANGUAGE_NAMES[self.language]} model {self.source}"

    def _load(self, symbols):
        """Compiles trampolines for symbols; {symbol: (address, is_model)}."""
        lib_path = Path(self._tmp.name) / f"lib{uuid.uuid4().hex}.so"
        _run_compiler(self.source, self.language, symbols, self._tmp.name, COMPILE_FLAGS + ("-w",), lib_path)
        lib = ctypes.CDLL(str(lib_path))
        self._libraries.append(lib)
        flags = (ctypes.c_int * len(symbols))()
        lib.approxtrain_model_flags(flags)
        return {
            s: (ctypes.cast(getattr(lib, f"approxtrain_entry_{i}"), ctypes.c_void_p).value, bool(flags[i]))
            for i, s in enumerate(symbols)
        }

    def models(self):
        """The names of the file's ``float f(float, float)`` functions (qualified C++ names), sorted."""
        if self._models is None:
            entries = {}
            if self.candidates:
                try:
                    entries = self._load(self.candidates)
                except CompileFailure as e:
                    raise ModelError(
                        f"{self.label}: approxtrain cannot call its functions "
                        f"{', '.join(self.candidates)} from a wrapper; pass the symbol "
                        f"(--symbol) of the model:\n{e.diagnostics}"
                    ) from None
            self._entries.update(entries)
            self._models = sorted(s for s in self.candidates if entries[s][1])
        return list(self._models)

    def _describe_models(self):
        found = self.models()
        return (
            f"functions float f(float, float) in the file: {', '.join(found)}"
            if found
            else "the file has no function float f(float, float)"
        )

    def default_symbol(self, preferred=None):
        """The model function when none is named: the only one, or `preferred` if it is one of several."""
        found = self.models()
        if len(found) == 1:
            return found[0]
        if preferred is not None and preferred in found:
            return preferred
        if not found:
            raise ModelError(
                f"{self.label} has no function float f(float a, float b) to build a table from "
                "(a model is 'float NAME(float a, float b)')"
            )
        raise ModelError(
            f"{self.label} has several functions float f(float, float): {', '.join(found)}; "
            "name the model with symbol= (--symbol on the command line)"
        )

    def function(self, symbol):
        """The address of a C-linkage trampoline calling ``float symbol(float, float)``."""
        check_symbol(symbol)
        if symbol not in self._entries:
            # A trampoline of its own: the symbol may be a name nm does not list (a template
            # instantiated by naming it, an unused static inline), and other functions of the
            # file need not be callable from the wrapper.
            try:
                self._entries.update(self._load((symbol,)))
            except CompileFailure:
                raise ModelError(
                    f"{self.label} has no function {symbol!r} (expected "
                    f"'float {symbol}(float a, float b)'); {self._describe_models()}"
                ) from None
        address, is_model = self._entries[symbol]
        if not is_model:
            raise ModelError(
                f"{self.label}: {symbol!r} is not a function float {symbol}(float a, float b); "
                f"{self._describe_models()}"
            )
        return address

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


_DRIVER_SOURCE = r"""
#include <stdint.h>
typedef float (*approxtrain_model)(float, float);
void approxtrain_evaluate(approxtrain_model f, const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
}
"""
_driver = None


def _evaluate_all():
    """The compiled driver's approxtrain_evaluate (compiled once per process)."""
    global _driver
    if _driver is None:
        with tempfile.TemporaryDirectory(prefix="approxtrain-driver-") as tmp:
            src = Path(tmp) / "driver.c"
            src.write_text(_DRIVER_SOURCE)
            lib_path = Path(tmp) / "libdriver.so"
            cmd = [_compiler("c"), *COMPILE_FLAGS, "-o", str(lib_path), str(src)]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(
                    f"the table builder's driver does not compile ({' '.join(cmd)}):\n{result.stderr.strip()}"
                )
            lib = ctypes.CDLL(str(lib_path))  # stays mapped after its directory is removed
        fn = lib.approxtrain_evaluate
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64]
        _driver = (lib, fn)
    return _driver[1]
