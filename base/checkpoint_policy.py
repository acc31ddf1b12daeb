"""Which checkpoint files a save point writes, beyond the template's periodic files and
model_best.pth: the k best by the monitor (`trainer.save_top_k`), `checkpoint-last.pth`
(`trainer.save_last`), and the optimizer steps inside an epoch that validate
(`trainer.val_every_n_steps`) or save (`trainer.save_every_n_steps`)."""
import math

from utils.checkpoint import is_top_k_file
from utils.errors import ConfigError


def check_checkpoint_policy(trainer):
    """A ConfigError for settings that cannot work together (`trainer` is the plain section)."""
    if trainer.get("save_top_k") and trainer.get("monitor", "off") == "off":
        raise ConfigError(
            f"trainer.save_top_k is {trainer['save_top_k']}, but trainer.monitor is \"off\", so there is "
            "no value to rank checkpoints by. Set trainer.monitor (e.g. \"min val_loss\"), or set "
            "trainer.save_top_k to 0.")


def step_checkpoint_name(epoch, batches_done=0):
    """checkpoint-epoch<E>.pth at an epoch's end, checkpoint-epoch<E>-step<K>.pth inside it."""
    return f"checkpoint-epoch{epoch}{f'-step{batches_done}' if batches_done else ''}.pth"


def top_k_name(epoch, batches_done, key, value):
    """e.g. checkpoint-epoch7-val_loss=0.0412.pth (inside an epoch: ...-step40-val_loss=...)."""
    return f"{step_checkpoint_name(epoch, batches_done)[:-len('.pth')]}-{key}={value:.4g}.pth"


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
        for path in run_dir.glob("checkpoint-epoch*.pth"):
            if is_top_k_file(path) and path.name not in kept:
                path.unlink(missing_ok=True)

    def state_dict(self):
        return [list(entry) for entry in self.kept]

    def load_state_dict(self, state):
        self.kept = [[name, float(value)] for name, value in state or []]


class StepSchedule:
    """The optimizer steps after which to validate and to save. `val_every_n_steps` counts
    optimizer steps over the whole run, or, as a fraction f of an epoch, every round(f x steps
    per epoch) steps counted from each epoch's start; `save_every_n_steps` counts over the run."""

    def __init__(self, settings, batches_per_epoch, accum_steps):
        self.accum_steps = accum_steps
        self.steps_per_epoch = math.ceil(batches_per_epoch / accum_steps)
        every = settings.val_every_n_steps
        self.validate_per_epoch_fraction = every is not None and every < 1
        if every is None:
            self.validate_every = None
        elif every < 1:
            self.validate_every = max(1, round(every * self.steps_per_epoch))
        else:
            self.validate_every = int(every)
        self.save_every = settings.save_every_n_steps

    def _steps(self, epoch, batches_done, whole_run=True):
        """Optimizer steps done after `batches_done` batches of `epoch` (at a step boundary)."""
        in_epoch = math.ceil(batches_done / self.accum_steps)
        return (epoch - 1) * self.steps_per_epoch + in_epoch if whole_run else in_epoch

    def validation_due(self, epoch, batches_done):
        if self.validate_every is None:
            return False
        return self._steps(epoch, batches_done, not self.validate_per_epoch_fraction) % self.validate_every == 0

    def save_due(self, epoch, batches_done):
        return bool(self.save_every) and self._steps(epoch, batches_done) % self.save_every == 0
