"""The cost report as JSON, a Markdown table and a PNG (docs/cost.md)."""

import json
import os

from approxtrain.cost.counts import PHASES
from approxtrain.report import _pyplot, _save

SCHEMA_KEYS = ("model", "multiplier", "batch_size", "batches", "layers", "total")
PHASE_KEYS = ("macs", "zero_operand", "cartesian", "valid", "redundant", "rcp_share", "energy_pj")


def check_schema(report):
    """Raises ValueError naming the first key of docs/cost.md's schema that `report` lacks."""
    for key in SCHEMA_KEYS:
        if key not in report:
            raise ValueError(f"cost report lacks {key!r}")
    for row in report["layers"]:
        for key in ("name", "type", *PHASES):
            if key not in row:
                raise ValueError(f"layer {row.get('name')!r} lacks {key!r}")
        for phase in PHASES:
            missing = [k for k in PHASE_KEYS if k not in row[phase]]
            if missing:
                raise ValueError(f"layer {row['name']!r} {phase} lacks {missing}")
    for key in ("macs", "zero_operand", "energy_pj", *PHASES):
        if key not in report["total"]:
            raise ValueError(f"cost report total lacks {key!r}")


def write_json(report, path):
    check_schema(report)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)


def _m(v):
    return f"{v / 1e6:,.3f}"


def _energy(e, which):
    return "n/a" if e is None else f"{e[which] / 1e6:,.3f}"


def markdown(report):
    mults = report["multiplier"]
    lines = [
        f"### {report['model']}: one training step, batch {report['batch_size']} (mean of {report['batches']} batches)",
        "",
        "| layer | phase | MMACs | zero-operand % | RCP % of cartesian |"
        + "".join(f" {m} dense uJ | {m} skip uJ |" for m in mults),
        "|---|---|---:|---:|---:|" + "---:|---:|" * len(mults),
    ]
    rows = [(r["name"], r) for r in report["layers"]] + [("**total**", report["total"])]
    for name, r in rows:
        for phase in PHASES:
            c = r[phase]
            share = 100 * c["zero_operand"] / c["macs"] if c["macs"] else 0.0
            note = " (not computed)" if "note" in c else ""
            lines.append(
                f"| {name} | {phase}{note} | {_m(c['macs'])} | {share:.1f} | {100 * c['rcp_share']:.1f} |"
                + "".join(
                    f" {_energy(c['energy_pj'][m], 'dense')} | {_energy(c['energy_pj'][m], 'zero_skipping')} |"
                    for m in mults
                )
            )
    t = report["total"]
    lines += [
        "",
        f"Step: {_m(t['macs'])} MMACs, {100 * t['skippable_share']:.1f} % with a zero operand. "
        "Energy in microjoules (multiply + fp32 accumulate); n/a: no sourced figure.",
    ]
    if report["not_counted"]:
        lines.append(
            f"Not counted (no count for these layer kinds yet; not in the totals): {', '.join(report['not_counted'])}."
        )
    return "\n".join(lines) + "\n"


def write_markdown(report, path):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(markdown(report))
    os.replace(tmp, path)


def write_png(report, path):
    """Stacked bars per layer and phase (needed vs skippable MACs); a second panel with the step's
    energy per multiplier when several are given."""
    plt = _pyplot()
    mults = report["multiplier"]
    panels = 2 if len(mults) > 1 else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(max(8, 0.5 * len(report["layers"]) * 3) if panels == 1 else 16, 5), squeeze=False
    )
    ax = axes[0][0]
    labels, needed, skippable = [], [], []
    for r in report["layers"]:
        for phase, short in zip(PHASES, ("F", "dX", "dW")):
            labels.append(f"{r['name']} {short}")
            needed.append(r[phase]["valid"] / 1e6)
            skippable.append(r[phase]["zero_operand"] / 1e6)
    xs = range(len(labels))
    ax.bar(xs, needed, label="needed (both operands non-zero)", color="tab:blue")
    ax.bar(xs, skippable, bottom=needed, label="skippable (a zero operand)", color="tab:orange")
    ax.set_xticks(list(xs), labels, rotation=90, fontsize=6)
    ax.set_ylabel("MMACs per step")
    ax.set_title(f"{report['model']}, batch {report['batch_size']}")
    ax.legend()
    if panels == 2:
        ax = axes[0][1]
        e = report["total"]["energy_pj"]
        names = [m for m in mults if e[m] is not None]
        dense = [e[m]["dense"] / 1e6 for m in names]
        skip = [e[m]["zero_skipping"] / 1e6 for m in names]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], dense, width=0.4, label="dense")
        ax.bar([x + 0.2 for x in xs], skip, width=0.4, label="zero-skipping")
        ax.set_xticks(list(xs), names)
        ax.set_ylabel("uJ per step (multiply + accumulate)")
        missing = [m for m in mults if e[m] is None]
        ax.set_title("energy" + (f" (no figure: {', '.join(missing)})" if missing else ""))
        ax.legend()
    fig.tight_layout()
    _save(plt, fig, path, dpi=120)
