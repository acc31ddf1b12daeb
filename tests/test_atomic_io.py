"""A writer killed with SIGKILL in the middle of a save leaves the previous file whole: the
target is always one complete version, never a mix or a truncated file. The same holds for a
training run killed while it writes checkpoint-last.pth or a top-k checkpoint, which then resumes."""
import io
import json
import os
import random
import signal
import time

import numpy as np
import pandas as pd
import pytest

from conftest import only_run, tiny_config
from reliability_helpers import ScriptProcess, load, run_train_in_process
from run.checkpoints import find_latest_checkpoint
from utils import write_json
from utils.io import atomic_write_rows

CHUNK, CHUNKS = 64 * 1024, 40  # one version: 40 chunks written 10 ms apart, about 0.4 s
WRITER = f"""
import sys, time
from utils.io import atomic_open
version = 0
while True:
    version += 1
    print(f"start {{version}}", flush=True)
    with atomic_open(sys.argv[1], "wb") as handle:
        for _ in range({CHUNKS}):
            handle.write(bytes([version]) * {CHUNK})
            handle.flush()
            time.sleep(0.01)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_during_atomic_write_leaves_the_old_file_whole(tmp_path, seed):
    target = tmp_path / "checkpoint.pth"
    writer = ScriptProcess("-c", WRITER, target)
    writer.wait_for(r"^start 3$")  # versions 1 and 2 are complete, 3 is being written
    time.sleep(random.Random(seed).uniform(0.0, 0.15))
    writer.process.send_signal(signal.SIGKILL)
    assert writer.finish() == -signal.SIGKILL
    started = int(writer.lines[-1].split()[1])  # a slow test machine may have let it go past 3
    content = target.read_bytes()
    assert len(content) == CHUNK * CHUNKS
    assert set(content) in ({started - 1}, {started}), "the target must be exactly one complete version"
    assert list(tmp_path.glob(".checkpoint.pth.*.tmp")), "the kill must have landed inside a save"


# epoch logs as the trainer keeps them: a column that appears later (validation every other
# epoch), whole numbers, fractions, a whole number among fractions, text, a float32 value
HISTORIES = [
    [{"epoch": 1, "loss": 0.5, "lr": 0.01}, {"epoch": 2, "loss": 0.25, "lr": 0.01, "val_loss": 0.3}],
    [{"epoch": 1, "loss": 1, "note": "a,b"}, {"epoch": 2, "loss": 0.1 + 0.2, "note": None}],
    [{"epoch": 1, "steps": 12, "loss": float("nan")}, {"epoch": 2, "loss": 1e-9}],
    [{"epoch": 1, "x": np.float32(0.1)}, {"epoch": 2, "x": np.float32(0.7)}],
]


@pytest.mark.parametrize("history", HISTORIES)
def test_metrics_csv_rows_are_written_as_pandas_writes_them(tmp_path, history):
    atomic_write_rows(history, tmp_path / "metrics.csv")
    expected = io.StringIO()
    pd.DataFrame(history).to_csv(expected, index=False)
    assert (tmp_path / "metrics.csv").read_text() == expected.getvalue()


def test_atomic_write_gives_the_file_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_json({"a": 1}, tmp_path / "config.json")
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


# A training run that SIGKILLs itself in the middle of writing its `nth` file whose name
# contains `target`: the temp file holds half of the first chunk torch.save wrote.
KILLED_TRAINING = """
import os, signal, sys
target, nth = sys.argv[1], int(sys.argv[2])
fdopen, matches = os.fdopen, []


class KilledMidWrite:
    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        self.handle.write(data[: max(1, len(data) // 2)])
        self.handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.handle.close()


def fdopen_killing(fd, mode="r", *args, **kwargs):
    handle = fdopen(fd, mode, *args, **kwargs)
    if target in os.path.basename(os.readlink(f"/proc/self/fd/{fd}")):
        matches.append(fd)
        if len(matches) == nth:
            return KilledMidWrite(handle)
    return handle


os.fdopen = fdopen_killing
sys.argv = ["train.py", *sys.argv[3:]]
import train
train.run()
"""


@pytest.mark.slow
@pytest.mark.parametrize("policy, target, settings", [
    # no other file is written at epochs 1 and 2, so checkpoint-last is written, not linked to one
    ("save_last", "checkpoint-last.pth", {"trainer.save_last": True, "trainer.save_period": 10,
                                          "trainer.monitor": "off"}),
    ("save_top_k", "val_loss=", {"trainer.save_top_k": 1, "trainer.monitor": "min val_loss"}),
])
def test_sigkill_while_writing_checkpoint_last_or_a_top_k_file_keeps_the_previous_one(
        tmp_path, mnist_dir, monkeypatch, capsys, policy, target, settings):
    config = tiny_config(tmp_path, mnist_dir, {"data_loader.args.limit": 256, "trainer.epochs": 3, **settings})
    training = ScriptProcess("-c", KILLED_TRAINING, target, 2, "-c", config)  # killed in epoch 2's write
    assert training.finish() == -signal.SIGKILL, training.output
    run = only_run(tmp_path / "saved")
    assert len(list(run.glob(".*.tmp"))) == 1, "the kill must have landed inside a save"
    previous = [path for path in run.glob("checkpoint-*.pth") if target in path.name]
    assert len(previous) == 1 and load(previous[0])["epoch"] == 1  # whole, and still the epoch-1 file

    resumes_from = find_latest_checkpoint(run)  # what -r RUN_FOLDER takes: the epoch-1 state
    assert load(resumes_from)["epoch"] == 1
    code, captured = run_train_in_process(monkeypatch, capsys, "-r", run)
    assert code == 0, captured.err
    assert json.loads((run / "status.json").read_text())["resumed_from"] == str(resumes_from)
    assert not list(run.glob(".*.tmp"))
    final = [path for path in run.glob("checkpoint-*.pth") if target in path.name]
    assert len(final) == 1
    if policy == "save_last":
        assert [row["epoch"] for row in load(final[0])["history"]] == [1, 2, 3]
    else:
        assert load(final[0])["epoch"] == load(run / "model_best.pth")["epoch"]
