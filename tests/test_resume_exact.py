"""A run that is stopped and resumed ends bit-identical to one that never stopped: weights,
optimizer, scheduler, metrics history, best value and random states (MnistModel has dropout,
so a random state restored wrongly changes the weights)."""
import re
import signal

import pytest

from conftest import only_run, run_script, tiny_config
from reliability_helpers import ONE_THREAD, ScriptProcess, assert_same_training, load

EPOCHS = 3
SETTINGS = {"data_loader.args.batch_size": 8, "data_loader.args.limit": 256, "trainer.epochs": EPOCHS,
            "trainer.verbosity": 2, "trainer.log_step": 1, "trainer.early_stop": 5, "lr_scheduler.args.step_size": 1}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, mnist_dir):
    """The uninterrupted run: its run folder and its log folder."""
    tmp_path = tmp_path_factory.mktemp("reference")
    run_script("train.py", "-c", tiny_config(tmp_path, mnist_dir, SETTINGS), env=ONE_THREAD, check=True)
    run = only_run(tmp_path / "saved")
    return run, tmp_path / "saved" / "log" / "Tiny" / run.name


def assert_matches_reference(reference_run, resumed_run):
    reference, reference_log = reference_run
    resumed_log = resumed_run.parents[2] / "log" / "Tiny" / resumed_run.name
    assert_same_training(reference / f"checkpoint-epoch{EPOCHS}.pth", resumed_run / f"checkpoint-epoch{EPOCHS}.pth")
    assert_same_training(reference / "model_best.pth", resumed_run / "model_best.pth")
    assert (resumed_log / "metrics.csv").read_text() == (reference_log / "metrics.csv").read_text()


@pytest.mark.slow
def test_resume_after_an_epoch_is_bit_identical(tmp_path, mnist_dir, reference_run):
    config = tiny_config(tmp_path, mnist_dir, SETTINGS)
    run_script("train.py", "-c", config, "-o", "trainer.epochs=1", env=ONE_THREAD, check=True)
    first = only_run(tmp_path / "saved")
    resumed = run_script("train.py", "-r", first / "checkpoint-epoch1.pth", "-o", f"trainer.epochs={EPOCHS}",
                         env=ONE_THREAD, check=True)
    assert "Resume training from epoch 2" in resumed.stdout
    assert only_run(tmp_path / "saved") == first  # the run goes on in its own folder
    assert load(first / f"checkpoint-epoch{EPOCHS}.pth")["history"][0]["epoch"] == 1
    assert_matches_reference(reference_run, first)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_position_and_resume_continues_at_next_batch(tmp_path, mnist_dir, reference_run):
    config = tiny_config(tmp_path, mnist_dir, SETTINGS)
    training = ScriptProcess("train.py", "-c", config)
    training.wait_for(r"Train Epoch: 2 \[1/")  # the first batch of epoch 2 is done
    training.process.send_signal(signal.SIGTERM)
    assert training.finish() == 128 + signal.SIGTERM
    output = training.output
    assert "Received SIGTERM: finishing the current step" in output
    assert "Traceback" not in output
    stop_path = re.search(r"Resume with:\n\s+python train.py -r (\S+)", output).group(1)
    stopped = load(stop_path)
    batches_done = stopped["batches_done"]
    assert stop_path.endswith(f"checkpoint-epoch2-step{batches_done}.pth")
    assert stopped["epoch"] == 2 and 1 <= batches_done < 24, "the stop must land inside epoch 2"
    assert [entry["epoch"] for entry in stopped["history"]] == [1]

    resumed = run_script("train.py", "-r", stop_path, env=ONE_THREAD, check=True)
    assert f"Resume training from epoch 2 after batch {batches_done}" in resumed.stdout
    assert re.search(rf"Train Epoch: 2 \[{batches_done + 1}/24", resumed.stdout), "must not restart the epoch"
    assert_matches_reference(reference_run, only_run(tmp_path / "saved"))
