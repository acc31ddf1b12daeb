"""Samples per second of three data paths on the same folder of real digit PNGs, side by side in
one process, with random crop (padding 2) + rotation (10 degrees) and normalisation:

1. per-sample: ImageFolderDataLoader with in_memory false (a file read, decoded and transformed
   per sample, in `--workers` DataLoader workers);
2. in-memory: ImageFolderDataLoader decoding the folder into one tensor first (its set-up time is
   shown apart), batches augmented as a whole;
3. shards: the folder written by data_loader.optimize (time shown apart), read by ShardDataLoader
   in `--workers` workers, batches augmented as a whole.

Each path is read for `--epochs` epochs (data only: no model), after one untimed epoch that
starts the workers and fills the page cache; then one LeNet training epoch per path.

    python benchmarks/shard_speed.py                  # 20000 PNGs (data/bench_digits), a few minutes
    python benchmarks/shard_speed.py --images 4000    # a quicker look
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.data_paths import AUGMENT, train_epoch, write_png_folder  # noqa: E402
from data_loader import optimize  # noqa: E402
from data_loader.data_loaders import MNIST_MEAN, MNIST_STD, ImageFolderDataLoader, ShardDataLoader  # noqa: E402

NORMALIZE = {"mean": list(MNIST_MEAN), "std": list(MNIST_STD)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="PNG files in the folder")
    parser.add_argument("--folder", default=str(PROJECT_ROOT / "data" / "bench_digits"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers / writing processes")
    parser.add_argument("--epochs", type=int, default=2, help="timed data-only epochs per path")
    return parser.parse_args()


def folder_loader(folder, args, in_memory):
    return ImageFolderDataLoader(train_dir=str(folder), mode="L", batch_size=args.batch_size,
                                 num_workers=args.workers, transforms={"train": AUGMENT, "eval": []},
                                 normalize=NORMALIZE, in_memory=in_memory, seed=0)


def write_shards(folder, out, args):
    config = Path(out).parent / "source.json"
    config.write_text('{"seed": 0, "data_loader": {"type": "ImageFolderDataLoader", "args": '
                      f'{{"train_dir": "{folder}", "mode": "L"}}}}}}')
    optimize.write_shards(optimize.parse_args(["-c", str(config), "--out", str(out), "--workers",
                                               str(args.workers)]))


def shard_loader(out, args):
    return ShardDataLoader(str(out), batch_size=args.batch_size, num_workers=args.workers,
                           transforms={"train": AUGMENT, "eval": []}, normalize=NORMALIZE, seed=0)


def data_rate(loader, epochs):
    """Samples per second over `epochs` data-only epochs, after one untimed epoch."""
    counted, seconds = 0, 0.0
    for epoch in range(epochs + 1):
        loader.set_epoch(epoch + 1)
        start = time.perf_counter()
        samples = sum(len(target) for _, target in loader)
        if epoch:
            counted, seconds = counted + samples, seconds + time.perf_counter() - start
    return counted / seconds


def training_rate(loader):
    loader.set_epoch(99)
    seconds, steps = train_epoch(loader)
    return steps * loader.batch_size / seconds


def main():
    args = parse_args()
    torch.set_num_threads(1)  # steadier on a shared machine; the workers have their own processes
    folder = write_png_folder(args.folder, args.images)
    rows = []
    per_sample = folder_loader(folder, args, in_memory=False)
    rows.append(("per-sample: ImageFolderDataLoader, in_memory false", 0.0, data_rate(per_sample, args.epochs),
                 training_rate(per_sample)))
    start = time.perf_counter()
    in_memory = folder_loader(folder, args, in_memory=True)
    build = time.perf_counter() - start
    rows.append(("in-memory: ImageFolderDataLoader, decoded first", build, data_rate(in_memory, args.epochs),
                 training_rate(in_memory)))
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        write_shards(folder, Path(scratch) / "shards", args)
        written = time.perf_counter() - start
        shards = shard_loader(Path(scratch) / "shards", args)
        rows.append(("shards: ShardDataLoader on local shards", written, data_rate(shards, args.epochs),
                     training_rate(shards)))
    print(f"\n{args.images} PNGs (28x28 grey), batch {args.batch_size}, {args.workers} workers, torch threads 1, "
          f"{args.epochs} timed epochs\n")
    print("| path | set-up s (decode / write shards) | data samples/s | vs per-sample | LeNet training samples/s |")
    print("|---|---|---|---|---|")
    base = rows[0][2]
    for name, setup, rate, training in rows:
        print(f"| {name} | {setup:.1f} | {rate:.0f} | {rate / base:.2f}x | {training:.0f} |")
    print(f"\nshards / per-sample (data only): {rows[2][2] / base:.2f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
