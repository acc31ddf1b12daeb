"""The shipped examples, trained with train.py and scored with test.py on the real data their
scripts write: scikit-learn's digits as a PNG folder tree and its wine table as CSV files."""
import json
import sys

import pytest
import torch

from conftest import only_run
from reliability_helpers import run_train_in_process
from scripts.make_digits_folder import write_digits_folder
from scripts.make_wine_csv import write_wine_csv


def example_config(tmp_path, name, data_args, epochs=None):
    config = json.loads(open(f"configs/{name}.json").read())
    config["data_loader"]["args"].update(data_args)
    config["trainer"].update(save_dir=str(tmp_path / "saved"), verbosity=1)
    if epochs is not None:
        config["trainer"]["epochs"] = epochs
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return path, config["name"]


def train_and_test(tmp_path, monkeypatch, capsys, config_path, name):
    import test

    assert run_train_in_process(monkeypatch, capsys, "-c", config_path)[0] == 0
    best = only_run(tmp_path / "saved", name) / "model_best.pth"
    monkeypatch.setattr(sys, "argv", ["test.py", "-r", str(best)])
    test.run()
    return json.loads(best.with_name("model_best_test.json").read_text())


@pytest.mark.slow
def test_digits_folder_example_reaches_95_percent(tmp_path, monkeypatch, capsys):
    write_digits_folder(tmp_path / "digits")
    config, name = example_config(tmp_path, "digits_folder", {"train_dir": str(tmp_path / "digits/train"),
                                                               "test_dir": str(tmp_path / "digits/test")})
    result = train_and_test(tmp_path, monkeypatch, capsys, config, name)
    assert result["samples"] == 360
    assert result["accuracy"] >= 0.95


@pytest.mark.slow
def test_wine_csv_example_reaches_95_percent(tmp_path, monkeypatch, capsys):
    write_wine_csv(tmp_path / "wine")
    config, name = example_config(tmp_path, "wine_csv", {"train_csv": str(tmp_path / "wine/train.csv"),
                                                         "test_csv": str(tmp_path / "wine/test.csv")})
    result = train_and_test(tmp_path, monkeypatch, capsys, config, name)
    assert result["samples"] == 45
    assert result["accuracy"] >= 0.95


def test_resnet18_transfer_config_trains_from_random_init_without_weights(tmp_path, monkeypatch, capsys):
    write_digits_folder(tmp_path / "digits", per_class=6)
    config, name = example_config(tmp_path, "digits_resnet18", {"train_dir": str(tmp_path / "digits/train"),
                                                                 "test_dir": str(tmp_path / "digits/test"),
                                                                 "validation_split": 0.2}, epochs=1)
    result = train_and_test(tmp_path, monkeypatch, capsys, config, name)
    assert result["samples"] == 60
    arch = torch.load(only_run(tmp_path / "saved", name) / "model_best.pth", weights_only=True)["config"]["arch"]
    assert arch["module"] == "torchvision.models" and not arch.get("pretrained")  # random init, nothing downloaded
