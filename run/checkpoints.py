"""The checkpoint files of a run folder: their names, their order, finding the newest one that
loads, and the policy of which files a save point writes and which it deletes.

    checkpoint-epoch<E>.pth              the state at the end of epoch E (trainer.save_period)
    checkpoint-epoch<E>-step<K>.pth      inside epoch E after K batches (a stop signal, save_every_n_steps)
    checkpoint-epoch<E>[-step<K>]-<key>=<value>.pth   one of the k best by the monitor (save_top_k)
    checkpoint-last.pth                  the newest state, replaced at every save (save_last)
    model_best.pth                       the best by the monitor
    model_swa.pth                        the stochastic weight average (trainer.swa)

A sharded run (trainer.strategy "fsdp") writes the same names with the suffix .dcp: each is a
folder in torch.distributed.checkpoint format (see utils/dcp.py), e.g. checkpoint-epoch3.dcp/.
Ordering, keep_last, top-k, model_best and finding the newest valid checkpoint treat both alike.
"""
import logging
import math
import re
from pathlib import Path

from utils.checkpoint import load_checkpoint
from utils.dcp import remove_checkpoint
from utils.errors import ConfigError

logger = logging.getLogger(__name__)
FILE, SHARDED = ".pth", ".dcp"  # a torch.save file; a folder in torch.distributed.checkpoint format
SUFFIXES = (FILE, SHARDED)
BEST_CHECKPOINT = "model_best.pth"
LAST_CHECKPOINT = "checkpoint-last.pth"
SWA_CHECKPOINT = "model_swa.pth"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-epoch(\d+)(?:-step(\d+))?\.(?:pth|dcp)$")
TOP_K_PATTERN = re.compile(r"checkpoint-epoch(\d+)(?:-step(\d+))?-[^/=]+=[^/=]+\.(?:pth|dcp)$")
FINISHED_EPOCH = 10**12  # the step position of a checkpoint taken at an epoch's end


def step_checkpoint_name(epoch, batches_done=0, suffix=FILE):
    """checkpoint-epoch<E>.pth at an epoch's end, checkpoint-epoch<E>-step<K>.pth inside it."""
    return f"checkpoint-epoch{epoch}{f'-step{batches_done}' if batches_done else ''}{suffix}"


def top_k_name(epoch, batches_done, key, value, suffix=FILE):
    """e.g. checkpoint-epoch7-val_loss=0.0412.pth (inside an epoch: ...-step40-val_loss=...)."""
    return f"{step_checkpoint_name(epoch, batches_done, suffix)[:-len(suffix)]}-{key}={value:.4g}{suffix}"


def with_suffix(name, suffix):
    """model_best.pth -> model_best.dcp for a sharded run."""
    return f"{Path(name).stem}{suffix}"


def best_checkpoint(run_dir):
    """The run's model_best.pth, or its model_best.dcp folder (the newer if both exist); None if neither."""
    found = [path for path in (Path(run_dir) / with_suffix(BEST_CHECKPOINT, suffix) for suffix in SUFFIXES)
             if path.exists()]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def run_checkpoints(run_dir):
    """Every checkpoint-epoch* file or folder of a run (rolling and top-k), unordered."""
    return [path for path in Path(run_dir).glob("checkpoint-epoch*") if path.suffix in SUFFIXES]


def is_top_k_file(path):
    return TOP_K_PATTERN.search(Path(path).name) is not None


def is_rolling_file(path):
    """A checkpoint-epoch<E>[-step<K>].pth file: a point to resume from, pruned by keep_last."""
    return CHECKPOINT_PATTERN.search(Path(path).name) is not None


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
    return (checkpoint["epoch"], checkpoint.get("batches_done") or FINISHED_EPOCH)


def rolling_checkpoints(run_dir):
    """The checkpoint-epoch<N>[-step<K>].pth files of a run, oldest first: what keep_last prunes
    (top-k files, checkpoint-last and model_best are kept by their own rules)."""
    return sorted((path for path in run_checkpoints(run_dir) if not is_top_k_file(path)), key=checkpoint_order)


def has_step_checkpoint(run_dir):
    """True when the run holds a checkpoint taken inside an epoch (a stopped run)."""
    return any(checkpoint_order(path)[1] != FINISHED_EPOCH for path in rolling_checkpoints(run_dir))


def has_checkpoint(run_dir):
    return bool(run_checkpoints(run_dir)) or bool(last_checkpoints(run_dir))


def last_checkpoints(run_dir):
    """checkpoint-last.pth and/or checkpoint-last.dcp of a run (a run may have changed strategy)."""
    return [path for path in (Path(run_dir) / with_suffix(LAST_CHECKPOINT, suffix) for suffix in SUFFIXES)
            if path.exists()]


def find_latest_checkpoint(run_dir):
    """The newest checkpoint in `run_dir` that loads; corrupt ones are skipped with a warning."""
    return latest_valid_checkpoint(run_dir)[0]


def latest_valid_checkpoint(run_dir):
    """(path, loaded checkpoint) of the newest checkpoint in `run_dir` that loads (memory-mapped).
    checkpoint-last.pth is placed by the position it holds: a save killed before it was replaced
    leaves it older than the file written just before it. On a tie the named file is taken."""
    run_dir = Path(run_dir)
    last = _load_last(run_dir)
    for candidate in sorted(run_checkpoints(run_dir), key=checkpoint_order, reverse=True):
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
        f"no valid checkpoint-epoch* found in '{run_dir}'. Pass a checkpoint file, or a run "
        f"folder under saved/models/<name>/ that holds checkpoints.{hint}"
    )


def _load_last(run_dir):
    """(path, loaded checkpoint) of the newest checkpoint-last that loads, or None."""
    loaded = []
    for path in last_checkpoints(run_dir):
        try:
            loaded.append((path, load_checkpoint(path, mmap=True)))
        except ConfigError as err:
            logger.warning(f"Skipping checkpoint {path}: {err}")
    return max(loaded, key=lambda found: checkpoint_position(*found), default=None)


def newest_run_checkpoint(runs_dir):
    """(path, loaded checkpoint) of the newest valid checkpoint of the most recently written run
    folder in `runs_dir` that holds one (a run killed before its first save is skipped); None
    when there is none."""
    runs = sorted((p for p in Path(runs_dir).glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime,
                  reverse=True)
    for run in runs:
        if has_checkpoint(run):
            try:
                return latest_valid_checkpoint(run)
            except ConfigError as err:
                logger.warning(f"Skipping run {run}: {err}")
    return None


def find_newest_run_checkpoint(runs_dir):
    """Like newest_run_checkpoint, the path alone (or None)."""
    found = newest_run_checkpoint(runs_dir)
    return found[0] if found else None


def check_checkpoint_policy(trainer):
    """A ConfigError for settings that cannot work together (`trainer` is the plain section)."""
    if trainer.get("save_top_k") and trainer.get("monitor", "off") == "off":
        raise ConfigError(
            f"trainer.save_top_k is {trainer['save_top_k']}, but trainer.monitor is \"off\", so there is "
            "no value to rank checkpoints by. Set trainer.monitor (e.g. \"min val_loss\"), or set "
            "trainer.save_top_k to 0.")


class CheckpointPolicy:
    """Which files a save point writes (`plan`) and which are deleted after it (`prune`): the
    periodic or step file, model_best, the k best by the monitor (`trainer.save_top_k`),
    checkpoint-last (`trainer.save_last`), and the newest `trainer.keep_last` rolling files.
    `suffix`: FILE (.pth files) or SHARDED (.dcp folders, written by every process together)."""

    def __init__(self, run_dir, settings, monitor, suffix=FILE):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.suffix = suffix
        self.best_name = with_suffix(BEST_CHECKPOINT, suffix)
        self.last_name = with_suffix(LAST_CHECKPOINT, suffix)
        self.keep_last, self.save_last = settings.keep_last, settings.save_last
        self.monitor = monitor
        self.top_k = TopK(settings.save_top_k, monitor) if settings.save_top_k else None

    def plan(self, epoch, batches_done=0, periodic=False, best=False, monitored=None):
        """The file names to write from one state, in order: a top-k file before any checkpoint
        that lists it, and checkpoint-last (a hard link to the file before it, if any) last."""
        names = []
        if self.top_k is not None and monitored is not None:
            value = monitored[self.monitor.key]
            name = top_k_name(epoch, batches_done, self.monitor.key, value, self.suffix)
            if self.top_k.offer(name, value):
                names.append(name)
        if periodic:
            names.append(self.step_name(epoch, batches_done))
        if best:
            names.append(self.best_name)
        if self.save_last:
            names.append(self.last_name)
        return names

    def step_name(self, epoch, batches_done=0):
        return step_checkpoint_name(epoch, batches_done, self.suffix)

    def prune(self):
        """Delete the top-k files pushed out of the k best, and rolling files beyond keep_last
        (rank 0, after the files of a save point are written)."""
        if self.top_k is not None:
            self.top_k.prune(self.run_dir)
        if self.keep_last:
            for old in rolling_checkpoints(self.run_dir)[: -self.keep_last]:
                remove_checkpoint(old)


class TopK:
    """The `k` best checkpoints by `monitor` as [file name, value] pairs, best first. A tie with
    the worst kept one does not enter, as a tie is no improvement for model_best either."""

    def __init__(self, k, monitor):
        self.k, self.monitor = k, monitor
        self.kept = []

    def offer(self, name, value):
        """Keep `name` if `value` ranks among the k best (dropping the worst beyond k); True if kept."""
        if math.isnan(value):
            return False
        if len(self.kept) >= self.k and not self.monitor.is_better(value, self.kept[-1][1]):
            return False
        self.kept.append([name, float(value)])
        self.kept.sort(key=lambda entry: entry[1], reverse=self.monitor.mode == "max")  # stable: older first on ties
        del self.kept[self.k:]
        return True

    def prune(self, run_dir):
        """Delete every top-k file of `run_dir` that is not kept: the one just pushed out, and
        any that a run killed between writing a file and deleting the one it replaced left."""
        kept = {name for name, _ in self.kept}
        for path in run_checkpoints(run_dir):
            if is_top_k_file(path) and path.name not in kept:
                remove_checkpoint(path)

    def state_dict(self):
        return [list(entry) for entry in self.kept]

    def load_state_dict(self, state):
        self.kept = [[name, float(value)] for name, value in state or []]
