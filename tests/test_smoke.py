"""The default workflow end to end on tiny real data: train, files written, test.py (both in
this process)."""
import json

import torch

from conftest import only_run, tiny_config
from reliability_helpers import run_in_process


def test_train_then_test_writes_expected_outputs(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir)
    run_in_process(monkeypatch, capsys, "train", "-c", config, check=True)
    run = only_run(tmp_path / "saved")
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint-epoch1.pth", "checkpoint-epoch2.pth", "config.json", "model_best.pth", "record",
        "record.json", "status.json", "train.lock"]
    log_dir = tmp_path / "saved" / "log" / "Tiny" / run.name
    assert (log_dir / "info.log").read_text().count("    val_loss ") == 2
    assert (log_dir / "metrics.csv").read_text().splitlines()[0].split(",")[:3] == ["epoch", "loss", "accuracy"]

    run_in_process(monkeypatch, capsys, "test", "-r", run / "model_best.pth", check=True)
    numbers = json.loads((run / "model_best_test.json").read_text())
    assert numbers["samples"] == 1000
    assert 0.0 <= numbers["accuracy"] <= 1.0
    assert len(run_dirs_after := list((tmp_path / "saved" / "models" / "Tiny").iterdir())) == 1, run_dirs_after
    checkpoint = torch.load(run / "model_best.pth", weights_only=True)
    assert checkpoint["epoch"] in (1, 2)
