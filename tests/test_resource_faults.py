"""Resource faults end with one clear message and exit code 2: a full disk, a quota, a read-only
file system or a refused permission at each write site (checkpoint, metrics.csv, TensorBoard
events, info.log), GPU out-of-memory and a data-loader worker killed from outside. Every file
written before stays intact, no temp file is left, and the run resumes from its last checkpoint."""
import errno
import logging
import os
import subprocess

import pandas as pd
import pytest
import torch
from tensorboard.summary.writer.record_writer import RecordWriter

import utils.io
from conftest import only_run, run_script, tiny_config
from reliability_helpers import load, run_train_in_process
from utils.resource_faults import explain_resource_fault

SETTINGS = {"data_loader.args.limit": 256, "trainer.tensorboard": True}


class FailingFile:
    """A file object whose writes fail with `error_number`."""

    def __init__(self, handle, error_number):
        self.handle, self.error_number = handle, error_number

    def write(self, data):
        raise OSError(self.error_number, os.strerror(self.error_number))

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.handle.close()


def fail_atomic_writes_of(monkeypatch, name, error_number, after_file):
    """Atomic writes whose target name contains `name` fail once `after_file` exists."""
    fdopen = os.fdopen

    def failing_fdopen(fd, mode="r", *args, **kwargs):
        handle = fdopen(fd, mode, *args, **kwargs)
        target = os.readlink(f"/proc/self/fd/{fd}")
        return FailingFile(handle, error_number) if name in target and after_file.exists() else handle

    monkeypatch.setattr(utils.io.os, "fdopen", failing_fdopen)


def fail_site(site, monkeypatch, after_file):
    """Inject an OSError at one write site, active once `after_file` (epoch 1's checkpoint) exists."""
    if site == "checkpoint":
        fail_atomic_writes_of(monkeypatch, "checkpoint-epoch2", errno.ENOSPC, after_file)
    elif site == "metrics.csv":
        fail_atomic_writes_of(monkeypatch, "metrics.csv", errno.EDQUOT, after_file)
    elif site == "tensorboard":
        write = RecordWriter.write

        def failing_write(self, data):  # runs in TensorBoard's writer thread
            if after_file.exists():
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return write(self, data)

        monkeypatch.setattr(RecordWriter, "write", failing_write)
    else:  # info.log
        flush, failed = logging.StreamHandler.flush, []

        def failing_flush(self):  # fails once: the test's own clean-up closes the handler later
            if isinstance(self, logging.FileHandler) and after_file.exists() and not failed:
                failed.append(self)
                raise OSError(errno.EACCES, os.strerror(errno.EACCES))
            return flush(self)

        monkeypatch.setattr(logging.StreamHandler, "flush", failing_flush)


@pytest.mark.parametrize("site,failing_name", [("checkpoint", "checkpoint-epoch2.pth"), ("metrics.csv", "metrics.csv"),
                                               ("tensorboard", "log/Tiny/"), ("info.log", "info.log")])
def test_write_fault_exits_2_keeps_earlier_files_and_resumes(tmp_path, mnist_dir, monkeypatch, capsys, site,
                                                             failing_name):
    config = tiny_config(tmp_path, mnist_dir, SETTINGS)
    saved = tmp_path / "saved"
    first_checkpoint = _FirstCheckpoint(saved)
    with monkeypatch.context() as patch:
        fail_site(site, patch, after_file=first_checkpoint)
        code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
    print(captured.err)
    assert code == 2
    assert "Traceback" not in captured.err and "Exception in thread" not in captured.err
    assert failing_name in captured.err and f"-r {first_checkpoint.path}" in captured.err
    run = only_run(saved)
    assert not list(saved.rglob(".*.tmp")), "no temp file may be left behind"
    assert load(run / "checkpoint-epoch1.pth")["epoch"] == 1
    assert not (run / "checkpoint-epoch2.pth").exists()
    log_dir = saved / "log" / "Tiny" / run.name
    assert list(pd.read_csv(log_dir / "metrics.csv")["epoch"])[0] == 1

    code, captured = run_train_in_process(monkeypatch, capsys, "-r", run)  # space is back: resume
    assert code == 0, captured.err
    assert list(pd.read_csv(log_dir / "metrics.csv")["epoch"]) == [1, 2]
    assert load(run / "checkpoint-epoch2.pth")["epoch"] == 2


class _FirstCheckpoint:
    """Stands for the path of the run's checkpoint-epoch1.pth, found once it exists."""

    def __init__(self, saved):
        self.saved, self.path = saved, None

    def exists(self):
        if self.path is None:
            found = list(self.saved.glob("models/Tiny/*/checkpoint-epoch1.pth"))
            self.path = found[0] if found else None
        return self.path is not None


def test_full_tmpfs_ends_with_clear_message(tmp_path, mnist_dir, monkeypatch, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mount.stderr.decode().strip()}")
    try:
        config = tiny_config(tmp_path, mnist_dir, {**SETTINGS, "trainer.save_dir": str(disk / "saved"),
                                                   "trainer.epochs": 20})
        code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
        assert code == 2 and "Traceback" not in captured.err
        assert "ENOSPC" in captured.err
        run = only_run(disk / "saved")
        assert not list((disk / "saved").rglob(".*.tmp"))
        checkpoints = sorted(run.glob("checkpoint-epoch*.pth"))
        assert checkpoints, "the first checkpoints fit on the 4 MB disk"
        for path in checkpoints:
            assert load(path)["epoch"] >= 1  # every file that was completed loads
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_cuda_out_of_memory_names_the_batch_size(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"data_loader.args.limit": 256})

    def out_of_memory(output, target):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    import model.loss

    monkeypatch.setattr(model.loss, "nll_loss", out_of_memory)
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2 and "Traceback" not in captured.err
    for hint in ("batch_size=32", "trainer.accum_steps", "trainer.amp"):
        assert hint in captured.err


KILLED_WORKER = """
import os, signal, torch
from utils.resource_faults import explain_resource_fault

class SelfKillingDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        if index == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # before any batch is sent, as the OOM killer would
        return torch.zeros(1)

try:
    list(torch.utils.data.DataLoader(SelfKillingDataset(), batch_size=2, num_workers=1))
except RuntimeError as err:
    config = {"data_loader": {"args": {"num_workers": 1, "batch_size": 2}}}
    print(explain_resource_fault(err, config, "saved/models/x/1/checkpoint-epoch1.pth"), flush=True)
os._exit(0)  # skip the interpreter's clean-up of the broken loader
"""


def test_killed_data_loader_worker_names_num_workers():
    # in a child process: torch's SIGCHLD handler would otherwise report the dead worker again later
    message = run_script("-c", KILLED_WORKER, check=True).stdout
    assert "data_loader.args.num_workers (now 1)" in message and "-r saved/models/x/1" in message
    config = {"data_loader": {"args": {}}}
    assert explain_resource_fault(RuntimeError("shape mismatch"), config) is None
