"""Learning-rate range test (Smith 2015, as in fastai's lr_find): train a copy of the model for a
number of steps while the learning rate grows exponentially, record the smoothed loss, and
suggest a learning rate a little before the loss curve bottoms out."""
import math
from dataclasses import dataclass

import numpy as np
import torch

from utils import ConfigError

from .parts import batches, train_step

RULES = ("steepest", "valley")


@dataclass
class LRSweep:
    lrs: list
    losses: list  # raw loss of each step
    smoothed: list  # bias-corrected exponential moving average of the losses
    diverged: bool  # stopped early because the loss blew up


def sweep_lr(parts, start_lr=1e-7, end_lr=10.0, num_steps=100, smoothing=0.98, diverge_factor=4.0):
    """Train a copy of `parts.model` for up to `num_steps` steps, the learning rate going from
    `start_lr` to `end_lr` exponentially; stop early once the smoothed loss exceeds
    `diverge_factor` times its best value. The original model is left untouched."""
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"the LR range {start_lr:g}..{end_lr:g} is not increasing and positive; "
                          "pass --lr-range START END with 0 < START < END, e.g. --lr-range 1e-7 10.")
    if num_steps < 10:
        raise ConfigError(f"--lr-steps is {num_steps}; the sweep needs at least 10 steps to draw a curve.")
    model = parts.model_copy()
    optimizer = parts.make_optimizer(model)
    # every parameter group keeps its configured ratio to the first group's learning rate
    first_lr = optimizer.param_groups[0]["lr"] or 1.0
    for group in optimizer.param_groups:
        group["lr"] = start_lr * (group["lr"] / first_lr if first_lr else 1.0)
    growth = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=growth)
    sweep = LRSweep([], [], [], diverged=False)
    average, best = 0.0, math.inf
    data_stream = batches(parts.make_loader(), parts.device)
    for step in range(num_steps):
        data, target = next(data_stream)
        lr = optimizer.param_groups[0]["lr"]
        # .item(): one host-device sync per step, which the curve needs
        loss = train_step(model, optimizer, parts.criterion, data, target).item()
        average = smoothing * average + (1 - smoothing) * loss
        smoothed = average / (1 - smoothing ** (step + 1))
        sweep.lrs.append(lr)
        sweep.losses.append(loss)
        sweep.smoothed.append(smoothed)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > diverge_factor * best:
            sweep.diverged = True
            break
        scheduler.step()
    return sweep


def suggest_lr(sweep, rule="valley"):
    """The suggested learning rate and its index in the sweep.

    steepest: where the smoothed loss falls fastest (per decade of LR) before its minimum.
    valley: fastai's rule: the longest stretch of decreasing loss, a little past its first third.
    """
    if rule not in RULES:
        raise ConfigError(f"--lr-rule is {rule!r}; use one of {', '.join(RULES)}.")
    losses = np.asarray(sweep.smoothed, dtype=float)
    finite = np.isfinite(losses)
    losses = losses[: int(np.argmin(finite)) if not finite.all() else len(losses)]
    lowest = int(np.argmin(losses)) if len(losses) else 0
    if lowest < 3:
        raise ConfigError(
            "the loss never decreased during the LR sweep, so there is no learning rate to suggest. "
            "Start the range lower (--lr-range 1e-8 1) or use more steps (--lr-steps 200).")
    index = _steepest(sweep.lrs, losses, lowest) if rule == "steepest" else _valley(losses)
    return sweep.lrs[index], index


def _steepest(lrs, losses, lowest):
    # the first tenth is skipped: the moving average is still settling there (fastai and
    # Lightning skip the start for the same reason)
    skip = min(max(1, len(losses) // 10), lowest - 2)
    slopes = np.gradient(losses[: lowest + 1], np.log10(lrs[: lowest + 1]))
    return skip + int(np.argmin(slopes[skip:]))


def _valley(losses):
    """fastai's `valley`: longest decreasing subsequence; pick 1/3 + 1/6 of the way along it."""
    n = len(losses)
    run_length = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run_length[i] < run_length[j] + 1:
                run_length[i] = run_length[j] + 1
        if run_length[end] < run_length[i]:
            end, start = i, i - run_length[i] + 1
    third = (end - start) / 3
    return start + int(third) + int(third / 2)


def plot_sweep(sweep, index, rule, path):
    """Write the loss-vs-LR curve (log x axis) with the suggestion marked, as a PNG."""
    import matplotlib.pyplot as plt

    from utils.io import atomic_open

    fig = sweep_figure(sweep, index, rule)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def sweep_figure(sweep, index, rule):
    """The loss-vs-LR figure: every step's loss and the smoothed one, the suggestion marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(sweep.lrs, sweep.losses, color="0.75", linewidth=0.8, label="loss per step")
    ax.plot(sweep.lrs, sweep.smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
    lr, loss = sweep.lrs[index], sweep.smoothed[index]
    ax.axvline(lr, color="tab:red", linestyle="--", linewidth=1)
    ax.plot([lr], [loss], "o", color="tab:red", markersize=8, label=f"suggested lr = {lr:.2e} ({rule})")
    ax.set_xscale("log")
    top = max(sweep.smoothed[0], min(sweep.smoothed)) * 1.5  # the blow-up would squash the curve
    finite = [value for value in (*sweep.losses, *sweep.smoothed) if math.isfinite(value)]
    bottom = min(finite)  # the lowest raw loss too: the steps' noise is drawn, not cut off
    margin = 0.05 * (top - bottom)
    ax.set_ylim(bottom - margin, top)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title("Learning-rate range test")
    ax.legend(loc="upper left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
