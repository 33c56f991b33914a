"""The `approxtrain` command line.

Each subcommand lives in approxtrain/commands/<name>.py and provides
``add_parser(subparsers)``; the parser's ``func(args)`` returns an exit code.
"""

import argparse
import sys
from importlib import import_module

# Subcommand modules, in the order --help lists them.
COMMANDS = ("multipliers", "train", "compare", "export_slim", "bench", "cost")


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


# Error text printed at most: library errors can quote whole tensors (hundreds of lines).
MAX_ERROR_LINES, MAX_LINE_CHARS = 15, 300


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:  # Ctrl-C: one line saying where the run stands, no traceback
        print(f"approxtrain {args.command}: {interrupted_message(args.command, e)}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - re-raised unless it is an error meant for the user
        if not isinstance(e, _user_errors()):
            raise
        print(f"approxtrain {args.command}: error: {shorten(str(e))}", file=sys.stderr)
        return 2


def _user_errors():
    """Errors whose message is the user's answer: bad input, damaged files, failed TF ops."""
    kinds = [ValueError, FileNotFoundError, RuntimeError]
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "errors"):
        kinds.append(tf.errors.OpError)
    return tuple(kinds)


def interrupted_message(command, error):
    epoch = getattr(error, "epoch", None)
    if epoch is None:
        return "interrupted"
    if epoch == 0:
        return "interrupted before the first epoch finished; nothing to resume, start it again"
    if command == "compare":
        return f"interrupted after epoch {epoch} of {error.out}; run the same command again to continue"
    return f"interrupted after epoch {epoch}; continue with --resume"


def shorten(text, max_lines=MAX_ERROR_LINES, max_line_chars=MAX_LINE_CHARS):
    """`text` without blank lines, cut to a readable length: long lines cut, and of many lines the
    first few and the last ones kept (TensorFlow puts the actual error last), saying what was cut."""
    lines = [line for line in text.splitlines() if line.strip()] or [""]
    lines = [
        line
        if len(line) <= max_line_chars
        else f"{line[:max_line_chars]} ... ({len(line) - max_line_chars} characters cut)"
        for line in lines
    ]
    if len(lines) > max_lines:
        head, tail = 3, max_lines - 4
        lines = lines[:head] + [f"... ({len(lines) - head - tail} lines cut) ..."] + lines[-tail:]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
