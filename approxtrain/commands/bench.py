"""`approxtrain bench`: AM ops vs the native op, as time ratios, on this machine."""
from importlib import import_module

# Sections in the order they run; a section whose needs are missing is skipped with a note.
SECTIONS = ("core_cpu", "tf_ops", "tf_train")


def add_parser(sub):
    p = sub.add_parser("bench", help="benchmark AM kernels against the native ops")
    p.add_argument("--section", action="append", choices=SECTIONS, help="run only these sections (repeatable)")
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke run)")
    p.add_argument("--json", metavar="FILE", help="also write all rows as JSON")
    p.set_defaults(func=run)


def run(args):
    import json

    rows = []
    for name in args.section or SECTIONS:
        try:
            section = import_module(f"approxtrain.bench.{name}")
        except ModuleNotFoundError as e:
            print(f"[{name}] skipped: {e}")
            continue
        rows += section.run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0
