"""Callbacks: code that runs at fixed points of the training loop, listed in the config as

    "callbacks": [{"type": "LogPredictionEntropy", "args": {}}]

and built like every other {"type", "args"} entry (first from trainer/callbacks.py, or from the
module an entry's "module" key names). Override only the events you need; the others cost
nothing. A callback that keeps state across epochs returns it from `state_dict` (plain
containers and tensors): it is saved in every checkpoint under its `state_key` (the class name,
or "ClassName:name" for an entry with a "name") and handed back on resume."""
from utils.errors import ConfigError


class Callback:
    """Base class. `trainer` is the running Trainer (its model, optimizer, writer, device...)."""

    name = None  # set from a config entry's "name": tells two callbacks of one class apart

    @property
    def state_key(self):
        """Where the checkpoint keeps this callback's state (Lightning's `state_key`)."""
        return type(self).__qualname__ + (f":{self.name}" if self.name else "")

    @property
    def keeps_state(self):
        return type(self).state_dict is not Callback.state_dict

    def on_fit_start(self, trainer):
        """Before the first epoch, after a resumed checkpoint was loaded."""

    def on_epoch_start(self, trainer, epoch):
        """Before the epoch's first batch (also when a resumed epoch starts in its middle)."""

    def on_step_end(self, trainer, batch_idx, loss, output, target):
        """After each optimizer step (with accum_steps > 1: after each accumulation window).
        `loss` (the last micro-batch's), `output` and `target` are detached tensors still on the
        device: reading a value (.item(), float(), printing) makes the host wait for the device,
        so keep per-step work on tensors and read them once per epoch."""

    def on_validation_end(self, trainer, epoch, log):
        """After the epoch's training and validation (or training only, without validation).
        `log` holds the epoch's results; keys added here are logged like the others and may be
        monitored (trainer.monitor)."""

    def on_monitor_update(self, trainer, epoch, improved):
        """After the monitored value (trainer.monitor, when not "off") was compared with the best
        so far, before the epoch's checkpoint is written; `improved`: it is the new best. Set
        `trainer.should_stop = True` to end training after this epoch (its checkpoint is written)."""

    def on_epoch_end(self, trainer, epoch, log):
        """After the epoch was logged and its checkpoint written. Raising an exception ends the
        training (tune.py prunes a trial this way)."""

    def on_fit_end(self, trainer):
        """After the last epoch, also when training stops early (not after an error)."""

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        """Restore what `state_dict` returned."""


class EpochFunction(Callback):
    """A plain function f(epoch, log) run as on_epoch_end (BaseTrainer.epoch_callbacks)."""

    def __init__(self, function):
        self.function = function

    def on_epoch_end(self, trainer, epoch, log):
        self.function(epoch, log)


class EarlyStopping(Callback):
    """`trainer.early_stop`: stop after `patience` validations without improvement of the
    monitored value (0 or None: never). Its count is saved with the callbacks (and, for earlier
    readers, under the checkpoint's `epochs_since_improvement` key)."""

    def __init__(self, patience):
        self.patience = patience or 0
        self.epochs_since_improvement = 0

    def on_monitor_update(self, trainer, epoch, improved):
        if self.update(improved):
            trainer.should_stop = True
            counted = "validations" if getattr(trainer, "validates_in_epoch", False) else "epochs"
            trainer.logger.info(f"Validation performance didn't improve for {self.patience} {counted}. "
                                "Training stops.")

    def update(self, improved):
        """Count this validation; return True when training should stop now."""
        self.epochs_since_improvement = 0 if improved else self.epochs_since_improvement + 1
        return self.should_stop

    @property
    def should_stop(self):
        return bool(self.patience) and self.epochs_since_improvement >= self.patience

    def state_dict(self):
        return {"epochs_since_improvement": self.epochs_since_improvement}

    def load_state_dict(self, state):
        # checkpoints from before state keys kept the count under epochs_since_improvement only
        self.epochs_since_improvement = state.get("epochs_since_improvement", self.epochs_since_improvement)


EVENTS = ("on_fit_start", "on_epoch_start", "on_step_end", "on_validation_end", "on_monitor_update",
          "on_epoch_end", "on_fit_end")


class CallbackList:
    """Fires an event on every callback that overrides it, in list order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)
        self._refresh()

    def append(self, callback):
        self.callbacks.append(callback)
        self._refresh()

    def _refresh(self):
        # per event, only the callbacks that override it: an event nobody handles is an empty loop
        self._handlers = {event: [getattr(cb, event) for cb in self.callbacks
                                  if getattr(type(cb), event, None) is not getattr(Callback, event)]
                          for event in EVENTS}

    def fire(self, event, *args):
        for handler in self._handlers[event]:
            handler(*args)

    def state_dict(self):
        """{state_key: state} of every callback that keeps state."""
        return {callback.state_key: callback.state_dict() for callback in self.callbacks if callback.keeps_state}

    def load_state_dict(self, saved, logger):
        """Give each callback that keeps state its saved state, found by its state_key. A list
        (checkpoints written before state keys) is matched by position and class name."""
        by_key = _keyed(saved, self.callbacks)
        for callback in self.callbacks:
            if not callback.keeps_state:
                continue
            if callback.state_key not in by_key:
                logger.warning(f"The checkpoint has no state for callback {callback.state_key}; it starts fresh.")
                continue
            callback.load_state_dict(by_key[callback.state_key])

    def check_state_keys(self):
        """A ConfigError when two callbacks that keep state would save under one key."""
        keys = [callback.state_key for callback in self.callbacks if callback.keeps_state]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ConfigError(f"callbacks: {', '.join(repeated)} appears twice, and a checkpoint keeps each "
                              "callback's state under its class name. Give each entry a distinct \"name\", "
                              'e.g. {"type": "MyCallback", "name": "second", "args": {...}}.')

    def __len__(self):
        return len(self.callbacks)


def _keyed(saved, callbacks):
    """Saved callback states as {state_key: state}; the list of earlier checkpoints
    ([{"type", "state"}] in list order) is matched to `callbacks` by position and class name."""
    if isinstance(saved, dict):
        return saved
    keyed = {}
    for callback, entry in zip(callbacks, saved or []):
        if entry.get("type") == type(callback).__name__:
            keyed[callback.state_key] = entry["state"]
    return keyed
