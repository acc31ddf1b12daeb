"""What happens after an optimizer step inside an epoch, beyond the step itself: a validation
(`trainer.val_every_n_steps`) and a step checkpoint (`trainer.save_every_n_steps`), both at the
steps that StepSchedule names.

A validation inside an epoch does what the epoch's end does without it: it is logged to the
writers at its training step, updates the monitor (model_best.pth, top-k files, early stopping)
and steps ReduceLROnPlateau. The epoch's own row (metrics.csv, history) then carries the values
of its last validation."""
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


def after_optimizer_step(trainer, epoch, batches_done, first_bad_step):
    """Run the validation and the save due after `batches_done` batches of `epoch` (called at
    an optimizer step boundary). Returns True when early stopping ends training here."""
    schedule = trainer.step_schedule
    validate = trainer.validates_in_epoch and schedule.validation_due(epoch, batches_done)
    save = schedule.save_due(epoch, batches_done)
    if not (validate or save):
        return False
    trainer._check_finite(first_bad_step, epoch)  # a sync; never validate or save a broken model
    with summed_over_ranks(trainer.train_metrics):
        monitored = _validate(trainer, epoch, batches_done) if validate else None
        improved = monitored is not None and trainer._update_monitor(monitored)
        if monitored is not None:
            trainer._step_scheduler(monitored, at_validation=True)
        trainer._save_point(epoch, batches_done, periodic=save, best=improved, monitored=monitored)
    return validate and trainer.should_stop


def _validate(trainer, epoch, batches_done):
    """Validate, write the values at this training step; return them with the training
    averages so far (the monitor may watch either)."""
    values = {f"val_{key}": value for key, value in trainer._validate().items()}
    trainer.model.train()
    trainer.step_validation = values
    trainer._write_scalars(values, trainer._steps_done(epoch, batches_done))
    trainer.logger.info(f"Validation at epoch {epoch}, batch {batches_done}: "
                        + ", ".join(f"{key} {value:.6g}" for key, value in values.items()))
    return {"epoch": epoch, **trainer.train_metrics.result(), **values}


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
