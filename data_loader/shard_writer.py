"""Writing one split of a dataset as LitData shards (see shard_format.py), in several processes
and resumably: the split is cut into parts of `chunk_samples` samples, each part is written by
one process as its own chunk files plus a marker file once it is complete, and a run that was
stopped rewrites only the parts without a marker. Once every part is there, LitData's index
of the split is merged from the parts' indexes.

Every image is decoded once while it is written: a file that cannot be read is an error (or,
with on_bad_sample "skip", left out and listed), and the per-channel sums of the training
images give the "auto" normalisation.
"""
import json
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.io import write_json

from .samples import BadSample
from .shard_format import decode_sample_image, encode_png

PART_MARKER = "part-{}.json"  # written when a part's chunks and index are complete
DEFAULT_CHUNK_MB = 64


@dataclass
class SplitSource:
    """The samples of one split in the order they are written. `kind`: "files" (ImageFiles:
    the file's bytes are stored), "arrays" (uint8 images C x H x W, stored as PNG) or "rows"
    (float32 table rows)."""
    kind: str
    samples: object
    order: np.ndarray  # indices into `samples`
    targets: np.ndarray  # every sample's target as training uses it (data_loader/task.py)
    labels: np.ndarray | None = None  # class index of every sample (None: not one class per sample)
    mode: str | None = None  # files: how they decode
    image_size: tuple | None = None


class _Discard:
    """A message queue that drops LitData's "inferred the data format" notes."""

    def put_nowait(self, message):
        pass


def part_tasks(split_dir, source, chunk_samples, chunk_bytes, policy, measure):
    """(part number, task) of every part of the split, in order; a task holds its samples' data,
    so that a worker process needs nothing else."""
    for part, start in enumerate(range(0, len(source.order), chunk_samples)):
        chosen = source.order[start:start + chunk_samples]
        targets = list(source.targets[chosen])
        if source.kind == "files":
            payload = ([source.samples.paths[i] for i in chosen], source.mode, source.image_size)
        elif source.kind == "rows":
            payload = (source.samples.data[chosen].numpy().astype(np.float32),)
        else:
            payload = ([np.asarray(source.samples[int(i)][0], dtype=np.uint8) for i in chosen],)
        yield part, (str(split_dir), part, source.kind, payload, targets, chunk_bytes, policy, measure)


def write_part(task):
    """Write one part (in a worker process); returns its summary, which is also its marker."""
    from litdata.streaming.writer import BinaryWriter

    split_dir, part, kind, payload, targets, chunk_bytes, policy, measure = task
    _remove_part(split_dir, part)  # a part cut short by a stopped run starts again
    os.environ["DATA_OPTIMIZER_GLOBAL_RANK"] = str(part)  # LitData names the chunk files by it
    try:
        writer = BinaryWriter(split_dir, chunk_bytes=chunk_bytes, msg_queue=_Discard())
        summary = _fill(writer, kind, payload, targets, policy, measure)
        if summary["problems"]:  # on_bad_sample "error": the part is not complete
            _remove_part(split_dir, part)
            return summary
        writer.done()
    finally:
        os.environ.pop("DATA_OPTIMIZER_GLOBAL_RANK", None)
    write_json(summary, Path(split_dir) / PART_MARKER.format(part))
    return summary


def _fill(writer, kind, payload, targets, policy, measure):
    stats, sizes = None, set()
    written, skipped, problems = 0, [], []
    for position, target in enumerate(targets):
        try:
            sample, image = _sample(kind, payload, position, np.asarray(target))
        except BadSample as err:
            (skipped if policy == "skip" else problems).append([_name(kind, payload, position), str(err)])
            continue
        if image is not None:
            sizes.add(tuple(int(side) for side in image.shape[1:]))
            if measure:
                stats = _add_stats(stats, image)
        writer[written] = sample
        written += 1
    # the (height, width) of the images: batches need one size; two tell that they differ
    return {"count": written, "skipped": skipped, "problems": problems, "stats": stats,
            "sizes": [list(size) for size in sorted(sizes)[:2]]}


def _sample(kind, payload, position, target):
    """((data, target, name), decoded uint8 image or None). A tuple, not a dict: LitData stores
    dicts as Arrow tables, which read one sample ~100x slower when the samples are shuffled."""
    if kind == "rows":
        return (payload[0][position], target, b""), None
    if kind == "arrays":
        image = payload[0][position]
        return (encode_png(image), target, b""), image
    paths, mode, image_size = payload
    path = paths[position]
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise BadSample(f"image file '{path}' cannot be read ({type(err).__name__}: {err})") from None
    image = decode_sample_image(data, mode, image_size, path).numpy()
    # the name as bytes: LitData would store a string that names an image file as that image
    return (data, target, path.encode()), image


def _name(kind, payload, position):
    return payload[0][position] if kind == "files" else f"sample {position}"


def _add_stats(stats, image):
    """Per-channel sums of pixels scaled to [0, 1] and their squares, and the pixel count."""
    pixels = image.reshape(image.shape[0], -1).astype(np.float64) / 255
    total, total_sq, count = (np.zeros(image.shape[0]), np.zeros(image.shape[0]), 0) if stats is None else \
        (np.asarray(stats[0]), np.asarray(stats[1]), stats[2])
    return [(total + pixels.sum(1)).tolist(), (total_sq + np.square(pixels).sum(1)).tolist(), count + pixels.shape[1]]


def _remove_part(split_dir, part):
    for path in Path(split_dir).glob(f"chunk-{part}-*.bin"):
        path.unlink()
    for name in (f"{part}.index.json", PART_MARKER.format(part)):
        (Path(split_dir) / name).unlink(missing_ok=True)


def write_split(split_dir, source, workers, chunk_samples, chunk_bytes, policy, measure, progress):
    """Write the parts of a split that are not there yet, then its index; returns the parts'
    summaries in order. `progress` (a tqdm bar) counts samples."""
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    summaries = {}
    pending = []
    merged = (split_dir / "index.json").is_file()
    for part, task in part_tasks(split_dir, source, chunk_samples, chunk_bytes, policy, measure):
        summary = _finished_part(split_dir, part, merged)
        if summary is not None:  # written by an earlier run that was stopped
            summaries[part] = summary
            progress.update(len(task[4]))
        else:
            pending.append((part, task))
    for part, summary in _run_parts(pending, workers, progress):
        summaries[part] = summary
    ordered = [summaries[part] for part in sorted(summaries)]
    if not merged and not any(summary["problems"] for summary in ordered):
        _merge_index(split_dir)
    return ordered


def _finished_part(split_dir, part, merged):
    """The summary of a part that an earlier run completed, else None. Complete: its marker is
    there, and so is its own index (until the split's index is merged from them)."""
    marker = split_dir / PART_MARKER.format(part)
    if not marker.is_file():
        return None
    summary = json.loads(marker.read_text())
    if merged or summary["count"] == 0 or (split_dir / f"{part}.index.json").is_file():
        return summary
    return None


def _run_parts(pending, workers, progress):
    """(part, summary) of each pending part, written in `workers` processes (at most two parts
    per process in flight, so a large split is never held in memory at once)."""
    if workers <= 1 or len(pending) <= 1:
        for part, task in pending:
            summary = write_part(task)
            progress.update(len(task[4]))
            yield part, summary
        return
    tasks = iter(pending)
    with ProcessPoolExecutor(workers) as pool:
        running = {}
        for part, task in tasks:
            running[pool.submit(write_part, task)] = (part, len(task[4]))
            if len(running) >= 2 * workers:
                break
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                part, count = running.pop(future)
                progress.update(count)
                yield part, future.result()
                following = next(tasks, None)
                if following is not None:
                    running[pool.submit(write_part, following[1])] = (following[0], len(following[1][4]))


def _merge_index(split_dir):
    """LitData's index.json of the split, from the index of each part (in part order)."""
    from litdata.streaming.writer import BinaryWriter

    parts = [name for name in os.listdir(split_dir) if name.endswith(".index.json") and name[0].isdigit()]
    os.environ.pop("DATA_OPTIMIZER_GLOBAL_RANK", None)
    BinaryWriter(str(split_dir), chunk_bytes=DEFAULT_CHUNK_MB * 2**20).merge(num_workers=len(parts))


def remove_part_markers(split_dir):
    """Once the manifest is written, the parts' markers are no longer needed."""
    for marker in Path(split_dir).glob(PART_MARKER.format("*")):
        marker.unlink()
