"""Batch-size finder: the habit of trying batch sizes until one runs out of memory, automated.
The batch size doubles until a size fails (or reaches the training set's size), then a binary
search narrows the gap. Each size runs a few full training steps (forward, backward, optimizer
step) on a fresh copy of the model. "Fails" means a CUDA out-of-memory error (caught, cache
freed) or, given a cap, a peak memory above it: on CPU that is the process's peak resident
memory, on CUDA the peak memory allocated by tensors."""
import ctypes
import gc
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from utils import ConfigError

from .parts import batches, train_step


@dataclass
class SizeTrial:
    batch_size: int
    fits: bool
    peak_memory_mb: float  # nan when the size ran out of memory before it could be measured
    samples_per_s: float
    note: str = ""


def find_batch_size(parts, start_size, steps=3, memory_cap_mb=None, max_size=None):
    """Return (largest batch size that fits, list of SizeTrial in the order tried)."""
    if steps < 2:
        raise ConfigError(f"--bs-steps is {steps}; at least 2 steps are needed (the first one warms up).")
    limit = _training_set_size(parts)
    max_size = min(max_size or limit, limit)
    trials, good, bad = [], 0, None
    size = min(start_size, max_size)
    while bad is None:
        trial = try_batch_size(parts, size, steps, memory_cap_mb)
        trials.append(trial)
        if not trial.fits:
            bad = size
            continue
        good = size
        if size >= max_size:
            break
        size = min(size * 2, max_size)
    if bad is not None:
        good = max([t.batch_size for t in trials if t.fits], default=0)
        while bad - good > max(1, good // 16):  # a few percent is as precise as memory use is stable
            middle = (good + bad) // 2
            trial = try_batch_size(parts, middle, steps, memory_cap_mb)
            trials.append(trial)
            good, bad = (middle, bad) if trial.fits else (good, middle)
    if good == 0:
        raise ConfigError(f"not even batch size {bad} fits ({trials[-1].note}). Raise --max-memory-mb, "
                          "use a smaller model, or train on a device with more memory.")
    return good, trials


def try_batch_size(parts, batch_size, steps, memory_cap_mb=None):
    """Run `steps` training steps at `batch_size` on a fresh model copy and measure them."""
    meter = PeakMemory(parts.device)
    model = optimizer = None
    out_of_memory = False
    try:
        model = parts.model_copy()
        optimizer = parts.make_optimizer(model)
        stream = batches(parts.make_loader(batch_size), parts.device)
        meter.reset()
        train_step(model, optimizer, parts.criterion, *next(stream))  # warm-up step, not timed
        _synchronize(parts.device)
        started = time.perf_counter()
        for _ in range(steps - 1):
            train_step(model, optimizer, parts.criterion, *next(stream))
        _synchronize(parts.device)
        elapsed = time.perf_counter() - started
    except torch.OutOfMemoryError:
        out_of_memory = True  # freed below, outside the handler: the traceback holds the tensors
    del model, optimizer
    if out_of_memory:
        meter.free_after_out_of_memory()
        return SizeTrial(batch_size, False, float("nan"), float("nan"), "out of memory")
    peak = meter.peak_mb()
    if memory_cap_mb is not None and peak > memory_cap_mb:
        return SizeTrial(batch_size, False, peak, float("nan"), f"peak above the {memory_cap_mb:g} MB cap")
    return SizeTrial(batch_size, True, peak, batch_size * (steps - 1) / elapsed)


class PeakMemory:
    """Peak memory of the steps: CUDA's allocator statistics, or on CPU the process's peak
    resident set (Linux: reset through /proc/self/clear_refs, read as VmHWM)."""

    def __init__(self, device):
        self.device = device

    def reset(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _release_cpu_memory()
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError as err:
                raise ConfigError("measuring peak memory on CPU needs Linux's /proc/self/clear_refs "
                                  f"({err}); run the batch-size finder on a GPU or on Linux.") from None

    def peak_mb(self):
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise ConfigError("/proc/self/status has no VmHWM line; peak memory cannot be measured here.")

    def free_after_out_of_memory(self):
        gc.collect()  # slow (a second or so), but a failed step may leave tensors in cycles
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _release_cpu_memory():
    """Give freed heap memory back to the system, so the next size's peak starts low."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peak may include memory kept from before
        pass


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _training_set_size(parts):
    loader = parts.make_loader()
    return len(loader.sampler) if getattr(loader, "sampler", None) is not None else len(loader.dataset)


def table_lines(trials):
    lines = [f"{'batch size':>10}  {'fits':>4}  {'peak MB':>9}  {'samples/s':>10}  note"]
    for t in trials:
        lines.append(f"{t.batch_size:>10}  {'yes' if t.fits else 'no':>4}  {t.peak_memory_mb:>9.1f}  "
                     f"{t.samples_per_s:>10.1f}  {t.note}")
    return lines
