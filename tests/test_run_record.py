"""record.json: what produced a run (command, git state and patch, packages, hardware, threads,
determinism flags, data fingerprint), written at start and on resume; runs.py shows the commit
and the data fingerprint; a resume after the code or the data changed is told what changed."""
import io
import json
import os
import shutil
import subprocess
from contextlib import redirect_stdout

import pandas as pd
import pytest
import torch

import runs
from conftest import PROJECT_ROOT, only_run, tiny_config
from reliability_helpers import run_train_in_process
from run import environment
from run.record import RECORD_FILE, write_run_record

SMALL = {"trainer.epochs": 1, "data_loader.args.limit": 128}


def parts_of(run_dir):
    return json.loads((run_dir / RECORD_FILE).read_text())["parts"]


def git_head():
    result = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.fixture
def data_copy(tmp_path, mnist_dir):
    """A private copy of the MNIST files, which a test may touch."""
    shutil.copytree(mnist_dir, tmp_path / "data")
    return tmp_path / "data"


def test_a_run_records_what_produced_it_and_a_resume_names_the_changed_file(tmp_path, data_copy, monkeypatch,
                                                                            capsys):
    config = tiny_config(tmp_path, data_copy, SMALL)
    run_train_in_process(monkeypatch, capsys, "-c", config)
    run_dir = only_run(tmp_path / "saved")
    (part,) = parts_of(run_dir)
    assert part["command"] == f"python train.py -c {config}" and part["resumed_from"] is None
    git = part["code"]["git"]
    assert git is None if git_head() is None else git["commit"] == git_head()
    if git and git["dirty"] and part["code"]["patch"]:  # the uncommitted diff, as a patch file
        assert (run_dir / part["code"]["patch"]["file"]).read_text().startswith("diff --git")
    freeze = (run_dir / part["packages"]["freeze"]["file"]).read_text().splitlines()
    assert f"torch=={torch.__version__.split('+')[0]}" in [line.split("+")[0] for line in freeze]
    assert part["packages"]["torch"] == torch.__version__ and part["threads"]["torch_threads"] == 1
    assert part["determinism"]["seed"] == 123 and part["hardware"]["cpu_count"] == os.cpu_count()
    images = data_copy / "MNIST" / "raw" / "train-images-idx3-ubyte"
    listed = (run_dir / part["data"]["data_files"]["file"]).read_text().splitlines()
    assert f"{images}\t{images.stat().st_size}\t{images.stat().st_mtime_ns}" in listed

    output = io.StringIO()
    with redirect_stdout(output):
        runs.list_runs(runs.parse_args([str(tmp_path / "saved"), "--csv"]))
    row = pd.read_csv(io.StringIO(output.getvalue())).iloc[0]
    assert row["data"] == part["data"]["sha256"]
    assert row["commit"] == ("no git" if git is None else git["commit"][:10] + ("+dirty" if git["dirty"] else ""))

    os.utime(images, ns=(images.stat().st_atime_ns, images.stat().st_mtime_ns + 10**9))  # the data "changed"
    run_train_in_process(monkeypatch, capsys, "-r", run_dir, "-o", "trainer.epochs=2")
    first, resumed = parts_of(run_dir)
    assert resumed["resumed_from"] == str(run_dir / "checkpoint-epoch1.pth")
    assert resumed["data"]["sha256"] != first["data"]["sha256"]
    assert resumed["packages"]["freeze"] == first["packages"]["freeze"]  # the same file, not written twice
    warnings = [line for line in (tmp_path / "saved/log/Tiny" / run_dir.name / "info.log").read_text().splitlines()
                if " - record - WARNING - " in line]
    assert len(warnings) == 1 and str(images) in warnings[0]


def test_changes_since_the_record_name_the_commits_and_the_data(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    config = {"seed": 1, "data_loader": {"args": {"csv_file": str(data / "a.csv"), "cache_dir": str(tmp_path)}}}
    commits = iter(["1" * 40, "2" * 40])
    monkeypatch.setattr(environment, "git_state", lambda root=None: (
        {"commit": next(commits), "branch": "main", "dirty": False, "untracked": [], "patch_sha256": None}, None))
    assert write_run_record(tmp_path, config) == []
    (data / "a.csv").write_text("x\n1\n2\n")
    changes = write_run_record(tmp_path, config, resumed_from="checkpoint-epoch1.pth", previous_dir=tmp_path)
    assert len(changes) == 2
    assert "1111111111" in changes[0] and "2222222222" in changes[0]
    assert str(data / "a.csv") in changes[1]
    assert [part["part"] for part in parts_of(tmp_path)] == [0, 1]


def test_outside_a_git_checkout_the_record_keeps_a_fingerprint_of_the_code(tmp_path, mnist_dir, monkeypatch,
                                                                          capsys):
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "saved", "data", "tests",
                                                                       "__pycache__"))
    assert environment.git_state(copy) == (None, None)
    monkeypatch.setattr(environment, "PROJECT_ROOT", copy)  # the code of this run now lives outside git
    run_train_in_process(monkeypatch, capsys, "-c", tiny_config(tmp_path, mnist_dir, SMALL))
    (part,) = parts_of(only_run(tmp_path / "saved"))
    assert part["code"]["git"] is None and part["code"]["patch"] is None
    assert part["code"]["source_sha256"] == environment.source_fingerprint(copy)
    (copy / "model" / "model.py").write_text((copy / "model" / "model.py").read_text() + "\n# changed\n")
    assert environment.source_fingerprint(copy) != part["code"]["source_sha256"]
