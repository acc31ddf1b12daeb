"""Loading checkpoints safely, their keys, and putting their weights into a model. Loading always
uses weights_only=True, so a file that carries pickled code is refused rather than executed.
Which checkpoint files a run has, and their names, is run/checkpoints.py's business. A sharded
checkpoint is a folder (see utils/dcp.py); it loads here too, its weights as ShardedWeights."""
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from .dcp import OPTIMIZER_TENSORS, TRAINER_STATE, ShardedWeights, gather_tensors, is_complete, missing_parts
from .errors import ConfigError, first_line

logger = logging.getLogger(__name__)


class Key:
    """The names of a checkpoint's entries, in one place (pytorch-template's names are kept)."""
    ARCH = "arch"  # the model's class name
    EPOCH = "epoch"
    BATCHES_DONE = "batches_done"  # >0: saved inside EPOCH, which is not finished
    STATE_DICT = "state_dict"  # the model's weights, never with a DDP "module." prefix
    OPTIMIZER = "optimizer"
    LR_SCHEDULER = "lr_scheduler"
    MONITOR_BEST = "monitor_best"
    EPOCHS_SINCE_IMPROVEMENT = "epochs_since_improvement"
    HISTORY = "history"  # one dict of logged values per finished epoch
    CONFIG = "config"  # the run's config as a plain dict
    RNG_STATES = "rng_states"  # python, numpy, torch (+ cuda) generators of rank 0
    RANK_RNG_STATES = "rank_rng_states"  # DDP: every rank's generators
    GRAD_SCALER = "grad_scaler"
    TRAIN_METRICS = "train_metrics"  # partial epoch totals of a checkpoint taken inside an epoch
    WORLD_SIZE = "world_size"
    TRAIN_EPOCH_METRICS = "train_epoch_metrics"  # torchmetrics states of a checkpoint taken inside an epoch
    EMA = "ema"  # the averaged weights (trainer.ema)
    SWA = "swa"  # the stochastic weight average and its SWALR state (trainer.swa)
    CALLBACKS = "callbacks"  # each config callback's state_dict
    CLASS_NAMES = "class_names"  # the data loader's class names, for evaluation and prediction
    TASK = "task"  # classification, binary, multilabel or regression (data_loader/task.py)
    TARGET_NAMES = "target_names"  # regression: the target columns, in the order of the model's outputs
    TARGET_SCALING = "target_scaling"  # regression: {"mean": [...], "scale": [...]} of the standardised targets
    TOP_K = "top_k"  # trainer.save_top_k: [[file name, monitored value], ...], best first
    STEP_VALIDATION = "step_validation"  # trainer.val_every_n_steps: the epoch's latest val_* values
    DATA_LOADER = "data_loader"  # the training loader's own position (streaming shards); None for the others
    TORCH_VERSION = "torch_version"  # sharded checkpoints: the torch that wrote them


def load_checkpoint(path, map_location="cpu", mmap=False):
    path = Path(path)
    if path.is_dir() and path.suffix == ".dcp":
        return load_sharded_checkpoint(path)
    if not path.is_file():
        raise ConfigError(f"resume path '{path}' does not exist or is not a file. Pass a .pth "
                          "checkpoint, a .dcp checkpoint folder or a run folder.")
    checkpoint = safe_load(path, map_location, mmap)
    if not isinstance(checkpoint, dict) or Key.STATE_DICT not in checkpoint:
        raise ConfigError(f"'{path}' is not a checkpoint of this framework (it has no 'state_dict').")
    if not isinstance(checkpoint[Key.STATE_DICT], Mapping):
        raise ConfigError(f"'{path}' is damaged: its 'state_dict' is {_kind_of(checkpoint[Key.STATE_DICT])}, not the "
                          "model's weights by name. Use another checkpoint of the run, e.g. its run folder with -r.")
    return checkpoint


def _kind_of(value):
    return f"the class {value.__name__}" if isinstance(value, type) else f"a {type(value).__name__}"


def load_sharded_checkpoint(path):
    """A .dcp folder: its trainer state, with the weights as ShardedWeights (shapes; read on use)."""
    if not is_complete(path):
        raise ConfigError(f"'{path}' is not a complete sharded checkpoint: it lacks .metadata or {TRAINER_STATE} "
                          "(a copy cut short, or not a checkpoint folder). Resume from another checkpoint, or "
                          "pass the run folder to pick the newest valid one.")
    checkpoint = safe_load(path / TRAINER_STATE)
    try:
        checkpoint[Key.STATE_DICT] = ShardedWeights(path)
        missing = missing_parts(path)
    except Exception as err:  # a damaged or foreign .metadata
        raise ConfigError(_unreadable_message(path / ".metadata", err)) from None
    if missing:
        raise ConfigError(f"'{path}' is not a complete sharded checkpoint: {', '.join(missing)} (named in its "
                          ".metadata) is missing. Resume from another checkpoint, or pass the run folder to pick "
                          "the newest valid one.")
    saved_torch = checkpoint.get(Key.TORCH_VERSION)
    if saved_torch != str(torch.__version__) and path not in _WARNED_VERSIONS:
        _WARNED_VERSIONS.add(path)
        logger.warning(f"'{path}' was written by torch {saved_torch} and is read by torch {torch.__version__}: "
                       "torch.distributed.checkpoint makes no promise across versions. If loading fails or the "
                       "numbers look wrong, load it with the torch that wrote it and convert it to a .pth file "
                       "(python -m utils.convert_checkpoint).")
    return checkpoint


_WARNED_VERSIONS = set()


def safe_load(path, map_location="cpu", mmap=False):
    """torch.load with weights_only=True; a file with pickled code or a damaged one is a
    ConfigError that says which."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        code = re.findall(r"GLOBAL ([\w.]+)", str(err))
        if code:  # the file names a Python callable: loading it normally would call it
            raise ConfigError(
                f"checkpoint '{path}' was refused: it carries pickled code, not only tensors and plain "
                f"containers (it names {code[0]}, which unpickling would call). Nothing in it was run. If "
                "you trust its source, re-save it there with plain values only (tensors, numbers, "
                "strings, lists, dicts)."
            ) from None
        raise ConfigError(_unreadable_message(path)) from None
    except Exception as err:  # torch raises many types for a damaged file: all mean unreadable
        raise ConfigError(_unreadable_message(path, err)) from None
    return checkpoint


def _unreadable_message(path, err=None):
    reason = f" ({first_line(err, 120)})" if err is not None else ""
    return (f"checkpoint '{path}' is truncated, corrupt or not a PyTorch checkpoint{reason}. Resume "
            "from an earlier checkpoint, or pass the run folder to pick the newest valid one.")


def strip_module_prefix(state_dict):
    """Checkpoints from DataParallel-era code carry 'module.' on every key."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module."):]: value for key, value in state_dict.items()}
    return state_dict


def weight_mismatches(model_state, state_dict):
    """(missing, unexpected, reshaped) keys of `state_dict` against a model's own state dict;
    `reshaped` entries read 'key: checkpoint (shape) vs model (shape)'."""
    missing = [k for k in model_state if k not in state_dict]
    unexpected = [k for k in state_dict if k not in model_state]
    reshaped = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(model_state[k].shape)}"
                for k, v in state_dict.items() if k in model_state and v.shape != model_state[k].shape]
    return missing, unexpected, reshaped


def check_weights_fit(model_state, state_dict, source):
    """ConfigError listing every missing, unexpected and reshaped key, if there is one."""
    missing, unexpected, reshaped = weight_mismatches(model_state, strip_module_prefix(state_dict))
    if missing or unexpected or reshaped:
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("shape mismatch", reshaped)) if keys]
        raise ConfigError(
            f"the weights in '{source}' do not fit the configured model (arch): {'; '.join(parts)}. "
            "Use the arch settings the checkpoint was trained with, or start from it non-strictly."
        )


def load_weights(model, weights, source, strict=True):
    """The one way weights reach a model: `weights` is a loaded framework checkpoint (its
    state_dict is taken) or a bare state dict; `source` names the file in messages. With
    strict, any missing, unexpected or reshaped key is a ConfigError that lists them; otherwise
    the fitting keys load and (missing, unexpected) are returned."""
    state_dict = weights[Key.STATE_DICT] if isinstance(weights.get(Key.STATE_DICT), dict) else weights
    if isinstance(state_dict, ShardedWeights):  # a .dcp checkpoint: read every part into whole tensors
        state_dict = state_dict.gather()
    state_dict = strip_module_prefix(state_dict)
    own = model.state_dict()
    if strict:
        check_weights_fit(own, state_dict, source)
    missing, unexpected, reshaped = weight_mismatches(own, state_dict)
    fitting = {k: v for k, v in state_dict.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(fitting, strict=False)
    return missing, unexpected + [r.split(":")[0] for r in reshaped]


# ---- sharded checkpoints as whole ones -----------------------------------------------------------
def split_optimizer_state(state):
    """An optimizer state keyed by parameter name ({"state": {name: {key: value}}, "param_groups"})
    as (its tensors {name: {key: tensor}}, the rest as plain values)."""
    tensors, plain = {}, {}
    for name, entry in state["state"].items():
        for key, value in entry.items():
            (tensors if isinstance(value, torch.Tensor) else plain).setdefault(name, {})[key] = value
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def merge_optimizer_state(tensors, plain):
    """The inverse of split_optimizer_state."""
    state = {name: dict(entry) for name, entry in plain["state"].items()}
    for name, entry in tensors.items():
        state.setdefault(name, {}).update(entry)
    return {"state": state, "param_groups": plain["param_groups"]}


def optimizer_state_by_index(state):
    """A name-keyed optimizer state in torch's own format (parameters numbered in group order)."""
    index = {name: i for i, name in enumerate(name for group in state["param_groups"] for name in group["params"])}
    return {"state": {index[name]: entry for name, entry in state["state"].items()},
            "param_groups": [{**group, "params": [index[name] for name in group["params"]]}
                             for group in state["param_groups"]]}


def optimizer_state_by_name(state, names):
    """torch's optimizer format keyed by parameter name; `names[i]` names parameter i (group order)."""
    return {"state": {names[index]: entry for index, entry in state["state"].items()},
            "param_groups": [{**group, "params": [names[index] for index in group["params"]]}
                             for group in state["param_groups"]]}


def whole_checkpoint(checkpoint):
    """A loaded sharded checkpoint as a checkpoint file would hold it (whole weights, torch's
    optimizer format), read in this process; any other checkpoint unchanged."""
    weights = checkpoint.get(Key.STATE_DICT)
    if not isinstance(weights, ShardedWeights):
        return checkpoint
    whole = {**checkpoint, Key.STATE_DICT: weights.gather()}
    if checkpoint.get(Key.OPTIMIZER) is not None:
        tensors = gather_tensors(weights.path, OPTIMIZER_TENSORS)
        whole[Key.OPTIMIZER] = optimizer_state_by_index(merge_optimizer_state(tensors, checkpoint[Key.OPTIMIZER]))
    return whole
