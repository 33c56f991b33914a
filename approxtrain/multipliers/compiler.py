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
from dataclasses import dataclass
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
_LIBRARY_PREFIXES = ("std::", "__gnu_cxx::", "__cxxabiv1::", "__", "approxtrain_")


@dataclass(frozen=True)
class Signature:
    """The C types a model function of one kind may have, and how the wrapper calls them.

    Every kind has one trampoline type, ``RETURNS approxtrain_entry_<i>(PARAMETERS)`` (the
    names ``a``, ``b``); each accepted function type (a "style", numbered from 1 in
    ``styles`` order) is called through it as ``CAST f(ARGUMENTS)``.  The flags a library
    reports per function are the style number, 0 for a function of no accepted type.
    """

    returns: str
    parameters: str
    styles: tuple  # ((function pointer type, arguments from a and b, cast of the result), ...)
    nm_arguments: tuple  # the argument lists nm -C prints for the styles: "(float, float)"
    nm_returns: tuple  # the return types nm -C prints before template instances
    found_text: str  # "functions float f(float, float)"
    none_text: str  # "function float f(float, float)"
    needed_text: str  # "function float f(float a, float b)"
    example: str  # "float {symbol}(float a, float b)"

    def pointer_types(self):
        return tuple(style[0] for style in self.styles)


FLOAT_SIGNATURE = Signature(
    returns="float",
    parameters="float a, float b",
    styles=(("float (*)(float, float)", "a, b", ""),),
    nm_arguments=("(float, float)",),
    nm_returns=("", "float"),
    found_text="functions float f(float, float)",
    none_text="function float f(float, float)",
    needed_text="function float f(float a, float b)",
    example="float {symbol}(float a, float b)",
)


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


def wrapper_source(path, language, symbols=(), signature=FLOAT_SIGNATURE):
    """The wrapper translation unit: standard headers, the user's file, one trampoline per symbol."""
    lines = [f"#include <{header}>" for header in STANDARD_HEADERS[language]]
    lines.append(_include_line(Path(path).resolve()))
    if not symbols:
        return "\n".join(lines) + "\n"
    returns, parameters = signature.returns, signature.parameters
    if language == "c":
        # __builtin_types_compatible_p is a constant: every branch compiles, the matching one runs.
        def style_of(s):
            tests = [
                f"__builtin_types_compatible_p(__typeof__(&({s})), {pointer}) ? {k} : "
                for k, pointer in enumerate(signature.pointer_types(), 1)
            ]
            return "(" + "".join(tests) + "0)"

        for i, s in enumerate(symbols):
            lines.append(f"{returns} approxtrain_entry_{i}({parameters}) {{")
            lines += [
                f"  if (__builtin_types_compatible_p(__typeof__(&({s})), {pointer})) "
                f"return {cast}(({pointer})&({s}))({arguments});"
                for pointer, arguments, cast in signature.styles
            ]
            lines.append("  return 0;\n}")
        lines.append("void approxtrain_model_flags(int* out) {")
        lines += [f"  out[{i}] = {style_of(s)};" for i, s in enumerate(symbols)]
    else:
        # The non-template overloads win whenever &f converts to one of the accepted pointer types:
        # that selects the matching member of an overload set or instantiates a template; anything
        # else (another type, a member function) falls to the templates and is flagged as not a model.
        lines += [
            "template <class F> static int approxtrain_is_model(F) { return 0; }",
            f"template <class F> static {returns} approxtrain_call(F, {parameters}) {{ return 0; }}",
        ]
        for k, (pointer, arguments, cast) in enumerate(signature.styles, 1):
            declarator = pointer.replace("(*)", "(*f)", 1)
            lines += [
                f"static int approxtrain_is_model({pointer}) {{ return {k}; }}",
                f"static {returns} approxtrain_call({declarator}, {parameters}) {{ return {cast}f({arguments}); }}",
            ]
        lines += [
            f'extern "C" {returns} approxtrain_entry_{i}({parameters}) {{ return approxtrain_call(&{s}, a, b); }}'
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


def _run_compiler(path, language, symbols, out_dir, flags, output, signature=FLOAT_SIGNATURE):
    compiler = _compiler(language)
    wrapper = Path(out_dir) / f"approxtrain_wrapper_{uuid.uuid4().hex[:8]}.{'c' if language == 'c' else 'cc'}"
    wrapper.write_text(wrapper_source(path, language, symbols, signature))
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


def model_candidates(functions, language, signature=FLOAT_SIGNATURE):
    """The names, in order, of the defined functions that may have one of signature's types."""
    found = []
    for name in functions:
        if language == "c++":
            arguments = next((a for a in signature.nm_arguments if name.endswith(a)), None)
            if arguments is None:
                continue
            returns, name = _split_return_type(name[: -len(arguments)].replace(_ANONYMOUS, ""))
            if returns not in signature.nm_returns or not _CXX_NAME.match(name):
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
        signature: the function types a model may have (FLOAT_SIGNATURE: ``float f(float, float)``;
            integer_builder.INTEGER_SIGNATURE for 8-bit integer circuits).
    """

    def __init__(self, path, language=None, signature=FLOAT_SIGNATURE):
        self.source = Path(path)
        self.signature = signature
        if not self.source.is_file():
            raise FileNotFoundError(f"model file not found: {self.source}")
        self._tmp = tempfile.TemporaryDirectory(prefix="approxtrain-model-")
        self._libraries = []  # keep every loaded library alive
        self._entries = {}  # symbol -> (address, style: 1-based index in signature.styles, 0 for none)
        failures = []
        for lang in languages_to_try(self.source, language):
            try:
                obj = Path(self._tmp.name) / f"probe_{lang.replace('+', 'x')}.o"
                _run_compiler(self.source, lang, (), self._tmp.name, PROBE_FLAGS, obj)
            except CompileFailure as e:
                failures.append(e)
                continue
            self.language = lang
            self.candidates = model_candidates(_defined_functions(obj), lang, signature)
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
        """Compiles trampolines for symbols; {symbol: (address, style)}."""
        lib_path = Path(self._tmp.name) / f"lib{uuid.uuid4().hex}.so"
        _run_compiler(
            self.source, self.language, symbols, self._tmp.name, COMPILE_FLAGS + ("-w",), lib_path, self.signature
        )
        lib = ctypes.CDLL(str(lib_path))
        self._libraries.append(lib)
        flags = (ctypes.c_int * len(symbols))()
        lib.approxtrain_model_flags(flags)
        return {
            s: (ctypes.cast(getattr(lib, f"approxtrain_entry_{i}"), ctypes.c_void_p).value, int(flags[i]))
            for i, s in enumerate(symbols)
        }

    def models(self):
        """The names of the file's model functions (qualified C++ names), sorted."""
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
            f"{self.signature.found_text} in the file: {', '.join(found)}"
            if found
            else f"the file has no {self.signature.none_text}"
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
                f"{self.label} has no {self.signature.needed_text} to build a table from "
                f"(a model is '{self.signature.example.format(symbol='NAME')}')"
            )
        raise ModelError(
            f"{self.label} has several {self.signature.found_text}: {', '.join(found)}; "
            "name the model with symbol= (--symbol on the command line)"
        )

    def function(self, symbol):
        """The address of a C-linkage trampoline calling symbol (``float symbol(float, float)`` for
        float models)."""
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
                    f"'{self.signature.example.format(symbol=symbol)}'); {self._describe_models()}"
                ) from None
        address, style = self._entries[symbol]
        if not style:
            raise ModelError(
                f"{self.label}: {symbol!r} is not a function {self.signature.example.format(symbol=symbol)}; "
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

    def style(self, symbol):
        """Which of signature.styles symbol has, counted from 1 (a ModelError if none)."""
        self.function(symbol)
        return self._entries[symbol][1]

    def evaluate_integer(self, symbol, a, b):
        """symbol(a[i], b[i]) through an integer signature's trampoline (int64 returns of uint64
        operands) for arrays of equal shape, as int64."""
        address = self.function(symbol)
        a = np.ascontiguousarray(a, dtype=np.uint64)
        b = np.ascontiguousarray(b, dtype=np.uint64)
        if a.shape != b.shape:
            raise ValueError(f"evaluate: shapes differ: {a.shape} vs {b.shape}")
        out = np.empty(a.shape, np.int64)
        _driver_function("approxtrain_evaluate_integer")(address, a.ctypes.data, b.ctypes.data, out.ctypes.data, a.size)
        return out


_DRIVER_SOURCE = r"""
#include <stdint.h>
typedef float (*approxtrain_model)(float, float);
void approxtrain_evaluate(approxtrain_model f, const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
}
typedef int64_t (*approxtrain_integer_model)(uint64_t, uint64_t);
void approxtrain_evaluate_integer(approxtrain_integer_model f, const uint64_t* a, const uint64_t* b, int64_t* out,
                                  int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
}
"""
_driver = None


def _evaluate_all():
    """The compiled driver's approxtrain_evaluate (compiled once per process)."""
    return _driver_function("approxtrain_evaluate")


def _driver_function(name):
    """A function of the compiled driver (compiled once per process)."""
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
        functions = {}
        for fn_name in ("approxtrain_evaluate", "approxtrain_evaluate_integer"):
            fn = getattr(lib, fn_name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64]
            functions[fn_name] = fn
        _driver = (lib, functions)
    return _driver[1][name]
