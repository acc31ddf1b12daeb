"""What `-r` starts from, and where a resumed run writes. -r takes a checkpoint file, a run folder
(its newest valid checkpoint) or `auto` (the newest run of the config's name). Resuming continues
the run in its own folders, so checkpoints, metrics.csv, TensorBoard and keep_last see one run
however often it was interrupted; --new-run and fine-tuning start a fresh folder instead."""
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from config.schema import default_of
from config.sources import apply_modification, read_config, read_config_file
from utils.checkpoint import Key, load_checkpoint
from utils.errors import ConfigError

from .checkpoints import (
    SHARDED,
    best_checkpoint,
    checkpoint_order,
    checkpoint_position,
    last_checkpoints,
    latest_valid_checkpoint,
    newest_run_checkpoint,
    run_checkpoints,
)
from .folder import CONFIG_FILE, RunFolder

logger = logging.getLogger(__name__)


@dataclass
class Source:
    """config: the plain dict; resume: the checkpoint to continue; init_weights: the checkpoint
    whose weights start a new run; checkpoint: the loaded file of either; trusted: False for a
    config that came out of a checkpoint."""
    config: dict
    resume: Path | None = None
    init_weights: Path | None = None
    checkpoint: dict | None = None
    trusted: bool = True


def load_source(config_path, resume, modification=None, prefer_best=False):
    """-c alone: new run. -r alone: resume with the checkpoint's config. -c and -r: fine-tune,
    i.e. weights from the checkpoint, everything else from the new config. -c and -r auto:
    resume the newest run of the config's name (after `modification`, the overrides), or start
    the first one. `prefer_best`: a run folder given with -r means its model_best.pth when it
    has one (test.py, export.py), not its newest checkpoint. `config_path` may also be the config
    as a dict (api.run)."""
    if config_path is None and resume is None:
        raise ConfigError("no config given. Add -c config.json to start a run, or -r CHECKPOINT to resume one.")
    if resume == "auto":
        return _auto_resume(config_path, modification or {})
    path, checkpoint = _resolve_resume_path(resume, prefer_best) if resume else (None, None)
    if config_path is not None:
        return Source(read_config(config_path), init_weights=path, checkpoint=checkpoint)
    return Source(_checkpoint_config(path, checkpoint), resume=path, checkpoint=checkpoint, trusted=False)


def _auto_resume(config_path, modification):
    """Restarting the same command after a crash or preemption continues the newest run. The
    run is looked up by the name and save_dir that the overrides give."""
    if config_path is None:
        raise ConfigError("-r auto needs -c CONFIG to know which run name to look for.")
    config = read_config(config_path)
    lookup = apply_modification(config, modification)
    save_dir = lookup.get("trainer", {}).get("save_dir", default_of("trainer", "save_dir"))
    runs_dir = RunFolder.runs_dir(save_dir, lookup.get("name", ""))
    found = newest_run_checkpoint(runs_dir)
    if found is None:
        logger.warning(f"-r auto: no checkpoint in '{runs_dir}' yet; starting a new run from {config_path}.")
        return Source(config)
    path, checkpoint = found
    return Source(_checkpoint_config(path, checkpoint), resume=path, checkpoint=checkpoint, trusted=False)


def _checkpoint_config(path, checkpoint):
    """The config stored in the checkpoint at `path`, or else the run's config.json beside it."""
    config = checkpoint.get(Key.CONFIG)
    if not config:
        beside = path.parent / CONFIG_FILE
        if not beside.is_file():
            raise ConfigError(f"checkpoint '{path}' holds no config, and there is no {CONFIG_FILE} beside it to say "
                              "how to build its model. Use a checkpoint written by train.py, or put the config of the "
                              f"run that wrote it beside it as {CONFIG_FILE}.")
        config = read_config_file(beside)
    try:
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError):
        config = None
    if not isinstance(config, dict):
        raise ConfigError(f"checkpoint '{path}' is damaged: its stored config is not a config (a JSON object). Use "
                          "another checkpoint of the run, e.g. its run folder with -r.")
    return config


def _resolve_resume_path(resume, prefer_best=False):
    """(path, loaded checkpoint) for -r: a file, or the newest valid checkpoint of a run folder
    (its model_best.pth with `prefer_best`, when there is one)."""
    path = Path(resume)
    is_run_folder = path.is_dir() and path.suffix != SHARDED  # not a sharded checkpoint
    best = best_checkpoint(path) if is_run_folder and prefer_best else None
    if best is not None:
        return best, load_checkpoint(best, mmap=True)
    if is_run_folder:
        return latest_valid_checkpoint(path)
    if not path.exists():
        raise ConfigError(f"resume path '{path}' does not exist. Pass a checkpoint (.pth file or .dcp folder), a run "
                          "folder under saved/models/, or 'auto' (with -c) for the newest run.")
    return path, load_checkpoint(path, mmap=True)


def check_resumes_newest(checkpoint_path, checkpoint, folder):
    """Refuse a checkpoint (`checkpoint` is the loaded file at `checkpoint_path`) older than the
    run's newest one: training on from it in the same folder would mix two histories (newer
    checkpoint files would stay and keep_last would prune the wrong ones). Called under the
    run's lock, so no process adds a newer one meanwhile."""
    position = checkpoint_position(checkpoint_path, checkpoint)
    newer_by_name = any(checkpoint_order(path) > position for path in run_checkpoints(folder.models_dir))
    other_last = any(last.resolve() != Path(checkpoint_path).resolve() for last in last_checkpoints(folder.models_dir))
    if not newer_by_name and not other_last:
        return  # nothing can be newer: no file needs reading
    newest, newest_checkpoint = latest_valid_checkpoint(folder.models_dir)  # a file that does not load does not count
    if position < checkpoint_position(newest, newest_checkpoint):
        raise ConfigError(
            f"'{checkpoint_path}' is older than the run's newest checkpoint '{newest}'. Resuming continues the "
            f"run in its own folder, which must go on from its newest state: pass the run folder "
            f"(-r {folder.models_dir}), or add --new-run to branch off a new run from this checkpoint.")


def check_not_finished(checkpoint_path, checkpoint, config):
    """A ConfigError when the checkpoint (the loaded file at `checkpoint_path`) ends the run as
    configured (trainer.epochs reached, or early stopping triggered): resuming it would train
    nothing."""
    if checkpoint.get("batches_done"):
        return
    epoch, trainer = checkpoint["epoch"], config["trainer"]
    early_stop = trainer.get("early_stop") or math.inf
    if epoch >= trainer["epochs"]:
        why = f"it reached trainer.epochs={trainer['epochs']}"
    elif checkpoint.get("epochs_since_improvement", 0) >= early_stop and trainer.get("monitor", "off") != "off":
        why = f"early stopping ended it ({trainer['monitor']} did not improve for {early_stop} epochs)"
    else:
        return
    folder = RunFolder.containing(checkpoint_path)
    run = folder.models_dir if folder is not None else checkpoint_path
    raise ConfigError(
        f"the run '{run}' has finished: {why}, at epoch {epoch}. There is nothing to resume and no folder was "
        f"created. To train longer, resume with a higher epoch count, e.g. "
        f"python train.py -r {run} -o trainer.epochs={epoch + 10}"
        + (" -o trainer.early_stop=0" if "early stopping" in why else "") + ".")
