"""`approxtrain multipliers list | add | export | remove | report`: the multiplier registry from the shell."""

from pathlib import Path

from approxtrain.multipliers import INTEGER_BITS, LANGUAGES, ROUNDINGS, TABLE_FORMATS
from approxtrain.multipliers.builder import BUILD_TIMEOUT_TEXT
from approxtrain.multipliers.integer_formats import FORMATS as INTEGER_TABLE_FORMATS
from approxtrain.multipliers.metrics import DEFAULT_SAMPLES

ALL_TABLE_FORMATS = tuple(TABLE_FORMATS) + tuple(f for f in INTEGER_TABLE_FORMATS if f not in TABLE_FORMATS)


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
        help="C or C++ file with 'float f(float a, float b)' (.c .h .inl .cc .cpp .cxx .hpp), or with --integer "
        "an 8-bit circuit: int16_t f(int8_t, int8_t), uint16_t f(uint8_t, uint8_t) or uint64_t f(uint64_t, uint64_t)",
    )
    kind = add.add_mutually_exclusive_group(required=True)  # a float multiplier or an integer one
    kind.add_argument(
        "--mantissa-bits",
        "-m",
        type=int,
        metavar="M",
        help="a float multiplier: fraction bits each operand is reduced to (1..11)",
    )
    kind.add_argument(
        "--integer",
        type=int,
        choices=INTEGER_BITS,
        metavar="BITS",
        help="an integer multiplier of BITS-bit operands (8), with --signed or --unsigned",
    )
    signedness = add.add_mutually_exclusive_group()
    signedness.add_argument(
        "--signed", dest="signed", action="store_const", const=True, help="--integer: two's-complement operands"
    )
    signedness.add_argument(
        "--unsigned", dest="signed", action="store_const", const=False, help="--integer: unsigned operands"
    )
    add.add_argument("--rounding", choices=ROUNDINGS, help="operand rounding of a float multiplier (default: truncate)")
    add.add_argument(
        "--symbol",
        help="the model function, e.g. mbm or ns::mbm<7> (default: the file's only model "
        "function, float f(float, float) or with --integer an 8-bit one, or the one called NAME)",
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
        choices=ALL_TABLE_FORMATS,
        help="format of --from-table: approxtrain (ApproxTrain's .bin) or npy (uint16 entries); with --integer "
        "tfapprox (TFApprox's .bin) or npy (int products); default: by suffix",
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

    export = cmds.add_parser(
        "export", help="write a multiplier's table in ApproxTrain's (TFApprox's for an integer one) .bin or .npy format"
    )
    export.add_argument("name")
    export.add_argument("path", metavar="FILE")
    export.add_argument(
        "--format",
        choices=ALL_TABLE_FORMATS,
        help="approxtrain (uint8 .bin, M <= 7) or npy (uint16 entries); an integer multiplier: tfapprox "
        "(uint16 .bin) or npy (int32 products); default: by suffix",
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
    if r["type"] == "integer":
        width = ("int" if r["signed"] else "uint") + str(r["bits"])
        return (r["name"], width, "-", r["kind"], r["description"])
    return (r["name"], str(r["mantissa_bits"]), r["operand_rounding"], r["kind"], r["description"])


def run_list(args):
    from approxtrain import multipliers

    header = ("NAME", "M", "ROUNDING", "KIND", "DESCRIPTION")
    table = [header] + [_list_row(name) for name in multipliers.names()]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print("(M: a float multiplier's fraction bits; int8/uint8: an 8-bit signed/unsigned integer multiplier)")
    print(f"(fp32 means the native op; user multipliers live in {multipliers.user_dir()})")
    return 0


def _check_add_kind(args):
    """A float multiplier (--mantissa-bits) or an integer one (--integer with --signed/--unsigned)."""
    if args.integer is None:  # argparse saw to it that exactly one of --mantissa-bits and --integer is given
        if args.signed is not None:
            raise ValueError("--signed and --unsigned apply to --integer multipliers")
        if args.table_format is not None and args.table_format not in TABLE_FORMATS:
            raise ValueError(f"--table-format {args.table_format} applies to --integer tables")
        return
    if args.rounding is not None:
        raise ValueError("--rounding applies to float multipliers, not to --integer ones")
    if args.signed is None:
        raise ValueError("--integer needs --signed (two's-complement operands) or --unsigned")
    if args.table_format is not None and args.table_format not in INTEGER_TABLE_FORMATS:
        raise ValueError(
            f"--table-format {args.table_format} is a float table format; an --integer table is one of "
            f"{', '.join(INTEGER_TABLE_FORMATS)}"
        )


def _register(args):
    from approxtrain import multipliers

    if args.integer is not None:
        kind = {"integer_bits": args.integer, "signed": args.signed}
    else:
        kind = {"mantissa_bits": args.mantissa_bits, "operand_rounding": args.rounding or "truncate"}
    if args.from_table is not None:
        return multipliers.register_table(
            args.name,
            args.from_table,
            format=args.table_format,
            description=args.description,
            overwrite=args.force,
            **kind,
        )
    return multipliers.register(
        args.name,
        args.model,
        symbol=args.symbol,
        language=args.language,
        description=args.description,
        overwrite=args.force,
        timeout=args.timeout,
        **kind,
    )


def _registered_text(m, path):
    if m.kind == "integer":
        figures = [
            f"{label} {value:g} {unit}"
            for label, value, unit in (
                ("power", m.power_mw, "mW"),
                ("area", m.area_um2, "um^2"),
                ("delay", m.delay_ns, "ns"),
            )
            if value is not None
        ]
        return (
            f"registered {m.name}: {'signed' if m.signed else 'unsigned'} {m.bits}-bit integer multiplier, "
            f"{m.products.size} products -> {path}" + (f" ({', '.join(figures)})" if figures else "")
        )
    return f"registered {m.name}: M={m.mantissa_bits}, rounding={m.operand_rounding}, {m.lut.size} entries -> {path}"


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
    _check_add_kind(args)
    from approxtrain.cost import energy

    if args.energy_pj is not None:
        energy.check_pj(args.energy_pj)
    try:
        m = _register(args)
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
        _registered_text(m, multipliers.user_dir() / (m.name + ".amlut"))
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


def _report_integer(m):
    """An integer multiplier's EvoApproxLib-style error metrics over all operand pairs."""
    from approxtrain.multipliers.integer_metrics import integer_error_metrics

    low, high = m.code_range
    print(
        f"{m.name}: {'signed' if m.signed else 'unsigned'} {m.bits}-bit integer multiplier, operands "
        f"[{low}, {high}]" + (f" -- {m.description}" if m.description else "")
    )
    e = integer_error_metrics(m)
    print(f"all {e['count']} operand pairs, vs their exact product:")
    print(f"  MAE   {e['mae']:.4f}  ({e['mae_percent']:.4f} % of 2^16)")
    print(f"  WCE   {e['wce']}  ({e['wce_percent']:.4f} % of 2^16)")
    print(f"  MRE   {e['mre_percent']:.4f} %  (mean |error| / max(1, |exact|))")
    print(f"  EP    {e['ep_percent']:.4f} %  (pairs with an error)")
    print(f"  bias  {e['bias']:+.4f}  (mean error)")
    figures = [
        f"{label} = {value:g} {unit}"
        for label, value, unit in (
            ("power", m.power_mw, "mW"),
            ("area", m.area_um2, "um^2"),
            ("delay", m.delay_ns, "ns"),
        )
        if value is not None
    ]
    if figures:
        print(
            f"published: {', '.join(figures)}"
            + (f"; energy estimate {m.energy_pj:g} pJ per multiply (power x delay)" if m.energy_pj is not None else "")
        )
    return 0


def run_report(args):
    from approxtrain import multipliers, report
    from approxtrain.multipliers import metrics

    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    m = multipliers.get(args.name)
    if m.kind == "integer":
        return _report_integer(m)
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
