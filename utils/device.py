"""Device selection, and mixed-precision autocast on a device."""
import contextlib
import logging

import torch

logger = logging.getLogger(__name__)
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def prepare_device(n_gpu_use, warn=True):
    """Return the device to train on and the GPU ids DataParallel may use (pytorch-template
    semantics: fall back to what the machine has, saying so unless `warn` is false)."""
    n_gpu = torch.cuda.device_count()
    if n_gpu_use > 0 and n_gpu == 0:
        if warn:  # what a machine without a GPU does, not a problem: said once, not as a warning
            logger.info("No GPU on this machine: training on the CPU.")
        n_gpu_use = 0
    if n_gpu_use > n_gpu:
        logger.warning(
            f"The number of GPU's configured to use is {n_gpu_use}, but only {n_gpu} are "
            "available on this machine."
        )
        n_gpu_use = n_gpu
    device = torch.device("cuda:0" if n_gpu_use > 0 else "cpu")
    return device, list(range(n_gpu_use))


def unwrap_model(model):
    """The bare module inside DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def autocast_context(amp, device):
    """A context manager for the forward pass: autocast to bf16/fp16 (trainer.amp), or nothing."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])
