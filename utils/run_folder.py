"""Where a resumed run writes. Resuming continues the run in its own folders
(saved/models/<name>/<run_id>/ and saved/log/<name>/<run_id>/), so checkpoints, metrics.csv,
TensorBoard and keep_last see one run however often it was interrupted; --new-run and
fine-tuning start a fresh folder instead."""
import math
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import LAST_CHECKPOINT, checkpoint_order, checkpoint_position, latest_valid_checkpoint
from .errors import ConfigError


@dataclass(frozen=True)
class RunFolders:
    save_dir: Path  # saved/models/<name>/<run_id>
    log_dir: Path  # saved/log/<name>/<run_id>


def folders_of_checkpoint(checkpoint_path):
    """The run folders a checkpoint belongs to, or None for a file outside that layout (a
    checkpoint copied elsewhere starts a new run, as before)."""
    save_dir = Path(checkpoint_path).resolve().parent
    if save_dir.parent.parent.name != "models":
        return None
    name, run_id = save_dir.parent.name, save_dir.name
    return RunFolders(save_dir, save_dir.parents[2] / "log" / name / run_id)


def check_resumes_newest(checkpoint_path, checkpoint, folders):
    """Refuse a checkpoint (`checkpoint` is the loaded file at `checkpoint_path`) older than the
    run's newest one: training on from it in the same folder would mix two histories (newer
    checkpoint files would stay and keep_last would prune the wrong ones). Called under the
    run's lock, so no process adds a newer one meanwhile."""
    position = checkpoint_position(checkpoint_path, checkpoint)
    newer_by_name = any(checkpoint_order(path) > position for path in folders.save_dir.glob("checkpoint-epoch*.pth"))
    last = folders.save_dir / LAST_CHECKPOINT
    other_last = last.is_file() and last.resolve() != Path(checkpoint_path).resolve()
    if not newer_by_name and not other_last:
        return  # nothing can be newer: no file needs reading
    newest, newest_checkpoint = latest_valid_checkpoint(folders.save_dir)  # a file that does not load does not count
    if position < checkpoint_position(newest, newest_checkpoint):
        raise ConfigError(
            f"'{checkpoint_path}' is older than the run's newest checkpoint '{newest}'. Resuming continues the "
            f"run in its own folder, which must go on from its newest state: pass the run folder "
            f"(-r {folders.save_dir}), or add --new-run to branch off a new run from this checkpoint.")


def remove_stale_temp_files(folders):
    """Temp files of saves that a killed process left half-written. Only called under the run's
    lock: no live process is writing them."""
    for folder in (folders.save_dir, folders.log_dir):
        for temp in folder.glob(".*.tmp"):
            temp.unlink(missing_ok=True)


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
    folders = folders_of_checkpoint(checkpoint_path)
    run = folders.save_dir if folders is not None else checkpoint_path
    raise ConfigError(
        f"the run '{run}' has finished: {why}, at epoch {epoch}. There is nothing to resume and no folder was "
        f"created. To train longer, resume with a higher epoch count, e.g. "
        f"python train.py -r {run} -o trainer.epochs={epoch + 10}"
        + (" -o trainer.early_stop=0" if "early stopping" in why else "") + ".")
