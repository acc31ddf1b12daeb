"""What happens after an optimizer step inside an epoch, beyond the step itself: a validation
(`trainer.val_every_n_steps`) and a step checkpoint (`trainer.save_every_n_steps`), both at the
steps that base.checkpoint_policy.StepSchedule names.

A validation inside an epoch does what the epoch's end does without it: it is logged to the
writers at its training step, updates the monitor (model_best.pth, top-k files, early stopping)
and steps ReduceLROnPlateau. The epoch's own row (metrics.csv, history) then carries the values
of its last validation."""
from contextlib import contextmanager

from utils import dist


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
