"""predict.py's inputs and exported models, fuzzed through its real entry point (in this process).
A folder of good digits and generated hostile files (damaged images, wrong extensions, bombs,
odd file names): every file is either predicted or a row of the errors CSV naming it, bombs
always the latter. A CSV of wine rows with damaged rows at known lines: exactly those lines are
errors. Damaged ONNX models and sidecars: exit 0 or 2, naming the file. Never a traceback, and
nothing but the two output files is written."""
import csv
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from test_fuzz_images import hostile_image_file, png_header_bomb

from config.schema import DEFAULT_MAX_IMAGE_PIXELS
from conftest import tiny_config
from data_loader.table import fit_table_preprocessing
from fuzz_helpers import FolderSnapshot, fuzz_settings, mutated
from model.model import Mlp, MnistModel
from reliability_helpers import run_in_process
from scripts.make_wine_csv import write_wine_csv

_cases = itertools.count()
NAME_CHARACTERS = st.sampled_from(list("ab_-. ,;\"'#%é") + ["\n", "\r", "\t", "日"])


def save_checkpoint(path, model, config, class_names):
    torch.save({"arch": type(model).__name__, "epoch": 1, "state_dict": model.state_dict(), "config": config,
                "class_names": class_names}, path)
    return path


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory, mnist_dir):
    folder = tmp_path_factory.mktemp("mnist_model")
    config = json.loads(tiny_config(folder, mnist_dir).read_text())
    return save_checkpoint(folder / "model.pth", MnistModel(), config, [str(d) for d in range(10)])


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """(checkpoint of an MLP trained on nothing, the wine test table's text)."""
    folder = tmp_path_factory.mktemp("wine_model")
    write_wine_csv(folder)
    config = json.loads(open("configs/wine_csv.json").read())
    frame = pd.read_csv(folder / "train.csv")
    features = [c for c in frame.columns if c != "cultivar"]
    config["data_loader"]["args"].update(train_csv=str(folder / "train.csv"), test_csv=str(folder / "test.csv"),
                                         preprocessing=fit_table_preprocessing(frame, features, [], True))
    model = Mlp(len(features), 3, [32])
    return save_checkpoint(folder / "model.pth", model, config, ["0", "1", "2"]), (folder / "test.csv").read_text()


def predict(monkeypatch, capsys, *argv):
    code, captured = run_in_process(monkeypatch, capsys, "predict", *argv, "--num-workers", "0")
    assert code in (0, 2) and "Traceback" not in captured.err + captured.out, captured.err
    return code, captured


def read_outputs(output):
    """({input: row} of the predictions, {input: reason} of the errors CSV)."""
    with open(output, newline="") as handle:
        predicted = {row["input"]: row for row in csv.DictReader(handle)}
    with open(output.with_name(output.stem + "_errors.csv"), newline="") as handle:
        errors = {row["input"]: row["reason"] for row in csv.DictReader(handle)}
    return predicted, errors


@st.composite
def input_folder_files(draw):
    """[(file name, bytes, is a bomb for the default limit)]: hostile files with odd names."""
    files = []
    for index in range(draw(st.integers(1, 4))):
        name, data, _ = draw(hostile_image_file())
        prefix = draw(st.lists(NAME_CHARACTERS, max_size=6).map("".join))
        files.append((f"{index}{prefix}{name}", data, False))
    if draw(st.booleans()):
        files.append(("bomb.png", png_header_bomb(15000, 15000), True))  # the size of the reported attack
    return files


@fuzz_settings(12)
@given(files=input_folder_files())
def test_every_input_image_is_predicted_or_named_in_the_errors(tmp_path, mnist_checkpoint, monkeypatch, capsys,
                                                              files):
    case = tmp_path / f"case{next(_cases)}"
    inputs = case / "inputs"
    inputs.mkdir(parents=True)
    for index in range(2):
        Image.fromarray(np.full((28, 28), 90 * index, dtype=np.uint8)).save(inputs / f"good{index}.png")
    for name, data, _ in files:
        (inputs / name).write_bytes(data)
    snapshot = FolderSnapshot(case)
    output = case / "predictions.csv"
    assert predict(monkeypatch, capsys, "-r", mnist_checkpoint, "-i", inputs, "-o", output)[0] == 0
    predicted, errors = read_outputs(output)
    images = sorted(str(p) for p in inputs.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp",
                                                                              ".gif", ".tif", ".tiff", ".webp"))
    assert sorted([*predicted, *errors]) == images and not set(predicted) & set(errors)
    assert {str(inputs / f"good{i}.png") for i in range(2)} <= set(predicted)
    for name, _, is_bomb in files:
        assert not is_bomb or f"{15000 * 15000:,}" in errors[str(inputs / name)]
        assert 15000 * 15000 > DEFAULT_MAX_IMAGE_PIXELS
    assert set(snapshot.changes()) == {"predictions.csv", "predictions_errors.csv"}


DAMAGE = {"ragged": lambda cells: cells + ["1"], "text": lambda cells: ["n/a?"] + cells[1:],
          "empty": lambda cells: [""] + cells[1:], "nul": lambda cells: [cells[0] + "\x00"] + cells[1:],
          "huge": lambda cells: ["9" * 131_073] + cells[1:]}


@fuzz_settings(12)
@given(data=st.data())
def test_every_damaged_csv_row_is_named_in_the_errors(tmp_path, wine, monkeypatch, capsys, data):
    checkpoint, text = wine
    lines = text.splitlines()
    damaged = data.draw(st.dictionaries(st.integers(1, len(lines) - 1), st.sampled_from([*DAMAGE, "not utf-8"]),
                                        max_size=6))
    body = []
    for number, line in enumerate(lines):
        kind = damaged.get(number)
        cells = line.split(",")
        body.append(",".join(DAMAGE[kind](cells) if kind in DAMAGE else cells).encode() + (
            b"\xff" if kind == "not utf-8" else b""))
    case = tmp_path / f"case{next(_cases)}"
    case.mkdir()
    table = case / "rows.csv"
    table.write_bytes(b"\n".join(body) + b"\n")
    snapshot = FolderSnapshot(case)
    output = case / "predictions.csv"
    assert predict(monkeypatch, capsys, "-r", checkpoint, "-i", table, "-o", output)[0] == 0
    predicted, errors = read_outputs(output)
    assert sorted(errors) == sorted(f"rows.csv line {number + 1}" for number in damaged)
    assert len(predicted) == len(lines) - 1 - len(damaged)
    assert set(snapshot.changes()) == {"predictions.csv", "predictions_errors.csv"}


@pytest.fixture(scope="module")
def onnx_files():
    """(model bytes, sidecar bytes) of a tiny linear digit model in ONNX with the sidecar export.py writes."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["output"])],
        "digits", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sidecar = {"format": "onnx", "class_names": [str(d) for d in range(10)], "input_name": "input",
               "output_name": "output", "input_shape": ["batch", 1, 28, 28], "task": "multiclass",
               "data_loader": {"type": "MnistDataLoader", "args": {"data_dir": "data/", "batch_size": 64}}}
    return model.SerializeToString(), json.dumps(sidecar, indent=2).encode()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)


@fuzz_settings(15)
@given(data=st.data())
def test_a_hostile_onnx_model_or_sidecar_exits_0_or_2_naming_it(tmp_path, onnx_files, monkeypatch, capsys, data):
    model_bytes, sidecar_bytes = onnx_files
    target = data.draw(st.sampled_from(["model", "sidecar", "sidecar", "sidecar values"]))
    if target == "model":
        model_bytes = data.draw(mutated(model_bytes))
    elif target == "sidecar":
        sidecar_bytes = data.draw(mutated(sidecar_bytes))
    else:
        sidecar = json.loads(sidecar_bytes)
        sidecar[data.draw(st.sampled_from(sorted(sidecar)))] = data.draw(JSON_VALUES)
        sidecar_bytes = json.dumps(sidecar).encode()
    case = tmp_path / f"case{next(_cases)}"
    (case / "inputs").mkdir(parents=True)
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(case / "inputs" / "digit.png")
    model = case / "model.onnx"
    model.write_bytes(model_bytes)
    (case / "model.onnx.json").write_bytes(sidecar_bytes)
    snapshot = FolderSnapshot(case)
    output = case / "predictions.csv"
    code, captured = predict(monkeypatch, capsys, "-m", model, "-i", case / "inputs", "-o", output)
    if code == 2:
        assert str(model) in captured.err, captured.err  # the sidecar's name starts with the model's
        assert snapshot.changes() == []
    else:
        assert set(snapshot.changes()) == {"predictions.csv", "predictions_errors.csv"}
