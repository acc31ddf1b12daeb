"""trainer.save_top_k, save_last, save_every_n_steps and val_every_n_steps: the files each
writes and what they hold (runs resumed from them: test_resume_exact.py's matrix)."""
import json

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_policies import run_scripted
from test_schema import problems_of, template_config

from conftest import only_run, tiny_config
from reliability_helpers import load, run_train_in_process
from run.checkpoints import LAST_CHECKPOINT, TopK, find_latest_checkpoint, is_top_k_file
from utils.checkpoint import Key
from utils.monitor import Monitor

# 256 digits, a quarter for validation: 6 training batches of 32 per epoch
SMALL = {"data_loader.args.limit": 256}


def top_k_files(run):
    return sorted(path.name for path in run.glob("checkpoint-epoch*.pth") if is_top_k_file(path))


def train(tmp_path, mnist_dir, monkeypatch, capsys, settings, *extra):
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", tiny_config(tmp_path, mnist_dir, settings),
                                          *extra)
    assert code == 0, captured.err
    return only_run(tmp_path / "saved")


def valid_scalars(run, tag="loss/valid"):
    events = EventAccumulator(str(run.parents[2] / "log" / "Tiny" / run.name), size_guidance={"scalars": 0}).Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


# ---- save_top_k ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, values, kept", [
    ("min", [5, 3, 4, 1, 2], [1, 2]),
    ("max", [5, 3, 4, 1, 2], [5, 4]),
    ("min", [2, 2, 2], [2, 2]),  # a tie with the worst kept one does not enter
])
def test_top_k_keeps_the_k_best_values(mode, values, kept):
    top_k = TopK(2, Monitor(f"{mode} val_loss"))
    for epoch, value in enumerate(values, 1):
        top_k.offer(f"e{epoch}", value)
    assert [value for _, value in top_k.kept] == kept
    if values == [2, 2, 2]:
        assert [name for name, _ in top_k.kept] == ["e1", "e2"]


def test_save_top_k_keeps_exactly_k_files_named_by_their_values(tmp_path):
    trainer, run = run_scripted(tmp_path, [0.5, 0.3, 0.4, 0.0412, 0.2], monitor="min val_loss", save_top_k=2,
                                keep_last=1)
    assert top_k_files(run) == ["checkpoint-epoch4-val_loss=0.0412.pth", "checkpoint-epoch5-val_loss=0.2.pth"]
    for name, epoch, value in [(top_k_files(run)[0], 4, 0.0412), (top_k_files(run)[1], 5, 0.2)]:
        saved = load(run / name)
        assert saved[Key.EPOCH] == epoch and saved["history"][-1]["val_loss"] == value
    assert load(run / "model_best.pth")[Key.EPOCH] == 4
    assert sorted(p.name for p in run.glob("checkpoint-epoch?.pth")) == ["checkpoint-epoch5.pth"]  # keep_last
    kept = trainer.checkpoint_policy.top_k.kept
    assert load(run / "checkpoint-epoch5.pth")[Key.TOP_K] == [[name, value] for name, value in kept]


def test_save_top_k_without_a_monitor_is_a_config_error(tmp_path, mnist_dir, monkeypatch, capsys):
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", tiny_config(
        tmp_path, mnist_dir, {"trainer.save_top_k": 2, "trainer.monitor": "off"}))
    assert code == 2 and "trainer.save_top_k" in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "saved").exists()


# ---- save_last ---------------------------------------------------------------------------------
def test_checkpoint_last_is_replaced_at_every_save_and_resume_by_folder_takes_it(tmp_path, mnist_dir, monkeypatch,
                                                                                capsys):
    # save_period 10: epoch 1 is only in checkpoint-last, the last epoch is also checkpoint-epoch<N>
    settings = {**SMALL, "trainer.save_last": True, "trainer.save_period": 10, "trainer.monitor": "off"}
    run = train(tmp_path, mnist_dir, monkeypatch, capsys, {**settings, "trainer.epochs": 1})
    assert sorted(p.name for p in run.glob("checkpoint-*.pth")) == ["checkpoint-epoch1.pth", LAST_CHECKPOINT]
    (run / "checkpoint-epoch1.pth").unlink()  # from here on, only checkpoint-last holds the run's state

    code, captured = run_train_in_process(monkeypatch, capsys, "-r", run, "-o", "trainer.epochs=3")
    assert code == 0, captured.err
    resumed_from = json.loads((run / "status.json").read_text())["resumed_from"]
    assert resumed_from == str(run / LAST_CHECKPOINT)
    last = load(run / LAST_CHECKPOINT)
    assert last[Key.EPOCH] == 3 and [row["epoch"] for row in last[Key.HISTORY]] == [1, 2, 3]
    assert sorted(p.name for p in run.glob("checkpoint-*.pth")) == ["checkpoint-epoch3.pth", LAST_CHECKPOINT]


def test_resume_by_folder_places_checkpoint_last_by_the_position_it_holds(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = {"epoch": 2, "batches_done": 0, "state_dict": {}}
    torch.save(checkpoint, run / "checkpoint-epoch2.pth")
    torch.save({**checkpoint, "epoch": 3, "batches_done": 4}, run / LAST_CHECKPOINT)
    assert find_latest_checkpoint(run) == run / LAST_CHECKPOINT  # newer than any named file
    torch.save({**checkpoint, "epoch": 1}, run / LAST_CHECKPOINT)  # a save killed before it was replaced
    assert find_latest_checkpoint(run) == run / "checkpoint-epoch2.pth"


# ---- save_every_n_steps ------------------------------------------------------------------------
def test_step_checkpoints_are_written_every_n_steps_across_epochs(tmp_path, mnist_dir, monkeypatch, capsys):
    # 6 steps per epoch: saves after steps 5 and 10 (step 4 of epoch 2); resuming from them
    # exactly is a case of test_resume_exact.py's matrix
    reference = train(tmp_path, mnist_dir, monkeypatch, capsys, {**SMALL, "trainer.save_every_n_steps": 5})
    steps = sorted(p.name for p in reference.glob("checkpoint-epoch*-step*.pth"))
    assert steps == ["checkpoint-epoch1-step5.pth", "checkpoint-epoch2-step4.pth"]
    assert load(reference / "checkpoint-epoch1-step5.pth")[Key.BATCHES_DONE] == 5
    assert load(reference / "checkpoint-epoch2-step4.pth")[Key.BATCHES_DONE] == 4


def test_keep_last_prunes_step_checkpoints_with_the_epoch_ones(tmp_path, mnist_dir, monkeypatch, capsys):
    run = train(tmp_path, mnist_dir, monkeypatch, capsys,
                {**SMALL, "trainer.save_every_n_steps": 1, "trainer.keep_last": 2})
    assert sorted(p.name for p in run.glob("checkpoint-*.pth")) == ["checkpoint-epoch2-step6.pth",
                                                                   "checkpoint-epoch2.pth"]


# ---- val_every_n_steps -------------------------------------------------------------------------
@pytest.mark.parametrize("every, steps", [(4, [4, 8, 12]), (0.5, [3, 6, 9, 12])])
def test_validations_inside_epochs_are_logged_at_their_step_and_model_best_follows(
        tmp_path, mnist_dir, monkeypatch, capsys, every, steps):
    run = train(tmp_path, mnist_dir, monkeypatch, capsys,
                {**SMALL, "trainer.val_every_n_steps": every, "trainer.monitor": "min val_loss",
                 "trainer.tensorboard": True, "trainer.save_top_k": 2})
    validations = valid_scalars(run)
    assert [step for step, _ in validations] == steps
    best_step, best_value = min(validations, key=lambda entry: entry[1])
    best = load(run / "model_best.pth")
    assert (best[Key.EPOCH] - 1) * 6 + (best[Key.BATCHES_DONE] or 6) == best_step
    assert best[Key.MONITOR_BEST] == pytest.approx(best_value, rel=1e-6)
    assert len(top_k_files(run)) == 2
    assert min(value for _, value in load(run / "checkpoint-epoch2.pth")[Key.TOP_K]) == best[Key.MONITOR_BEST]
    # the epoch rows carry the epoch's last validation
    log_dir = run.parents[2] / "log" / "Tiny" / run.name
    rows = pd.read_csv(log_dir / "metrics.csv")
    last_in_epoch = {(step - 1) // 6 + 1: value for step, value in validations}
    assert list(rows["val_loss"]) == pytest.approx([last_in_epoch[1], last_in_epoch[2]], rel=1e-6)


def test_early_stopping_counts_validations_and_ends_the_epoch_there(tmp_path, mnist_dir, monkeypatch, capsys):
    # the validation loss falls, so "max val_loss" never improves after the first validation
    run = train(tmp_path, mnist_dir, monkeypatch, capsys,
                {**SMALL, "trainer.val_every_n_steps": 2, "trainer.monitor": "max val_loss",
                 "trainer.early_stop": 2, "trainer.epochs": 3, "trainer.tensorboard": True})
    assert [step for step, _ in valid_scalars(run)] == [2, 4, 6]
    final = load(run / "checkpoint-epoch1.pth")
    assert final[Key.EPOCHS_SINCE_IMPROVEMENT] == 2 and [row["epoch"] for row in final[Key.HISTORY]] == [1]
    assert not list(run.glob("checkpoint-epoch2*"))


def test_reduce_lr_on_plateau_steps_after_each_validation(tmp_path, mnist_dir, monkeypatch, capsys):
    run = train(tmp_path, mnist_dir, monkeypatch, capsys,
                {**SMALL, "trainer.val_every_n_steps": 3, "trainer.monitor": "min val_loss",
                 "lr_scheduler": {"type": "ReduceLROnPlateau", "args": {"mode": "min", "patience": 0}}})
    scheduler = load(run / "checkpoint-epoch2.pth")[Key.LR_SCHEDULER]
    assert scheduler["last_epoch"] == 4  # 12 optimizer steps, a validation every 3


@pytest.mark.parametrize("value, problem", [
    (1.5, "trainer.val_every_n_steps is 1.5; write a whole number of optimizer steps"),
    (0, "trainer.val_every_n_steps is 0; it must be above 0"),
    (-0.5, "trainer.val_every_n_steps is -0.5; write a whole number"),
    (0.25, None), (500, None), (None, None),
])
def test_val_every_n_steps_takes_steps_or_a_fraction_of_an_epoch(tmp_path, value, problem):
    config = template_config(tmp_path)
    config["trainer"]["val_every_n_steps"] = value
    problems = problems_of(config)
    assert (problems[0].startswith(problem) and len(problems) == 1) if problem else problems == []
