"""The task of a run (data_loader/task.py): declared or inferred from a table, the targets' shapes
and scaling, and the check of one batch through model, loss and metrics before any run folder
exists. Fast: loaders and train.py --dry-run or refused starts, in-process."""
import json
import logging
import re

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import PROJECT_ROOT, tiny_config
from data_loader.data_loaders import CsvDataLoader
from data_loader.task import TargetScaling, Task, task_of_run
from reliability_helpers import run_train_in_process
from scripts.make_diabetes_csv import write_diabetes_csv
from trainer.batch_check import warn_about_batch_size
from utils import ConfigError
from utils.checkpoint import Key


@pytest.fixture(scope="module")
def diabetes_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("diabetes")
    write_diabetes_csv(root)
    return root


def diabetes_config(tmp_path, diabetes_dir, updates=None, name="diabetes_csv"):
    config = json.loads((PROJECT_ROOT / "configs" / f"{name}.json").read_text())
    config["data_loader"]["args"].update(train_csv=str(diabetes_dir / "train.csv"),
                                         test_csv=str(diabetes_dir / "test.csv"))
    config["trainer"].update(save_dir=str(tmp_path / "saved"), epochs=2, verbosity=1)
    for key, value in (updates or {}).items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_regression_targets_are_2d_standardised_on_the_training_split_and_recorded(diabetes_dir):
    loader = CsvDataLoader(train_csv=str(diabetes_dir / "train.csv"), target="progression", task="regression",
                           validation_split=0.2, batch_size=400, seed=3)
    assert loader.task.kind == "regression" and loader.task.names == ("progression",)
    data, targets = next(iter(loader))
    assert targets.dtype == torch.float32 and targets.shape == (len(loader.sampler), 1)  # (N, 1), never (N,)
    raw = pd.read_csv(diabetes_dir / "train.csv")["progression"].to_numpy()
    train = raw[loader.train_indices]
    recorded = loader.fitted_args["target_scaling"]
    assert recorded["mean"] == pytest.approx([train.mean()]) and recorded["scale"] == pytest.approx([train.std()])
    assert loader.fitted_args["task"] == "regression"
    # the batch holds the training rows' targets, standardised; back in the data's units they are the file's
    back = loader.task.original_units(targets)
    torch.testing.assert_close(back.squeeze(1), torch.tensor(raw[list(loader.sampler)], dtype=torch.float32))


def test_two_target_columns_give_two_wide_targets_and_per_column_scaling(diabetes_dir):
    loader = CsvDataLoader(train_csv=str(diabetes_dir / "train.csv"), target=["progression", "s5"],
                           task="regression", batch_size=64, shuffle=False)
    data, targets = next(iter(loader))
    assert data.shape == (64, 9) and targets.shape == (64, 2) and loader.num_inputs == 9
    assert len(loader.fitted_args["target_scaling"]["mean"]) == 2
    test = CsvDataLoader(test_csv=str(diabetes_dir / "test.csv"), target=["progression", "s5"], task="regression",
                         training=False, preprocessing=loader.fitted_args["preprocessing"],
                         target_scaling=loader.fitted_args["target_scaling"], shuffle=False, batch_size=500)
    _, test_targets = next(iter(test))
    expected = pd.read_csv(diabetes_dir / "test.csv")[["progression", "s5"]].to_numpy(np.float32)
    torch.testing.assert_close(test.task.original_units(test_targets), torch.from_numpy(expected),
                               rtol=1e-5, atol=1e-3)  # the training numbers scale the test data


def test_auto_takes_text_and_few_whole_numbers_as_classes_and_refuses_many_values(tmp_path, diabetes_dir):
    path = tmp_path / "t.csv"
    path.write_text("x,label,grade\n1,cat,1\n2,dog,2\n3,cat,3\n4,dog,1\n")
    assert CsvDataLoader(csv_file=str(path), features=["x"]).task.kind == "classification"
    assert CsvDataLoader(csv_file=str(path), target="grade", features=["x"]).class_names == ["1", "2", "3"]
    with pytest.raises(ConfigError, match=r"'progression' holds \d+ distinct whole numbers.*data_loader\.args\.task"):
        CsvDataLoader(csv_file=str(diabetes_dir / "train.csv"), target="progression")
    with pytest.raises(ConfigError, match=r"target names 2 columns.*\"regression\".*\"multilabel\""):
        CsvDataLoader(csv_file=str(diabetes_dir / "train.csv"), target=["progression", "s5"])


def test_binary_and_multilabel_tables(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y,sick,a,b\n1,2,no,0,1\n2,1,yes,1,1\n3,0,no,0,0\n0,3,yes,1,0\n")
    binary = CsvDataLoader(csv_file=str(path), target="sick", task="binary", features=["x", "y"], shuffle=False)
    _, targets = next(iter(binary))
    assert binary.task.names == ("no", "yes") and targets.tolist() == [0.0, 1.0, 0.0, 1.0]
    multi = CsvDataLoader(csv_file=str(path), target=["a", "b"], task="multilabel", features=["x", "y"], shuffle=False)
    _, targets = next(iter(multi))
    assert multi.task.names == ("a", "b") and targets.tolist() == [[0, 1], [1, 1], [0, 0], [1, 0]]
    path.write_text("x,a,b\n1,0,2\n2,1,1\n")
    with pytest.raises(ConfigError, match=r"line 2: the label column 'b' is '2'"):
        CsvDataLoader(csv_file=str(path), target=["a", "b"], task="multilabel")


def test_settings_that_count_classes_are_refused_for_regression(diabetes_dir):
    with pytest.raises(ConfigError, match=r"data_loader\.args\.stratify balances classes.*regression"):
        CsvDataLoader(csv_file=str(diabetes_dir / "train.csv"), target="progression", task="regression",
                      validation_split=0.2, stratify=True)


def test_a_missing_value_marker_is_named_with_the_fill_setting(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y,label\n1,2,a\nn/a,1,b\n3,,a\n")
    with pytest.raises(ConfigError) as caught:
        CsvDataLoader(csv_file=str(path))
    message = str(caught.value)
    assert "line 3: column 'x' is 'n/a', a missing-value marker" in message
    assert "line 4: column 'y' is empty" in message and 'missing_values to "fill"' in message


def test_task_is_read_back_from_a_checkpoint_not_guessed():
    scaling = TargetScaling((10.0,), (2.0,))
    task = Task("regression", ("y",), scaling)
    checkpoint = {**task.checkpoint_entries(), Key.CONFIG: {}}
    read = task_of_run({"loss": "cross_entropy"}, checkpoint)  # the loss alone would say classification
    assert read == task
    assert read.original_units(torch.tensor([[1.0], [-0.5]])).tolist() == [[12.0], [9.0]]
    assert task_of_run({"task": "binary", "class_names": ["n", "y"]}).num_outputs == 1


REGRESSION_MISMATCHES = {
    "too many outputs": ({"arch.args.num_outputs": 3},
                         r"arch\.args\.num_outputs is 3.*Set arch\.args\.num_outputs to 1\."),
    "table wider than num_inputs": ({"arch.args.num_inputs": 13},
                                    r"arch\.args\.num_inputs is 13, but the table gives the model 10 inputs.*to 10\."),
    "classification loss": ({"loss": "cross_entropy"}, r"loss is cross_entropy, a classification loss, but the task "
                                                       r"is regression"),
    "class metric": ({"metrics": ["accuracy"]}, r"metrics\.0 is accuracy, which counts classes"),
    "numeric target left on auto": ({"data_loader.args.task": "auto"}, r"holds \d+ distinct whole numbers"),
    "torch layer with the wrong width": (
        {"arch": {"type": "Linear", "args": {"in_features": 10, "out_features": 2}}},
        r"arch\.args\.out_features is 2.*Set arch\.args\.out_features to 1\."),
}


@pytest.mark.parametrize("case", REGRESSION_MISMATCHES)
def test_regression_mismatches_stop_before_the_run_folder(case, tmp_path, diabetes_dir, monkeypatch, capsys):
    updates, expected = REGRESSION_MISMATCHES[case]
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", diabetes_config(tmp_path, diabetes_dir, updates))
    assert code == 2 and "Traceback" not in captured.err
    assert re.search(expected, captured.err, re.DOTALL), captured.err
    assert not (tmp_path / "saved").exists()


def test_two_targets_need_two_outputs(tmp_path, diabetes_dir, monkeypatch, capsys):
    config = diabetes_config(tmp_path, diabetes_dir, {"arch.args.num_outputs": 1}, name="diabetes_two_targets_csv")
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2 and "Set arch.args.num_outputs to 2." in captured.err
    assert not (tmp_path / "saved").exists()


def test_batch_larger_than_the_training_set_warns_with_the_steps(tmp_path, diabetes_dir, monkeypatch, capsys,
                                                                caplog):
    loader = CsvDataLoader(train_csv=str(diabetes_dir / "train.csv"), target="progression", task="regression",
                           validation_split=0.2, batch_size=1000)
    with caplog.at_level(logging.WARNING, logger="train"):
        warn_about_batch_size(loader)
    warned = [r.getMessage() for r in caplog.records if r.name == "train" and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "an epoch will be 1 step of 283 samples" in warned[0]
    code, _ = run_train_in_process(monkeypatch, capsys, "-c", diabetes_config(tmp_path, diabetes_dir), "--bs", "1000",
                                   "--dry-run")
    assert code == 0  # a warning, not an error


def test_mnist_data_dir_that_does_not_exist_uses_the_offline_source(tmp_path, mnist_dir, monkeypatch, capsys):
    data_dir = tmp_path / "new" / "data"
    config = tiny_config(tmp_path, mnist_dir, {"data_loader.args.data_dir": str(data_dir)})
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config, "--dry-run")
    assert code == 0, captured.err
    assert (data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_wrong_samples_of_a_table_are_its_rows_as_written_named_like_predict_py(tmp_path):
    from evaluation.outputs import WrongSamples
    from evaluation.report import write_report

    path = tmp_path / "test.csv"
    path.write_text("size,colour,label\n1.5,red,a\n2.5,blue,b\n3.5,red,a\n")
    loader = CsvDataLoader(csv_file=str(path), batch_size=8, shuffle=False)
    data, targets = next(iter(loader))
    output = torch.tensor([[4.0, 0.0], [0.0, 4.0], [0.0, 9.0]])  # the third row is confidently wrong
    wrong = WrongSamples(4, "classification")
    wrong.update(data, output, targets, 0)
    write_report(tmp_path / "report", output, targets, loader.task, wrong.result(), source_rows=loader.describe_samples)
    rows = pd.read_csv(tmp_path / "report" / "wrong_samples.csv")
    assert rows["input"].tolist() == ["test.csv line 4"]  # predict.py's name for that row
    assert rows[["size", "colour", "label"]].values.tolist() == [[3.5, "red", "a"]]  # raw values, not standardised
    assert rows["predicted"].tolist() == ["b"]


def test_a_csv_of_image_paths_can_have_numeric_targets(tmp_path):
    from PIL import Image

    rows = []
    for index, brightness in enumerate((10, 80, 160, 240)):
        Image.new("L", (6, 6), color=brightness).save(tmp_path / f"{index}.png")
        rows.append((f"{index}.png", brightness / 255))
    pd.DataFrame(rows, columns=["file", "brightness"]).to_csv(tmp_path / "images.csv", index=False)
    loader = CsvDataLoader(csv_file=str(tmp_path / "images.csv"), image_column="file", target="brightness",
                           task="regression", mode="L", batch_size=4, shuffle=False, normalize=None)
    data, targets = next(iter(loader))
    assert data.shape == (4, 1, 6, 6) and targets.shape == (4, 1)
    torch.testing.assert_close(loader.task.original_units(targets).squeeze(1), data.mean(dim=(1, 2, 3)),
                               atol=1e-3, rtol=0)
