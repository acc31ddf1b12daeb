"""Bad data gets one clear message naming the file, row or column (or, with on_bad_sample
"skip", a list of what was left out), and train.py/test.py carry class names and fitted input
settings through the run's config and checkpoint."""
import json
import shutil
import sys

import pytest
import torch

from conftest import only_run
from data_loader.data_loaders import CsvDataLoader, ImageFolderDataLoader, TorchvisionDataLoader
from reliability_helpers import run_train_in_process
from scripts.make_digits_folder import write_digits_folder
from scripts.make_wine_csv import write_wine_csv
from utils import ConfigError


@pytest.fixture
def small_digits(tmp_path):
    root = tmp_path / "digits"
    write_digits_folder(root, test_fraction=0.5, per_class=15)  # 150 + 150 images keep each run fast
    return root


@pytest.fixture
def wine_csv(tmp_path):
    write_wine_csv(tmp_path / "wine")
    return tmp_path / "wine" / "train.csv"


def corrupt(png):
    png.write_bytes(b"not an image at all")
    return png


@pytest.mark.parametrize("in_memory", [True, False])
def test_corrupt_image_is_named(small_digits, in_memory):
    bad = corrupt(sorted((small_digits / "train" / "3").glob("*.png"))[0])
    with pytest.raises(ConfigError, match="on_bad_sample") as err:
        ImageFolderDataLoader(train_dir=str(small_digits / "train"), mode="L", in_memory=in_memory,
                              on_bad_sample="error")  # per sample: "auto" normalisation reads it
    assert str(bad) in str(err.value)


def test_corrupt_image_on_the_per_sample_path_is_named_when_read(small_digits):
    bad = corrupt(sorted((small_digits / "train" / "3").glob("*.png"))[0])
    loader = ImageFolderDataLoader(train_dir=str(small_digits / "train"), mode="L", in_memory=False,
                                   batch_size=500, shuffle=False, normalize=None)
    with pytest.raises(ConfigError, match="on_bad_sample") as err:
        next(iter(loader))
    assert str(bad) in str(err.value)


def test_empty_class_folder_is_named(small_digits):
    empty = small_digits / "train" / "7"
    shutil.rmtree(empty)
    empty.mkdir()
    with pytest.raises(ConfigError) as err:
        ImageFolderDataLoader(train_dir=str(small_digits / "train"), mode="L")
    assert str(empty) in str(err.value)


def test_class_only_in_the_test_set_is_named(small_digits):
    shutil.copytree(small_digits / "test" / "4", small_digits / "test" / "unseen")
    with pytest.raises(ConfigError) as err:
        ImageFolderDataLoader(train_dir=str(small_digits / "train"), test_dir=str(small_digits / "test"),
                              mode="L", training=False, normalize=None)
    assert str(small_digits / "test" / "unseen") in str(err.value)


def test_csv_bad_rows_are_named_by_line_and_column(wine_csv):
    text = wine_csv.read_text().splitlines()
    first = text[1].split(",")
    text[1] = ",".join(["", *first[1:]])  # line 2: empty alcohol
    second = text[4].split(",")
    text[4] = ",".join([second[0], "n/a?", *second[2:]])  # line 5: malic_acid is text
    wine_csv.write_text("\n".join(text) + "\n")
    with pytest.raises(ConfigError) as err:
        CsvDataLoader(csv_file=str(wine_csv), target="cultivar")
    message = str(err.value)
    assert "line 2" in message and "'alcohol'" in message
    assert "line 5" in message and "'malic_acid'" in message
    skipping = CsvDataLoader(csv_file=str(wine_csv), target="cultivar", on_bad_sample="skip")
    assert [line for line, _ in skipping.skipped_samples] == [f"'{wine_csv}' line 2", f"'{wine_csv}' line 5"]
    assert len(skipping.labels) == 133 - 2
    filled = CsvDataLoader(csv_file=str(wine_csv), target="cultivar", missing_values="fill", on_bad_sample="skip")
    assert len(filled.labels) == 133 - 1  # the empty cell is filled; the text value still skips its row


def test_csv_without_the_target_column_is_named(wine_csv):
    with pytest.raises(ConfigError) as err:
        CsvDataLoader(csv_file=str(wine_csv), target="variety")
    assert "'variety'" in str(err.value) and str(wine_csv) in str(err.value)


def test_csv_header_with_spaces_after_its_commas_is_named_with_the_fix(wine_csv):
    lines = wine_csv.read_text().splitlines()
    wine_csv.write_text("\n".join([lines[0].replace(",", ", "), *lines[1:]]) + "\n")
    with pytest.raises(ConfigError) as err:
        CsvDataLoader(csv_file=str(wine_csv), target="cultivar")
    assert "has no column 'cultivar'" in str(err.value) and "' cultivar' has spaces around its name" in str(err.value)


def test_csv_with_two_columns_of_one_name_is_named(wine_csv):
    """pandas would read the second as 'alcohol.1': a feature the config cannot name, taken silently."""
    lines = wine_csv.read_text().splitlines()
    header = lines[0].split(",")
    lines[0] = ",".join([header[0], header[1], header[0], *header[3:]])
    wine_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        CsvDataLoader(csv_file=str(wine_csv), target="cultivar")
    assert f"'{wine_csv}'" in str(err.value) and f"'{header[0]}' in columns 1, 3" in str(err.value)


def test_a_csv_column_without_a_name_is_warned_of_as_a_likely_row_index(wine_csv, caplog):
    lines = wine_csv.read_text().splitlines()
    wine_csv.write_text("\n".join(["," + lines[0], *(f"{n},{line}" for n, line in enumerate(lines[1:]))]) + "\n")
    with caplog.at_level("WARNING", logger="data_loader"):
        loader = CsvDataLoader(csv_file=str(wine_csv), target="cultivar")
    assert loader.num_inputs == 14  # the 13 measurements and the index: a warning, not a refusal
    assert f"'{wine_csv}' has 1 column(s) without a name in its header (read as 'Unnamed: 0')" in caplog.text
    caplog.clear()
    named = [name for name in lines[0].split(",") if name != "cultivar"]
    with caplog.at_level("WARNING", logger="data_loader"):
        CsvDataLoader(csv_file=str(wine_csv), target="cultivar", features=named)
    assert "without a name" not in caplog.text


def test_csv_label_only_in_the_test_set_is_named(wine_csv):
    test_csv = wine_csv.with_name("test.csv")
    lines = test_csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",7"
    test_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        CsvDataLoader(train_csv=str(wine_csv), test_csv=str(test_csv), target="cultivar", training=False)
    assert "line 4" in str(err.value) and "'7'" in str(err.value)


def folder_config(tmp_path, digits, **args):
    config = json.loads(open("configs/digits_folder.json").read())
    config["name"] = "Tiny"
    config["data_loader"]["args"].update(train_dir=str(digits / "train"), test_dir=str(digits / "test"), **args)
    config["trainer"].update(epochs=1, save_dir=str(tmp_path / "saved"), verbosity=1)
    config["lr_scheduler"]["args"]["T_max"] = 1
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def run_test_in_process(monkeypatch, *argv):
    import test

    monkeypatch.setattr(sys, "argv", ["test.py", *map(str, argv)])
    test.run()


def test_skipped_samples_are_listed_and_the_run_records_its_input_settings(small_digits, tmp_path, monkeypatch,
                                                                           capsys):
    bad = corrupt(sorted((small_digits / "train" / "5").glob("*.png"))[0])
    config = folder_config(tmp_path, small_digits, on_bad_sample="skip", class_weights="balanced")
    assert run_train_in_process(monkeypatch, capsys, "-c", config)[0] == 0
    run = only_run(tmp_path / "saved")
    assert (run / "skipped_samples.txt").read_text().startswith(f"{bad}\t")
    saved = json.loads((run / "config.json").read_text())
    assert saved["class_names"] == [str(d) for d in range(10)]
    assert set(saved["data_loader"]["args"]["normalize"]) == {"mean", "std"}  # "auto" became numbers
    checkpoint = torch.load(run / "checkpoint-epoch1.pth", weights_only=True)
    assert checkpoint["class_names"] == saved["class_names"]
    assert checkpoint["config"]["data_loader"]["args"]["normalize"] == saved["data_loader"]["args"]["normalize"]
    run_test_in_process(monkeypatch, "-r", run / "checkpoint-epoch1.pth")
    result = json.loads((run / "checkpoint-epoch1_test.json").read_text())
    assert result["samples"] == 150


def test_bad_image_stops_train_py_with_exit_2_and_no_traceback(small_digits, tmp_path, monkeypatch, capsys):
    bad = corrupt(sorted((small_digits / "train" / "5").glob("*.png"))[0])
    code, output = run_train_in_process(monkeypatch, capsys, "-c", folder_config(tmp_path, small_digits))
    assert code == 2
    assert "Traceback" not in output.err and str(bad) in output.err


def test_missing_torchvision_files_name_the_folder_to_fill(tmp_path):
    with pytest.raises(ConfigError) as err:
        TorchvisionDataLoader(dataset="CIFAR10", data_dir=str(tmp_path), download=False)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
