"""Learning-rate schedulers from the config, stepped once per epoch (the template's default) or
after every optimizer step (`"interval": "step"`), with `"auto"` lengths filled in:

    "lr_scheduler": {"type": "OneCycleLR", "interval": "step",
                     "args": {"max_lr": 0.01, "total_steps": "auto"}}

An argument written "auto" becomes the number of scheduler steps the scheduler covers: the whole
run (epochs, or epochs x optimizer steps per epoch), or inside SequentialLR the stretch from its
milestone to the next one. SequentialLR takes its schedulers as {"type", "args"} entries."""
import copy
import math
from pathlib import Path

import torch

from config.instantiate import check_entry, instantiate, resolve
from utils import ConfigError
from utils.checkpoint import Key

INTERVALS = ("epoch", "step")
AUTO = "auto"
CONTAINERS = ("SequentialLR",)
KEY = "lr_scheduler"


def scheduler_interval(config):
    """'epoch' or 'step' for config["lr_scheduler"] (a ConfigParser or dict)."""
    entry = config.get(KEY) or {}
    interval = entry.get("interval", "epoch")
    if interval not in INTERVALS:
        raise ConfigError(f"lr_scheduler.interval is {interval!r}; use \"epoch\" (step the scheduler after "
                          "each epoch, the default) or \"step\" (after each optimizer step).")
    return interval


def optimizer_steps_per_epoch(batches_per_epoch, accum_steps):
    """Optimizer steps in one epoch of `batches_per_epoch` batches of this process (under DDP the
    loader is already one rank's share, so the world size is in there): the last window of an
    epoch steps even when it is shorter than accum_steps."""
    return math.ceil(batches_per_epoch / accum_steps)


def schedule_length(config, steps_per_epoch):
    """Scheduler steps in the whole run, in the scheduler's interval."""
    epochs = config["trainer"]["epochs"]
    return epochs * steps_per_epoch if scheduler_interval(config) == "step" else epochs


def build_lr_scheduler(config, optimizer, steps_per_epoch, trusted=True):
    """The configured scheduler for `optimizer`, or None when the config has none."""
    entry = config.get(KEY)
    if not entry:
        return None
    scheduler_interval(config)
    resolved = with_lengths(entry, KEY, schedule_length(config, steps_per_epoch), trusted)
    plateau = resolve(entry, KEY, trusted=trusted) is torch.optim.lr_scheduler.ReduceLROnPlateau
    if plateau and entry.get("interval") == "step":
        raise ConfigError("lr_scheduler is ReduceLROnPlateau with interval \"step\"; it steps on a validation "
                          "metric, so it needs \"interval\": \"epoch\".")
    return instantiate(resolved, optimizer, key_path=KEY, trusted=trusted, nested_args={"schedulers": (optimizer,)})


def check_scheduler_entry(config, trusted=True):
    """Preflight: resolve every type and check every argument name, "auto" included, without an
    optimizer (a stand-in length of 100 steps fills the "auto" values)."""
    entry = config.get(KEY)
    if entry:
        scheduler_interval(config)
        check_entry(with_lengths(entry, KEY, 100, trusted), None, key_path=KEY, trusted=trusted,
                    nested_args={"schedulers": (None,)})


def with_lengths(entry, key_path, length, trusted=True):
    """A copy of `entry` with each "auto" argument replaced by the number of scheduler steps it
    covers: `length`, or inside SequentialLR the stretch from a child's milestone to the next."""
    entry = copy.deepcopy(entry)
    args = entry.setdefault("args", {})
    for key, value in args.items():
        if value == AUTO:
            args[key] = length
    if resolve(entry, key_path, trusted=trusted).__name__ in CONTAINERS:
        args["schedulers"] = [with_lengths(child, f"{key_path}.args.schedulers.{i}", child_length, trusted)
                              for i, (child, child_length) in enumerate(_children(entry, key_path, length))]
    return entry


def _children(entry, key_path, length):
    """(child entry, its length) for SequentialLR."""
    children = entry.get("args", {}).get("schedulers")
    if not isinstance(children, list) or not all(isinstance(c, dict) and "type" in c for c in children):
        raise ConfigError(f"{key_path}.args.schedulers must be a list of {{\"type\", \"args\"}} entries, e.g. "
                          '[{"type": "LinearLR", "args": {"start_factor": 0.1, "total_iters": 100}}, '
                          '{"type": "CosineAnnealingLR", "args": {"T_max": "auto"}}].')
    milestones = entry["args"].get("milestones", [])
    bounds = [0, *milestones, length]
    if len(milestones) != len(children) - 1 or bounds != sorted(bounds):
        raise ConfigError(f"{key_path}.args.milestones is {milestones}; SequentialLR needs one increasing "
                          f"milestone between each pair of its {len(children)} schedulers, all below the "
                          f"schedule's length of {length} steps.")
    return [(c, bounds[i + 1] - bounds[i]) for i, c in enumerate(children)]


def _has_auto(value):
    if isinstance(value, dict):
        return any(_has_auto(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_auto(v) for v in value)
    return value == AUTO


def check_schedule_fits_resume(config, checkpoint, checkpoint_path):
    """A schedule with "auto" lengths was sized for the run's trainer.epochs when it started, and
    its state (loaded on resume) keeps that length. Resuming with another epoch count would run
    it past its end (OneCycleLR raises there) or restart it (a cosine rises again): refuse that
    before training, and say how to train further."""
    entry = config.get("lr_scheduler")
    recorded = (checkpoint.get(Key.CONFIG) or {}).get("trainer", {}).get("epochs")
    epochs = config["trainer"]["epochs"]
    if not entry or not _has_auto(entry.get("args", {})) or recorded is None or recorded == epochs:
        return
    run_config = Path(checkpoint_path).parent / "config.json"
    more = max(epochs - recorded, 1)
    raise ConfigError(
        f"lr_scheduler {entry.get('type')} has an \"auto\" length, which was sized for trainer.epochs={recorded} "
        f"when the run started; its saved state keeps that length, so it cannot run to trainer.epochs={epochs} "
        f"(it would step past its end). Resume with -o trainer.epochs={recorded}, or train further as a new run "
        f"that starts from these weights with a schedule of its own: python train.py -c {run_config} "
        f"-r {checkpoint_path} -o trainer.epochs={more}")
