"""The monitored metric of `trainer.monitor`: "off", "min KEY" or "max KEY". One class parses the
setting, compares values, keeps the best one and saves it; the trainer (best model, early
stopping), tune.py (the study's direction), the pre-run checks and ReduceLROnPlateau use it."""
import math

from .errors import ConfigError

MODES = ("min", "max")


class Monitor:
    def __init__(self, spec="off"):
        problem = self.problem(spec)
        if problem:
            raise ConfigError(f"trainer.monitor {problem}.")
        self.spec = spec
        self.mode, self.key = (None, None) if spec == "off" else spec.split()
        self.best = self.worst_value()

    @staticmethod
    def problem(spec):
        """None for a valid setting, else what is wrong with it (without the key name)."""
        parts = spec.split() if isinstance(spec, str) else []
        if parts == ["off"] and spec == "off":
            return None
        if len(parts) == 2 and parts[0] in MODES:
            return None
        return (f"is {spec!r}; write \"off\", \"min <metric>\" or \"max <metric>\", e.g. "
                "\"min val_loss\" or \"max val_accuracy\"")

    @property
    def enabled(self):
        return self.mode is not None

    @property
    def direction(self):
        """Optuna's name for the mode."""
        return {"min": "minimize", "max": "maximize"}.get(self.mode)

    def worst_value(self):
        if not self.enabled:
            return 0.0
        return math.inf if self.mode == "min" else -math.inf

    def is_better(self, value, reference=None):
        """True when `value` beats `reference` (default: the best so far). NaN never does."""
        reference = self.best if reference is None else reference
        return value < reference if self.mode == "min" else value > reference

    def best_row(self, history):
        """The index label of the best monitored value in `history` (a pandas DataFrame of logged
        values, one row per epoch), or None when nothing is monitored or it was never logged."""
        if not self.enabled or self.key not in history or history[self.key].isna().all():
            return None
        values = history[self.key]
        return values.idxmin() if self.mode == "min" else values.idxmax()

    @classmethod
    def of_config(cls, config):
        """The Monitor of a plain config dict's trainer.monitor ("off" when it has none)."""
        return cls((config or {}).get("trainer", {}).get("monitor", "off"))

    def update(self, value):
        """Take this epoch's value; return True (and keep it as the best) when it improved."""
        if not self.enabled or not self.is_better(value):
            return False
        self.best = value
        return True

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state["best"]

    def __str__(self):
        return self.spec


def scheduler_monitor(trainer_monitor):
    """The Monitor ReduceLROnPlateau steps on: trainer.monitor, or "min val_loss" when that is off."""
    monitor = Monitor(trainer_monitor)
    return monitor if monitor.enabled else Monitor("min val_loss")

