"""Learning curves: per epoch, training vs validation loss and every metric, the learning
rate, and the best epoch marked; one run or several overlaid. Read from metrics.csv."""
import json
import math
from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from utils.io import atomic_open

from . import plots

SKIPPED_COLUMNS = ("epoch",)


def run_folders(run_dir):
    """(log folder holding metrics.csv, model folder holding config.json) of a run given either
    saved/log/<name>/<id> or saved/models/<name>/<id>; the model folder may be None."""
    run_dir = Path(run_dir)
    parts = run_dir.resolve().parts
    if len(parts) >= 3 and parts[-3] in ("log", "models"):
        base = run_dir.resolve().parents[2]
        log_dir, model_dir = base / "log" / parts[-2] / parts[-1], base / "models" / parts[-2] / parts[-1]
        return (log_dir if (log_dir / "metrics.csv").exists() else run_dir), (model_dir if model_dir.is_dir() else None)
    return run_dir, None


def monitored_metric(config):
    """("min"|"max", key) of trainer.monitor, or None when monitoring is off."""
    monitor = (config or {}).get("trainer", {}).get("monitor", "off")
    parts = str(monitor).split()
    return (parts[0], parts[1]) if len(parts) == 2 else None


def best_epoch(history, monitor):
    if monitor is None or monitor[1] not in history:
        return None
    values = history[monitor[1]]
    if values.dropna().empty:
        return None
    index = values.idxmin() if monitor[0] == "min" else values.idxmax()
    return int(history.loc[index, "epoch"]), float(values[index])


def panels_of(histories):
    """Panel names: "loss", each metric (train and val_ share one), then "lr"."""
    columns = []
    for history in histories:
        for column in history.columns:
            base = column[4:] if column.startswith("val_") else column
            if column in SKIPPED_COLUMNS or base.startswith("lr") or base in columns:
                continue
            columns.append(base)
    columns.sort(key=lambda name: name != "loss")
    has_lr = any(c.startswith("lr") for h in histories for c in h.columns)
    return columns + (["lr"] if has_lr else [])


def curves_figure(runs):
    """`runs`: list of (label, history DataFrame, monitor or None)."""
    histories = [history for _, history, _ in runs]
    panels = panels_of(histories)
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plots.plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False,
                                   layout="constrained")
    colours = plots.plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        for i, (label, history, monitor) in enumerate(runs):
            _draw_panel(ax, panel, label if len(runs) > 1 else "", history, monitor, colours[i % len(colours)])
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel == "lr":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def _draw_panel(ax, panel, label, history, monitor, colour):
    prefix = f"{label} " if label else ""
    epochs = history["epoch"]
    if panel == "lr":
        for column in [c for c in history.columns if c.startswith("lr")]:
            ax.plot(epochs, history[column], color=colour, label=f"{prefix}{column}")
    else:
        for column, style, part in ((panel, "-", "train"), (f"val_{panel}", "--", "validation")):
            if column in history and history[column].notna().any():
                ax.plot(epochs, history[column], style, color=colour, marker=".", label=f"{prefix}{part}")
    best = best_epoch(history, monitor)
    if best is not None:
        ax.axvline(best[0], color=colour, linestyle=":", alpha=0.8,
                   label=f"{prefix}best epoch {best[0]} ({monitor[1]} {best[1]:.4g})" if panel == "loss" else None)


def read_run(run_dir):
    """(label, history, monitor) of one run folder."""
    log_dir, model_dir = run_folders(run_dir)
    metrics_csv = log_dir / "metrics.csv"
    if not metrics_csv.is_file():
        return None
    config = None
    config_path = (model_dir or log_dir) / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
    return Path(run_dir).name, pd.read_csv(metrics_csv), monitored_metric(config)


def write_curves(runs, path):
    """Draw the figure and write it atomically (a reader never sees half a PNG)."""
    figure = curves_figure(runs)
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plots.plt.close(figure)
