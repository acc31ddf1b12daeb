"""Writers: W&B offline next to TensorBoard, the hparams record, activation statistics."""
import os

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import only_run, run_script, tiny_config
from logger.activations import ActivationStats


class RecordingWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step=None):
        self.scalars.append((tag, step))


def test_activation_stats_every_n_training_passes():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    writer = RecordingWriter()
    ActivationStats(model, writer, every=2)
    for _ in range(4):
        model(torch.randn(5, 4))
    model.eval()
    model(torch.randn(5, 4))  # evaluation passes are not recorded
    steps = sorted({step for _, step in writer.scalars})
    tags = {tag for tag, _ in writer.scalars}
    assert steps == [1, 3]  # the step counts the training passes done, the recorded one included
    assert tags == {f"activations/{i}/{stat}" for i in ("0", "1", "2") for stat in ("mean", "std")}


def test_wandb_offline_and_tensorboard_hparams(tmp_path, mnist_dir):
    config = tiny_config(tmp_path, mnist_dir, {
        "trainer.epochs": 1, "trainer.tensorboard": True, "trainer.activation_stats": 4,
        "trainer.wandb": {"project": "template-tests"}, "data_loader.args.limit": 256})
    wandb_dir = tmp_path / "wandb_files"
    wandb_dir.mkdir()
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_SILENT": "true",
           "WANDB_API_KEY": "", "HOME": os.environ.get("HOME", str(tmp_path))}
    run_script("train.py", "-c", config, env=env, check=True)

    offline_runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1, list(wandb_dir.rglob("*"))
    assert list(offline_runs[0].glob("run-*.wandb")), list(offline_runs[0].iterdir())

    log_dir = tmp_path / "saved" / "log" / "Tiny" / only_run(tmp_path / "saved").name
    scalars = EventAccumulator(str(log_dir)).Reload().Tags()["scalars"]
    assert {"final/val_loss", "best/val_loss", "loss/train", "activations/fc2/std"} <= set(scalars)
    hparams = session_hparams(log_dir)
    assert hparams["optimizer.args.lr"].number_value == 0.002
    assert hparams["name"].string_value == "Tiny"


def session_hparams(log_dir):
    """The hyperparameters of the TensorBoard hparams record in `log_dir`."""
    for path in log_dir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    return HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info.hparams
    raise AssertionError(f"no hparams record in {log_dir}")
