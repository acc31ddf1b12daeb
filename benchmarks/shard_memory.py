"""Peak memory of training from shards against the size of the shards: two tiled shard sets of
128x128 RGB noise PNGs (which do not compress), by default about 0.5 GB and 3 GB, each read for
one epoch by ShardDataLoader in a fresh process (data only, batch 64), whose peak resident set
(ru_maxrss, and that of its workers) is reported. Flat means: the same for both sizes.

The shards are written by the project's own writer (data/bench_shards, made once, then reused):
256 distinct images repeated to the sample count, as data_loader.optimize writes them.

    python benchmarks/shard_memory.py                      # about 0.5 GB and 3 GB
    python benchmarks/shard_memory.py --sizes 2000 8000    # a quicker look (sample counts)
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from data_loader.optimize import Plan, build_manifest  # noqa: E402
from data_loader.samples import ImageFiles  # noqa: E402
from data_loader.shard_writer import SplitSource, remove_part_markers, write_split  # noqa: E402
from utils.io import write_json  # noqa: E402

SIDE, DISTINCT, CLASSES = 128, 256, 10


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10000, 61000], help="samples of the two shard sets")
    parser.add_argument("--root", default=str(PROJECT_ROOT / "data" / "bench_shards"))
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers while reading")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: read these shards in this process
    return parser.parse_args()


def noise_pngs(folder):
    """DISTINCT random RGB PNGs in one folder per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(DISTINCT):
        path = Path(folder) / str(index % CLASSES) / f"{index:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def tiled_shards(root, count, workers=2):
    """Shards of `count` samples that repeat the noise PNGs; written once."""
    out = Path(root) / f"tiled-{count}"
    if (out / "manifest.json").is_file():
        return out
    paths = noise_pngs(Path(root) / "pngs")
    labels = np.arange(len(paths)) % CLASSES
    files = ImageFiles(paths, labels, "RGB", None)
    train = SplitSource("files", files, np.arange(count) % len(paths), labels, labels, "RGB", None)
    plan = Plan({"train": train}, [str(c) for c in range(CLASSES)], "image", "error", {"type": "tiled benchmark"},
                decode={"mode": "RGB", "image_size": [SIDE, SIDE]})
    layout = {"chunk_samples": 4096, "chunk_mb": 64}

    class Progress:
        def update(self, count):
            pass

    summaries = {"train": write_split(out / "train", train, workers, 4096, 64 * 2**20, "error", True, Progress())}
    write_json(build_manifest(plan, summaries, f"tiled-{count}", f"tiled-{count}", layout), out / "manifest.json")
    remove_part_markers(out / "train")
    return out


def resident_mib():
    """(anonymous, file-backed) resident memory of this process now, in MiB (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["RssAnon"].split()[0]) / 1024, int(fields["RssFile"].split()[0]) / 1024


def measure(shards, workers):
    """Read one epoch in this process; print its memory peaks as JSON."""
    import torch

    from data_loader.data_loaders import ShardDataLoader

    torch.set_num_threads(1)
    loader = ShardDataLoader(str(shards), batch_size=64, num_workers=workers, seed=0)
    before = resident_mib()
    peak_anon, peak_file = before
    start, samples = time.perf_counter(), 0
    for data, _ in loader:
        samples += len(data)
        anon, mapped = resident_mib()
        peak_anon, peak_file = max(peak_anon, anon), max(peak_file, mapped)
    seconds = time.perf_counter() - start
    print(json.dumps({"samples": samples, "seconds": seconds, "before_mib": sum(before),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "peak_anon_mib": peak_anon, "peak_file_mib": peak_file,
                      "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def main():
    args = parse_args()
    if args.measure:
        return measure(args.measure, args.workers)
    rows = []
    for count in args.sizes:
        shards = tiled_shards(args.root, count)
        size = sum(path.stat().st_size for path in shards.rglob("*.bin"))
        result = subprocess.run([sys.executable, __file__, "--measure", str(shards), "--workers", str(args.workers)],
                                capture_output=True, text=True, check=True)
        rows.append((count, size, json.loads(result.stdout.strip().splitlines()[-1])))
    print(f"\nShardDataLoader, one epoch, batch 64, {args.workers} workers, {SIDE}x{SIDE} RGB PNGs\n")
    print("| samples | shards on disk | epoch s | samples/s | RSS before the epoch | peak RSS | of it anonymous / "
          "file-mapped (peaks) |" + (" peak RSS of a worker |" if args.workers else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if args.workers else ""))
    for count, size, run in rows:
        worker = f" {run['worker_peak_rss_mib']:.0f} MiB |" if args.workers else ""
        print(f"| {count} | {size / 2**30:.2f} GiB | {run['seconds']:.1f} | {run['samples'] / run['seconds']:.0f} | "
              f"{run['before_mib']:.0f} MiB | {run['peak_rss_mib']:.0f} MiB | {run['peak_anon_mib']:.0f} / "
              f"{run['peak_file_mib']:.0f} MiB |{worker}")
    (_, small_size, a), (_, large_size, b) = rows
    print(f"\ndata {large_size / small_size:.1f}x larger; peak RSS {b['peak_rss_mib'] / a['peak_rss_mib']:.2f}x")

if __name__ == "__main__":
    main()
