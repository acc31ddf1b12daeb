"""torch.distributed helpers for runs launched by torchrun (DistributedDataParallel).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK for each process; without them every helper
here is a no-op that answers as a single process (rank 0 of 1), so plain `python train.py`
behaves exactly as before.
"""
import gc
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist

from .errors import ConfigError, TrainingStopped


def launched_by_torchrun():
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def rank():
    return dist.get_rank() if is_distributed() else 0


def world_size():
    return dist.get_world_size() if is_distributed() else 1


def backend():
    """The backend name ("nccl", "gloo"), or None outside torchrun."""
    return dist.get_backend() if is_distributed() else None


def local_rank():
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process():
    """Rank 0 (or a plain single process): the only process that writes files and logs."""
    return rank() == 0


def init_distributed():
    """Join the process group when launched by torchrun: NCCL when CUDA is there, else gloo.
    Each rank is pinned to cuda:LOCAL_RANK before init, so NCCL and every later
    `.cuda()` use that rank's own GPU rather than all piling onto cuda:0."""
    if not launched_by_torchrun() or is_distributed():
        return
    if torch.cuda.is_available():
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(
                f"torchrun started a process with LOCAL_RANK {local_rank()}, but only "
                f"{torch.cuda.device_count()} GPU(s) are visible: use --nproc_per_node="
                f"{torch.cuda.device_count()} or fewer (one process per GPU).")
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank()))
    else:
        dist.init_process_group("gloo")


def device():
    """This rank's device: cuda:LOCAL_RANK under NCCL, the CPU under gloo."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def wrap_model(model):
    """DistributedDataParallel around a model already moved to `device()`."""
    ddp_device = device()
    device_ids = [ddp_device.index] if ddp_device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def barrier():
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values):
    """Sum a list of numbers over all ranks (float64, one collective); the list unchanged
    for a single process."""
    if not is_distributed():
        return [float(v) for v in values]
    # NCCL only reduces tensors on the GPU; gloo takes CPU tensors.
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def max_over_ranks(value):
    """The largest integer `value` over all ranks (e.g. a stop-signal number, 0 for none)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([int(value)], dtype=torch.int64, device=device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def broadcast_tensors(tensors):
    """Overwrite each tensor with rank 0's, in place (tensors on this rank's device)."""
    if is_distributed():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def share_buffers(module):
    """Give every process rank 0's buffers of `module` (an unwrapped model), e.g. batch-norm
    statistics. Under DDP and FSDP each process updates its own buffers from its own batches, and
    a checkpoint holds rank 0's: done before each validation (and each sharded checkpoint), so
    that every process evaluates the model its checkpoint holds."""
    broadcast_tensors(list(module.buffers()))


def all_gather_object(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank; [obj] for a single process."""
    if not is_distributed():
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (any picklable value)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


@contextmanager
def local_main_process_first():
    """Run the body on each machine's local rank 0 first and on its other ranks after (e.g.
    download or unpack a data set once per machine, not N times into the same files)."""
    if is_distributed() and local_rank() != 0:
        barrier()
    yield
    if is_distributed() and local_rank() == 0:
        barrier()


def shutdown(wait_for_peers=True):
    """Leave the process group. gloo can abort at interpreter exit ("terminate called without
    an active exception") while DDP's reducer or a pending collective still references it:
    collect the dead DDP model first, let every rank arrive, then destroy the group."""
    if not is_distributed():
        return
    gc.collect()
    if wait_for_peers:
        barrier()
    dist.destroy_process_group()


@contextmanager
def distributed_session():
    """Init the process group (under torchrun) for the body and tear it down after. A stop
    signal ends every rank at the same step, so they can meet at the final barrier; any other
    error may hit one rank only, and waiting for the others there would hang: skip the
    barrier, exit non-zero, and torchrun stops the remaining ranks."""
    init_distributed()
    try:
        yield
    except TrainingStopped as stop:
        main_process = is_main_process()
        shutdown(wait_for_peers=True)
        if not main_process:  # same exit code, but the resume hint is printed once, by rank 0
            raise SystemExit(stop.exit_code) from None
        raise
    except BaseException:
        shutdown(wait_for_peers=False)
        raise
    shutdown(wait_for_peers=True)
