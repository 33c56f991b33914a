"""Comparison outputs: convergence plot (PNG), markdown table, summary rows."""
import math

from approxtrain.multipliers import NATIVE

BASELINE = NATIVE  # the run every other is compared with


def fmt(value, spec=".4f", missing="n/a"):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing if value is None else str(value)
    return format(value, spec)


def summarise(results_by_label):
    """One row per run: final/best test accuracy, delta to fp32 in points, time per epoch."""
    base = results_by_label.get(BASELINE)
    base_acc = base["final"]["test_accuracy"] if base else None
    base_time = base["timing"]["steady_epoch_time_s"] if base else None
    rows = []
    for label, results in results_by_label.items():
        acc = results["final"]["test_accuracy"]
        epoch_time = results["timing"]["steady_epoch_time_s"]
        rows.append({
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
        })
    return rows


def _delta(acc, base):
    if acc is None or base is None:
        return None
    return 100.0 * (acc - base)


def markdown_table(rows, title=None):
    lines = [f"## {title}", ""] if title else []
    lines += ["| multiplier | epochs | final test accuracy (%) | delta to fp32 (points) | best test accuracy (%) "
              "| final train loss | time per epoch (s) | time vs fp32 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pct = (lambda v: None if v is None else 100.0 * v)
        lines.append(
            f"| {r['multiplier']} | {r['epochs']} | {fmt(pct(r['final_test_accuracy']), '.2f')} "
            f"| {fmt(r['delta_to_fp32_points'], '+.2f', '-')} | {fmt(pct(r['best_test_accuracy']), '.2f')} "
            f"| {fmt(r['final_train_loss'], '.4f')} | {fmt(r['steady_epoch_time_s'], '.1f')} "
            f"| {fmt(r['time_vs_fp32'], '.1f', '-')}x |")
    lines += ["", "Time per epoch: training only (no evaluation), mean over epochs after the first "
                  "(which also builds the graph)."]
    return "\n".join(lines) + "\n"


def plot_convergence(histories, path, title=None):
    """histories: label -> history rows; test accuracy and training loss vs epoch, one line each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pct(value):
    return None if value is None else 100.0 * value
