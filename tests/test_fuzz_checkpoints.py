"""The checkpoint reader, fuzzed: damaged copies of a real checkpoint (cut short, bits flipped,
bytes inserted, also inside its pickle) and pickles that carry code (a call of open, os.system,
eval, ... as a plain pickle or as the data.pkl of a checkpoint archive). Loading gives a
checkpoint or a ConfigError naming the file, and no payload ever runs; predict.py with such a
checkpoint exits 0 or 2 without a traceback and writes nothing on exit 2."""
import io
import itertools
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from conftest import tiny_config
from fuzz_helpers import FolderSnapshot, fuzz_settings, mutated
from model.model import MnistModel
from reliability_helpers import run_in_process
from utils import ConfigError
from utils.checkpoint import load_checkpoint

_cases = itertools.count()
# callables a hostile pickle names; each would create MARKER (relative to the working folder)
PAYLOADS = [("builtins", "open", ("MARKER", "w")), ("os", "system", ("touch MARKER",)),
            ("posix", "system", ("touch MARKER",)), ("builtins", "eval", ("open('MARKER', 'w')",)),
            ("builtins", "exec", ("open('MARKER', 'w')",)), ("subprocess", "getoutput", ("touch MARKER",)),
            ("pathlib", "Path.touch", ("MARKER",)), ("torch", "save", ({}, "MARKER"))]


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory, mnist_dir):
    """A real checkpoint of the tiny config's model (untrained: the weights do not matter here)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    config = json.loads(tiny_config(folder, mnist_dir).read_text())
    buffer = io.BytesIO()
    torch.save({"arch": "MnistModel", "epoch": 1, "state_dict": MnistModel().state_dict(), "config": config,
                "class_names": [str(d) for d in range(10)]}, buffer)
    return buffer.getvalue()


def payload_pickle(module, name, args):
    """Protocol-2 pickle bytes that call module.name(*args) when loaded by an unsafe loader."""
    return b"\x80\x02" + f"c{module}\n{name}\n".encode() + pickle.dumps(args, protocol=2)[2:-1] + b"R."


def with_data_pkl(archive, data_pkl):
    """The checkpoint archive with its data.pkl replaced."""
    source, target = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in source.infolist():
            out.writestr(info, data_pkl if info.filename.endswith("/data.pkl") else source.read(info))
    return target.getvalue()


@st.composite
def hostile_checkpoint(draw, valid):
    """(bytes, carries a payload)."""
    kind = draw(st.sampled_from(["damaged", "damaged pickle", "payload", "payload in archive", "empty"]))
    if kind == "damaged":
        return draw(mutated(valid)), False
    if kind == "damaged pickle":
        data_pkl = zipfile.ZipFile(io.BytesIO(valid)).read("archive/data.pkl")
        return with_data_pkl(valid, draw(mutated(data_pkl))), False
    if kind == "empty":
        return b"", False
    payload = payload_pickle(*draw(st.sampled_from(PAYLOADS)))
    return (payload if kind == "payload" else with_data_pkl(valid, payload)), True


@fuzz_settings(60)
@given(data=st.data())
def test_a_hostile_checkpoint_loads_or_is_named_and_never_runs_code(tmp_path, checkpoint_bytes, monkeypatch, data):
    case = tmp_path / f"case{next(_cases)}"
    case.mkdir()
    monkeypatch.chdir(case)
    path = case / "checkpoint.pth"
    data_bytes, has_payload = data.draw(hostile_checkpoint(checkpoint_bytes))
    path.write_bytes(data_bytes)
    try:
        checkpoint = load_checkpoint(path)
    except ConfigError as err:
        assert f"'{path}'" in str(err), str(err)
    else:
        assert not has_payload and isinstance(checkpoint["state_dict"], dict)
    assert not (case / "MARKER").exists()


@pytest.fixture(scope="module")
def two_digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    for index in range(2):
        Image.fromarray(np.full((28, 28), 100 * index, dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


@fuzz_settings(8)
@given(data=st.data())
def test_predict_with_a_hostile_checkpoint_exits_0_or_2(tmp_path, checkpoint_bytes, two_digits, monkeypatch, capsys,
                                                        data):
    case = tmp_path / f"case{next(_cases)}"
    case.mkdir()
    monkeypatch.chdir(case)
    path = case / "checkpoint.pth"
    path.write_bytes(data.draw(hostile_checkpoint(checkpoint_bytes))[0])
    snapshot = FolderSnapshot(case)
    output = case / "predictions.csv"
    code, captured = run_in_process(monkeypatch, capsys, "predict", "-r", path, "-i", two_digits, "-o", output,
                                    "--num-workers", "0")
    assert code in (0, 2) and "Traceback" not in captured.err + captured.out, captured.err
    if code == 2:
        assert str(path) in captured.err, captured.err
        assert snapshot.changes() == []
    else:
        assert set(snapshot.changes()) == {"predictions.csv", "predictions_errors.csv"}
    assert not (case / "MARKER").exists()
