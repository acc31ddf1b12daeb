import importlib
from itertools import repeat

from .errors import ConfigError, main_guard
from .io import atomic_torch_save, atomic_write_csv, read_json, write_json

# names whose modules import torch, loaded when first used: `from utils.errors import ...` and
# the command-line programs' argument parsing (--help) stay free of torch
LAZY_NAMES = {"prepare_device": "device", "unwrap_model": "device", "MetricTracker": "metric_tracker"}


def __getattr__(name):
    if name not in LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{LAZY_NAMES[name]}"), name)
    globals()[name] = value
    return value


def inf_loop(data_loader):
    """Endless iterator over a data loader (pytorch-template API)."""
    for loader in repeat(data_loader):
        yield from loader


__all__ = [
    "ConfigError", "MetricTracker", "atomic_torch_save", "atomic_write_csv", "inf_loop",
    "main_guard", "prepare_device", "read_json", "unwrap_model", "write_json",
]
