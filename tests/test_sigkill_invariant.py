"""The strongest reliability invariant: a seeded CPU run with dropout, SIGKILLed at 8 seeded
random moments and resumed each time with the same `-r RUN_FOLDER` command, ends in one run
folder with each epoch once in metrics.csv, and with weights, optimizer state, metrics and
TensorBoard scalars bit-identical to a run that was never interrupted. The kills are placed by
training progress (a given batch's log line), not by wall-clock time, so a loaded machine only
makes the test slower, never different."""
import random
import re
import signal

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import only_run, run_script, tiny_config
from reliability_helpers import ONE_THREAD, ScriptProcess, assert_same_training

EPOCHS, BATCHES = 4, 6  # 256 digits, a quarter for validation, batches of 32
KILLS = 8
SETTINGS = {"data_loader.args.limit": 256, "trainer.epochs": EPOCHS, "trainer.verbosity": 2, "trainer.log_step": 1,
            "trainer.tensorboard": True, "trainer.monitor": "min val_loss", "lr_scheduler.args.step_size": 1}
BATCH_LINE = re.compile(r"Train Epoch: (\d+) \[(\d+)/")
RESUME_LINE = re.compile(r"Resume training from epoch (\d+)(?: after batch (\d+))?")


def position(epoch, batch):
    """Training batches done once `batch` (1-based) of `epoch` is done."""
    return (int(epoch) - 1) * BATCHES + int(batch)


def batch_line(done):
    epoch, batch = divmod(done - 1, BATCHES)
    return rf"Train Epoch: {epoch + 1} \[{batch + 1}/"


def train_until_killed(args, kill_at):
    """Start train.py, SIGKILL it right after the log line of batch `kill_at` (or of the first batch
    after where it resumed, if that is later); return (batches done when it resumed, when killed)."""
    training = ScriptProcess("train.py", *args)
    resumed_at = 0
    if "-r" in args:
        training.wait_for(RESUME_LINE.pattern)
        epoch, batch = RESUME_LINE.search(training.output).groups()
        resumed_at = position(epoch, batch or 0)
    training.wait_for(batch_line(max(kill_at, resumed_at + 1)))
    training.process.kill()
    assert training.finish() == -signal.SIGKILL, f"training ended before the kill:\n{training.output}"
    assert "Traceback" not in training.output, training.output
    return resumed_at, max(position(*match) for match in BATCH_LINE.findall(training.output))


def tensorboard_scalars(log_dir):
    """{tag: [(step, value), ...]} as TensorBoard shows it (purged events left out)."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_eight_sigkills_resumed_with_the_same_command_end_bit_identical(tmp_path, mnist_dir):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference_dir.mkdir(), killed_dir.mkdir()
    run_script("train.py", "-c", tiny_config(reference_dir, mnist_dir, SETTINGS), env=ONE_THREAD, check=True)
    reference = only_run(reference_dir / "saved")

    # kill points: 8 distinct batches after the first checkpoint, before the last batch
    kill_points = sorted(random.Random(20261127).sample(range(BATCHES + 1, EPOCHS * BATCHES - 1), KILLS))
    config = tiny_config(killed_dir, mnist_dir, SETTINGS)
    reached = train_until_killed(["-c", config], kill_points[0])[1]
    run = only_run(killed_dir / "saved")
    retrained = []
    for kill_at in kill_points[1:]:
        resumed_at, next_reached = train_until_killed(["-r", run], kill_at)
        retrained.append(reached - resumed_at)
        reached = next_reached
    final = run_script("train.py", "-r", run, env=ONE_THREAD, check=True)
    retrained.append(reached - position(*RESUME_LINE.search(final.stdout).groups(default=0)))

    assert only_run(killed_dir / "saved") == run
    assert all(0 <= batches <= BATCHES for batches in retrained), f"at most one partial epoch per kill: {retrained}"
    assert not list(killed_dir.rglob(".*.tmp"))
    log_dir, reference_log_dir = (folder.parents[2] / "log" / "Tiny" / folder.name for folder in (run, reference))
    assert list(pd.read_csv(log_dir / "metrics.csv")["epoch"]) == list(range(1, EPOCHS + 1))
    assert (log_dir / "metrics.csv").read_text() == (reference_log_dir / "metrics.csv").read_text()
    for name in (f"checkpoint-epoch{EPOCHS}.pth", "model_best.pth"):
        assert_same_training(reference / name, run / name)
    assert tensorboard_scalars(log_dir) == tensorboard_scalars(reference_log_dir)
    print(f"{KILLS} SIGKILLs at batches {kill_points}; batches trained twice per kill {retrained}: "
          f"{sum(retrained)} = {sum(retrained) / BATCHES:.2f} epochs retrained; bit-identical: yes")
