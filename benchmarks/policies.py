"""Cost of the training policies, arms measured side by side in one process (epochs alternate
between the arms; see overhead.py), on LeNet and CPU:
- the Trainer with three no-op callbacks (every event overridden) against none;
- the Trainer with an EMA of the weights (trainer.ema) against none;
- the Trainer with stochastic weight averaging from the first epoch (trainer.swa: SWALR, one
  average update per epoch) against none.
Prints median training-epoch times (wall and process CPU time) and their ratios.

    python benchmarks/policies.py                     # a few minutes on a shared 2-core CPU
    python benchmarks/policies.py --epochs 2 --train-size 2000   # quick look
"""
import argparse
import copy
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from base import Callback  # noqa: E402
from benchmarks.overhead import benchmark_config, build_trainer, ratios, time_alternating  # noqa: E402
from benchmarks.tiled_mnist import tiled_mnist_dir  # noqa: E402

PLAIN, CALLBACKS, EMA, SWA = ("no callbacks, no averaging", "3 no-op callbacks", "EMA (decay 0.999)",
                              "SWA (from epoch 1)")


class NoOp(Callback):
    """Handles every event and does nothing: the cost of the dispatch alone."""

    def on_fit_start(self, trainer):
        pass

    def on_epoch_start(self, trainer, epoch):
        pass

    def on_step_end(self, trainer, batch_idx, loss, output, target):
        pass

    def on_validation_end(self, trainer, epoch, log):
        pass

    def on_epoch_end(self, trainer, epoch, log):
        pass

    def on_fit_end(self, trainer):
        pass


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs per arm, after a warm-up epoch")
    parser.add_argument("--train-size", type=int, default=20000, help="training images after tiling")
    parser.add_argument("--batch-size", type=int, default=128)
    return parser.parse_args()


def training_epoch(trainer):
    """One training epoch with the events around it (no validation: the arms differ in what
    happens around the optimizer step)."""
    def run(epoch):
        trainer.callbacks.fire("on_epoch_start", trainer, epoch)
        log = trainer._train_epoch(epoch)
        trainer.callbacks.fire("on_epoch_end", trainer, epoch, log)
    return run


def main():
    args = parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = tiled_mnist_dir(Path(tmp), args.train_size)
        base = benchmark_config(data_dir, Path(tmp) / "saved", args.batch_size, args.epochs + 1, in_memory=True)
        base["data_loader"]["args"]["validation_split"] = 0.0
        base["trainer"]["tensorboard"] = False
        with_ema = copy.deepcopy(base)
        with_ema["trainer"]["ema"] = {"decay": 0.999}
        with_swa = copy.deepcopy(base)
        with_swa["trainer"]["swa"] = {"start_epoch": 1, "lr": 0.001}
        with_callbacks = build_trainer(base, "callbacks")
        for _ in range(3):
            with_callbacks.callbacks.append(NoOp())
        arms = {PLAIN: training_epoch(build_trainer(base, "plain")),
                CALLBACKS: training_epoch(with_callbacks),
                EMA: training_epoch(build_trainer(with_ema, "ema")),
                SWA: training_epoch(build_trainer(with_swa, "swa"))}
        times = time_alternating(arms, args.epochs)
    steps = -(-args.train_size // args.batch_size)
    print(f"LeNet, CPU, 1 torch thread, {steps} steps of {args.batch_size} per epoch, "
          f"{args.epochs} timed epochs per arm")
    print("| arm | median epoch wall (s) | median epoch CPU (s) |")
    print("|---|---|---|")
    for name, samples in times.items():
        print(f"| {name} | {statistics.median(t[0] for t in samples):.3f} | "
              f"{statistics.median(t[1] for t in samples):.3f} |")
    for arm, label in ((CALLBACKS, "3 no-op callbacks / none"), (EMA, "EMA / no EMA"), (SWA, "SWA / no SWA")):
        wall, wall_paired, cpu, cpu_paired = ratios(times, arm, PLAIN)
        print(f"{label}: wall {wall:.3f}x (paired {wall_paired:.3f}x), CPU {cpu:.3f}x (paired {cpu_paired:.3f}x)")


if __name__ == "__main__":
    main()
