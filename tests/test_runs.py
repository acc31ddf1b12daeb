"""runs.py: the run table from real run folders, status detection, sorting, and the plot."""
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import runs
import train
from conftest import tiny_config
from parse_config import ConfigParser
from run.status import read_status, recorded_status
from utils.errors import TrainingStopped


def train_in_process(config_path, *overrides):
    argv = ["-c", str(config_path)]
    for text in overrides:
        argv += ["-o", text]
    config = ConfigParser.from_args(train.make_arg_parser()[0], argv=argv)
    train.main(config)
    return config.save_dir


def run_cli(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, "argv", ["runs.py", *map(str, argv)])
    capsys.readouterr()  # drop what earlier steps printed
    runs.run()
    return capsys.readouterr().out


class FakeRun:
    def __init__(self, folder):
        self.save_dir, self.resume = Path(folder), None


@pytest.mark.parametrize("raised, status, detail", [
    (None, "finished", {}),
    (TrainingStopped("stopped", 128 + signal.SIGTERM), "stopped", {"signal": "SIGTERM"}),
    (RuntimeError("out of memory"), "crashed", {"error": "RuntimeError: out of memory"}),
])
def test_status_records_how_training_ended(tmp_path, raised, status, detail):
    try:
        with recorded_status(FakeRun(tmp_path)):
            assert read_status(tmp_path)["status"] == "running"
            if raised is not None:
                raise raised
    except (TrainingStopped, RuntimeError):
        pass
    record = read_status(tmp_path)
    assert record["status"] == status and record["seconds"] >= 0
    assert detail.items() <= record.items()


def test_running_status_of_a_dead_process_reads_as_crashed(tmp_path):
    with recorded_status(FakeRun(tmp_path)):
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        record = json.loads((tmp_path / "status.json").read_text())
        record["pid"] = int(dead.stdout)  # as if that process had written it and been killed
        (tmp_path / "status.json").write_text(json.dumps(record))
        assert read_status(tmp_path)["status"] == "crashed"


def test_table_lists_sorts_and_diffs_real_runs_and_plots(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"data_loader.args.limit": 128})
    first = train_in_process(config)
    second = train_in_process(config, "optimizer.args.lr=0.01", "trainer.epochs=3")
    (first / "model_best_test.json").write_text(json.dumps({"epoch": 2, "samples": 10, "accuracy": 0.5}))

    table = pd.read_csv(io.StringIO(run_cli(monkeypatch, capsys, tmp_path / "saved", "--csv")))
    assert table["run_id"].tolist() == [first.name, second.name]
    assert table["task"].tolist() == ["classification", "classification"]
    assert table["status"].tolist() == ["finished", "finished"]
    assert table["epochs"].tolist() == [2, 3]
    assert table["differs_from_first"].tolist() == ["-", "optimizer.args.lr=0.01, trainer.epochs=3"]
    assert table["test_accuracy"].iloc[0] == 0.5 and pd.isna(table["test_accuracy"].iloc[1])
    history = pd.read_csv(tmp_path / "saved" / "log" / "Tiny" / second.name / "metrics.csv")
    assert table["best"].iloc[1] == pytest.approx(history["val_loss"].min())
    assert table["best_epoch"].iloc[1] == history["val_loss"].idxmin() + 1

    by_loss = pd.read_csv(io.StringIO(run_cli(monkeypatch, capsys, tmp_path / "saved", "--csv", "--sort", "best",
                                              "--desc")))
    assert by_loss["best"].tolist() == sorted(table["best"], reverse=True)

    out = tmp_path / "curves.png"
    run_cli(monkeypatch, capsys, "--plot", "val_loss", first, second.name, "--root", tmp_path / "saved", "--out", out)
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["nowhere/"], "does not exist"),
    (["--plot", "val_loss", "no_such_run", "--root", "."], "is neither a run folder"),
])
def test_bad_runs_arguments_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, capsys, *argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_differences_skip_empty_objects_recorded_data_and_stay_short():
    from experiments.run_table import MAX_DIFFERENCES, differences

    reference = {"arch": {"type": "Mlp", "args": {}}, "class_names": ["a"], "trainer": {"save_dir": "x"}}
    with_args = {"arch": {"type": "Mlp", "args": {"num_inputs": 3}}, "class_names": ["b"], "trainer": {"save_dir": "y"}}
    assert differences(with_args, reference) == "arch.args.num_inputs=3"  # never "arch.args=(absent)"
    assert differences(reference, with_args) == "arch.args.num_inputs=(absent)"
    many = {f"key{i}": "v" * 200 for i in range(20)}
    shown = differences(many, {})
    assert shown.endswith(f"({20 - MAX_DIFFERENCES} more)") and len(shown) < 600


def test_table_of_two_experiments_prints_no_warning_and_short_lines(tmp_path, mnist_dir, monkeypatch, capsys):
    first = train_in_process(tiny_config(tmp_path, mnist_dir, {"data_loader.args.limit": 64, "trainer.epochs": 1}))
    other = tiny_config(tmp_path, mnist_dir, {"data_loader.args.limit": 64, "trainer.epochs": 1,
                                              "arch.args": {"num_classes": 10, "dropout": 0.1}}, name="Other")
    train_in_process(other)
    (first / "model_best_test.json").write_text(json.dumps({"epoch": 1, "samples": 10, "accuracy": 0.5}))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' FutureWarning / Pandas4Warning included
        out = run_cli(monkeypatch, capsys, tmp_path / "saved")
    lines = out.splitlines()
    assert len(lines) == 3 and max(map(len, lines)) < 250
    table = pd.read_csv(io.StringIO(run_cli(monkeypatch, capsys, tmp_path / "saved", "--csv")))
    assert table["differs_from_first"].tolist() == ["-", "-"]  # each against the first run of its own name
