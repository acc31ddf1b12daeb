"""One run, one folder: resuming continues the run in its own folders under a lock; a finished
run is not trained again; --new-run and fine-tuning start a new folder."""
import os
import socket

import pandas as pd
import pytest

from conftest import only_run, run_dirs, run_script, tiny_config
from reliability_helpers import ScriptProcess, load, run_train_in_process
from run.checkpoints import checkpoint_order
from run.lock import RunLock
from utils import ConfigError

SETTINGS = {"data_loader.args.limit": 256, "trainer.epochs": 1}


def log_dir_of(run):
    return run.parents[2] / "log" / run.parent.name / run.name


def metrics_epochs(run):
    return list(pd.read_csv(log_dir_of(run) / "metrics.csv")["epoch"])


@pytest.fixture
def one_epoch_run(finished_run):
    """A finished 1-epoch run (256 digits, TensorBoard on; a copy of the session's): its run folder."""
    return finished_run


@pytest.mark.parametrize("target", ["run folder", "checkpoint file", "auto"])
def test_resume_continues_in_the_run_folder(one_epoch_run, tmp_path, monkeypatch, capsys, target):
    run = one_epoch_run
    log_before = (log_dir_of(run) / "info.log").read_text()
    events_before = sorted(log_dir_of(run).glob("events.out.tfevents.*"))
    resume = {"run folder": ["-r", run], "checkpoint file": ["-r", run / "checkpoint-epoch1.pth"],
              "auto": ["-c", tmp_path / "Tiny.json", "-r", "auto"]}[target]
    code, captured = run_train_in_process(monkeypatch, capsys, *resume, "-o", "trainer.epochs=2")
    assert code == 0, captured.err
    assert only_run(tmp_path / "saved") == run
    assert sorted(p.name for p in run.glob("checkpoint-epoch*.pth")) == [f"checkpoint-epoch{e}.pth" for e in (1, 2)]
    assert load(run / "checkpoint-epoch2.pth")["epoch"] == 2
    assert metrics_epochs(run) == [1, 2]
    log_after = (log_dir_of(run) / "info.log").read_text()
    assert log_after.startswith(log_before) and len(log_after) > len(log_before)  # appended
    assert set(events_before) < set(log_dir_of(run).glob("events.out.tfevents.*"))  # same event folder


def test_new_run_flag_and_fine_tuning_start_new_folders(one_epoch_run, tmp_path, monkeypatch, capsys):
    checkpoint = one_epoch_run / "checkpoint-epoch1.pth"
    code, _ = run_train_in_process(monkeypatch, capsys, "-r", checkpoint, "--new-run", "-o", "trainer.epochs=2")
    assert code == 0
    code, _ = run_train_in_process(monkeypatch, capsys, "-c", tmp_path / "Tiny.json", "-r", checkpoint)
    assert code == 0
    runs = run_dirs(tmp_path / "saved")
    assert len(runs) == 3
    assert sorted(p.name for p in one_epoch_run.glob("checkpoint-*")) == ["checkpoint-epoch1.pth"]  # untouched
    new_run, fine_tuned = sorted(set(runs) - {one_epoch_run}, key=lambda run: run.stat().st_mtime)
    assert metrics_epochs(new_run) == [1, 2]  # history carried over from the checkpoint
    assert metrics_epochs(fine_tuned) == [1]  # a fresh run from the weights


def test_finished_run_creates_no_folder_and_changes_nothing(one_epoch_run, tmp_path, monkeypatch, capsys):
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "saved").rglob("*")}
    for resume in (one_epoch_run, one_epoch_run / "checkpoint-epoch1.pth"):
        code, captured = run_train_in_process(monkeypatch, capsys, "-r", resume)
        assert code == 2
        assert "Traceback" not in captured.err and "trainer.epochs=" in captured.err
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "saved").rglob("*")} == before


def test_resuming_an_older_checkpoint_in_place_is_refused(one_epoch_run, monkeypatch, capsys):
    code, _ = run_train_in_process(monkeypatch, capsys, "-r", one_epoch_run, "-o", "trainer.epochs=2")
    assert code == 0
    code, captured = run_train_in_process(monkeypatch, capsys, "-r", one_epoch_run / "checkpoint-epoch1.pth",
                                          "-o", "trainer.epochs=3")
    assert code == 2 and "--new-run" in captured.err
    assert metrics_epochs(one_epoch_run) == [1, 2]


def test_run_lock_records_holder_and_excludes_a_second_holder(tmp_path):
    first = RunLock(tmp_path).acquire()
    holder = (tmp_path / "train.lock").read_text()
    assert f'"pid": {os.getpid()}' in holder and socket.gethostname() in holder
    with pytest.raises(ConfigError, match=str(os.getpid())):
        RunLock(tmp_path).acquire()  # another open file description: flock refuses it as it would another process
    first.release()
    RunLock(tmp_path).acquire().release()


@pytest.mark.slow
def test_second_process_on_a_running_run_exits_2_and_sigkill_frees_the_lock(tmp_path, mnist_dir, monkeypatch,
                                                                            capsys):
    config = tiny_config(tmp_path, mnist_dir, {**SETTINGS, "trainer.epochs": 1000})
    first = ScriptProcess("train.py", "-c", config)
    try:
        run = first.wait_for_file(tmp_path / "saved", "models/Tiny/*/checkpoint-epoch1.pth", timeout=600).parent
        checkpoints_before = set(run.glob("checkpoint-epoch*.pth"))
        code, captured = run_train_in_process(monkeypatch, capsys, "-r", run)
        print(captured.err)  # what a second process prints
        assert code == 2 and "Traceback" not in captured.err
        assert f"process {first.process.pid} on host {socket.gethostname()}" in captured.err
        assert first.process.poll() is None, "the first process must keep training"
    finally:
        first.process.kill()
        first.finish()
    assert checkpoints_before <= set(run.glob("checkpoint-epoch*.pth"))  # the second process removed nothing
    epoch = load(max(run.glob("checkpoint-epoch*.pth"), key=checkpoint_order))["epoch"]
    code, captured = run_train_in_process(monkeypatch, capsys, "-r", run, "-o", f"trainer.epochs={epoch + 1}")
    assert code == 0, captured.err  # no stale lock after SIGKILL
    assert only_run(tmp_path / "saved") == run and metrics_epochs(run) == list(range(1, epoch + 2))
    assert not list(run.glob(".*.tmp")), "a save cut short by the kill leaves no temp file after the resume"


@pytest.mark.slow
def test_ddp_run_on_a_locked_run_stops_every_rank(one_epoch_run):
    """Under torchrun, rank 0 takes the lock and the other ranks stop with it, rather than waiting."""
    from test_distributed import TORCHRUN

    lock = RunLock(one_epoch_run).acquire()
    try:
        result = run_script(*TORCHRUN, "train.py", "-r", one_epoch_run, "-o", "trainer.epochs=2", timeout=300)
    finally:
        lock.release()
    assert result.returncode != 0
    assert (result.stdout + result.stderr).count(f"already being trained by process {os.getpid()}") >= 2  # both ranks
    assert not (one_epoch_run / "checkpoint-epoch2.pth").exists()
