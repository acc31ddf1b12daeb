"""Binary tasks: the loss and metric on known numbers, and the "is it a 0" example config."""
import json

import pytest
import torch

from conftest import PROJECT_ROOT, only_run
from model.loss import bce_with_logits
from model.metric import binary_accuracy
from model.model import MnistModel
from reliability_helpers import run_in_process

STATED_ACCURACY = 0.95  # the test split is 10% zeros: always answering "not a 0" scores 0.90


def test_binary_accuracy_thresholds_the_sigmoid():
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])  # sigmoid: 0.88, 0.27, 0.62, 0.05
    target = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert binary_accuracy(logits, target).item() == pytest.approx(0.75)
    assert binary_accuracy(logits, target, threshold=0.7).item() == pytest.approx(1.0)
    multi_label = torch.tensor([[3.0, -3.0], [-3.0, -3.0]])
    assert binary_accuracy(multi_label, torch.tensor([[1.0, 1.0], [0.0, 0.0]])).item() == pytest.approx(0.75)


def test_bce_with_logits_matches_the_formula():
    logits, target = torch.tensor([[1.5], [-0.5], [0.2]]), torch.tensor([1.0, 0.0, 1.0])
    p = torch.sigmoid(logits.squeeze(1))
    expected = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert bce_with_logits(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)
    weighted = -(2.0 * target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert bce_with_logits(logits, target, pos_weight=2.0).item() == pytest.approx(weighted.item(), rel=1e-5)


def test_one_output_needs_raw_scores():
    with pytest.raises(ValueError, match="logits=true"):
        MnistModel(num_classes=1)
    assert MnistModel(num_classes=1, logits=True)(torch.zeros(2, 1, 28, 28)).shape == (2, 1)


@pytest.mark.slow
def test_is_zero_example_reaches_stated_accuracy(tmp_path, mnist_dir, monkeypatch, capsys):
    config = PROJECT_ROOT / "configs" / "mnist_is_zero.json"
    run_in_process(monkeypatch, capsys, "train", "-c", config, "-o", f"data_loader.args.data_dir={mnist_dir}",
               "-o", f"trainer.save_dir={tmp_path}", "-o", "trainer.epochs=2", "-o", "trainer.tensorboard=false",
               "-o", "+data_loader.args.limit=2000", check=True)
    checkpoint = only_run(tmp_path, "Mnist_IsZero") / "model_best.pth"
    run_in_process(monkeypatch, capsys, "test", "-r", checkpoint, check=True)
    results = json.loads(checkpoint.with_name("model_best_test.json").read_text())
    assert results["samples"] == 1000
    assert results["binary_accuracy"] >= STATED_ACCURACY, results
