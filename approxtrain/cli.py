"""The `approxtrain` command line.

Each subcommand lives in approxtrain/commands/<name>.py and provides
``add_parser(subparsers)``; the parser's ``func(args)`` returns an exit code.
"""
import argparse
import sys
from importlib import import_module

# Subcommand modules, in the order --help lists them.
COMMANDS = ("multipliers", "train", "compare", "bench")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="approxtrain",
        description="Train Keras models with simulated approximate multipliers (AMSim).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = import_module(f"approxtrain.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"approxtrain.commands.{name}":
                raise
            continue  # not built yet
        module.add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"approxtrain {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
