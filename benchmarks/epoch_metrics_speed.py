"""Training epoch time with torchmetrics metrics in the config against the same metrics as
template-style functions, in one process, arms alternating epoch by epoch.

Both arms are the Trainer on the same LeNet, data, seed, batch size, validation and per-epoch
checkpoint; only "metrics" differs:
    functions:    ["accuracy", "top_k_acc"]    (per-batch values averaged over samples)
    torchmetrics: MulticlassAccuracy (micro) and MulticlassAccuracy (micro, top_k=3), stateful
                  epoch metrics with the same names.

    python benchmarks/epoch_metrics_speed.py                     # a few minutes on a 2-core CPU
    python benchmarks/epoch_metrics_speed.py --epochs 2 --train-size 2000   # quick look
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.overhead import (  # noqa: E402
    benchmark_config,
    build_trainer,
    print_times,
    quiet_console,
    ratios,
    time_alternating,
    trainer_epoch,
)
from benchmarks.tiled_mnist import tiled_mnist_dir  # noqa: E402

TORCHMETRICS = [
    {"type": "MulticlassAccuracy", "module": "torchmetrics.classification",
     "args": {"num_classes": 10, "average": "micro"}, "name": "accuracy"},
    {"type": "MulticlassAccuracy", "module": "torchmetrics.classification",
     "args": {"num_classes": 10, "average": "micro", "top_k": 3}, "name": "top_k_acc"},
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs per arm, after one warm-up epoch")
    parser.add_argument("--train-size", type=int, default=20000, help="training images after tiling")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadier timings)")
    return parser.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = tiled_mnist_dir(tmp, args.train_size)
        trainers = {}
        for name, metrics in (("functions", ["accuracy", "top_k_acc"]), ("torchmetrics", TORCHMETRICS)):
            config = benchmark_config(data_dir, tmp / "saved", args.batch_size, args.epochs + 1, in_memory=True)
            config["metrics"] = metrics
            trainers[name] = build_trainer(config, run_id=name)
        quiet_console()  # after the trainers: each run's logging set-up adds a console handler
        arms = {name: (lambda epoch, t=trainer: trainer_epoch(t, epoch)) for name, trainer in trainers.items()}
        times = time_alternating(arms, args.epochs)
    steps = len(trainers["functions"].data_loader)
    print(f"\n## Epoch metrics: LeNet, batch {args.batch_size}, {steps} steps + validation per epoch, "
          f"{args.epochs} timed epochs per arm, CPU, {args.threads} thread(s)\n")
    print_times(times, "metrics")
    wall, wall_paired, cpu, cpu_paired = ratios(times, "torchmetrics", "functions")
    print(f"\ntorchmetrics / function metrics, wall time: {wall:.3f}x (ratio of medians), "
          f"{wall_paired:.3f}x (median of per-epoch ratios); goal: at most 1.05x")
    print(f"torchmetrics / function metrics, CPU time:  {cpu:.3f}x (ratio of medians), {cpu_paired:.3f}x (paired)")
    last = {name: trainer.history[-1] for name, trainer in trainers.items()}
    print("validation accuracy, last epoch: " + ", ".join(f"{n} {h['val_accuracy']:.6f}" for n, h in last.items()))
    print(f"median epoch wall time: {statistics.median(t[0] for t in times['functions']):.2f} s (functions)")


if __name__ == "__main__":
    main()
