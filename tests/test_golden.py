"""Golden losses: the first 20 training losses of a tiny seeded CPU run. Any change to the numbers
the loop computes (data order, initialisation, seeding, the step itself) shows up here. When a
change is intended, rerun with GOLDEN_PRINT=1, check the new numbers and paste them below."""
import json
import os

import pytest
import torch

import model.loss as module_loss
import train
from conftest import tiny_config
from parse_config import ConfigParser

GOLDEN_LOSSES = [2.3838, 2.313792, 2.317864, 2.269962, 2.292079, 2.293598, 2.272378, 2.250285, 2.222814,
                 2.25555, 2.228986, 2.210843, 2.125794, 2.203144, 2.23099, 2.105227, 2.221453, 2.052018,
                 2.103876, 1.959118]


class RecordingLoss:
    """nll_loss that records the value of every training batch."""

    def __init__(self):
        self.values = []

    def __call__(self, output, target):
        loss = torch.nn.functional.nll_loss(output, target)
        if output.requires_grad:
            self.values.append(loss.item())
        return loss


def test_first_20_training_losses_match_the_golden_run(tmp_path, mnist_dir, monkeypatch):
    recorder = RecordingLoss()
    monkeypatch.setattr(module_loss, "recording_loss", recorder, raising=False)
    config = json.loads(tiny_config(tmp_path, mnist_dir, {"loss": "recording_loss"}).read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same summation order on every machine
    try:
        train.main(ConfigParser(config, run_id="golden"))
    finally:
        torch.set_num_threads(threads)
    losses = recorder.values[:20]
    if os.environ.get("GOLDEN_PRINT"):
        print("GOLDEN_LOSSES =", [round(value, 6) for value in losses])
    assert len(losses) == 20
    assert losses == pytest.approx(GOLDEN_LOSSES, abs=1e-4)
