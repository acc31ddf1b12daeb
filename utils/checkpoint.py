"""Finding and safely loading checkpoints. Loading always uses weights_only=True, so a file
that carries pickled code is refused rather than executed."""
import logging
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .errors import ConfigError

logger = logging.getLogger(__name__)
CHECKPOINT_PATTERN = re.compile(r"checkpoint-epoch(\d+)(?:-step(\d+))?\.pth$")


def load_checkpoint(path, map_location="cpu", mmap=False):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"resume path '{path}' does not exist or is not a file. Pass a .pth "
                          "checkpoint or a run folder.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"checkpoint '{path}' was refused: it holds objects other than tensors and plain "
            f"containers, which could run code when loaded ({str(err).splitlines()[0]}). Only load "
            "checkpoints written by this framework or re-save the weights as a plain state dict."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ConfigError(
            f"checkpoint '{path}' is truncated or corrupt and cannot be read ({str(err).splitlines()[0]}). "
            "Resume from an earlier checkpoint or from the run folder to pick the newest valid one."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"'{path}' is not a checkpoint of this framework (it has no 'state_dict').")
    return checkpoint


def checkpoint_order(path):
    """Sort key: (epoch, step inside the epoch); model_best and unknown names sort first."""
    match = CHECKPOINT_PATTERN.search(Path(path).name)
    if not match:
        return (-1, -1)
    return (int(match.group(1)), int(match.group(2) or 10**12))


def find_latest_checkpoint(run_dir):
    """The newest checkpoint in `run_dir` that loads; corrupt ones are skipped with a warning."""
    run_dir = Path(run_dir)
    candidates = sorted(run_dir.glob("checkpoint-epoch*.pth"), key=checkpoint_order, reverse=True)
    for candidate in candidates:
        try:
            load_checkpoint(candidate, mmap=True)
            return candidate
        except ConfigError as err:
            logger.warning(f"Skipping checkpoint {candidate}: {err}")
    raise ConfigError(
        f"no valid checkpoint-epoch*.pth found in '{run_dir}'. Pass a checkpoint file, or a run "
        "folder under saved/models/<name>/ that holds checkpoints."
    )


def strip_module_prefix(state_dict):
    """Checkpoints from DataParallel-era code carry 'module.' on every key."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module."):]: value for key, value in state_dict.items()}
    return state_dict


def load_weights(model, state_dict, source, strict=True):
    """Load `state_dict` into `model`. With strict, any missing, unexpected or reshaped key is a
    ConfigError that lists them; otherwise the fitting keys load and (missing, unexpected) are
    returned."""
    state_dict = strip_module_prefix(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if strict and (missing or unexpected or reshaped):
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("shape mismatch", reshaped)) if keys]
        raise ConfigError(
            f"the weights in '{source}' do not fit the configured model (arch): {'; '.join(parts)}. "
            "Use the arch settings the checkpoint was trained with, or start from it non-strictly."
        )
    fitting = {k: v for k, v in state_dict.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(fitting, strict=False)
    return missing, unexpected + [r.split(":")[0] for r in reshaped]
