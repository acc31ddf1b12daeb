"""Loss scaling for mixed precision (trainer.amp); autocast itself is utils.device.autocast_context."""
import torch


def make_grad_scaler(amp, device):
    """fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 does not."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
