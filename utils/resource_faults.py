"""Training that dies of a resource outside the program's control (GPU memory, a data-loader
worker killed by the out-of-memory killer): a message that says so and what to change."""
import re

import torch

from .errors import ConfigError

WORKER_DIED = re.compile(r"DataLoader worker \(pid.*?\) (exited unexpectedly|is killed by signal)")


def explain_resource_fault(err, config, last_checkpoint=None):
    """A ConfigError for a known resource fault, or None for any other error."""
    resume = (f" Resume from the last checkpoint with: python train.py -r {last_checkpoint}"
              if last_checkpoint is not None else " No checkpoint of this run exists yet.")
    loader_args = config["data_loader"].get("args", {})
    if isinstance(err, torch.cuda.OutOfMemoryError):
        batch_size = loader_args.get("batch_size", "?")
        smaller = max(1, batch_size // 2) if isinstance(batch_size, int) else "N"
        return ConfigError(
            f"the GPU ran out of memory while training with data_loader.args.batch_size={batch_size} per "
            f"process. Lower the batch size (--bs {smaller}) and keep the effective batch with gradient "
            f"accumulation (-o trainer.accum_steps=2), turn on mixed precision (-o trainer.amp=true), or "
            f"use a smaller model.{resume}")
    if isinstance(err, RuntimeError) and WORKER_DIED.search(str(err)):
        workers = loader_args.get("num_workers", "?")
        return ConfigError(
            f"a data-loader worker process was killed from outside ({str(err).strip().splitlines()[0]}); the "
            "usual cause is the system's out-of-memory killer. Lower data_loader.args.num_workers (now "
            f"{workers}) or the memory each worker uses (smaller batch_size, no in-memory copy of the "
            f"dataset per worker), or give the job more memory.{resume}")
    return None
