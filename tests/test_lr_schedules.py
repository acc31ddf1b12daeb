"""Per-step LR schedules: OneCycleLR and warmup + cosine (SequentialLR) written in the config,
"auto" lengths computed from epochs, batches, accum_steps. Their exact resume (also with an EMA of
the weights) is in test_resume_exact.py's matrix."""
import json
import re

import pytest
import torch

import train
from config.validation import Problems
from conftest import only_run, run_dirs, tiny_config
from parse_config import ConfigParser
from reliability_helpers import run_train_in_process
from trainer.preflight import check_before_run
from trainer.schedules import build_lr_scheduler
from utils import ConfigError

# 512 digits, a quarter held out: 384 training samples = 12 batches of 32 = 6 optimizer steps
# with accum_steps 2, so a 2-epoch run has 12 scheduler steps
STEPS_PER_EPOCH, EPOCHS = 6, 2
ONE_CYCLE = {"type": "OneCycleLR", "interval": "step", "args": {"max_lr": 0.01, "total_steps": "auto"}}
WARMUP_COSINE = {"type": "SequentialLR", "interval": "step", "args": {
    "schedulers": [{"type": "LinearLR", "args": {"start_factor": 0.1, "total_iters": 4}},
                   {"type": "CosineAnnealingLR", "args": {"T_max": "auto", "eta_min": 1e-5}}],
    "milestones": [4]}}


def config_for(tmp_path, mnist_dir, scheduler, **updates):
    settings = {"lr_scheduler": scheduler, "trainer.accum_steps": 2, "trainer.epochs": EPOCHS, **updates}
    return ConfigParser(json.loads(tiny_config(tmp_path, mnist_dir, settings).read_text()), create_dirs=False)


def train_in_process(config_dict, tmp_path, resume=None, run_id=None):
    config = ConfigParser(config_dict, resume=resume, run_id=run_id)
    torch.set_num_threads(1)
    return train.main(config)


def reference_lrs(scheduler_factory, steps):
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    scheduler = scheduler_factory(optimizer)
    lrs = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_one_cycle_steps_after_every_optimizer_step(tmp_path, mnist_dir):
    config = config_for(tmp_path, mnist_dir, ONE_CYCLE)
    trainer = train_in_process(config.config, tmp_path)
    state = trainer.lr_scheduler.state_dict()
    assert state["total_steps"] == STEPS_PER_EPOCH * EPOCHS
    assert state["last_epoch"] == STEPS_PER_EPOCH * EPOCHS
    expected = reference_lrs(lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, 0.01, total_steps=12), 12)
    epoch_end_lrs = [entry["lr"] for entry in trainer.history]
    assert epoch_end_lrs == [expected[STEPS_PER_EPOCH - 1], expected[-1]]


def test_warmup_then_cosine_gets_the_remaining_steps(tmp_path, mnist_dir):
    config = config_for(tmp_path, mnist_dir, WARMUP_COSINE)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    scheduler = build_lr_scheduler(config, optimizer, STEPS_PER_EPOCH)
    warmup, cosine = scheduler._schedulers
    assert (warmup.total_iters, cosine.T_max) == (4, STEPS_PER_EPOCH * EPOCHS - 4)
    trainer = train_in_process(config.config, tmp_path)
    assert trainer.history[-1]["lr"] == pytest.approx(1e-5)  # the cosine's end, eta_min


def test_epoch_interval_auto_counts_epochs_and_default_is_unchanged(tmp_path, mnist_dir):
    cosine = {"type": "CosineAnnealingLR", "args": {"T_max": "auto"}}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert build_lr_scheduler(config_for(tmp_path, mnist_dir, cosine), optimizer, STEPS_PER_EPOCH).T_max == EPOCHS
    trainer = train_in_process(config_for(tmp_path, mnist_dir, {"type": "StepLR", "args": {
        "step_size": 1, "gamma": 0.5}}).config, tmp_path)
    assert [entry["lr"] for entry in trainer.history] == [0.002, 0.001]  # stepped after each epoch


@pytest.mark.parametrize("scheduler, message", [
    ({**ONE_CYCLE, "interval": "batch"}, "lr_scheduler.interval is 'batch'"),
    ({"type": "ReduceLROnPlateau", "interval": "step"}, "lr_scheduler is ReduceLROnPlateau with interval"),
    ({**WARMUP_COSINE, "args": {**WARMUP_COSINE["args"], "milestones": [4, 8]}}, "lr_scheduler.args.milestones"),
    ({"type": "SequentialLR", "args": {"schedulers": ["LinearLR"], "milestones": []}}, "lr_scheduler.args.schedulers"),
    ({"type": "SequentialLR", "args": {"schedulers": [{"type": "LinearLR", "args": {"warmup": 3}}], "milestones": []}},
     "lr_scheduler.args.schedulers.0.args do not fit LinearLR"),
])
def test_bad_schedule_is_reported_before_a_run_folder_exists(tmp_path, mnist_dir, scheduler, message):
    with pytest.raises(ConfigError) as err:  # the schema rejects some values already while reading
        config = config_for(tmp_path, mnist_dir, scheduler)
        check_config_objects(config)
        build_lr_scheduler(config, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 6)
    assert message in str(err.value), str(err.value)
    assert not (tmp_path / "saved").exists()


def check_config_objects(config):
    """The pre-run checks that build objects, raising their problems as one ConfigError."""
    problems = Problems()
    check_before_run(config, problems)
    problems.raise_if_any()


def test_training_a_finished_one_cycle_run_further_stops_before_training_and_says_how(tmp_path, mnist_dir,
                                                                                       monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"lr_scheduler": ONE_CYCLE, "trainer.epochs": 1,
                                               "data_loader.args.limit": 128})
    assert run_train_in_process(monkeypatch, capsys, "-c", config)[0] == 0
    run = only_run(tmp_path / "saved")
    files = sorted(p.name for p in run.iterdir())
    code, captured = run_train_in_process(monkeypatch, capsys, "-r", run, "-o", "trainer.epochs=2")
    assert code == 2 and "Traceback" not in captured.err
    assert sorted(p.name for p in run.iterdir()) == files  # nothing written to the run
    advice = re.search(r"python train\.py (-c \S+ -r \S+ -o trainer\.epochs=1)", captured.err)
    assert advice, captured.err
    assert run_train_in_process(monkeypatch, capsys, *advice.group(1).split())[0] == 0  # the advice works
    assert len(run_dirs(tmp_path / "saved")) == 2
