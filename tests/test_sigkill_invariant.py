"""The strongest reliability invariant: a seeded CPU run with dropout, SIGKILLed at 8 seeded
random moments and restarted each time with the same command (`-c CONFIG -r auto`, as a
preemptible job is), ends in one run folder with each epoch once in metrics.csv, and with
weights, optimizer state, metrics and TensorBoard scalars bit-identical to a run that was never
interrupted. After every kill each checkpoint on disk loads and holds a history without gaps,
and the next start resumes from the newest one, so a kill costs at most one save period.

The kills are placed by training progress: the process SIGKILLs itself right after a given
batch's optimizer step, so a loaded machine only makes the test slower, never different. Each
start is a process forked after the imports, which would otherwise be most of the test's time.
Kills inside a checkpoint write are test_atomic_io.py's."""
import json
import random
import subprocess
import sys

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import PROJECT_ROOT, only_run, script_env, tiny_config
from reliability_helpers import assert_same_training, load, run_train_in_process
from run.checkpoints import CHECKPOINT_PATTERN

EPOCHS, BATCHES = 6, 6  # 256 digits, a quarter for validation, batches of 32
KILLS, SAVE_PERIOD = 8, 2
SETTINGS = {"data_loader.args.limit": 256, "trainer.epochs": EPOCHS, "trainer.tensorboard": True,
            "trainer.save_period": SAVE_PERIOD, "trainer.keep_last": 2, "trainer.monitor": "min val_loss",
            "lr_scheduler.args.step_size": 1}

# Starts train.py with argv[2:] (its output appended to the file argv[1]) once per line it reads
# (a batch number), in a child process forked after the imports (so a start costs no import
# time), SIGKILLed right after the optimizer step of that training batch (counted over the run
# from 1), or of its first batch if it resumed past that one. Prints how each child ended.
KILLED_STARTS = f"""
import os, signal, sys
log, argv = sys.argv[1], ["train.py", *sys.argv[2:]]
import train
from trainer import Trainer
real_step = Trainer._train_step

def start(kill_at):
    def step(self, data, target, index):
        result = real_step(self, data, target, index)
        if len(self.history) * {BATCHES} + index + 1 >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    Trainer._train_step = step
    sys.argv = argv
    train.run()

for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(output, 1), os.dup2(output, 2)
            start(int(line))
        finally:
            os._exit(1)  # only SIGKILL may end the child
    _, status = os.waitpid(pid, 0)
    print("killed" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL else f"ended {{status}}",
          flush=True)
"""


def checkpoints_on_disk(run):
    """{epoch: path} of the run's epoch checkpoints; each one loads and its history runs from
    epoch 1 without gaps or repeats."""
    found = {}
    for path in run.glob("*.pth"):
        history = [entry["epoch"] for entry in load(path)["history"]]  # raises for a truncated file
        assert history == list(range(1, len(history) + 1)), f"{path.name}: history {history}"
        if CHECKPOINT_PATTERN.search(path.name):
            found[len(history)] = path
    return found


def tensorboard_scalars(log_dir):
    """{tag: [(step, value), ...]} as TensorBoard shows it (purged events left out)."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def resumed_from(run):
    return json.loads((run / "status.json").read_text())["resumed_from"]


@pytest.mark.slow
def test_eight_sigkills_restarted_with_the_same_command_end_bit_identical(tmp_path, mnist_dir, monkeypatch, capsys):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference_dir.mkdir(), killed_dir.mkdir()
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", tiny_config(reference_dir, mnist_dir, SETTINGS))
    assert code == 0, captured.err
    reference = only_run(reference_dir / "saved")

    # kill points: 8 distinct batches after the first checkpoint (epoch 2), before the last batch
    first_checkpoint = SAVE_PERIOD * BATCHES
    kill_points = sorted(random.Random(20261127).sample(range(first_checkpoint + 1, EPOCHS * BATCHES - 1), KILLS))
    command = ["-c", tiny_config(killed_dir, mnist_dir, SETTINGS), "-r", "auto"]
    retrained, newest = [], {}
    log = killed_dir / "starts.log"
    starts = subprocess.Popen([sys.executable, "-c", KILLED_STARTS, log, *map(str, command)], cwd=PROJECT_ROOT,
                              env=script_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for kill_at in kill_points:
        starts.stdin.write(f"{kill_at}\n")
        starts.stdin.flush()
        assert starts.stdout.readline() == "killed\n", f"training ended before the kill:\n{log.read_text()}"
        run = only_run(killed_dir / "saved")  # the first start made it, every later one went on in it
        resumed_at = 0
        if newest:  # it resumed from the newest checkpoint of the kill before
            assert resumed_from(run) == str(newest[max(newest)])
            resumed_at = max(newest) * BATCHES
        else:
            assert resumed_from(run) is None
        reached = max(kill_at, resumed_at + 1)
        finished_epochs = (reached - 1) // BATCHES
        newest = checkpoints_on_disk(run)  # keep_last 2; every save period's checkpoint is there
        assert len(newest) <= 2 and max(newest) == finished_epochs - finished_epochs % SAVE_PERIOD
        retrained.append(reached - max(newest) * BATCHES)  # trained again by the next start
    starts.stdin.close()
    assert starts.wait(timeout=60) == 0
    code, captured = run_train_in_process(monkeypatch, capsys, *command)
    assert code == 0, captured.err
    assert resumed_from(run) == str(newest[max(newest)])

    assert only_run(killed_dir / "saved") == run
    assert all(0 < batches <= SAVE_PERIOD * BATCHES for batches in retrained), f"one save period at most: {retrained}"
    assert not list(killed_dir.rglob(".*.tmp"))
    assert sorted(p.name for p in run.glob("*.pth")) == sorted(p.name for p in reference.glob("*.pth"))
    log_dir, reference_log_dir = (folder.parents[2] / "log" / "Tiny" / folder.name for folder in (run, reference))
    assert list(pd.read_csv(log_dir / "metrics.csv")["epoch"]) == list(range(1, EPOCHS + 1))
    assert (log_dir / "metrics.csv").read_text() == (reference_log_dir / "metrics.csv").read_text()
    for name in (f"checkpoint-epoch{EPOCHS}.pth", "model_best.pth"):
        assert_same_training(reference / name, run / name)
    assert tensorboard_scalars(log_dir) == tensorboard_scalars(reference_log_dir)
    print(f"{KILLS} SIGKILLs at batches {kill_points}; batches trained twice per kill {retrained}: "
          f"{sum(retrained)} = {sum(retrained) / BATCHES:.2f} epochs retrained; bit-identical: yes")
