"""Switches of the trainer section that act on the model or the backend: torch.compile, cuDNN
autotuning and deterministic algorithms. All are off by default (compile changes numerics
slightly, benchmark makes convolution algorithms nondeterministic, determinism costs speed)."""
import logging
import os
import shutil

import torch

from utils import ConfigError
from utils.errors import first_line

logger = logging.getLogger("trainer")

NO_DETERMINISTIC_VERSION = "does not have a deterministic implementation"


def apply_backend_flags(cudnn_benchmark, deterministic=False):
    """trainer.cudnn_benchmark: let cuDNN time its algorithms for each new input shape;
    trainer.deterministic: use only deterministic algorithms."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if deterministic:
        # cuBLAS repeats its results only with a fixed workspace, read when CUDA first uses it
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True)


def check_determinism_settings(trainer_section):
    if trainer_section.get("deterministic") and trainer_section.get("cudnn_benchmark"):
        raise ConfigError("trainer.deterministic and trainer.cudnn_benchmark are both true, but cuDNN's benchmark "
                          "picks its algorithms by timing them, which differs from run to run. Set "
                          "trainer.cudnn_benchmark to false.")


def explain_nondeterministic_operation(err, last_checkpoint=None):
    """A ConfigError for an operation that trainer.deterministic refuses, or None for any other error."""
    if not isinstance(err, RuntimeError) or NO_DETERMINISTIC_VERSION not in str(err):
        return None
    resume = f" The last checkpoint is {last_checkpoint}." if last_checkpoint is not None else ""
    return ConfigError(f"trainer.deterministic is true, but the model uses an operation with no deterministic "
                       f"version on this device ({first_line(err)}). Set trainer.deterministic to false, or replace "
                       f"that operation in the model.{resume}")


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
