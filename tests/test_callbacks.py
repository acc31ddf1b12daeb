"""Callbacks: the events in order, config-built callbacks (the documented LogPredictionEntropy
example logs a second loss term), their state in checkpoints and exact resume, the dispatch that
skips events a callback does not handle, and config mistakes reported before training."""
import json
import math

import pandas as pd
import pytest
import torch

import train
from base import Callback
from config.validation import Problems
from conftest import only_run, tiny_config
from parse_config import ConfigParser
from reliability_helpers import assert_same_training, load
from trainer.callback import CallbackList
from trainer.preflight import check_before_run
from utils import ConfigError

ENTROPY = {"type": "LogPredictionEntropy", "args": {}}


def make_config(tmp_path, mnist_dir, updates=None, **kwargs):
    path = tiny_config(tmp_path, mnist_dir, updates)
    return ConfigParser(json.loads(path.read_text()), **kwargs)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append("fit_start")

    def on_epoch_start(self, trainer, epoch):
        self.events.append(f"epoch_start {epoch}")

    def on_step_end(self, trainer, batch_idx, loss, output, target):
        assert loss.device == output.device == trainer.device and output.shape[0] == target.shape[0]
        self.events.append("step")

    def on_validation_end(self, trainer, epoch, log):
        assert "val_loss" in log and "loss" in log
        self.events.append(f"validation_end {epoch}")

    def on_epoch_end(self, trainer, epoch, log):
        assert (trainer.checkpoint_dir / f"checkpoint-epoch{epoch}.pth").exists()  # after the checkpoint
        self.events.append(f"epoch_end {epoch}")

    def on_fit_end(self, trainer):
        self.events.append("fit_end")


def test_events_fire_in_order_once_per_optimizer_step(tmp_path, mnist_dir):
    recorder = Recorder()
    torch.set_num_threads(1)
    train.main(make_config(tmp_path, mnist_dir, {"trainer.accum_steps": 3}), callbacks=[recorder])
    epoch = ["step"] * 4  # 12 batches of 32, an optimizer step every 3
    assert recorder.events == ["fit_start", "epoch_start 1", *epoch, "validation_end 1", "epoch_end 1",
                               "epoch_start 2", *epoch, "validation_end 2", "epoch_end 2", "fit_end"]


def test_config_callback_logs_a_second_loss_term(tmp_path, mnist_dir):
    torch.set_num_threads(1)
    trainer = train.main(make_config(tmp_path, mnist_dir, {"callbacks": [ENTROPY]}))
    metrics = pd.read_csv(trainer.config.log_dir / "metrics.csv")
    assert len(metrics["entropy"]) == 2
    assert all(0 < value <= math.log(10) for value in metrics["entropy"])


def test_callback_state_is_checkpointed_and_resumed_exactly(tmp_path, mnist_dir):
    updates = {"trainer.activation_stats": 5, "callbacks": [ENTROPY]}
    torch.set_num_threads(1)
    train.main(make_config(tmp_path, mnist_dir, updates, run_id="reference"))
    reference = only_run(tmp_path / "saved").parent / "reference"
    saved = load(reference / "checkpoint-epoch2.pth")["callbacks"]
    assert saved == {"ActivationStatistics": {"forward_count": 24}, "EarlyStopping": {"epochs_since_improvement": 0}}
    train.main(make_config(tmp_path, mnist_dir, updates, run_id="resumed",
                           resume=reference / "checkpoint-epoch1.pth"))
    assert_same_training(reference / "checkpoint-epoch2.pth", reference.parent / "resumed" / "checkpoint-epoch2.pth")


def test_a_checkpoint_with_callback_states_in_a_list_still_resumes(tmp_path, mnist_dir):
    """Checkpoints written before state keys held [{"type", "state"}] in the callbacks' order."""
    updates = {"trainer.activation_stats": 5, "callbacks": [ENTROPY], "trainer.epochs": 3}
    torch.set_num_threads(1)
    train.main(make_config(tmp_path, mnist_dir, updates, run_id="reference"))
    reference = only_run(tmp_path / "saved").parent / "reference"
    old_style = load(reference / "checkpoint-epoch2.pth")
    old_style["callbacks"] = [{"type": "LogPredictionEntropy", "state": {}},
                              {"type": "ActivationStatistics", "state": old_style["callbacks"]["ActivationStatistics"]},
                              {"type": "EarlyStopping", "state": {}}]
    torch.save(old_style, tmp_path / "old_style.pth")
    train.main(make_config(tmp_path, mnist_dir, updates, run_id="resumed", resume=tmp_path / "old_style.pth"))
    assert_same_training(reference / "checkpoint-epoch3.pth", reference.parent / "resumed" / "checkpoint-epoch3.pth")


def test_two_callbacks_of_one_class_need_names(tmp_path, mnist_dir):
    counting = {"type": "Counting", "module": "test_callbacks"}
    with pytest.raises(ConfigError, match="Counting appears twice"):
        train.main(make_config(tmp_path, mnist_dir, {"callbacks": [counting, counting], "trainer.epochs": 1}))
    named = [counting, {**counting, "name": "second"}]
    trainer = train.main(make_config(tmp_path, mnist_dir, {"callbacks": named, "trainer.epochs": 1}))
    assert set(load(trainer.checkpoint_dir / "checkpoint-epoch1.pth")["callbacks"]) == {
        "Counting", "Counting:second", "EarlyStopping"}


class Counting(Callback):
    """Keeps a count of epochs: a callback with state."""

    def __init__(self):
        self.epochs = 0

    def on_epoch_end(self, trainer, epoch, log):
        self.epochs += 1

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        self.epochs = state["epochs"]


def test_only_overridden_events_are_dispatched():
    class EpochOnly(Callback):
        def on_epoch_end(self, trainer, epoch, log):
            pass

    callbacks = CallbackList([EpochOnly(), EpochOnly()])
    assert len(callbacks._handlers["on_epoch_end"]) == 2
    assert callbacks._handlers["on_step_end"] == []


@pytest.mark.parametrize("callbacks, message", [
    ([{"type": "LogEntropy"}], "callbacks.0.type"),
    ([{"type": "ActivationStats", "module": "logger.activations"}],
     "callbacks.0.type 'ActivationStats' is not a Callback"),
    ([ENTROPY, {"type": "ActivationStatistics", "args": {"every": 2, "often": 3}}], "callbacks.1.args do not fit"),
    ({"type": "LogPredictionEntropy"}, "callbacks is {"),
])
def test_bad_callbacks_are_reported_before_a_run_folder_exists(tmp_path, mnist_dir, callbacks, message):
    with pytest.raises(ConfigError) as err:  # the schema rejects a non-list already while reading
        check_config_objects(make_config(tmp_path, mnist_dir, {"callbacks": callbacks}, create_dirs=False))
    assert message in str(err.value), str(err.value)
    assert not (tmp_path / "saved").exists()


def check_config_objects(config):
    """The pre-run checks that build objects, raising their problems as one ConfigError."""
    problems = Problems()
    check_before_run(config, problems)
    problems.raise_if_any()
