"""The epoch-end rules fed with scripted metric sequences (no data, no real training): the
monitor, early stopping, save_period, keep_last and the best model."""
import json
import math

import pytest
import torch

from base import BaseTrainer, Callback
from conftest import PROJECT_ROOT
from parse_config import ConfigParser
from trainer.callback import EarlyStopping
from utils import ConfigError
from utils.checkpoint import Key, load_checkpoint
from utils.monitor import Monitor


class ScriptedTrainer(BaseTrainer):
    """Each epoch 'trains' to the next value of `val_loss` (and `val_accuracy`)."""

    def __init__(self, config, values):
        model = torch.nn.Linear(2, 1)
        super().__init__(model, torch.nn.functional.mse_loss, [], torch.optim.SGD(model.parameters(), lr=0.1), config)
        self.values = values

    def _train_epoch(self, epoch):
        value = self.values[epoch - 1]
        return {"loss": value, "val_loss": value, "val_accuracy": -value}


def run_scripted(tmp_path, values, resume=None, callbacks=(), **trainer_settings):
    config = json.loads((PROJECT_ROOT / "config.json").read_text())
    config["trainer"].update({"epochs": len(values), "save_dir": str(tmp_path), "tensorboard": False,
                              "verbosity": 0, "save_period": 1, "early_stop": 0, **trainer_settings})
    trainer = ScriptedTrainer(ConfigParser(config, run_id="run", resume=resume), values)
    for callback in callbacks:
        trainer.callbacks.append(callback)
    trainer.train()
    return trainer, tmp_path / "models" / config["name"] / "run"


def saved_epochs(run):
    return sorted(load_checkpoint(path)[Key.EPOCH] for path in run.glob("checkpoint-epoch*.pth"))


# ---- Monitor ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, mode, key", [("off", None, None), ("min val_loss", "min", "val_loss"),
                                             ("max val_accuracy", "max", "val_accuracy")])
def test_monitor_parses_its_setting(spec, mode, key):
    monitor = Monitor(spec)
    assert (monitor.mode, monitor.key, monitor.enabled, str(monitor)) == (mode, key, mode is not None, spec)


@pytest.mark.parametrize("spec", ["", "min", "minimize val_loss", "max a b", " off", 3, None])
def test_monitor_refuses_a_malformed_setting(spec):
    with pytest.raises(ConfigError, match="trainer.monitor is"):
        Monitor(spec)


@pytest.mark.parametrize("spec, values, improvements, best", [
    ("min val_loss", [3.0, 2.0, 2.0, 2.5, 1.0], [True, True, False, False, True], 1.0),
    ("max val_accuracy", [0.1, 0.3, 0.2, 0.3, 0.4], [True, True, False, False, True], 0.4),
    ("min val_loss", [float("nan"), 1.0, float("nan")], [False, True, False], 1.0),
    ("off", [1.0, 0.5], [False, False], 0.0),
])
def test_monitor_keeps_the_best_value(spec, values, improvements, best):
    monitor = Monitor(spec)
    assert [monitor.update(value) for value in values] == improvements
    assert monitor.best == best
    restored = Monitor(spec)
    restored.load_state_dict(monitor.state_dict())
    assert restored.best == best


def test_monitor_starts_from_the_worst_value_and_names_the_direction():
    assert Monitor("min loss").best == math.inf and Monitor("min loss").direction == "minimize"
    assert Monitor("max acc").best == -math.inf and Monitor("max acc").direction == "maximize"


# ---- early stopping --------------------------------------------------------------------------
@pytest.mark.parametrize("improvements, patience, stops_after", [
    ([True, False, False, True, False, False, False], 3, 7),
    ([True, False, False], 2, 3),
    ([True, False, False, False], 0, None),  # 0: never
    ([False, False, False], None, None),  # null: never
    ([True, True, True], 1, None),
])
def test_early_stopping_counts_epochs_without_improvement(improvements, patience, stops_after):
    stopping = EarlyStopping(patience)
    decisions = [stopping.update(improved) for improved in improvements]
    expected = [stops_after is not None and epoch >= stops_after for epoch in range(1, len(improvements) + 1)]
    assert decisions == expected


@pytest.mark.parametrize("monitor, values, patience, epochs_run", [
    ("min val_loss", [5, 4, 4.5, 4.2, 4.1, 3], 3, 5),
    ("min val_loss", [5, 4, 3, 2, 1], 1, 5),
    ("max val_accuracy", [5, 4, 4.5, 6, 7], 2, 4),  # accuracy is -value: best at epoch 2
    ("off", [5, 6, 7, 8], 1, 4),  # nothing is monitored: never stops early
])
def test_training_stops_early_after_patience_epochs(tmp_path, monitor, values, patience, epochs_run):
    trainer, run = run_scripted(tmp_path, values, monitor=monitor, early_stop=patience)
    assert len(trainer.history) == epochs_run
    assert saved_epochs(run)[-1] == epochs_run  # the stopping epoch is always saved


def test_early_stop_count_resumes_from_a_checkpoint_without_callback_states(tmp_path):
    """The count is saved under epochs_since_improvement, as before early stopping became a
    callback; a checkpoint written before callbacks existed (no "callbacks" entry) resumes it."""
    values = [5, 4, 4.5, 4.6, 4.7, 3]  # patience 3: the run stops after epoch 5
    trainer, run = run_scripted(tmp_path / "full", values, monitor="min val_loss", early_stop=3)
    assert len(trainer.history) == 5
    checkpoint = torch.load(run / "checkpoint-epoch3.pth", weights_only=True)
    assert checkpoint[Key.EPOCHS_SINCE_IMPROVEMENT] == 1
    del checkpoint[Key.CALLBACKS]
    torch.save(checkpoint, tmp_path / "old.pth")
    resumed, resumed_run = run_scripted(tmp_path / "resumed", values, resume=tmp_path / "old.pth",
                                        monitor="min val_loss", early_stop=3)
    assert len(resumed.history) == 5 and saved_epochs(resumed_run) == [4, 5]
    assert load_checkpoint(resumed_run / "checkpoint-epoch5.pth")[Key.EPOCHS_SINCE_IMPROVEMENT] == 3


def test_a_callback_can_stop_training_after_the_monitor_update(tmp_path):
    class StopBelow(Callback):
        def on_monitor_update(self, trainer, epoch, improved):
            trainer.should_stop = trainer.monitor.best < 4.5

    trainer, run = run_scripted(tmp_path, [5, 4.8, 4.2, 4, 3], callbacks=[StopBelow()], monitor="min val_loss",
                                save_period=10)
    assert len(trainer.history) == 3
    assert saved_epochs(run) == [3]  # the stopping epoch is saved


# ---- save_period and keep_last ----------------------------------------------------------------
@pytest.mark.parametrize("epochs, save_period, keep_last, expected", [
    (5, 1, 0, [1, 2, 3, 4, 5]),
    (5, 2, 0, [2, 4, 5]),  # the last epoch is always saved
    (6, 3, 0, [3, 6]),
    (5, 1, 2, [4, 5]),
    (7, 2, 1, [7]),
])
def test_save_period_and_keep_last(tmp_path, epochs, save_period, keep_last, expected):
    _, run = run_scripted(tmp_path, [1.0] * epochs, save_period=save_period, keep_last=keep_last)
    assert saved_epochs(run) == expected


# ---- best model --------------------------------------------------------------------------------
@pytest.mark.parametrize("monitor, values, best_epoch", [
    ("min val_loss", [3, 1, 2, 0.5, 4], 4),
    ("max val_accuracy", [3, 1, 2, 0.5, 4], 4),  # accuracy is -value
    ("min loss", [1, 2, 3], 1),
    ("max val_loss", [1, 2, 2], 2),  # a tie is not an improvement
])
def test_model_best_holds_the_best_epoch(tmp_path, monitor, values, best_epoch):
    trainer, run = run_scripted(tmp_path, values, monitor=monitor, keep_last=1)
    best = load_checkpoint(run / "model_best.pth")
    assert best[Key.EPOCH] == best_epoch
    assert best[Key.MONITOR_BEST] == trainer.monitor.best == trainer.history[best_epoch - 1][trainer.monitor.key]


def test_no_model_best_without_a_monitor(tmp_path):
    _, run = run_scripted(tmp_path, [3, 2, 1], monitor="off")
    assert not (run / "model_best.pth").exists()
