"""Mixed precision settings from the trainer section."""
import contextlib

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(amp, device):
    """A context manager for the forward pass: autocast to bf16/fp16 (trainer.amp), or nothing."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def make_grad_scaler(amp, device):
    """fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 does not."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
