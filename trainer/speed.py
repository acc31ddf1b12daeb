"""Speed switches of the trainer section that act on the model or the backend: torch.compile
and cuDNN autotuning. Both are off by default (compile changes numerics slightly, benchmark
makes convolution algorithms nondeterministic)."""
import logging
import shutil

import torch

logger = logging.getLogger("trainer")


def apply_backend_flags(cudnn_benchmark):
    """trainer.cudnn_benchmark: let cuDNN time its algorithms for each new input shape."""
    torch.backends.cudnn.benchmark = cudnn_benchmark


def maybe_compile(model, setting, device):
    """trainer.compile: false/null (off), true (default mode) or a mode name (checked by the
    schema). Where torch.compile cannot work on this machine, say why and train uncompiled."""
    if setting in (None, False):
        return model
    mode = "default" if setting is True else setting
    reason = compile_unsupported_reason(device)
    if reason:
        logger.warning(f"trainer.compile is on, but torch.compile is unsupported here: {reason}. "
                       "Training without compiling; set trainer.compile to false to hide this message.")
        return model
    logger.info(f"torch.compile(mode={mode!r}): the first steps of training and of validation compile.")
    return torch.compile(model, mode=mode)


def compile_unsupported_reason(device):
    """None when torch.compile can run on `device`, else a sentence saying what is missing."""
    if not torch._dynamo.is_dynamo_supported():
        return "TorchDynamo does not support this Python version or platform"
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
        return "the inductor backend needs a C++ compiler on the CPU (install g++ or clang++)"
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (7, 0):
        return "the inductor backend needs a GPU of compute capability 7.0 or newer"
    return None
