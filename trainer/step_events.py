"""When a validation (`trainer.val_every_n_steps`) and a step checkpoint
(`trainer.save_every_n_steps`) happen inside an epoch, and the training totals they see under
DDP. Trainer._after_optimizer_step runs them."""
import math
from contextlib import contextmanager

from utils import dist


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


@contextmanager
def summed_over_ranks(tracker):
    """Under DDP, the tracker holds every rank's totals inside the block (so the monitor and a
    checkpoint see all samples), and this rank's own totals again after it, as training goes on."""
    if not dist.is_distributed():
        yield
        return
    own = tracker.state()
    tracker.all_reduce()
    try:
        yield
    finally:
        tracker.load_state(own)
