"""Workflows a user runs from the command line: a new head's checkpoint is tested and resumed,
`-r auto` finds the run that the overrides name, the shell scripts use the project's Python,
and mistakes outside the config (no W&B login, no database driver, a model that does not fit
the data, a launcher stopped by SIGTERM) end cleanly."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from config.overrides import parse_override
from conftest import PROJECT_ROOT, only_run, run_dirs, run_script, script_env, tiny_config
from reliability_helpers import run_train_in_process
from run.checkpoints import find_latest_checkpoint
from utils import ConfigError

NEW_HEAD = {"arch.args": {"logits": True}, "arch.replace_head": {"path": "fc2", "num_classes": 1},
            "data_loader.args.binary_target": 0, "loss": "bce_with_logits", "metrics": ["binary_accuracy"],
            "trainer.monitor": "max val_binary_accuracy", "trainer.epochs": 1}


def run_test_in_process(monkeypatch, capsys, *argv):
    import test

    monkeypatch.setattr(sys, "argv", ["test.py", *map(str, argv)])
    try:
        test.run()
        return 0, capsys.readouterr()
    except SystemExit as exit_info:
        return exit_info.code, capsys.readouterr()


def test_checkpoint_with_a_replaced_head_is_tested_and_resumed(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, NEW_HEAD)
    assert run_train_in_process(monkeypatch, capsys, "-c", config)[0] == 0
    run = only_run(tmp_path / "saved")
    assert torch.load(run / "model_best.pth", weights_only=True)["state_dict"]["fc2.weight"].shape == (1, 50)

    code, captured = run_test_in_process(monkeypatch, capsys, "-r", run / "model_best.pth")
    assert code == 0, captured.err
    assert json.loads((run / "model_best_test.json").read_text())["samples"] == 1000

    code, captured = run_train_in_process(monkeypatch, capsys, "-r", run, "-o", "trainer.epochs=2")
    assert code == 0, captured.err
    resumed = max(run_dirs(tmp_path / "saved"), key=lambda p: p.stat().st_mtime)
    checkpoint = torch.load(resumed / "checkpoint-epoch2.pth", weights_only=True)
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2


def saved_batch_size(run):
    return json.loads((run / "config.json").read_text())["data_loader"]["args"]["batch_size"]


def test_auto_resume_looks_for_the_runs_of_the_overridden_name_and_save_dir(tmp_path, mnist_dir, monkeypatch,
                                                                            capsys):
    """A run of the file's name with another batch size must not be picked up by `-r auto` with
    `-o name=...` or `-o trainer.save_dir=...`: those start their own first run (batch size 32
    from the file), and the next `-r auto` continues that run."""
    config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1})
    assert run_train_in_process(monkeypatch, capsys, "-c", config, "--bs", "16")[0] == 0
    assert saved_batch_size(only_run(tmp_path / "saved")) == 16

    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config, "-r", "auto", "-o", "name=Other")
    assert code == 0, captured.err
    assert saved_batch_size(only_run(tmp_path / "saved", "Other")) == 32
    code, _ = run_train_in_process(monkeypatch, capsys, "-c", config, "-r", "auto", "-o", "name=Other",
                                   "-o", "trainer.epochs=2")
    assert code == 0
    newest = max(run_dirs(tmp_path / "saved", "Other"), key=lambda p: p.stat().st_mtime)
    history = torch.load(newest / "checkpoint-epoch2.pth", weights_only=True)["history"]
    assert len(history) == 2 and saved_batch_size(newest) == 32  # continued Other's own run

    elsewhere = tmp_path / "elsewhere"
    code, _ = run_train_in_process(monkeypatch, capsys, "-c", config, "-r", "auto",
                                   "-o", f"trainer.save_dir={elsewhere}")
    assert code == 0
    assert saved_batch_size(only_run(elsewhere)) == 32


@pytest.mark.parametrize("text, value", [("name=NaN", "NaN"), ("name=Infinity", "Infinity"),
                                         ("name=-Infinity", "-Infinity"), ("trainer.epochs=3", 3)])
def test_override_values_that_json_would_read_as_non_finite_stay_strings(text, value):
    assert parse_override(text)[1] == value
    assert type(parse_override(text)[1]) is type(value)


# ---- the shell scripts use the project's environment --------------------------------------------
def fake_python(path, log):
    """An executable that records its arguments instead of running Python."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "CALL $0 $*" >> "{log}"\n')
    path.chmod(0o755)
    return path


def test_gpu_smoke_script_defaults_to_the_project_venv(tmp_path):
    project = tmp_path / "project"
    (project / "benchmarks").mkdir(parents=True)
    script = project / "benchmarks" / "ddp_gpu_smoke.sh"
    script.write_text((PROJECT_ROOT / "benchmarks" / "ddp_gpu_smoke.sh").read_text())
    log = tmp_path / "calls.txt"
    venv_python = fake_python(project / ".venv" / "bin" / "python", log)
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    subprocess.run(["bash", str(script), "1", "1"], env={**env, "OUT_DIR": str(tmp_path / "out")},
                   capture_output=True, text=True, timeout=60)
    calls = [line for line in log.read_text().splitlines() if line.startswith("CALL ")]
    assert len(calls) == 3 and all(call.startswith("CALL .venv/bin/python ") for call in calls)
    assert any("-m utils.launch --standalone --nproc_per_node=1 train.py" in call for call in calls)
    assert venv_python.exists()


def test_slurm_script_runs_the_launcher_with_the_project_python(tmp_path):
    log = tmp_path / "calls.txt"
    stubs = tmp_path / "bin"
    fake_python(stubs / "srun", log)
    # A long node list: a reader that stops after the first line would end the job with SIGPIPE.
    (stubs / "scontrol").write_text("#!/bin/sh\necho node1\nseq 2 200000 | sed 's/^/node/'\n")
    (stubs / "scontrol").chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHON"}, "PATH": f"{stubs}:{os.environ['PATH']}",
           "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NNODES": "2", "SLURM_JOB_ID": "7"}
    result = subprocess.run(["bash", "scripts/slurm_ddp.sbatch", "-c", "config.json"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected_python = PROJECT_ROOT / ".venv" / "bin" / "python"
    python = str(expected_python) if expected_python.exists() else "python"
    assert f" {python} -m utils.launch --nnodes=2 " in log.read_text()
    assert "--rdzv-endpoint=node1:29500 train.py -c config.json" in log.read_text()


# ---- clean errors --------------------------------------------------------------------------------
def test_wandb_without_a_login_is_an_error_before_any_run_folder(tmp_path, mnist_dir, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # no prompt for a key
    config = tiny_config(tmp_path, mnist_dir, {"trainer.wandb": {"project": "test"}})
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2 and "Traceback" not in captured.err and "trainer.wandb" in captured.err
    assert not (tmp_path / "saved").exists()


def test_database_storage_without_its_driver_names_the_package(monkeypatch):
    from tuning.study import _database_storage

    for driver in ("psycopg", "psycopg2", "pymysql"):
        monkeypatch.setitem(sys.modules, driver, None)  # as if not installed
    with pytest.raises(ConfigError, match="pip install psycopg2-binary"):
        _database_storage("postgresql+psycopg2://user:secret@localhost/db", attempts=1)
    with pytest.raises(ConfigError, match=re.escape("pip install 'psycopg[binary]'")):
        _database_storage("postgresql://user:secret@localhost/db", attempts=1)
    with pytest.raises(ConfigError, match="pip install PyMySQL"):
        _database_storage("mysql+pymysql://user:secret@localhost/db", attempts=1)


def test_dry_run_with_a_model_that_does_not_fit_the_data_is_an_error(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"arch": {"type": "resnet18", "module": "torchvision.models",
                                                        "args": {"num_classes": 10}}})
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config, "--dry-run")
    assert code == 2 and "Traceback" not in captured.err and "arch" in captured.err
    assert not (tmp_path / "saved").exists()


def test_download_failure_reason_is_never_empty():
    from data_loader.mnist_source import download_error_reason

    torchvision_error = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
                                     "<urlopen error [Errno -3] Temporary failure in name resolution>\n")
    assert download_error_reason(torchvision_error) == (
        "Error downloading train-images-idx3-ubyte.gz: Tried https://a/, got: <urlopen error [Errno -3] Temporary "
        "failure in name resolution>")
    assert download_error_reason(RuntimeError("x" * 400)) == "x" * 297 + "..."
    assert download_error_reason(OSError()) == "OSError"


@pytest.mark.slow
def test_launcher_stopped_by_sigterm_exits_143_after_the_workers_saved(tmp_path, mnist_dir):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1000})
    launcher = subprocess.Popen([sys.executable, "-m", "utils.launch", "--standalone", "--nproc_per_node=2",
                                 "train.py", "-c", str(config)], cwd=PROJECT_ROOT, env=script_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        checkpoints = tmp_path / "saved" / "models" / "Tiny"
        while not list(checkpoints.glob("*/checkpoint-epoch1.pth")):
            assert launcher.poll() is None, launcher.communicate()
            time.sleep(0.1)
        launcher.send_signal(signal.SIGTERM)
        stdout, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 143, stderr
    assert "Traceback" not in stderr
    run = only_run(tmp_path / "saved")
    assert json.loads((run / "status.json").read_text())["status"] == "stopped"
    assert torch.load(find_latest_checkpoint(run), weights_only=True)["world_size"] == 2


@pytest.mark.slow
def test_tune_prints_a_line_per_trial_and_keeps_the_full_log_in_the_trial(tmp_path, mnist_dir):
    config = json.loads(tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1}).read_text())
    config["tune"] = {"n_trials": 2, "sampler": "random", "seed": 0, "pruner": "none",
                      "space": {"optimizer.args.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(config))
    result = run_script("tune.py", "-c", path, check=True)
    output = result.stdout + result.stderr
    assert "MnistModel(" not in output and len(output.splitlines()) <= 12, output  # 2 trials + the summary
    for trial in (0, 1):
        log = tmp_path / "saved" / "log" / "Tiny" / f"trial-{trial}" / "info.log"
        assert "MnistModel(" in log.read_text()


def test_a_torchvision_download_failure_without_text_names_its_type(tmp_path, monkeypatch):
    import torchvision.datasets

    from data_loader.torchvision_source import torchvision_samples

    class Offline(torchvision.datasets.FashionMNIST):
        def __init__(self, root, train=True, download=False):
            raise OSError()  # what some network failures carry: no text at all

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with pytest.raises(ConfigError, match=r"could not be loaded from '.*' \(OSError\)"):
        torchvision_samples("FashionMNIST", tmp_path, True, True, None, None, None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="about machines without a GPU")
def test_training_on_a_machine_without_gpu_is_no_warning(caplog):
    import logging

    from utils.device import prepare_device

    with caplog.at_level(logging.INFO, logger="utils.device"):
        device, ids = prepare_device(1)
    assert device.type == "cpu" and ids == []
    assert [r.levelno for r in caplog.records if r.name == "utils.device"] == [logging.INFO]
