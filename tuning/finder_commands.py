"""What `tune.py --lr-find` and `tune.py --find-batch-size` do and print. Neither makes a run
folder or a checkpoint; the LR finder writes its plot and CSV under <save_dir>/lr_find/<name>/."""
import math
from pathlib import Path

import pandas as pd

from utils import atomic_write_csv

from .batch_size_finder import find_batch_size, table_lines
from .lr_finder import plot_sweep, suggest_lr, sweep_lr
from .parts import build_parts


def lr_find(config, start_lr=1e-7, end_lr=10.0, num_steps=100, rule="valley", out_dir=None):
    """Run the sweep, write lr_find.png and lr_find.csv; return (suggested lr, png path, lines)."""
    parts = build_parts(config)
    sweep = sweep_lr(parts, start_lr, end_lr, num_steps)
    lr, index = suggest_lr(sweep, rule)
    out_dir = Path(out_dir or Path(config["trainer"]["save_dir"]) / "lr_find" / config["name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "lr_find.png"
    plot_sweep(sweep, index, rule, png)
    frame = pd.DataFrame({"lr": sweep.lrs, "loss": sweep.losses, "smoothed_loss": sweep.smoothed})
    atomic_write_csv(frame, out_dir / "lr_find.csv")
    lowest = min(range(len(sweep.smoothed)), key=sweep.smoothed.__getitem__)
    lines = [
        f"LR sweep: {len(sweep.lrs)} steps from {sweep.lrs[0]:.2e} to {sweep.lrs[-1]:.2e}"
        + (" (stopped early: the loss diverged)" if sweep.diverged else ""),
        f"lowest smoothed loss {sweep.smoothed[lowest]:.4f} at lr {sweep.lrs[lowest]:.2e}",
        f"suggested learning rate ({rule} rule): {lr:.2e}  (configured: {config['optimizer']['args'].get('lr')})",
        f"plot: {png}",
        f"use it with:  -o optimizer.args.lr={lr:.3g}",
    ]
    return lr, png, lines


def batch_size_find(config, steps=3, memory_cap_mb=None, max_size=None):
    """Search the largest batch size that fits; return (size, trials, lines)."""
    parts = build_parts(config)
    configured = config["data_loader"]["args"]["batch_size"]
    size, trials = find_batch_size(parts, configured, steps, memory_cap_mb, max_size)
    lr = config["optimizer"]["args"].get("lr")
    ratio = size / configured
    lines = table_lines(trials) + [
        f"largest batch size that fits on {parts.device}: {size}"
        + (f" (peak memory cap {memory_cap_mb:g} MB)" if memory_cap_mb else ""),
        f"use it with:  -o data_loader.args.batch_size={size}",
    ]
    if lr is not None and size != configured:
        lines.append(
            f"The learning rate is not changed for you. The linear scaling rule multiplies it by the "
            f"batch-size ratio {size}/{configured}: -o optimizer.args.lr={lr * ratio:.3g}; for Adam-type "
            f"optimizers the square-root rule is common: -o optimizer.args.lr={lr * math.sqrt(ratio):.3g}. "
            "Check either with --lr-find at the new batch size.")
    return size, trials, lines
