"""Reading a .dcp checkpoint folder (utils/dcp.py) safely: DCP's reader with its .metadata
unpickled through an allow-list, and a planner that loads tensors only. Its own module because
importing torch.distributed.checkpoint takes about a second, which only a program that reads or
writes such a folder should pay."""
import pickle
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import StorageMeta

METADATA = ".metadata"  # the index file DCP writes in a checkpoint folder (also utils.dcp.METADATA)
# what DCP pickles into .metadata: its dataclasses, sizes, paths; torch dtypes are allowed below
SAFE_GLOBALS = {("torch.distributed.checkpoint.metadata", name) for name in (
    "Metadata", "MetadataIndex", "StorageMeta", "TensorStorageMetadata", "BytesStorageMetadata",
    "ChunkStorageMetadata", "TensorProperties", "_MEM_FORMAT_ENCODING")} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
    ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict")}


class _MetadataUnpickler(pickle.Unpickler):
    """DCP's .metadata holds dataclasses of torch.distributed.checkpoint, dtypes and sizes only."""

    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout,
                                                                           torch.memory_format)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name} is not allowed in a checkpoint's .metadata")


class SafeReader(dcp.FileSystemReader):
    """DCP's reader, with .metadata unpickled through the allow-list."""

    def read_metadata(self, *args, **kwargs):
        path = Path(self.path) / METADATA
        with path.open("rb") as handle:
            metadata = _MetadataUnpickler(handle).load()
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class TensorsOnlyPlanner(DefaultLoadPlanner):
    """Loads tensors; a pickled object in the checkpoint is refused rather than unpickled."""

    def load_bytes(self, read_item, value):
        raise pickle.UnpicklingError(f"'{read_item.dest_index.fqn}' is a pickled object, not a tensor")
