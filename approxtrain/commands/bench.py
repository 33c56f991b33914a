"""`approxtrain bench`: AM ops vs the native op, as time ratios, on this machine."""

import contextlib
import os
from importlib import import_module

from approxtrain.bench.core_cpu import CPU_PATHS

# Sections in the order they run; a section whose needs are missing is skipped with a note.
SECTIONS = ("core_cpu", "int_core", "tf_ops", "tf_train", "layers", "zoo")
PATH_ENV = "APPROXTRAIN_CPU_PATH"


def _section(name):
    """The module of a section (``run(args)``, ``add_arguments(parser)``), or the error that it cannot load."""
    try:
        return import_module(f"approxtrain.bench.{name}")
    except ModuleNotFoundError as e:
        return e


@contextlib.contextmanager
def _cpu_path_env(path):
    """APPROXTRAIN_CPU_PATH set to `path` for the block (None: as it is; "auto": unset), restored after."""
    saved = os.environ.get(PATH_ENV)
    if path == "auto":
        os.environ.pop(PATH_ENV, None)
    elif path is not None:
        os.environ[PATH_ENV] = path
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PATH_ENV, None)
        else:
            os.environ[PATH_ENV] = saved


def add_parser(sub):
    p = sub.add_parser("bench", help="benchmark AM kernels against the native ops")
    p.add_argument("--section", action="append", choices=SECTIONS, help="run only these sections (repeatable)")
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke run)")
    p.add_argument("--json", metavar="FILE", help="also write all rows as JSON")
    p.add_argument(
        "--path",
        choices=CPU_PATHS,
        help=f"run the sections with {PATH_ENV} set to this path (auto: unset); "
        "a path this CPU lacks falls back as _core does",
    )
    for name in SECTIONS:  # each section's own options, e.g. --sizes 256,512 for core_cpu
        section = _section(name)
        if not isinstance(section, Exception):
            section.add_arguments(p.add_argument_group(f"section {name}"))
    p.set_defaults(func=run)


def run(args):
    import json

    rows = []
    for name in args.section or SECTIONS:
        section = _section(name)
        if isinstance(section, Exception):
            print(f"[{name}] skipped: {section}")
            continue
        with _cpu_path_env(args.path):
            rows += section.run(args)
    if args.json:  # whole or not at all: written beside, then moved into place
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump(rows, f, indent=2)
        os.replace(tmp, args.json)
    return 0
