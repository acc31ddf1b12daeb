from itertools import repeat

from .device import prepare_device, unwrap_model
from .errors import ConfigError, main_guard
from .io import atomic_torch_save, atomic_write_csv, read_json, write_json


def __getattr__(name):
    """MetricTracker lives with the trainer (trainer/metric_tracker.py); template code imports it
    from utils. Imported on first use, so that importing utils does not import the trainer."""
    if name == "MetricTracker":
        from trainer.metric_tracker import MetricTracker

        return MetricTracker
    raise AttributeError(f"module 'utils' has no attribute '{name}'")


def inf_loop(data_loader):
    """Endless iterator over a data loader (pytorch-template API)."""
    for loader in repeat(data_loader):
        yield from loader


__all__ = [
    "ConfigError", "MetricTracker", "atomic_torch_save", "atomic_write_csv", "inf_loop",
    "main_guard", "prepare_device", "read_json", "unwrap_model", "write_json",
]
