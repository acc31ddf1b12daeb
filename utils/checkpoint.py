"""Finding and safely loading checkpoints. Loading always uses weights_only=True, so a file
that carries pickled code is refused rather than executed."""
import logging
import pickle
import re
from pathlib import Path

import torch

from .errors import ConfigError

logger = logging.getLogger(__name__)
CHECKPOINT_PATTERN = re.compile(r"checkpoint-epoch(\d+)(?:-step(\d+))?\.pth$")
# trainer.save_top_k files carry the monitored value: checkpoint-epoch7[-step40]-val_loss=0.0412.pth
TOP_K_PATTERN = re.compile(r"checkpoint-epoch(\d+)(?:-step(\d+))?-[^/=]+=[^/=]+\.pth$")
LAST_CHECKPOINT = "checkpoint-last.pth"  # trainer.save_last: the newest state, replaced at every save
FINISHED_EPOCH = 10**12  # the step position of a checkpoint taken at an epoch's end


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
    TOP_K = "top_k"  # trainer.save_top_k: [[file name, monitored value], ...], best first
    STEP_VALIDATION = "step_validation"  # trainer.val_every_n_steps: the epoch's latest val_* values


def load_checkpoint(path, map_location="cpu", mmap=False):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"resume path '{path}' does not exist or is not a file. Pass a .pth "
                          "checkpoint or a run folder.")
    checkpoint = safe_load(path, map_location, mmap)
    if not isinstance(checkpoint, dict) or Key.STATE_DICT not in checkpoint:
        raise ConfigError(f"'{path}' is not a checkpoint of this framework (it has no 'state_dict').")
    return checkpoint


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
    lines = [line.strip() for line in str(err or "").splitlines() if line.strip()]
    reason = f" ({(lines[0] if lines else type(err).__name__)[:120]})" if err is not None else ""
    return (f"checkpoint '{path}' is truncated, corrupt or not a PyTorch checkpoint{reason}. Resume "
            "from an earlier checkpoint, or pass the run folder to pick the newest valid one.")


def checkpoint_order(path):
    """Sort key: (epoch, step inside the epoch) from the file name; model_best, checkpoint-last
    and unknown names sort first."""
    match = CHECKPOINT_PATTERN.search(Path(path).name) or TOP_K_PATTERN.search(Path(path).name)
    if not match:
        return (-1, -1)
    return (int(match.group(1)), int(match.group(2) or FINISHED_EPOCH))


def checkpoint_position(path, checkpoint):
    """(epoch, batches done in it; a finished epoch counts as all of them) of a loaded checkpoint:
    from its name where that says it, else from its contents (checkpoint-last, a renamed file)."""
    order = checkpoint_order(path)
    if order != (-1, -1):
        return order
    return (checkpoint[Key.EPOCH], checkpoint.get(Key.BATCHES_DONE) or FINISHED_EPOCH)


def is_top_k_file(path):
    return TOP_K_PATTERN.search(Path(path).name) is not None


def rolling_checkpoints(run_dir):
    """The checkpoint-epoch<N>[-step<K>].pth files of a run, oldest first: what keep_last prunes
    (top-k files, checkpoint-last and model_best are kept by their own rules)."""
    return sorted((path for path in Path(run_dir).glob("checkpoint-epoch*.pth") if not is_top_k_file(path)),
                  key=checkpoint_order)


def has_checkpoint(run_dir):
    run_dir = Path(run_dir)
    return any(run_dir.glob("checkpoint-epoch*.pth")) or (run_dir / LAST_CHECKPOINT).is_file()


def find_latest_checkpoint(run_dir):
    """The newest checkpoint in `run_dir` that loads; corrupt ones are skipped with a warning."""
    return latest_valid_checkpoint(run_dir)[0]


def latest_valid_checkpoint(run_dir):
    """(path, loaded checkpoint) of the newest checkpoint in `run_dir` that loads (memory-mapped).
    checkpoint-last.pth is placed by the position it holds: a save killed before it was replaced
    leaves it older than the file written just before it. On a tie the named file is taken."""
    run_dir = Path(run_dir)
    last = _load_last(run_dir)
    candidates = sorted(run_dir.glob("checkpoint-epoch*.pth"), key=checkpoint_order, reverse=True)
    for candidate in candidates:
        if last is not None and checkpoint_position(*last) > checkpoint_order(candidate):
            return last
        try:
            return candidate, load_checkpoint(candidate, mmap=True)
        except ConfigError as err:
            logger.warning(f"Skipping checkpoint {candidate}: {err}")
    if last is not None:
        return last
    hint = (" It holds run folders: pass one of them, or -c CONFIG -r auto for the newest."
            if any(has_checkpoint(run) for run in run_dir.glob("*/")) else "")
    raise ConfigError(
        f"no valid checkpoint-epoch*.pth found in '{run_dir}'. Pass a checkpoint file, or a run "
        f"folder under saved/models/<name>/ that holds checkpoints.{hint}"
    )


def _load_last(run_dir):
    path = run_dir / LAST_CHECKPOINT
    if not path.is_file():
        return None
    try:
        return path, load_checkpoint(path, mmap=True)
    except ConfigError as err:
        logger.warning(f"Skipping checkpoint {path}: {err}")
        return None


def find_newest_run_checkpoint(runs_dir):
    """The newest valid checkpoint of the most recently written run folder in `runs_dir` that
    holds one (a run killed before its first save is skipped); None when there is none."""
    found = newest_run_checkpoint(runs_dir)
    return found[0] if found else None


def newest_run_checkpoint(runs_dir):
    """Like find_newest_run_checkpoint, as (path, loaded checkpoint) or None."""
    runs = sorted((p for p in Path(runs_dir).glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime,
                  reverse=True)
    for run in runs:
        if has_checkpoint(run):
            try:
                return latest_valid_checkpoint(run)
            except ConfigError as err:
                logger.warning(f"Skipping run {run}: {err}")
    return None


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
    state_dict = strip_module_prefix(state_dict)
    own = model.state_dict()
    if strict:
        check_weights_fit(own, state_dict, source)
    missing, unexpected, reshaped = weight_mismatches(own, state_dict)
    fitting = {k: v for k, v in state_dict.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(fitting, strict=False)
    return missing, unexpected + [r.split(":")[0] for r in reshaped]
