"""Callbacks that come with the project, and building the config's "callbacks" list. A config
entry's "type" is looked up here first; a callback of your own lives in your module, named by
the entry's "module" key (e.g. "model.callbacks")."""
import torch

from config.instantiate import check_entry, instantiate, resolve
from logger.activations import ActivationStats
from utils import ConfigError, unwrap_model

from .callback import Callback


class ActivationStatistics(Callback):
    """Mean and std of each leaf module's output, written every `every` training forward passes
    (what trainer.activation_stats turns on). The pass count is saved, so a resumed run records
    at the same passes."""

    def __init__(self, every):
        self.every = every
        self.stats = None
        self.saved_count = 0

    def on_fit_start(self, trainer):
        self.stats = ActivationStats(unwrap_model(trainer.model), trainer.writer, self.every)
        self.stats.forward_count = self.saved_count

    def on_fit_end(self, trainer):
        self.stats.remove()

    def state_dict(self):
        return {"forward_count": self.stats.forward_count if self.stats else self.saved_count}

    def load_state_dict(self, state):
        self.saved_count = state["forward_count"]


class LogPredictionEntropy(Callback):
    """Logs a second loss term beside the training loss: the mean entropy of the model's
    predicted class distribution (outputs are log-probabilities), as `entropy` in every epoch's
    log, metrics.csv and TensorBoard. The per-step sums stay on the device; the value is read
    once per epoch."""

    def on_epoch_start(self, trainer, epoch):
        self.total = torch.zeros((), device=trainer.device)
        self.samples = 0

    def on_step_end(self, trainer, batch_idx, loss, output, target):
        entropy = -(output.exp() * output).sum(dim=1)  # per sample, from log-probabilities
        self.total += entropy.sum()  # a device tensor: no host-device sync here
        self.samples += output.shape[0]

    def on_validation_end(self, trainer, epoch, log):
        log["entropy"] = self.total.item() / max(self.samples, 1)  # the one sync per epoch


def build_callbacks(config, check_only=False):
    """The Callback objects of config["callbacks"] (a list of {"type", "args", "module"?});
    `check_only`: resolve the types and check the arguments, build nothing."""
    entries = config.config.get("callbacks") or []
    if not isinstance(entries, list):
        raise ConfigError(f"callbacks is {entries!r}; write a list of {{\"type\", \"args\"}} entries, e.g. "
                          '[{"type": "LogPredictionEntropy", "args": {}}].')
    for index, entry in enumerate(entries):
        key_path = f"callbacks.{index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key_path} is {entry!r}; write it as {{\"type\": \"Name\", \"args\": {{...}}}}.")
        callback_type = resolve(entry, key_path, trusted=config.trusted)
        if not (isinstance(callback_type, type) and issubclass(callback_type, Callback)):
            raise ConfigError(f"{key_path}.type '{entry['type']}' is not a Callback subclass; a callback "
                              "class derives from trainer.callback.Callback (base.Callback).")
        check_entry(entry, key_path=key_path, trusted=config.trusted)
    if check_only:
        return []
    callbacks = instantiate(entries, key_path="callbacks", trusted=config.trusted)
    for callback, entry in zip(callbacks, entries):
        callback.name = entry.get("name")
    return callbacks
