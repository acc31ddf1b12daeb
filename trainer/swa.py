"""Stochastic weight averaging (`trainer.swa`), on torch.optim.swa_utils:

    "trainer": {"swa": {"start_epoch": 20, "lr": 0.0005, "anneal_epochs": 5, "anneal_strategy": "cos"}}

From `start_epoch` on, SWALR sets the learning rate (it anneals from the current rate to `lr`
over `anneal_epochs` epochs) instead of the configured lr_scheduler, and the weights at the end
of each epoch join an equal-weight average (AveragedModel). Validation of those epochs, and so
the monitored value and model_best.pth, use the average. At the end of training the average's
batch-norm statistics are recomputed over the training data (update_bn) and it is written to
model_swa.pth, the run's final model."""
import torch
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from utils import ConfigError, dist

SWA_KEYS = ("start_epoch", "lr", "anneal_epochs", "anneal_strategy")
ANNEAL_STRATEGIES = ("cos", "linear")


def check_swa_settings(settings, ema=None, epochs=None):
    """Raise ConfigError for a malformed trainer.swa; None or {} means off."""
    if not settings:
        return
    if not isinstance(settings, dict):
        raise ConfigError(f"trainer.swa is {settings!r}; write it as {{\"start_epoch\": 20, \"lr\": 0.0005}} "
                          "or leave it out.")
    if ema:
        raise ConfigError("trainer.ema and trainer.swa are both set; keep one of them. Both keep an average of "
                          "the weights that validation and test.py use, and a run evaluates one average.")
    unknown = sorted(set(settings) - set(SWA_KEYS))
    if unknown:
        raise ConfigError(f"trainer.swa.{unknown[0]} is not an SWA setting; the settings are {', '.join(SWA_KEYS)}.")
    for key in ("start_epoch", "lr"):
        if key not in settings:
            raise ConfigError(f"trainer.swa.{key} is missing; SWA needs start_epoch (the first averaged epoch) "
                              "and lr (the learning rate SWALR anneals to).")
    start, lr = settings["start_epoch"], settings["lr"]
    if not _is_int(start) or start < 1:
        raise ConfigError(f"trainer.swa.start_epoch is {start!r}; it must be an epoch number, 1 or more.")
    if epochs is not None and _is_int(epochs) and start > epochs:
        raise ConfigError(f"trainer.swa.start_epoch is {start}, after the last epoch (trainer.epochs is {epochs}): "
                          "no weights would be averaged. Start SWA at or before the last epoch.")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
        raise ConfigError(f"trainer.swa.lr is {lr!r}; it must be a learning rate above 0, e.g. 0.0005.")
    anneal_epochs = settings.get("anneal_epochs", 10)
    if not _is_int(anneal_epochs) or anneal_epochs < 0:
        raise ConfigError(f"trainer.swa.anneal_epochs is {anneal_epochs!r}; it must be a number of epochs, "
                          "0 or more (0: switch to trainer.swa.lr at once).")
    if settings.get("anneal_strategy", "cos") not in ANNEAL_STRATEGIES:
        raise ConfigError(f"trainer.swa.anneal_strategy is {settings['anneal_strategy']!r}; write \"cos\" or "
                          "\"linear\".")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class StochasticWeightAverage:
    """The average, its SWALR scheduler (made when averaging starts) and their state."""

    def __init__(self, model, optimizer, settings, ema=None):
        check_swa_settings(settings, ema)
        self.start_epoch = settings["start_epoch"]
        self.optimizer = optimizer
        self.scheduler_args = {"swa_lr": settings["lr"], "anneal_epochs": settings.get("anneal_epochs", 10),
                               "anneal_strategy": settings.get("anneal_strategy", "cos")}
        self.scheduler = None
        # use_buffers: batch-norm statistics are averaged too, so the average can be validated
        # during training; update_bn replaces them with exact ones at the end
        self.averaged = AveragedModel(model, use_buffers=True)
        self.batch_norm_updated = False

    def active(self, epoch):
        return epoch >= self.start_epoch

    def start_epoch_if_active(self, epoch):
        """At an epoch's start: from start_epoch on, SWALR owns the learning rate. Made now, not
        earlier: with anneal_epochs 0 it sets the SWA rate as soon as it exists."""
        if self.active(epoch) and self.scheduler is None:
            self.scheduler = SWALR(self.optimizer, **self.scheduler_args)

    @torch.no_grad()
    def end_epoch(self, model):
        """Add the weights of this epoch's end to the average."""
        self.averaged.update_parameters(model)

    @property
    def updates(self):
        return int(self.averaged.n_averaged)

    def eval_model(self, trained_model):
        """What validation evaluates: the average once it holds an epoch's weights."""
        return self.averaged.module if self.updates else trained_model

    def recompute_batch_norm(self, batches):
        """update_bn over `batches` (inputs already on the model's device). Under DDP each rank
        sees its own shard: the statistics are averaged over ranks so that all hold the same."""
        update_bn(batches, self.averaged.module)
        if dist.is_distributed():
            for buffer in self.averaged.module.buffers():
                if buffer.is_floating_point():
                    torch.distributed.all_reduce(buffer, op=torch.distributed.ReduceOp.SUM)
                    buffer.div_(dist.world_size())
        self.batch_norm_updated = True

    def state_dict(self):
        """Plain model weights (test.py loads them like `state_dict`), the update count, SWALR's
        state and whether the batch-norm statistics are recomputed ones."""
        return {"weights": self.averaged.module.state_dict(), "updates": self.averaged.n_averaged.clone(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "batch_norm_updated": self.batch_norm_updated}

    def load_state_dict(self, state):
        self.averaged.module.load_state_dict(state["weights"])
        self.averaged.n_averaged.copy_(state["updates"])
        self.batch_norm_updated = state.get("batch_norm_updated", False)
        if state.get("scheduler") is not None:
            # the optimizer's state (loaded before) already holds the rates: making SWALR at its
            # first step leaves them unchanged, and its own counters come from the checkpoint
            self.scheduler = SWALR(self.optimizer, **self.scheduler_args)
            self.scheduler.load_state_dict(state["scheduler"])
