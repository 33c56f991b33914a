"""What approxtrain reports: comparison rows and markdown table, and every plot (PNG):
training convergence (`approxtrain compare`) and a multiplier's error heatmap and histogram
(`approxtrain multipliers report`).
"""

import math
import os

from approxtrain.multipliers import NATIVE

BASELINE = NATIVE  # the run every other is compared with


# The most cells per heatmap side: larger tables (M > 8) are shown on a strided subgrid.
HEATMAP_SIDE = 256


def fmt(value, format_spec=".4f", missing="n/a"):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing if value is None else str(value)
    return format(value, format_spec)


def summarise(results_by_label):
    """One row per run: final/best test accuracy, delta to fp32 in points, time per epoch."""
    base = results_by_label.get(BASELINE)
    base_acc = base["final"]["test_accuracy"] if base else None
    base_time = base["timing"]["steady_epoch_time_s"] if base else None
    rows = []
    for label, results in results_by_label.items():
        acc = results["final"]["test_accuracy"]
        epoch_time = results["timing"]["steady_epoch_time_s"]
        rows.append(
            {
                "multiplier": label,
                "epochs": results["epochs_completed"],
                "final_test_accuracy": acc,
                "best_test_accuracy": results.get("best_test_accuracy"),
                "delta_to_fp32_points": _delta(acc, base_acc),
                "final_train_loss": results["final"]["loss"],
                "final_test_loss": results["final"]["test_loss"],
                "steady_epoch_time_s": epoch_time,
                "mean_epoch_time_s": results["timing"]["mean_epoch_time_s"],
                "time_vs_fp32": epoch_time / base_time if base_time and epoch_time else None,
            }
        )
    return rows


def _delta(acc, base):
    if acc is None or base is None:
        return None
    return 100.0 * (acc - base)


def markdown_table(rows, title=None):
    lines = [f"## {title}", ""] if title else []
    lines += [
        "| multiplier | epochs | final test accuracy (%) | delta to fp32 (points) | best test accuracy (%) "
        "| final train loss | time per epoch (s) | time vs fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['multiplier']} | {r['epochs']} | {fmt(_pct(r['final_test_accuracy']), '.2f')} "
            f"| {fmt(r['delta_to_fp32_points'], '+.2f', '-')} | {fmt(_pct(r['best_test_accuracy']), '.2f')} "
            f"| {fmt(r['final_train_loss'], '.4f')} | {fmt(r['steady_epoch_time_s'], '.1f')} "
            f"| {fmt(r['time_vs_fp32'], '.1f', '-')}x |"
        )
    lines += [
        "",
        "Time per epoch: training only (no evaluation), mean over epochs after the first "
        "(which also builds the graph).",
    ]
    return "\n".join(lines) + "\n"


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path, **savefig_kwargs):
    """fig as a PNG at path, whole or not at all (written beside, then moved into place); closes fig."""
    tmp = f"{path}.tmp"
    try:
        fig.savefig(tmp, format="png", **savefig_kwargs)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        plt.close(fig)


def plot_convergence(histories, path, title=None):
    """histories: label -> history rows; test accuracy and training loss vs epoch, one line each."""
    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        ax_acc.plot(epochs, [_pct(r.get("test_accuracy")) for r in rows], marker="o", label=label)
        ax_loss.plot(epochs, [r.get("loss") for r in rows], marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(plt, fig, path, dpi=120)


def plot_error_heatmap(m, table_errors, out):
    """The table's relative errors (ia rows, ib columns) as out/NAME_error_heatmap.png; returns the path."""
    plt = _pyplot()
    n = table_errors.shape[0]
    step = max(1, n // HEATMAP_SIDE)
    grid = 100 * table_errors[::step, ::step]
    limit = float(abs(grid).max()) or 1.0
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    image = ax.imshow(
        grid, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit, extent=(0, n, 0, n), interpolation="nearest"
    )
    fig.colorbar(image, ax=ax, label="relative error (%)")
    ax.set_xlabel("ib (right operand fraction)")
    ax.set_ylabel("ia (left operand fraction)")
    sub = f", every {step}th index" if step > 1 else ""
    ax.set_title(f"{m.name}: relative error of the table (M={m.mantissa_bits}{sub})")
    path = out / f"{m.name}_error_heatmap.png"
    _save(plt, fig, path, dpi=110, bbox_inches="tight")
    return path


def plot_error_histogram(m, table_errors, random_errors, out):
    """Distributions of the relative errors (random inputs, table pairs) as out/NAME_error_hist.png."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.hist(100 * random_errors, bins=200, density=True, alpha=0.7, label="random float32 inputs")
    ax.hist(100 * table_errors.ravel(), bins=200, density=True, histtype="step", color="k", label="table pairs")
    ax.set_xlabel("relative error (%)")
    ax.set_ylabel("density")
    ax.set_title(f"{m.name}: relative error distribution")
    ax.legend()
    path = out / f"{m.name}_error_hist.png"
    _save(plt, fig, path, dpi=110, bbox_inches="tight")
    return path


def _pct(value):
    return None if value is None else 100.0 * value
