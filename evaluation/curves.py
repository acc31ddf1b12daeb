"""Learning curves: per epoch, training vs validation loss and every metric, the learning
rate, and the best epoch marked; one run or several overlaid. Read from metrics.csv."""
import json
import math
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from logger.figures import figure_pixels
from run.folder import CONFIG_FILE, CURVES_PNG, METRICS_CSV, RunFolder
from utils.io import atomic_open
from utils.monitor import Monitor

SKIPPED_COLUMNS = ("epoch",)


def metrics_folder(run_dir):
    """The folder holding a run's metrics.csv, given its log folder or its models folder (or any
    folder holding a metrics.csv), and its config.json, or None."""
    run = RunFolder.containing(run_dir)
    if run is not None and run.metrics_csv.is_file():
        return run.log_dir, run.config_file if run.config_file.is_file() else None
    config_file = Path(run_dir) / CONFIG_FILE
    return Path(run_dir), config_file if config_file.is_file() else None


def default_curves_path(run_dir):
    """curves.png beside the run's metrics.csv."""
    return metrics_folder(run_dir)[0] / CURVES_PNG


def best_epoch(history, monitor):
    """(epoch, value) of the best monitored value in `history`, or None."""
    row = monitor.best_row(history) if monitor is not None else None
    if row is None:
        return None
    return int(history.loc[row, "epoch"]), float(history.loc[row, monitor.key])


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


PANEL_SIZE = (5.0, 3.6)  # inches per panel
WIDE = 1.8  # the figure's preferred width / height


def grid_shape(panels):
    """(rows, columns) for `panels` panels: up to 3 in one row; else 2 to 4 columns with as few
    empty places as possible, then the shape closest to a landscape page."""
    if panels <= 3:
        return 1, max(panels, 1)

    def badness(columns):
        rows = math.ceil(panels / columns)
        aspect = columns * PANEL_SIZE[0] / (rows * PANEL_SIZE[1])
        return rows * columns - panels, abs(math.log(aspect / WIDE))

    columns = min((2, 3, 4), key=badness)
    return math.ceil(panels / columns), columns


def curves_figure(runs):
    """`runs`: list of (label, history DataFrame, Monitor or None). One run: training and
    validation in two colours; several: one colour per run, training solid, validation dashed."""
    histories = [history for _, history, _ in runs]
    panels = panels_of(histories)
    rows, columns = grid_shape(len(panels))
    size = (PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows)
    fig = Figure(figsize=size, dpi=100, layout="constrained")  # no pyplot: drawn on a worker thread
    axes = fig.subplots(rows, columns, squeeze=False)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        for i, (label, history, monitor) in enumerate(runs):
            run_colours = (colours[0], colours[1]) if len(runs) == 1 else (colours[i % len(colours)],) * 2
            _draw_panel(ax, panel, label if len(runs) > 1 else "", history, monitor, run_colours)
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel == "lr":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def _draw_panel(ax, panel, label, history, monitor, colours):
    """One run's lines in one panel; `colours`: (training, validation). The best epoch is marked
    only where this run has data."""
    prefix = f"{label} " if label else ""
    epochs = history["epoch"]
    drawn = False
    if panel == "lr":
        for column in [c for c in history.columns if c.startswith("lr")]:
            ax.plot(epochs, history[column], color=colours[0], label=f"{prefix}{column}")
            drawn = True
    else:
        for column, style, part, colour in ((panel, "-", "train", colours[0]),
                                            (f"val_{panel}", "--", "validation", colours[1])):
            if column in history and history[column].notna().any():
                ax.plot(epochs, history[column], style, color=colour, marker=".", label=f"{prefix}{part}")
                drawn = True
    best = best_epoch(history, monitor)
    if best is not None and drawn:
        ax.axvline(best[0], color=colours[0] if label else "0.4", linestyle=":", alpha=0.8,
                   label=f"{prefix}best epoch {best[0]} ({monitor.key} {best[1]:.4g})" if panel == "loss" else None)


def read_run(run_dir):
    """(label, history, Monitor) of one run folder, or None without a metrics.csv."""
    log_dir, config_file = metrics_folder(run_dir)
    if not (log_dir / METRICS_CSV).is_file():
        return None
    config = json.loads(config_file.read_text()) if config_file is not None else None
    return Path(run_dir).name, pd.read_csv(log_dir / METRICS_CSV), Monitor.of_config(config)


def write_curves(runs, path):
    """Draw the figure once, write it atomically as a PNG (a reader never sees half a file) and
    return its pixels, for the experiment writers."""
    pixels = figure_pixels(curves_figure(runs))
    with atomic_open(path, "wb") as handle:
        Image.fromarray(pixels).save(handle, format="png")
    return pixels
