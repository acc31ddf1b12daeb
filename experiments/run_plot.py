"""runs.py --plot: one metric's curves of several runs overlaid in one PNG."""
import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .run_info import read_run  # noqa: E402


def plot_runs(folders, metric, out_path):
    """Plot `metric` per epoch of each run folder; return the runs that lack the metric."""
    fig, ax = plt.subplots(figsize=(8, 5))
    missing = []
    for folder in folders:
        info = read_run(folder)
        if metric not in info.history:
            missing.append(folder)
            continue
        label = info.run_id if not info.sweep else f"{info.run.save_dir.name}/{info.run_id}"
        ax.plot(info.history["epoch"], info.history[metric], marker="o", markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per epoch")
    ax.grid(alpha=0.3)
    if len(folders) > len(missing):
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return missing
