"""The exact-resume matrix: a run stopped by a real SIGTERM inside an epoch and resumed from its
folder, and new runs started from its earlier checkpoints, end bit-identical to the run that
never stopped: weights, optimizer, scheduler, averaged weights, metrics history, best value,
early-stop count, random states and metrics.csv. One case per thing a checkpoint must carry
(dropout, per-step schedules with accumulation, EMA, SWA with batch norm, validations and saves
inside epochs, each data path). Runs are in this process; the subprocess kill test is
test_sigkill_invariant.py, DDP resumes are in test_distributed.py."""
import json
import os
import shutil
import signal
from dataclasses import dataclass, field

import pytest
from test_data_workflows import csv_config, digits, folder_config, loader_of, wine  # noqa: F401 (fixtures)
from test_lr_schedules import ONE_CYCLE, WARMUP_COSINE

from conftest import only_run, run_dirs, tiny_config
from reliability_helpers import assert_same_training, load, run_train_in_process
from run.checkpoints import find_latest_checkpoint
from trainer import Trainer

# a small network with batch norm, so that SWA's update_bn has statistics to recompute
BATCH_NORM_MODEL = {"type": "SmallCnn", "args": {"width": 4, "dropout": 0.1}}


@dataclass
class Case:
    """make(tmp_path, data) writes the config (run "Tiny" under tmp_path/saved); the run is
    stopped by SIGTERM during batch `stop_batch` (0-based) of epoch `stop_epoch` and must have
    saved `batches_done` batches of it; new runs also start from each of `starts` (files of the
    stopped run); `compare` are the files that must be identical at the end."""
    make: object
    epochs: int = 2
    stop_batch: int = 2
    batches_done: int = 3
    starts: tuple = ("checkpoint-epoch1.pth",)
    compare: tuple = ("model_best.pth",)
    check: object = field(default=None)  # extra checks on (reference run folder, stop checkpoint)

    @property
    def stop_epoch(self):
        return self.epochs


def mnist(updates):
    def make(tmp_path, data):
        tmp_path.mkdir(parents=True, exist_ok=True)
        return tiny_config(tmp_path, data["mnist"], updates)
    return make


def one_cycle_counts_optimizer_steps(reference, stop):
    # 6 batches per epoch, accum_steps 2: 3 scheduler steps per epoch
    assert load(reference / "checkpoint-epoch2.pth")["lr_scheduler"]["total_steps"] == 6
    assert stop["lr_scheduler"]["last_epoch"] == 3 + 2


def swa_stops_the_schedule_when_it_starts(reference, stop):
    assert load(reference / "checkpoint-epoch3.pth")["lr_scheduler"]["last_epoch"] == 6  # epoch 1's steps only
    assert stop["swa"]["updates"] == 1  # the average of epoch 2's end, carried into epoch 3


def data_path(in_memory, augmented=False):
    """The case runs on the data path it is about."""
    def check(reference, stop):
        loader = loader_of(reference / "config.json")
        assert loader.in_memory == in_memory
        assert not augmented or loader.batches.augment is not None
    return check


# 256 digits, a quarter held out: 6 batches of 32 per epoch, 3 optimizer steps with accumulation
ACCUMULATED = {"data_loader.args.limit": 256, "trainer.accum_steps": 2}
CASES = {
    # dropout and a per-epoch StepLR; 24 batches of 8 per epoch
    "mnist_dropout": Case(mnist({"data_loader.args.limit": 256, "data_loader.args.batch_size": 8,
                                 "trainer.early_stop": 5, "lr_scheduler.args.step_size": 1})),
    # per-step schedules with 2 accumulation steps: a stop inside an accumulation window is
    # saved after the window's optimizer step
    "one_cycle": Case(mnist({"lr_scheduler": ONE_CYCLE, **ACCUMULATED}), stop_batch=2, batches_done=4,
                      check=one_cycle_counts_optimizer_steps),
    "warmup_cosine": Case(mnist({"lr_scheduler": WARMUP_COSINE, **ACCUMULATED}), stop_batch=2, batches_done=4),
    "one_cycle_ema": Case(mnist({"lr_scheduler": ONE_CYCLE, "trainer.ema": {"decay": 0.9}, **ACCUMULATED}),
                          stop_batch=2, batches_done=4),
    # SWA from epoch 2, annealing over 2 epochs, after a per-step OneCycle: new runs start before
    # SWA and after its first epoch, the stop is inside an SWA epoch
    "swa_batch_norm": Case(mnist({"data_loader.args.limit": 256, "arch": BATCH_NORM_MODEL, "loss": "cross_entropy",
                                  "lr_scheduler": ONE_CYCLE, "trainer.epochs": 3,
                                  "trainer.swa": {"start_epoch": 2, "lr": 0.0005, "anneal_epochs": 2}}),
                           epochs=3, stop_batch=5, batches_done=6,
                           starts=("checkpoint-epoch1.pth", "checkpoint-epoch2.pth"),
                           compare=("model_best.pth", "model_swa.pth"), check=swa_stops_the_schedule_when_it_starts),
    # 6 steps per epoch: saves after steps 5 and 10, validations after 4, 8 and 12; a new run from
    # the step-5 file must carry the validation of step 4 into epoch 1's row
    "steps_inside_epochs": Case(mnist({"data_loader.args.limit": 256, "trainer.save_every_n_steps": 5,
                                       "trainer.val_every_n_steps": 4, "trainer.save_top_k": 2,
                                       "lr_scheduler.args.step_size": 1}),
                                starts=("checkpoint-epoch1-step5.pth",)),
    # the data paths: decoded into memory with batched augmentation, per sample from a CSV, and
    # per sample with random transforms in worker processes
    "folder_in_memory_augmented": Case(lambda tmp_path, data: folder_config(tmp_path, data["digits"]),
                                       check=data_path(in_memory=True, augmented=True)),
    "csv_per_sample": Case(lambda tmp_path, data: csv_config(tmp_path, data["wine"]), check=data_path(in_memory=False)),
    "folder_per_sample_workers": Case(lambda tmp_path, data: folder_config(tmp_path, data["digits"], in_memory=False,
                                                                           num_workers=2),
                                      check=data_path(in_memory=False)),
}


def sigterm_at(monkeypatch, epoch, batch_idx):
    """Send this process a real SIGTERM while the trainer runs batch `batch_idx` of `epoch`."""
    real_step = Trainer._train_step

    def step(self, data, target, index):
        if index == batch_idx and len(self.history) == epoch - 1 and self.stop_signal is None:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, data, target, index)

    monkeypatch.setattr(Trainer, "_train_step", step)


def train(monkeypatch, capsys, *argv, expected=0):
    code, captured = run_train_in_process(monkeypatch, capsys, *argv)
    assert code == expected, captured.err
    return code


def metrics_csv(run):
    return (run.parents[2] / "log" / run.parent.name / run.name / "metrics.csv").read_text()


def assert_same_run(reference, run, case):
    for name in (f"checkpoint-epoch{case.epochs}.pth", *case.compare):
        assert_same_training(reference / name, run / name)
    assert metrics_csv(run) == metrics_csv(reference)


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_stopped_and_resumed_runs_end_bit_identical(case, tmp_path, mnist_dir, digits, wine, monkeypatch,  # noqa: F811
                                                    capsys):
    data = {"mnist": mnist_dir, "digits": digits, "wine": wine}
    train(monkeypatch, capsys, "-c", case.make(tmp_path / "reference", data))
    reference = only_run(tmp_path / "reference" / "saved")

    # a real SIGTERM inside the last epoch: the step finishes, the position is saved, exit 143
    with monkeypatch.context() as patch:
        sigterm_at(patch, case.stop_epoch, case.stop_batch)
        train(monkeypatch, capsys, "-c", case.make(tmp_path / "stopped", data), expected=128 + signal.SIGTERM)
    stopped_run = only_run(tmp_path / "stopped" / "saved")
    assert json.loads((stopped_run / "status.json").read_text())["signal"] == "SIGTERM"
    assert not (stopped_run / f"checkpoint-epoch{case.epochs}.pth").exists()
    stop_file = find_latest_checkpoint(stopped_run)  # what -r RUN_FOLDER continues
    stop = load(stop_file)
    assert stop_file.name == f"checkpoint-epoch{case.stop_epoch}-step{case.batches_done}.pth"
    assert (stop["epoch"], stop["batches_done"]) == (case.stop_epoch, case.batches_done)
    assert [row["epoch"] for row in stop["history"]] == list(range(1, case.stop_epoch))
    if case.check:
        case.check(reference, stop)

    train(monkeypatch, capsys, "-r", stopped_run)
    status = json.loads((stopped_run / "status.json").read_text())
    assert (status["status"], status["resumed_from"]) == ("finished", str(stop_file))
    assert_same_run(reference, stopped_run, case)

    # new runs from earlier files of the run, copied outside any run folder
    for start in case.starts:
        elsewhere = tmp_path / "elsewhere" / start
        elsewhere.parent.mkdir(exist_ok=True)
        shutil.copy(stopped_run / start, elsewhere)
        before = set(run_dirs(tmp_path / "stopped" / "saved"))
        train(monkeypatch, capsys, "-r", elsewhere)
        (new_run,) = set(run_dirs(tmp_path / "stopped" / "saved")) - before
        assert json.loads((new_run / "status.json").read_text())["resumed_from"] == str(elsewhere)
        assert_same_run(reference, new_run, case)
