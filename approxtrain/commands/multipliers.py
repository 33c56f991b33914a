"""`approxtrain multipliers list | add | export | remove | report`: the multiplier registry from the shell."""

from pathlib import Path

from approxtrain.multipliers import LANGUAGES, ROUNDINGS, TABLE_FORMATS
from approxtrain.multipliers.builder import BUILD_TIMEOUT_TEXT
from approxtrain.multipliers.metrics import DEFAULT_SAMPLES


def add_parser(sub):
    p = sub.add_parser("multipliers", help="list, add, export, remove and report approximate multipliers")
    cmds = p.add_subparsers(dest="multipliers_command", required=True, metavar="SUBCOMMAND")

    ls = cmds.add_parser("list", help="list shipped and user multipliers")
    ls.set_defaults(func=run_list)

    add = cmds.add_parser(
        "add",
        help="register a C, C++ or imported table model (no rebuild needed)",
        description="Build the table of a C or C++ model file, or import a table file, and register it.",
    )
    add.add_argument("name", help="registry name (lowercase letters, digits, '_')")
    add.add_argument(
        "model",
        metavar="FILE",
        nargs="?",
        help="C or C++ file with 'float f(float a, float b)' (.c .h .inl .cc .cpp .cxx .hpp)",
    )
    add.add_argument(
        "--mantissa-bits",
        "-m",
        type=int,
        required=True,
        metavar="M",
        help="fraction bits each operand is reduced to (1..11)",
    )
    add.add_argument("--rounding", choices=ROUNDINGS, default="truncate", help="operand rounding (default: truncate)")
    add.add_argument(
        "--symbol",
        help="the model function, e.g. mbm or ns::mbm<7> (default: the file's only "
        "float f(float, float) function, or the one called NAME)",
    )
    add.add_argument(
        "--language",
        choices=LANGUAGES,
        help="compile FILE as this language (default: by suffix; .h, .inl: C, then C++)",
    )
    add.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"give up building the table after S seconds (default: {BUILD_TIMEOUT_TEXT})",
    )
    add.add_argument("--from-table", metavar="TABLE", help="import this table file instead of building one")
    add.add_argument(
        "--table-format",
        choices=TABLE_FORMATS,
        help="format of --from-table: approxtrain (ApproxTrain's .bin) or npy (uint16 entries); default: by suffix",
    )
    add.add_argument("--description", default="", help="one line for listings")
    add.add_argument("--force", action="store_true", help="replace a user multiplier of the same name")
    add.add_argument(
        "--energy-pj",
        type=float,
        metavar="E",
        help="energy of one multiply in picojoules, used by `approxtrain cost` (default: none)",
    )
    add.set_defaults(func=run_add)

    export = cmds.add_parser("export", help="write a multiplier's table in ApproxTrain's .bin or .npy format")
    export.add_argument("name")
    export.add_argument("path", metavar="FILE")
    export.add_argument(
        "--format",
        choices=TABLE_FORMATS,
        help="approxtrain (uint8 .bin, M <= 7) or npy (uint16 entries); default: by suffix",
    )
    export.set_defaults(func=run_export)

    rm = cmds.add_parser("remove", help="unregister a user multiplier")
    rm.add_argument("name")
    rm.set_defaults(func=run_remove)

    rep = cmds.add_parser("report", help="error metrics, heatmap and histogram of a multiplier")
    rep.add_argument("name")
    rep.add_argument("--out", default=".", metavar="DIR", help="directory for the PNGs (default: .)")
    rep.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help=f"random float32 input pairs (default: {DEFAULT_SAMPLES})",
    )
    rep.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    rep.set_defaults(func=run_report)


def _list_row(name):
    """One listing row; a damaged table is a DAMAGED row saying why, not the end of the listing."""
    from approxtrain import multipliers

    try:
        r = multipliers.describe(name)
    except multipliers.DamagedTableError as e:
        return (name, "?", "?", "DAMAGED", f"{e.path}: {e.reason}")
    return (r["name"], str(r["mantissa_bits"]), r["operand_rounding"], r["kind"], r["description"])


def run_list(args):
    from approxtrain import multipliers

    header = ("NAME", "M", "ROUNDING", "KIND", "DESCRIPTION")
    table = [header] + [_list_row(name) for name in multipliers.names()]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print(f"(fp32 means the native op; user multipliers live in {multipliers.user_dir()})")
    return 0


def run_add(args):
    from approxtrain import multipliers

    if (args.model is None) == (args.from_table is None):
        raise ValueError("give either a model FILE or --from-table TABLE")
    if args.from_table is not None:
        given = [
            f
            for f, v in (("--symbol", args.symbol), ("--language", args.language), ("--timeout", args.timeout))
            if v is not None
        ]
        if given:
            raise ValueError(f"{', '.join(given)} apply to a model FILE, not to --from-table")
    elif args.table_format is not None:
        raise ValueError("--table-format applies to --from-table only")
    from approxtrain.cost import energy

    if args.energy_pj is not None:
        energy.check_pj(args.energy_pj)
    try:
        if args.from_table is not None:
            m = multipliers.register_table(
                args.name,
                args.from_table,
                mantissa_bits=args.mantissa_bits,
                format=args.table_format,
                operand_rounding=args.rounding,
                description=args.description,
                overwrite=args.force,
            )
        else:
            m = multipliers.register(
                args.name,
                args.model,
                mantissa_bits=args.mantissa_bits,
                operand_rounding=args.rounding,
                symbol=args.symbol,
                language=args.language,
                description=args.description,
                overwrite=args.force,
                timeout=args.timeout,
            )
    except multipliers.AlreadyRegisteredError as e:  # in the shell's words, not register()'s keyword
        raise ValueError(
            f"multiplier {e.name!r} is already registered ({e.path}); remove it first "
            f"('approxtrain multipliers remove {e.name}') or add --force to replace it"
        ) from None
    if args.energy_pj is None:
        energy.remove_user_energy(m.name)  # a replaced multiplier's figure is not this one's
    else:
        energy.set_user_energy(m.name, args.energy_pj)
    print(
        f"registered {m.name}: M={m.mantissa_bits}, rounding={m.operand_rounding}, "
        f"{m.lut.size} entries -> {multipliers.user_dir() / (m.name + '.amlut')}"
        + ("" if args.energy_pj is None else f", {args.energy_pj:g} pJ per multiply")
    )
    return 0


def run_export(args):
    from approxtrain import multipliers

    path = multipliers.export_table(args.name, args.path, format=args.format)
    print(f"wrote {path}")
    return 0


def run_remove(args):
    from approxtrain import multipliers

    from approxtrain.cost import energy

    multipliers.unregister(args.name)
    energy.remove_user_energy(args.name)
    print(f"removed {args.name}")
    return 0


def _percent(x):
    return f"{100 * x:+.4f} %"


def run_report(args):
    from approxtrain import multipliers, report
    from approxtrain.multipliers import metrics

    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    m = multipliers.get(args.name)
    table_errors = metrics.table_relative_errors(m)
    random_errors = metrics.random_relative_errors(m, args.samples, args.seed)
    print(
        f"{m.name}: M={m.mantissa_bits}, operand rounding={m.operand_rounding}"
        + (f" -- {m.description}" if m.description else "")
    )
    views = (
        ("table pairs", f"all {table_errors.size} pairs 1.ia x 1.ib, vs their exact product", table_errors),
        (
            "random float32",
            f"{random_errors.size} inputs through approxtrain.core, vs the exact product of the unreduced inputs",
            random_errors,
        ),
    )
    print(f"{'relative error':<16}{'bias':>12}{'MRED':>12}{'max':>12}{'min':>12}")
    for label, _, errors in views:
        s = metrics.summarize(errors)
        cells = (_percent(s["bias"]), f"{100 * s['mred']:.4f} %", _percent(s["max"]), _percent(s["min"]))
        print(f"{label:<16}" + "".join(f"{c:>12}" for c in cells))
    for label, what, _ in views:
        print(f"  {label}: {what}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in (
        report.plot_error_heatmap(m, table_errors, out),
        report.plot_error_histogram(m, table_errors, random_errors, out),
    ):
        print(f"wrote {path}")
    return 0
