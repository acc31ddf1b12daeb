"""api.run / evaluate / predict: what the scripts do, in this process, raising instead of exiting,
and each call leaving the process as it found it."""
import json
import logging
import re
import signal
import threading

import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.datasets import MNIST

import api
from conftest import tiny_config
from reliability_helpers import load, run_in_process, run_train_in_process
from run import folder as run_folder
from run.folder import RunFolder
from utils import ConfigError

SMALL = {"trainer.epochs": 1, "data_loader.args.limit": 256}


def process_state():
    """What a run may change in the process, in a comparable form."""
    root = logging.getLogger()
    return {"handlers": list(root.handlers), "level": root.level,
            "signals": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)},
            "threads": torch.get_num_threads(),
            # the bounded file reader's thread serves every run of the process, started by the first
            "live_threads": sorted(t.name for t in threading.enumerate() if t.name != "bounded-read"),
            "rng": torch.get_rng_state(), "benchmark": torch.backends.cudnn.benchmark}


def assert_same_state(before, after):
    assert torch.equal(before.pop("rng"), after.pop("rng"))
    assert before == after


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the in-process CLI runs (run_in_process) use
    yield
    torch.set_num_threads(threads)


def test_two_runs_in_one_process_are_the_cli_runs_and_keep_apart(tmp_path, mnist_dir, monkeypatch, capsys,
                                                                 one_thread):
    config = tiny_config(tmp_path, mnist_dir, SMALL)
    before = process_state()
    first = api.run(config, overrides={"optimizer.args.lr": 0.01})
    second = api.run(config, overrides=["optimizer.args.lr=0.003"])
    assert_same_state(before, process_state())

    for result, lr in ((first, 0.01), (second, 0.003)):
        assert result.status == "finished" and result.monitor == "val_loss"
        assert list(result.history["epoch"]) == [1]
        assert result.best_value == result.history["val_loss"].min() and result.best_epoch == 1
        assert [path.name for path in result.checkpoints] == ["checkpoint-epoch1.pth", "model_best.pth"]
        assert load(result.best_checkpoint)["config"]["optimizer"]["args"]["lr"] == lr
        cli_save_dir = tmp_path / f"cli-{lr}"
        code, _ = run_train_in_process(monkeypatch, capsys, "-c", config, "-o", f"optimizer.args.lr={lr}",
                                       "-o", f"trainer.save_dir={cli_save_dir}")
        assert code == 0
        cli_best = next((cli_save_dir / "models" / "Tiny").glob("*/model_best.pth"))
        for key, weights in load(cli_best)["state_dict"].items():  # bit for bit what the CLI trained
            assert torch.equal(weights, load(result.best_checkpoint)["state_dict"][key]), key
    # no line of the first run (the second's folder may be the first's name + "_1": same second)
    first_folder = re.compile(re.escape(str(first.run_dir)) + r"(?![\w.-])")
    assert first_folder.search(first.log_dir.joinpath("info.log").read_text())
    assert not first_folder.search(second.log_dir.joinpath("info.log").read_text())
    assert json.loads((second.run_dir / "record.json").read_text())["parts"][0]["command"].startswith("api.run(")


def test_a_config_error_raises_the_cli_message_and_leaves_no_folder(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 0, "optimizer.args.lrr": 0.1})
    before = process_state()
    with pytest.raises(ConfigError) as raised:
        api.run(json.loads(config.read_text()))  # the config as a dict
    assert_same_state(before, process_state())
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2 and captured.err.strip() == f"error: {raised.value}"
    assert "trainer.epochs" in str(raised.value) and not (tmp_path / "saved").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    tmp_path = tmp_path_factory.mktemp("api")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return api.run(tiny_config(tmp_path, mnist_dir, SMALL))
    finally:
        torch.set_num_threads(threads)


def test_evaluate_returns_what_test_py_writes(trained, monkeypatch, capsys):
    metrics = api.evaluate(trained.best_checkpoint)
    written = json.loads(run_folder.test_result_file(trained.best_checkpoint).read_text())
    assert metrics == written and metrics["samples"] == 1000 and 0 <= metrics["accuracy"] <= 1
    run_folder.test_result_file(trained.best_checkpoint).unlink()
    run_in_process(monkeypatch, capsys, "test", "-r", trained.best_checkpoint, "--no-report", check=True)
    assert json.loads(run_folder.test_result_file(trained.best_checkpoint).read_text()) == metrics
    with pytest.raises(ConfigError):
        api.evaluate(trained.run_dir / "missing.pth")


def test_predict_returns_the_rows_predict_py_writes(trained, mnist_dir, tmp_path, monkeypatch, capsys):
    for index, (image, _) in zip(range(6), MNIST(str(mnist_dir), train=False, download=False)):
        image.save(tmp_path / f"{index}.png")
    Image.new("L", (20, 20)).save(tmp_path / "too_small.png")
    table = api.predict(trained.best_checkpoint, tmp_path, num_workers=0)
    assert len(table) == 6 and [name.split("/")[-1] for name, _ in table.attrs["errors"]] == ["too_small.png"]
    assert table["probability"].between(0, 1).all()
    run_in_process(monkeypatch, capsys, "predict", "-r", trained.best_checkpoint, "-i", tmp_path,
                   "-o", tmp_path / "out" / "predictions.csv", "--num-workers", "0", check=True)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "predictions.csv", dtype=str), table.astype(str))
    listed = api.predict(trained.best_checkpoint, sorted(tmp_path.glob("[0-9].png")), num_workers=0)
    assert list(listed["predicted"]) == list(table["predicted"])


def test_resume_goes_on_in_the_runs_own_folder(trained, one_thread):
    resumed = api.run(None, resume=trained.run_dir, overrides={"trainer.epochs": 2})
    assert resumed.run_folder == RunFolder.containing(trained.run_dir)
    assert list(resumed.history["epoch"]) == [1, 2]
    parts = json.loads((resumed.run_dir / "record.json").read_text())["parts"]
    assert [part["resumed_from"] for part in parts] == [None, str(trained.run_dir / "checkpoint-epoch1.pth")]
