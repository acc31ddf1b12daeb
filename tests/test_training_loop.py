"""The epoch loop as a user sees it: best model, early stop, save period, resume, schedules,
iteration-based epochs, TensorBoard, checkpoints loadable with weights_only=True. train.py runs
in this process (the scripted-sequence rules are in test_policies.py)."""
import pandas as pd
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import PROJECT_ROOT, only_run, run_dirs, tiny_config
from reliability_helpers import run_in_process


@pytest.fixture
def train(monkeypatch, capsys):
    """train.py with these arguments, in this process; fails the test unless it exits 0."""
    return lambda *argv: run_in_process(monkeypatch, capsys, "train", *argv, check=True)[1]


def metrics_csv(save_dir, run, name="Tiny"):
    return pd.read_csv(save_dir / "log" / name / run.name / "metrics.csv")

SMALL = {"data_loader.args.limit": 256}  # 6 batches per epoch, where the count does not matter

# The lr used in each epoch is logged and can be monitored: with MultiStepLR(milestones [2, 3],
# gamma 0.5) it is 1, 1, 0.5, 0.25, 0.25, ... so "min lr" improves exactly at epochs 1, 3, 4.
LR_SCHEDULE = {"optimizer.type": "SGD", "optimizer.args": {"lr": 1.0e-2},
               "lr_scheduler": {"type": "MultiStepLR", "args": {"milestones": [2, 3], "gamma": 0.5}}}


def test_best_early_stop_and_save_period_epoch_by_epoch(tmp_path, mnist_dir, train):
    config = tiny_config(tmp_path, mnist_dir, {**LR_SCHEDULE, **SMALL, "trainer.epochs": 10, "trainer.save_period": 4,
                                               "trainer.monitor": "min lr", "trainer.early_stop": 2})
    train("-c", config)
    # epochs 5 and 6 do not improve: early stop after exactly 2 epochs, at epoch 6
    history = metrics_csv(tmp_path / "saved", only_run(tmp_path / "saved"))
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert history["lr"].tolist() == pytest.approx([1e-2, 1e-2, 5e-3, 2.5e-3, 2.5e-3, 2.5e-3])
    run = only_run(tmp_path / "saved")
    # save_period 4 -> epoch 4; the early-stop epoch is saved too so the run can be continued
    assert sorted(p.name for p in run.glob("*.pth")) == ["checkpoint-epoch4.pth", "checkpoint-epoch6.pth",
                                                         "model_best.pth"]
    assert torch.load(run / "model_best.pth", weights_only=True)["epoch"] == 4


def test_checkpoint_is_plain_and_resume_continues_epochs_and_schedule(tmp_path, mnist_dir, train):
    updates = {"optimizer.type": "SGD", "optimizer.args": {"lr": 0.04, "momentum": 0.9},
               "lr_scheduler": {"type": "StepLR", "args": {"step_size": 1, "gamma": 0.5}}}
    config = tiny_config(tmp_path, mnist_dir, {**updates, **SMALL})
    train("-c", config)
    first_run = only_run(tmp_path / "saved")
    checkpoint = torch.load(first_run / "checkpoint-epoch2.pth", weights_only=True)
    assert {"arch", "epoch", "state_dict", "optimizer", "lr_scheduler", "monitor_best", "epochs_since_improvement",
            "config", "rng_states", "history"} <= set(checkpoint)
    assert not any(key.startswith("module.") for key in checkpoint["state_dict"])
    assert isinstance(checkpoint["config"], dict) and checkpoint["arch"] == "MnistModel"

    train("-r", first_run / "checkpoint-epoch2.pth", "-o", "trainer.epochs=4")
    assert run_dirs(tmp_path / "saved") == [first_run]  # the run goes on in its own folder
    assert sorted(p.name for p in first_run.glob("checkpoint-*")) == [f"checkpoint-epoch{e}.pth" for e in (1, 2, 3, 4)]
    history = metrics_csv(tmp_path / "saved", first_run)
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["lr"].tolist() == pytest.approx([0.04, 0.02, 0.01, 0.005])


def test_len_epoch_runs_exactly_that_many_steps(tmp_path, mnist_dir, train):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.len_epoch": 5, "trainer.epochs": 3, **SMALL})
    train("-c", config)
    checkpoint = torch.load(only_run(tmp_path / "saved") / "checkpoint-epoch3.pth", weights_only=True)
    adam_steps = {int(state["step"]) for state in checkpoint["optimizer"]["state"].values()}
    assert adam_steps == {15}


@pytest.mark.curves  # the learning curves go to TensorBoard too
def test_tensorboard_events_hold_the_expected_tags(tmp_path, mnist_dir, train):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.tensorboard": True, "trainer.log_step": 4})
    train("-c", config)
    events = EventAccumulator(str(tmp_path / "saved" / "log" / "Tiny" / only_run(tmp_path / "saved").name),
                              size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ["loss/train", "loss/valid", "accuracy/train", "accuracy/valid", "top_k_acc/valid",
                "learning_rate", "train_step/loss"]:
        assert tag in tags["scalars"], tag
    # the step is the number of training batches done: 12 per epoch
    assert [e.step for e in events.Scalars("loss/valid")] == [12, 24]
    # logged every 4 batches and at the epoch's last batch
    assert [e.step for e in events.Scalars("train_step/loss")] == [1, 5, 9, 12, 13, 17, 21, 24]
    assert sorted(tags["images"]) == ["curves", "input"] and len(events.Images("input")) == 2
    # the learning curves once, at the step of the last epoch's end, as big as curves.png
    (curves,) = events.Images("curves")
    with Image.open(tmp_path / "saved" / "log" / "Tiny" / only_run(tmp_path / "saved").name / "curves.png") as png:
        assert (curves.step, curves.width, curves.height) == (24, *png.size)
    assert "params/conv1.weight" in tags["histograms"]


def test_original_pytorch_template_config_runs_unchanged(tmp_path, mnist_dir, train, monkeypatch):
    """The template's config.json, byte for byte, run from a folder holding data/ as it expects."""
    (tmp_path / "data").symlink_to(mnist_dir, target_is_directory=True)
    template_config = PROJECT_ROOT / "tests" / "fixtures" / "template_config.json"
    monkeypatch.chdir(tmp_path)
    train("-c", template_config, "-o", "trainer.epochs=1", "-o", "+data_loader.args.limit=1024")
    run = only_run(tmp_path / "saved", name="Mnist_LeNet")
    assert "val_accuracy" in metrics_csv(tmp_path / "saved", run, name="Mnist_LeNet").columns
    assert (run / "checkpoint-epoch1.pth").exists() and (run / "model_best.pth").exists()
    assert (tmp_path / "saved" / "log" / "Mnist_LeNet" / run.name / "info.log").exists()


def test_reduce_lr_on_plateau_steps_on_the_monitored_value(tmp_path, mnist_dir, train):
    # Monitoring the lr itself makes the plateau deterministic: every second epoch repeats the
    # previous lr, which (patience 0) halves it. Fed val_loss instead, the sequence would differ.
    updates = {"optimizer.type": "SGD", "optimizer.args": {"lr": 0.01}, "trainer.epochs": 6, **SMALL,
               "trainer.monitor": "min lr",
               "lr_scheduler": {"type": "ReduceLROnPlateau", "args": {"patience": 0, "factor": 0.5}}}
    train("-c", tiny_config(tmp_path, mnist_dir, updates))
    history = metrics_csv(tmp_path / "saved", only_run(tmp_path / "saved"))
    assert history["lr"].tolist() == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])


def test_config_plus_checkpoint_fine_tunes_from_epoch_one(tmp_path, mnist_dir, train, finished_run):
    source = finished_run / "model_best.pth"
    new_config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1, "optimizer.args.lr": 1e-9}, name="Tuned")
    train("-c", new_config, "-r", source)
    tuned = torch.load(only_run(tmp_path / "saved", name="Tuned") / "checkpoint-epoch1.pth", weights_only=True)
    original = torch.load(source, weights_only=True)
    assert tuned["epoch"] == 1 and tuned["config"]["optimizer"]["args"]["lr"] == 1e-9
    # with lr 1e-9 one epoch barely moves the weights: they started from the checkpoint
    for name, weight in original["state_dict"].items():
        assert torch.allclose(tuned["state_dict"][name], weight, atol=1e-5), name


def test_resume_auto_continues_the_newest_run_of_the_config(tmp_path, train, finished_run):
    train("-c", tmp_path / "Tiny.json", "-r", "auto", "-o", "trainer.epochs=2")  # the config finished_run ran
    (run,) = run_dirs(tmp_path / "saved")  # -r auto went on in the same run folder
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-epoch1.pth", "checkpoint-epoch2.pth"]
    assert metrics_csv(tmp_path / "saved", run)["epoch"].tolist() == [1, 2]


# the epochs each drawing of curves.png showed: a short run draws once, after its last epoch;
# with no minimum interval, after every epoch
@pytest.mark.curves
@pytest.mark.parametrize("redraw_seconds, epochs_drawn", [(60, [3]), (0, [1, 2, 3])])
def test_curves_are_redrawn_at_most_every_minute_and_when_training_ends(tmp_path, mnist_dir, train, monkeypatch,
                                                                         redraw_seconds, epochs_drawn):
    import evaluation.curves
    import trainer.base_trainer

    drawings = []
    monkeypatch.setattr(trainer.base_trainer, "CURVES_REDRAW_SECONDS", redraw_seconds)
    monkeypatch.setattr(evaluation.curves, "write_curves", lambda runs, path: drawings.append(len(runs[0][1])))
    train("-c", tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 3, "data_loader.args.limit": 128}))
    assert drawings == epochs_drawn
