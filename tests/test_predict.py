"""From a checkpoint to answers: the evaluation report, learning curves, export and predict.py,
on one tiny MNIST run (with torchmetrics metrics in its config) trained once for the module."""
import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support
from torchvision.datasets import MNIST

import export
import plot
import predict
import test as test_script
import train
from conftest import only_run, run_script, tiny_config
from data_loader.task import Task
from evaluation.report import write_report
from parse_config import ConfigParser
from utils import ConfigError
from utils.checkpoint import load_checkpoint

pytestmark = pytest.mark.xdist_group("predict")  # one trained run and one set of PNGs for the module
TORCHMETRICS_F1 = {"type": "MulticlassF1Score", "module": "torchmetrics.classification",
                   "args": {"num_classes": 10}, "name": "f1"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_dir):
    """(checkpoint path, log folder) of a 2-epoch run logging accuracy and torchmetrics F1."""
    tmp_path = tmp_path_factory.mktemp("run")
    config_path = tiny_config(tmp_path, mnist_dir, {"metrics": ["accuracy", TORCHMETRICS_F1]})
    config = ConfigParser(json.loads(config_path.read_text()))
    train.main(config)
    return only_run(tmp_path / "saved") / "model_best.pth", config.log_dir


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory, mnist_dir):
    """The 1000 test digits as PNG files in one folder per class, plus two unusable files."""
    folder = tmp_path_factory.mktemp("pngs")
    dataset = MNIST(str(mnist_dir), train=False, download=False)
    for index, (image, label) in enumerate(dataset):
        (folder / str(label)).mkdir(exist_ok=True)
        image.save(folder / str(label) / f"{index:05d}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    Image.new("L", (20, 20)).save(folder / "too_small.png")
    return folder


def checkpoint_config(checkpoint, *extra):
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", default=None)
    parser.add_argument("-r", "--resume", default=None)
    parser.add_argument("-d", "--device", default=None)
    return ConfigParser.from_args(parser, create_dirs=False, argv=["-r", str(checkpoint), *extra])


@pytest.mark.curves
def test_training_logs_epoch_metrics_and_draws_curves(trained_run):
    checkpoint, log_dir = trained_run
    history = pd.read_csv(log_dir / "metrics.csv")
    assert {"f1", "val_f1", "accuracy", "val_accuracy"} <= set(history.columns)
    assert history["val_f1"].between(0, 1).all()
    with Image.open(log_dir / "curves.png") as image:
        assert image.width > 800 and image.height > 300
    assert load_checkpoint(checkpoint)["config"]["metrics"][1] == TORCHMETRICS_F1


def test_plot_overlays_runs(trained_run, tmp_path):
    checkpoint, log_dir = trained_run
    output = plot.main([log_dir, checkpoint.parent], tmp_path / "both.png")  # log and model folder of one run
    with Image.open(output) as image:
        assert image.format == "PNG"
    with pytest.raises(ConfigError):
        plot.main([tmp_path])


def test_report_matches_predictions(trained_run, digit_pngs, tmp_path):
    checkpoint, _ = trained_run
    results = test_script.main(checkpoint_config(checkpoint))
    report_dir = test_script.report_dir(checkpoint)
    table = pd.read_csv(report_dir / "classes.csv")
    summary = json.loads((report_dir / "report.json").read_text())
    assert list(table["class"]) == [str(i) for i in range(10)] + ["macro avg", "weighted avg"]
    assert table["support"].iloc[:10].sum() == 1000
    assert summary["accuracy"] == pytest.approx(results["accuracy"], abs=1e-6)
    for name in ("confusion_matrix.png", "wrong_samples.png"):
        with Image.open(report_dir / name) as image:
            assert image.format == "PNG"

    # predict.py on the same digits as PNG files: same accuracy, same per-class numbers
    output = tmp_path / "predictions.csv"
    rows, errors = predict.main(predict.TorchModel(checkpoint), digit_pngs, output, top_k=3, num_workers=0)
    predictions = pd.read_csv(output)
    assert len(predictions) == 1000 and len(rows) == 1000
    assert sorted(pd.read_csv(predict.errors_file(output))["input"].map(lambda p: p.split("/")[-1])) == \
        ["broken.png", "too_small.png"]
    truth = predictions["input"].map(lambda p: p.split("/")[-2])
    assert (predictions["predicted"].astype(str) == truth).mean() == pytest.approx(results["accuracy"], abs=1e-9)
    precision, _, f1, _ = precision_recall_fscore_support(truth, predictions["predicted"].astype(str),
                                                          labels=[str(i) for i in range(10)], zero_division=0)
    assert np.allclose(table["f1"].iloc[:10], f1, atol=1e-5)
    assert np.allclose(table["precision"].iloc[:10], precision, atol=1e-5)
    assert (predictions["top1"].astype(str) == predictions["predicted"].astype(str)).all()
    assert (predictions["top1_probability"] >= predictions["top2_probability"]).all()


@pytest.mark.parametrize("export_format", ["onnx", "torchscript"])
def test_export_checks_itself_and_predicts_the_same(trained_run, digit_pngs, tmp_path, export_format):
    checkpoint, _ = trained_run
    output = tmp_path / f"model{export.SUFFIX[export_format]}"
    path, difference = export.main(checkpoint_config(checkpoint), export_format, output, dynamic_batch=True)
    assert path.is_file() and difference <= export.TOLERANCE
    sidecar = json.loads(export.sidecar_path(path).read_text())
    assert sidecar["class_names"] == [str(i) for i in range(10)]
    assert sidecar["input_shape"] == ["batch", 1, 28, 28]
    assert sidecar["normalization"]["mean"] == pytest.approx([0.1307])
    if export_format == "onnx":
        from_onnx = predict.main(predict.OnnxModel(path), digit_pngs / "7", tmp_path / "onnx.csv", num_workers=0)[0]
        from_torch = predict.main(predict.TorchModel(checkpoint), digit_pngs / "7", tmp_path / "torch.csv",
                                  num_workers=0)[0]
        assert [r["predicted"] for r in from_onnx] == [r["predicted"] for r in from_torch]
    else:
        loaded = torch.jit.load(str(path))
        assert loaded(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_onnx_export_without_onnx_says_what_to_install(trained_run, monkeypatch):
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install onnx onnxruntime"):
        export.main(checkpoint_config(trained_run[0]), "onnx")


def test_predict_refuses_untrusted_checkpoint_code(trained_run, tmp_path):
    checkpoint = torch.load(trained_run[0], weights_only=True)
    checkpoint["config"]["arch"] = {"type": "system", "module": "os", "args": {}}
    path = tmp_path / "hostile.pth"
    torch.save(checkpoint, path)
    with pytest.raises(ConfigError, match="--trust"):
        predict.TorchModel(path)


def test_binary_report_has_curves_and_best_threshold(tmp_path):
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 2, (200,), generator=generator).float()
    scores = (targets * 1.5 + torch.randn(200, generator=generator)).unsqueeze(1)  # raw scores, one per sample
    summary = write_report(tmp_path, scores, targets, Task("binary", ("other", "zero")))
    from sklearn.metrics import f1_score, roc_auc_score

    assert summary["task"] == "binary" and summary["binary"]["positive_class"] == "zero"
    assert summary["binary"]["roc_auc"] == pytest.approx(roc_auc_score(targets, scores.squeeze(1)), abs=1e-5)
    best = summary["binary"]["best_f1_threshold"]
    probs = torch.sigmoid(scores.squeeze(1))
    brute_force = max(f1_score(targets, probs >= t) for t in probs.tolist())
    assert best["f1"] == pytest.approx(brute_force, abs=1e-5)
    assert f1_score(targets, probs >= best["threshold"]) == pytest.approx(best["f1"], abs=1e-5)
    for name in ("roc.png", "pr.png", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_table_inputs_get_wrong_sample_rows(tmp_path):
    from evaluation.outputs import WrongSamples

    features = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    output = torch.tensor([[5.0, 0.0], [0.0, 5.0], [1.0, 0.0]])
    targets = torch.tensor([1, 1, 1])
    wrong = WrongSamples(4, "classification")
    wrong.update(features, output, targets, 0)
    write_report(tmp_path, output, targets, Task("classification", ("a", "b")), wrong.result())
    rows = pd.read_csv(tmp_path / "wrong_samples.csv")
    assert list(rows["input"]) == ["sample 0", "sample 2"]  # most confidently wrong first
    assert list(rows["input_1"]) == [1.0, 5.0]


@pytest.mark.slow
def test_predict_script_bad_input_exits_2(tmp_path, trained_run):
    result = run_script("predict.py", "-r", trained_run[0], "-i", tmp_path / "nothing_here", "-o", tmp_path / "p.csv")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p.csv").exists()


def test_validation_report_when_asked(tmp_path, mnist_dir):
    config_path = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1, "trainer.validation_report": True})
    config = ConfigParser(json.loads(config_path.read_text()))
    train.main(config)
    table = pd.read_csv(config.save_dir / "validation_report" / "classes.csv")
    assert table["support"].iloc[:10].sum() == 128  # a quarter of the 512 digits
    assert (config.save_dir / "validation_report" / "confusion_matrix.png").stat().st_size > 1000


def test_table_rows_with_problems_go_to_errors(tmp_path):
    from data_loader.table import fit_table_preprocessing
    from evaluation.inputs import table_inputs

    training = pd.DataFrame({"size": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"]})
    preprocessing = fit_table_preprocessing(training, ["size", "colour"], ["colour"], standardize=True)
    section = {"type": "CsvDataLoader", "args": {"preprocessing": preprocessing}}
    csv_path = tmp_path / "new.csv"
    csv_path.write_text("size,colour\n2.0,blue\n,red\nbig,red\n3.0,green\n")
    labels, rows, errors = table_inputs(csv_path, section)
    assert labels == ["new.csv line 2", "new.csv line 5"]  # an unseen colour is all zeros, as in training
    assert rows.shape == (2, 3) and rows[0, 0] == pytest.approx(0.0)  # 2.0 is the training mean
    assert [label for label, _ in errors] == ["new.csv line 3", "new.csv line 4"]
    csv_path.write_text("size\n1.0\n")
    assert len(table_inputs(csv_path, section)[2]) == 1  # no colour column: the row is refused


class FixedModel:
    def __init__(self, task, names):
        self.task = Task(task, tuple(names))


def test_binary_and_multilabel_rows_hold_probabilities_and_threshold():
    binary = predict.prediction_rows(["a", "b"], torch.tensor([[2.0], [-1.0]]), FixedModel("binary", ["not 0", "0"]),
                                     top_k=3, threshold=0.5)
    assert [row["predicted"] for row in binary] == ["0", "not 0"]
    assert binary[0]["probability_0"] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert binary[1]["probability"] == pytest.approx(1 - torch.sigmoid(torch.tensor(-1.0)).item())
    assert binary[0]["threshold"] == 0.5
    multi = predict.prediction_rows(["a"], torch.tensor([[3.0, -3.0, 1.0]]), FixedModel("multilabel", ["x", "y", "z"]),
                                    top_k=3, threshold=0.8)
    assert multi[0]["predicted"] == "x"  # z's 0.73 is under the threshold
    assert multi[0]["probability_z"] == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item())
