from itertools import repeat

from .device import prepare_device, unwrap_model
from .errors import ConfigError, main_guard
from .io import atomic_torch_save, atomic_write_csv, read_json, write_json
from .metric_tracker import MetricTracker


def inf_loop(data_loader):
    """Endless iterator over a data loader (pytorch-template API)."""
    for loader in repeat(data_loader):
        yield from loader


__all__ = [
    "ConfigError", "MetricTracker", "atomic_torch_save", "atomic_write_csv", "inf_loop",
    "main_guard", "prepare_device", "read_json", "unwrap_model", "write_json",
]
