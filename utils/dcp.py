"""Sharded checkpoints: a folder in torch.distributed.checkpoint (DCP) format, written by every
process together and readable by any number of processes, or by one.

    checkpoint-epoch3.dcp/
        .metadata            DCP's index: each tensor's full shape and which file holds which part
        __0_0.distcp         the weights and optimizer tensors that rank 0 held
        __1_0.distcp         ... one file per saving process
        trainer_state.pth    everything else (epoch, history, config, schedule, random states of
                             every rank, ...), written by rank 0 with torch.save

Only tensors go through DCP. Everything else is a plain torch.save file that loads with
weights_only=True, and DCP's own .metadata (a pickle) is read with an allow-list of the classes
DCP writes there, so loading a sharded checkpoint runs no code from it either.

A folder is written under a hidden temporary name and renamed into place by rank 0 once every
process has written its part: a process killed at any instant leaves the previous folder or the
new one, never a half-written folder under a checkpoint's name.
"""
import os
import shutil
import warnings
from pathlib import Path

import torch

from . import dist
from .io import _fsync_dir, atomic_torch_save

METADATA = ".metadata"
TRAINER_STATE = "trainer_state.pth"
WEIGHTS = "state_dict"  # the DCP key prefix of the model's tensors
OPTIMIZER_TENSORS = "optimizer"  # ... and of the optimizer's
def is_complete(path):
    """A folder holding both DCP's index and the trainer state (what the writer renames into place)."""
    path = Path(path)
    return (path / METADATA).is_file() and (path / TRAINER_STATE).is_file()


def read_metadata(path):
    from .dcp_reader import SafeReader

    return SafeReader(path).read_metadata()


def missing_parts(path):
    """The shard files the folder's .metadata names that are not in it."""
    names = {info.relative_path for info in read_metadata(path).storage_data.values()}
    return sorted(name for name in names if not (Path(path) / name).is_file())


def saved_tensors(path, prefix, device="meta"):
    """The tensors saved under `prefix` (WEIGHTS or OPTIMIZER_TENSORS) in the checkpoint at `path`,
    nested as they were saved ({name: tensor}, {parameter: {state key: tensor}}), empty on `device`:
    on "meta" they carry only shape and dtype."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = read_metadata(path)
    tree = {}
    for key, entry in metadata.state_dict_metadata.items():
        location = (metadata.planner_data or {}).get(key, ())
        if not location or location[0] != prefix or not isinstance(entry, TensorStorageMetadata):
            continue
        node = tree
        for part in location[1:-1]:
            node = node.setdefault(part, {})
        node[location[-1]] = torch.empty(entry.size, dtype=entry.properties.dtype, device=device)
    return tree


def weight_shapes(path):
    """{name: meta tensor} of every weight in the checkpoint at `path` (shape and dtype, no data)."""
    return saved_tensors(path, WEIGHTS)


def load_tensors(tensors, path):
    """Fill the tensors of the nested dict `tensors` (plain tensors or DTensors, already on their
    device; keys as saved, under WEIGHTS / OPTIMIZER_TENSORS) from the checkpoint at `path`. Each
    process reads the parts it holds, so the checkpoint may come from any number of processes."""
    import torch.distributed.checkpoint as dcp

    from .dcp_reader import SafeReader, TensorsOnlyPlanner

    dcp.load(tensors, storage_reader=SafeReader(path), planner=TensorsOnlyPlanner(),
             no_dist=not dist.is_distributed())


def gather_tensors(path, prefix):
    """The tensors under `prefix`, whole, on the CPU, read in this process alone."""
    import torch.distributed.checkpoint as dcp

    from .dcp_reader import SafeReader, TensorsOnlyPlanner

    tree = saved_tensors(path, prefix, device="cpu")
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load({prefix: tree}, storage_reader=SafeReader(path), planner=TensorsOnlyPlanner(), no_dist=True)
    return tree


def write_checkpoint_dir(path, tensors, trainer_state, same_as=None):
    """Write the folder `path` (every process calls this): `tensors` (a nested dict of this
    process's tensors and DTensors) through DCP, `trainer_state` (plain values, the same on every
    rank) by rank 0. `same_as`: a complete folder already holding this state; its files are
    hard-linked (or copied) instead of written again."""
    path = Path(path)
    temp = path.parent / f".{path.name}.writing.tmp"
    if dist.is_main_process():
        shutil.rmtree(temp, ignore_errors=True)  # from a save killed before
        temp.mkdir()
    dist.barrier()
    if same_as is not None:
        if dist.is_main_process():
            _link_files(Path(same_as), temp)
    else:
        import torch.distributed.checkpoint as dcp

        dcp.save(tensors, storage_writer=dcp.FileSystemWriter(temp, sync_files=True))  # every rank writes its part
        if dist.is_main_process():
            atomic_torch_save(trainer_state, temp / TRAINER_STATE)
    dist.barrier()  # every rank's files are complete
    if dist.is_main_process():
        publish(temp, path)
    dist.barrier()


def _link_files(source, target):
    for file in source.iterdir():
        try:
            os.link(file, target / file.name)
        except OSError:  # a file system without hard links
            shutil.copy2(file, target / file.name)
    _fsync_dir(target)


def replaced_name(path):
    """Where `publish` keeps the previous folder of that name for the instant of the swap."""
    path = Path(path)
    return path.parent / f".{path.name}.old.tmp"


def publish(temp, path):
    """Rename the finished folder `temp` to `path`. A folder cannot replace another in one rename:
    the old one steps aside first (see `replaced_name`) and is deleted after."""
    old = replaced_name(path)
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(temp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def remove_checkpoint(path):
    """Delete a checkpoint file or folder. A folder first leaves its name (one rename), so that a
    kill while its files are deleted leaves a hidden remainder, not a gutted checkpoint."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        doomed = path if path.name.startswith(".") else path.parent / f".{path.name}.deleting.tmp"
        if doomed != path:
            shutil.rmtree(doomed, ignore_errors=True)
            os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class ShardedWeights(dict):
    """The weights of a sharded checkpoint as {name: meta tensor} (shape and dtype, no data), and
    the folder that holds them (`path`): what a loaded .dcp checkpoint has under "state_dict".
    `gather()` reads them whole; a sharded model reads only its own parts (trainer/fsdp.py)."""

    def __init__(self, path):
        super().__init__(weight_shapes(path))
        self.path = Path(path)

    def gather(self):
        return gather_tensors(self.path, WEIGHTS)
