"""trainer.profile (train.py --profile N): torch.profiler over N training steps after a warm-up.

The training loop marks four ranges in every step: train/data (waiting for the next batch and
copying it to the device), train/forward (model and loss), train/backward and train/optimizer
(clipping, the step, zeroing, EMA, a per-step scheduler). Whatever else a step takes (metric
updates, logging, checks, callbacks) is the framework's own time. Outside the window the
ranges are no-ops. The window stays inside one epoch (validation is not profiled) and runs
on rank 0 only. It writes, into the run's log folder, profile/:

    trace.json         Chrome trace: open it in https://ui.perfetto.dev or chrome://tracing
    summary.json       the window, the time shares and the top operators
    top_operators.txt  the table that info.log shows
"""
import contextlib
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from utils.io import atomic_open, write_json

RANGES = {"data": "train/data", "forward": "train/forward", "backward": "train/backward",
          "optimizer": "train/optimizer"}
WARMUP_STEPS = 5  # steps before the window: the first steps allocate memory, autotune and compile
TOP_OPERATORS = 15
NAME_WIDTH = 90  # CUDA kernels' names run to hundreds of characters; summary.json keeps them whole
_NULL = contextlib.nullcontext()


class NoProfiler:
    """What the trainer calls when it is not profiling: nothing happens."""
    active = False

    def range(self, name):
        return _NULL

    def batches(self, batches):
        return batches

    def step(self):
        pass

    def end_epoch(self):
        pass

    def close(self):
        pass


class StepProfiler(NoProfiler):
    """Profiles `steps` training steps after WARMUP_STEPS (fewer when the epoch is short)."""

    def __init__(self, steps, out_dir, device, logger, steps_per_epoch):
        self.steps = min(steps, steps_per_epoch)
        self.warmup = max(0, min(WARMUP_STEPS, steps_per_epoch - self.steps))
        self.out_dir, self.device, self.logger = out_dir, device, logger
        self.seen = 0  # training steps finished, counted from the first step of this run
        self.profiler = None
        self.step_range = None  # the record_function of the step in progress
        self.started_at = None
        self.done = False
        self.result = None  # the summary once written

    @property
    def active(self):
        return self.profiler is not None

    def range(self, name):
        return self._timed_range(RANGES[name]) if self.profiler is not None else _NULL

    @contextlib.contextmanager
    def _timed_range(self, label):
        with record_function(label):
            yield
            if self.device.type == "cuda":  # kernels run asynchronously: charge them to their range
                torch.cuda.synchronize(self.device)

    def batches(self, batches):
        """`batches`, with the wait for each item inside the window timed as data loading."""
        iterator = iter(batches)
        while True:
            if self.profiler is None and not self.done and self.seen >= self.warmup:
                self._start()
            if self.profiler is not None:  # a step starts with its wait for data
                self.step_range = record_function(f"ProfilerStep#{self.seen + 1}")
                self.step_range.__enter__()
            with self.range("data"):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item

    def step(self):
        """Called after every training step."""
        self.seen += 1
        if self.profiler is not None:
            self._end_step_range()
            if self.seen - self.warmup >= self.steps:
                self._finish()

    def _end_step_range(self):
        if self.step_range is not None:
            self.step_range.__exit__(None, None, None)
            self.step_range = None

    def end_epoch(self):
        """The window does not span validation: an epoch that ends inside it ends it."""
        if self.profiler is not None:
            self._finish()

    def close(self):
        """Training ended (or failed) inside the window: stop the profiler without writing."""
        if self.profiler is not None:
            self._end_step_range()
            self.profiler.__exit__(None, None, None)
            self.profiler = None

    def _start(self):
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        self.profiler = profile(activities=activities, record_shapes=False, profile_memory=False)
        self.profiler.__enter__()
        self.started_at = time.perf_counter()
        self.warmup = self.seen  # the steps before the window

    def _finish(self):
        self._end_step_range()  # the epoch ended while waiting for a batch that never came
        window_seconds = time.perf_counter() - self.started_at
        profiler, self.profiler, self.done = self.profiler, None, True
        profiler.__exit__(None, None, None)
        profiled_steps = self.seen - self.warmup
        self.out_dir.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(self.out_dir / "trace.json"))
        self.result = summarize_profile(profiler.key_averages(), window_seconds, profiled_steps, self.warmup,
                                        self.device.type == "cuda")
        write_json(self.result, self.out_dir / "summary.json")
        lines = report_lines(self.result, self.out_dir / "trace.json")
        with atomic_open(self.out_dir / "top_operators.txt", "wt") as handle:
            handle.write("\n".join(lines) + "\n")
        for line in lines:
            self.logger.info(line)


def summarize_profile(averages, window_seconds, steps, warmup, on_cuda):
    """The shares of the window's wall time per range, the framework's rest, and the top
    operators by self time (on CUDA: the kernels, by device time)."""
    window_us = window_seconds * 1e6
    # on CUDA a range is also recorded on the device timeline under the same name, with no CPU
    # time: the host-side event is the one that spans the range
    spent = {name: max((event.cpu_time_total for event in averages if event.key == label), default=0.0)
             for name, label in RANGES.items()}
    shares = {name: us / window_us for name, us in spent.items()}
    shares["framework"] = max(0.0, 1.0 - sum(shares.values()))
    time_key = "self_device_time_total" if on_cuda else "self_cpu_time_total"
    operators = [event for event in averages if _is_operator(event, on_cuda)]
    operators.sort(key=lambda event: getattr(event, time_key), reverse=True)
    top = [{"operator": event.key, "calls": event.count, "self_ms": getattr(event, time_key) / 1e3,
            "share_of_window": getattr(event, time_key) / window_us} for event in operators[:TOP_OPERATORS]]
    return {"steps": steps, "warmup_steps": warmup, "window_seconds": window_seconds,
            "seconds_per_step": window_seconds / max(steps, 1), "time": "device (CUDA)" if on_cuda else "CPU",
            "shares": shares, "top_operators": top}


def _is_operator(event, on_cuda):
    """A row of the top-operators table: not one of our ranges or a step marker; on CUDA a
    kernel or copy on the device (annotations there span whole ranges, and host-side operators
    would count their kernels a second time)."""
    if event.key.startswith(("train/", "ProfilerStep")):
        return False
    if on_cuda:
        return event.device_type != DeviceType.CPU and not getattr(event, "is_user_annotation", False)
    return True


def report_lines(result, trace_path):
    lines = [f"Profile of {result['steps']} training steps after {result['warmup_steps']} warm-up steps: "
             f"{result['seconds_per_step'] * 1e3:.1f} ms per step. Time shares:"]
    lines += [f"    {name:<10} {share:6.1%}" for name, share in result["shares"].items()]
    names = [_shortened(row["operator"]) for row in result["top_operators"]]
    width = max([len(name) for name in names] + [8])
    lines.append(f"Top operators by self {result['time']} time:")
    lines.append(f"    {'operator':<{width}}  {'calls':>6}  {'self ms':>9}  {'share':>6}")
    lines += [f"    {name:<{width}}  {row['calls']:>6}  {row['self_ms']:>9.2f}  "
              f"{row['share_of_window']:>6.1%}" for name, row in zip(names, result["top_operators"])]
    lines.append(f"Trace: {trace_path} (open it in https://ui.perfetto.dev or chrome://tracing)")
    return lines


def _shortened(name):
    return name if len(name) <= NAME_WIDTH else name[:NAME_WIDTH - 3] + "..."


def make_profiler(steps, run_folder, device, logger, steps_per_epoch, main_process):
    """A StepProfiler when trainer.profile is set (rank 0 of a run with a folder), else a NoProfiler."""
    if not steps or run_folder is None or not main_process:
        return NoProfiler()
    return StepProfiler(steps, run_folder.profile_dir, device, logger, steps_per_epoch)

