"""Training killed with SIGKILL at random moments (seeded) and restarted each time with the same
command, `-r auto`, as a preemptible job would be: every restart resumes from the newest
checkpoint, no checkpoint is ever corrupt, and no more than one save period of work is lost."""
import random
import re
import signal
import time

import pytest

from conftest import run_dirs, run_script, tiny_config
from reliability_helpers import ONE_THREAD, ScriptProcess, load
from run.checkpoints import CHECKPOINT_PATTERN
from utils.checkpoint import load_checkpoint

KILLS = 10
SAVE_PERIOD = 2
SETTINGS = {"data_loader.args.limit": 256, "trainer.epochs": 1000, "trainer.save_period": SAVE_PERIOD,
            "trainer.keep_last": 2, "trainer.monitor": "min val_loss"}
EPOCH_LINE = re.compile(r"^\s+epoch\s+: (\d+)$", re.MULTILINE)
LOADING_LINE = re.compile(r"Loading checkpoint: (\S+)")


def resumed_epoch(output):
    """The epoch of the checkpoint a restart loaded, or None if it was killed before loading."""
    match = LOADING_LINE.search(output)
    return int(CHECKPOINT_PATTERN.search(match.group(1)).group(1)) if match else None


def newest_checkpoint_epoch(saved):
    """Load every checkpoint of every run (each must be intact); return the highest epoch saved."""
    epochs = [0]
    for run in run_dirs(saved):
        for path in run.glob("*.pth"):
            checkpoint = load_checkpoint(path)  # raises for a truncated or corrupt file
            assert [entry["epoch"] for entry in checkpoint["history"]] == list(range(1, checkpoint["epoch"] + 1)), \
                f"{path}: the history must run from epoch 1 without gaps or repeats"
            if CHECKPOINT_PATTERN.search(path.name):
                epochs.append(checkpoint["epoch"])
    return max(epochs)


def start_and_kill(config, delay):
    """Start `train.py -c config -r auto`, SIGKILL it `delay` s after it built the model (so the
    kill lands in training, validation or a save rather than in the imports); return its output."""
    training = ScriptProcess("train.py", "-c", config, "-r", "auto")
    training.wait_for(r"^MnistModel\(", timeout=600)  # generous: the machine may be busy
    time.sleep(delay)
    training.process.kill()
    assert training.finish() == -signal.SIGKILL, f"training ended on its own:\n{training.output}"
    assert "Traceback" not in training.output and "error:" not in training.output, training.output
    return training.output


@pytest.mark.slow
def test_random_sigkills_lose_at_most_one_save_period(tmp_path, mnist_dir):
    rng = random.Random(20261127)
    config = tiny_config(tmp_path, mnist_dir, SETTINGS)
    saved = tmp_path / "saved"
    checkpoint_epoch, temp_files = 0, set()
    for kill in range(KILLS):
        output = start_and_kill(config, delay=rng.uniform(0.0, 1.5))
        if kill == 0:
            assert "-r auto: no checkpoint in" in output and "starting a new run" in output
        assert resumed_epoch(output) in (None, checkpoint_epoch or None), "must resume from the newest checkpoint"
        completed = max([checkpoint_epoch, *map(int, EPOCH_LINE.findall(output))])
        temp_files |= set(saved.glob("models/*/*/.*.tmp"))  # left by a kill inside a save
        checkpoint_epoch = newest_checkpoint_epoch(saved)
        assert completed - checkpoint_epoch <= SAVE_PERIOD, f"lost epochs {checkpoint_epoch + 1}..{completed}"
    print(f"{KILLS} kills ({len(temp_files)} inside a save), newest checkpoint epoch {checkpoint_epoch}")

    final = run_script("train.py", "-c", config, "-r", "auto", "-o", f"trainer.epochs={checkpoint_epoch + 1}",
                       env=ONE_THREAD, check=True)
    assert resumed_epoch(final.stdout) == (checkpoint_epoch or None)
    last_run = max(run_dirs(saved), key=lambda run: run.stat().st_mtime)
    history = load(last_run / f"checkpoint-epoch{checkpoint_epoch + 1}.pth")["history"]
    assert [entry["epoch"] for entry in history] == list(range(1, checkpoint_epoch + 2))
    assert newest_checkpoint_epoch(saved) == checkpoint_epoch + 1
