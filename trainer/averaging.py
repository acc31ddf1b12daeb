"""Exponential moving average of the weights (`trainer.ema`), on torch.optim.swa_utils:

    "trainer": {"ema": {"decay": 0.999, "use_for_eval": true}}

After every optimizer step the averaged copy moves towards the trained weights (one fused
foreach lerp, no host-device sync). With `use_for_eval` (the default) validation, model_best's
monitored value and test.py use the averaged weights; training always continues from the raw
ones. Both are in every checkpoint."""
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from utils import ConfigError

EMA_KEYS = {"decay": float, "use_for_eval": bool}


def check_ema_settings(settings):
    """Raise ConfigError for a malformed trainer.ema; None or {} means off."""
    if settings is None:
        return
    if not isinstance(settings, dict):
        raise ConfigError(f"trainer.ema is {settings!r}; write it as {{\"decay\": 0.999}} or leave it out.")
    unknown = sorted(set(settings) - set(EMA_KEYS))
    if unknown:
        raise ConfigError(f"trainer.ema.{unknown[0]} is not an EMA setting; the settings are "
                          f"{', '.join(EMA_KEYS)}.")
    decay = settings.get("decay", 0.999)
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
        raise ConfigError(f"trainer.ema.decay is {decay!r}; it must be a number between 0 and 1 "
                          "(exclusive), typically 0.99 to 0.9999.")
    if not isinstance(settings.get("use_for_eval", True), bool):
        raise ConfigError(f"trainer.ema.use_for_eval is {settings['use_for_eval']!r}; write true or false.")


class WeightAverage:
    """The averaged copy of a model and its bookkeeping."""

    def __init__(self, model, settings):
        check_ema_settings(settings)
        self.use_for_eval = settings.get("use_for_eval", True)
        decay = settings.get("decay", 0.999)
        # use_buffers: batch-norm statistics are averaged too, so the copy is usable as it is
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @torch.no_grad()
    def update(self, model):
        self.averaged.update_parameters(model)

    def eval_model(self, trained_model):
        return self.averaged.module if self.use_for_eval else trained_model

    def state_dict(self):
        """Plain model weights (test.py loads them like `state_dict`) and the update count."""
        return {"weights": self.averaged.module.state_dict(), "updates": self.averaged.n_averaged.clone()}

    def load_state_dict(self, state):
        self.averaged.module.load_state_dict(state["weights"])
        self.averaged.n_averaged.copy_(state["updates"])
