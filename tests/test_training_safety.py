"""What training keeps when things go wrong: pruning old checkpoints never touches the best
model, and a NaN loss either stops before anything broken is saved or skips the step."""
import math

import pandas as pd
import torch
from test_policies import run_scripted

from conftest import only_run, tiny_config
from reliability_helpers import load, run_train_in_process

BATCHES_PER_EPOCH = 12  # 512 digits, a quarter for validation, batches of 32
NAN_AT_EPOCH_2_STEP_2 = {"type": "NanLossAt", "module": "reliability_helpers",
                         "args": {"step": BATCHES_PER_EPOCH + 3}}


def all_finite(state_dict):
    return all(torch.isfinite(tensor).all() for tensor in state_dict.values())


def test_keep_last_prunes_old_checkpoints_but_never_the_best_model(tmp_path):
    # the value rises, so epoch 1 stays the best: its checkpoint file is pruned, model_best.pth stays
    _, run = run_scripted(tmp_path, [1.0, 2.0, 3.0, 4.0], monitor="min val_loss", keep_last=2)
    assert sorted(p.name for p in run.glob("*.pth")) == ["checkpoint-epoch3.pth", "checkpoint-epoch4.pth",
                                                         "model_best.pth"]
    assert load(run / "model_best.pth")["epoch"] == 1


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_files(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"loss": NAN_AT_EPOCH_2_STEP_2})
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2
    assert captured.err.startswith("error: the training loss became NaN/Inf in epoch 2 at step 2. Training stopped")
    assert "Traceback" not in captured.err
    run = only_run(tmp_path / "saved")
    assert sorted(p.name for p in run.glob("*.pth")) == ["checkpoint-epoch1.pth", "model_best.pth"]
    best = load(run / "model_best.pth")
    assert best["epoch"] == 1 and all_finite(best["state_dict"])
    metrics = pd.read_csv(tmp_path / "saved" / "log" / "Tiny" / run.name / "metrics.csv")
    assert metrics["epoch"].tolist() == [1]


def test_nan_loss_with_skip_drops_that_step_and_trains_on(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"loss": NAN_AT_EPOCH_2_STEP_2, "trainer.on_nonfinite": "skip"})
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 0, captured
    final = load(only_run(tmp_path / "saved") / "checkpoint-epoch2.pth")
    adam_steps = {int(state["step"]) for state in final["optimizer"]["state"].values()}
    assert adam_steps == {2 * BATCHES_PER_EPOCH - 1}  # the one skipped step is missing
    assert all_finite(final["state_dict"])
    assert math.isnan(final["history"][1]["loss"])  # the skipped batch still counts in the epoch's mean
    assert math.isfinite(final["history"][1]["val_loss"])
