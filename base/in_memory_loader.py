"""The in-memory loader moved to data_loader/in_memory.py; this name keeps old imports working."""
from data_loader.in_memory import InMemoryBatches, InMemoryDataLoader  # noqa: F401
