"""The in-memory loader moved to data_loader/in_memory.py; this name keeps old imports working."""
from data_loader.in_memory import (  # noqa: F401
    InMemoryBatches,
    InMemoryData,
    InMemoryDataLoader,
    dataset_tensors,
    normalize_stats,
)
