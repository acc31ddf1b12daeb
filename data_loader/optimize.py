"""Write the data of a config as LitData shards that ShardDataLoader streams:

    python -m data_loader.optimize -c configs/digits_folder.json --out data/digits_shards

The config's data_loader (ImageFolderDataLoader, CsvDataLoader or TorchvisionDataLoader) says
what to read, exactly as for training: its folders or files, image mode and size, validation
split (with its seed, stratify or folds), test data and on_bad_sample. The output holds one
folder per split (train/, val/ when there is a validation split, test/ when there is test data)
and manifest.json (see data_loader/shard_format.py). Images are stored encoded, as their files
are; the training samples are written in a seeded random order, so every chunk mixes the
classes. A stopped run resumes where it stopped when run again with the same data; a folder
that holds other data is refused (--overwrite replaces it).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from config.instantiate import instantiate
from config.sources import read_config_file
from utils import ConfigError, main_guard
from utils.errors import EXIT_INTERRUPTED
from utils.io import write_json

from . import data_loaders
from .sample_loader import SampleDataLoader
from .samples import ImageFiles, TensorSamples
from .shard_format import MANIFEST, SHARD_FORMAT, require_litdata
from .shard_writer import DEFAULT_CHUNK_MB, SplitSource, remove_part_markers, write_split
from .task import Task

PROGRESS = "progress.json"  # written first, removed once manifest.json is written
DEFAULT_CHUNK_SAMPLES = 4096
SOURCES = ("ImageFolderDataLoader", "CsvDataLoader", "TorchvisionDataLoader")
TEST_KEYS = {"ImageFolderDataLoader": "test_dir", "CsvDataLoader": "test_csv"}  # torchvision: always


@dataclass
class Plan:
    """What is written: the splits' samples, the task and its class or target names, and how
    images decode."""
    splits: dict  # split name -> SplitSource
    class_names: list  # the task's names: classes, labels (multilabel) or target columns (regression)
    kind: str  # "image" or "table"
    policy: str  # on_bad_sample
    source: dict  # the config's data_loader section
    decode: dict = field(default_factory=dict)  # mode, image_size
    preprocessing: dict | None = None
    skipped: list = field(default_factory=list)  # bad table rows left out when read: (row, problem)
    task: str = "classification"
    target_scaling: dict | None = None  # regression: the training targets' standardisation


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Write a config's data as LitData shards for ShardDataLoader.")
    parser.add_argument("-c", "--config", required=True, help="config whose data_loader names the source data")
    parser.add_argument("--out", required=True, help="folder for the shards (created; resumed when half-written)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="writing processes")
    parser.add_argument("--chunk-samples", type=int, default=DEFAULT_CHUNK_SAMPLES,
                        help="samples per chunk at most (the unit of shuffling, caching and resuming)")
    parser.add_argument("--chunk-mb", type=int, default=DEFAULT_CHUNK_MB, help="megabytes per chunk file at most")
    parser.add_argument("--overwrite", action="store_true", help="replace shards of other data in --out")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.chunk_samples < 1 or args.chunk_mb < 1:
        raise ConfigError("--workers, --chunk-samples and --chunk-mb must be at least 1.")
    return args


def build_plan(config):
    """The splits of the config's data, read by its own loader (nothing decoded yet)."""
    section = config.get("data_loader")
    if not isinstance(section, dict) or section.get("type") not in SOURCES:
        found = section.get("type") if isinstance(section, dict) else section
        raise ConfigError(f"data_loader.type is {found!r}; data_loader.optimize reads the data of "
                          f"{', '.join(SOURCES)}. Point -c at a config with one of them.")
    args = section.get("args", {})
    table = section["type"] == "CsvDataLoader" and not args.get("image_column")
    policy = args.get("on_bad_sample", "error")
    seed = args.get("seed") if args.get("seed") is not None else config.get("seed", 123)
    # images are checked (and bad ones skipped) while written; table rows when read
    overrides = {"in_memory": False, "limit": 0, "num_workers": 0, "transforms": None, "seed": seed,
                 **({} if table else {"normalize": None, "on_bad_sample": "error"})}
    train = _source_loader(section, overrides, training=True)
    order = np.random.default_rng(seed).permutation(train.train_indices)
    splits = {"train": _split_source(train, order)}
    skipped = list(train.skipped_samples)
    if len(train.valid_indices):
        splits["val"] = _split_source(train, np.asarray(train.valid_indices))
    scaling = train.fitted_args.get("target_scaling")
    if section["type"] not in TEST_KEYS or args.get(TEST_KEYS[section["type"]]):
        test_args = {**overrides, "validation_split": 0.0, **({"target_scaling": scaling} if scaling else {})}
        test = _source_loader(section, test_args, training=False)
        splits["test"] = _split_source(test, np.arange(len(test.dataset)))
        skipped += test.skipped_samples
    plan = Plan(splits, list(train.task.names), "table" if table else "image", policy, section,
                skipped=[[str(sample), problem] for sample, problem in skipped], task=train.task.kind,
                target_scaling=scaling)
    plan.decode = _decoding(splits["train"])
    plan.preprocessing = train.fitted_args.get("preprocessing")
    return plan


def _source_loader(section, overrides, training):
    loader = instantiate(section, key_path="data_loader", module=data_loaders, **overrides, training=training)
    if not isinstance(loader, SampleDataLoader):
        raise ConfigError(f"data_loader.type {section['type']} does not read samples that can be written to shards.")
    return loader


def _split_source(loader, order):
    samples = loader.dataset.samples  # before any transform: files, decoded images or table rows
    targets = np.asarray(loader.dataset.targets)  # encoded for the task, regression ones standardised
    if isinstance(samples, ImageFiles):
        return SplitSource("files", samples, order, targets, loader.labels, samples.mode, samples.image_size)
    if isinstance(samples, TensorSamples) and samples.data.dtype != torch.uint8:
        return SplitSource("rows", samples, order, targets, loader.labels)
    return SplitSource("arrays", samples, order, targets, loader.labels)


def _decoding(train):
    """How the training images decode: {"mode", "image_size"} (None: as stored, sizes may differ)."""
    if train.kind == "rows":
        return {"mode": None, "image_size": None}
    if train.kind == "files":
        return {"mode": train.mode, "image_size": list(train.image_size) if train.image_size else None}
    first = np.asarray(train.samples[int(train.order[0])][0]) if len(train.order) else np.zeros((1, 1, 1))
    same_size = isinstance(train.samples, TensorSamples)
    return {"mode": "L" if first.shape[0] == 1 else "RGB", "image_size": list(first.shape[1:]) if same_size else None}


def fingerprint(plan):
    """A hash of what the shards hold: classes, decoding, and each split's samples in order
    (files by path, size and modification time; arrays and rows by their bytes)."""
    digest = hashlib.sha256(json.dumps([SHARD_FORMAT, plan.class_names, plan.decode, plan.kind, plan.task,
                                        plan.target_scaling]).encode())
    for name, split in plan.splits.items():
        digest.update(f"\n{name}:{split.kind}\n".encode())
        digest.update(np.ascontiguousarray(split.order, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(split.targets[split.order], dtype=np.float64).tobytes())
        if split.kind == "files":
            for index in split.order:
                digest.update(_file_identity(split.samples.paths[index]))
        elif isinstance(split.samples, TensorSamples):
            digest.update(split.samples.data[torch.as_tensor(split.order)].contiguous().numpy().tobytes())
        else:
            digest.update(f"{type(split.samples).__name__}:{len(split.samples)}".encode())
    return digest.hexdigest()


def _file_identity(path):
    try:
        stat = os.stat(path)
        return f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
    except OSError:
        return f"{path}\0missing\n".encode()


def prepare_output(out, identity, overwrite):
    """"done" (complete shards of this data), "resume" or "fresh"; refuses a folder that holds
    something else."""
    manifest, progress = out / MANIFEST, out / PROGRESS
    ours = manifest.is_file() or progress.is_file()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file. Name a folder for the shards.")
    if out.is_dir() and any(out.iterdir()) and not ours:
        raise ConfigError(f"--out '{out}' is not empty and holds no shards written by data_loader.optimize. "
                          "Name a new or empty folder.")
    if not ours:
        return "fresh"
    recorded = json.loads((manifest if manifest.is_file() else progress).read_text())
    if recorded.get("shards_id") == identity:
        return "done" if manifest.is_file() else "resume"
    if not overwrite:
        state = "shards" if manifest.is_file() else "half-written shards"
        raise ConfigError(f"--out '{out}' holds {state} of other data or other chunk settings (its "
                          f"{manifest.name if manifest.is_file() else progress.name} records another source "
                          "fingerprint). Name another folder, or add --overwrite to replace them.")
    shutil.rmtree(out)
    return "fresh"


def build_manifest(plan, summaries, source_fingerprint, identity, layout):
    splits, skipped, stats = {}, list(plan.skipped), None
    for name, parts in summaries.items():
        bad = {sample for part in parts for sample, _ in part["skipped"]}
        splits[name] = {"count": sum(part["count"] for part in parts),
                        "class_counts": _class_counts(plan.splits[name], bad, len(plan.class_names))}
        skipped += [[sample, problem] for part in parts for sample, problem in part["skipped"]]
        if name == "train":
            stats = _total_stats([part["stats"] for part in parts if part["stats"]])
    return {"format": SHARD_FORMAT, "shards_id": identity, "source_fingerprint": source_fingerprint,
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "litdata": require_litdata().__version__, "kind": plan.kind, "task": plan.task,
            "class_names": plan.class_names, "target_scaling": plan.target_scaling, **plan.decode,
            "normalize": stats, "preprocessing": plan.preprocessing, "splits": splits, "skipped": skipped,
            "layout": layout, "source": plan.source}


def _class_counts(split, bad, n_classes):
    """Samples written per class (None when the targets are not one class per sample)."""
    if split.labels is None:
        return None
    names = [split.samples.paths[i] for i in split.order] if split.kind == "files" else None
    kept = [label for position, label in enumerate(split.labels[split.order])
            if names is None or names[position] not in bad]
    counts = np.zeros(n_classes, dtype=np.int64)
    np.add.at(counts, np.asarray(kept, dtype=np.int64), 1)
    return counts.tolist()


def _total_stats(parts):
    """{"mean", "std"} per channel from the parts' pixel sums (as transforms.measure_normalize)."""
    if not parts:
        return None
    total = np.sum([p[0] for p in parts], axis=0)
    total_sq = np.sum([p[1] for p in parts], axis=0)
    count = sum(p[2] for p in parts)
    mean = total / count
    std = np.sqrt(np.clip(total_sq / count - mean**2, 1e-12, None))
    return {"mean": [round(float(v), 6) for v in mean], "std": [round(max(float(v), 1e-6), 6) for v in std]}


def write_shards(args):
    require_litdata()
    from tqdm import tqdm

    started = time.monotonic()
    plan = build_plan(read_config_file(args.config))
    layout = {"chunk_samples": args.chunk_samples, "chunk_mb": args.chunk_mb}
    source_fingerprint = fingerprint(plan)
    identity = hashlib.sha256(json.dumps([source_fingerprint, layout]).encode()).hexdigest()[:32]
    out = Path(args.out)
    state = prepare_output(out, identity, args.overwrite)
    if state == "done":
        print(f"'{out}' already holds these shards (manifest {out / MANIFEST}); nothing to do.")
        return
    out.mkdir(parents=True, exist_ok=True)
    if state == "fresh":
        write_json({"format": SHARD_FORMAT, "shards_id": identity}, out / PROGRESS)
    total = sum(len(split.order) for split in plan.splits.values())
    with tqdm(total=total, desc="writing shards", unit="sample", disable=None) as progress:
        summaries = {name: write_split(out / name, split, args.workers, args.chunk_samples, args.chunk_mb * 2**20,
                                       plan.policy, plan.kind == "image" and name == "train", progress)
                     for name, split in plan.splits.items()}
    _raise_on_problems(summaries, out)
    plan.decode["image_size"] = plan.decode["image_size"] or _common_size(summaries)
    manifest = build_manifest(plan, summaries, source_fingerprint, identity, layout)
    write_json(manifest, out / MANIFEST)
    for name in plan.splits:
        remove_part_markers(out / name)
    (out / PROGRESS).unlink(missing_ok=True)
    _report(manifest, out, time.monotonic() - started)


def _common_size(summaries):
    """[height, width] when every image written has it (then batches can be built), else None."""
    sizes = {tuple(size) for parts in summaries.values() for part in parts for size in part.get("sizes", [])}
    return list(sizes.pop()) if len(sizes) == 1 else None


def _raise_on_problems(summaries, out):
    problems = [problem for parts in summaries.values() for part in parts for _, problem in part["problems"]]
    if problems:
        listed = "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
        raise ConfigError(f"{len(problems)} bad sample(s): {listed}. Fix or remove them and run the same command "
                          f"again (it keeps what is written in '{out}'), or set data_loader.args.on_bad_sample to "
                          '"skip" to write the shards without them.')


def _report(manifest, out, seconds):
    counts = ", ".join(f"{split['count']} {name}" for name, split in manifest["splits"].items())
    size = sum(path.stat().st_size for path in out.rglob("*.bin"))
    what = Task(manifest["task"], tuple(manifest["class_names"])).what
    print(f"Wrote {counts} samples of {what} to '{out}' "
          f"({size / 2**20:.1f} MiB) in {seconds:.1f} s.")
    if manifest["skipped"]:
        print(f"Left out {len(manifest['skipped'])} bad sample(s); {out / MANIFEST} lists them.")
    print(f'Train from them with "data_loader": {{"type": "ShardDataLoader", "args": {{"input_dir": "{out}"}}}}.')


@main_guard
def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        write_shards(args)
    except KeyboardInterrupt:
        print(f"stopped: the parts written so far are kept; run the same command again to write the rest "
              f"into '{args.out}'.", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
