"""Loading checkpoints never runs code from them, a config from a checkpoint may only name
trusted modules, and resuming by folder skips damaged checkpoints with a warning."""
import logging
import os

import pytest
import torch

from config.resolve import import_config_module, is_trusted_module, resolve_type
from model.model import MnistModel
from reliability_helpers import run_train_in_process
from run.checkpoints import find_latest_checkpoint, find_newest_run_checkpoint
from utils import ConfigError
from utils.checkpoint import load_checkpoint


class CreatesMarkerWhenUnpickled:
    """Unpickling this calls open(marker, "w"): any code could run in its place."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def save_checkpoint(path, epoch=1, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "state_dict": MnistModel().state_dict(), **extra}, path)
    return path


def test_checkpoint_with_pickled_code_is_refused_and_nothing_runs(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "code_ran"
    evil = save_checkpoint(tmp_path / "evil.pth", payload=CreatesMarkerWhenUnpickled(marker))
    with pytest.raises(ConfigError, match=r"evil\.pth' was refused: it carries pickled code.*it names io\.open"):
        load_checkpoint(evil)
    code, captured = run_train_in_process(monkeypatch, capsys, "-r", evil)
    assert code == 2 and "carries pickled code" in captured.err and "Traceback" not in captured.err
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # what an unsafe loader would do: the payload runs
    assert marker.exists()


def test_resume_by_folder_skips_a_corrupt_newest_checkpoint_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint-epoch1.pth", epoch=1)
    good = save_checkpoint(run / "checkpoint-epoch2-step5.pth", epoch=2)
    corrupt = save_checkpoint(run / "checkpoint-epoch2.pth", epoch=2)
    corrupt.write_bytes(corrupt.read_bytes()[:-100])
    save_checkpoint(run / "model_best.pth", epoch=9)  # never a resume candidate
    with caplog.at_level(logging.WARNING):
        assert find_latest_checkpoint(run) == good
    assert [record.levelno for record in caplog.records if str(corrupt) in record.getMessage()] == [logging.WARNING]


def test_auto_resume_picks_the_newest_run_that_has_a_valid_checkpoint(tmp_path):
    runs = tmp_path / "models" / "Tiny"
    assert find_newest_run_checkpoint(runs) is None  # nothing yet: -r auto starts a new run
    older = save_checkpoint(runs / "0101_000000" / "checkpoint-epoch4.pth", epoch=4)
    broken = save_checkpoint(runs / "0101_000100" / "checkpoint-epoch6.pth", epoch=6)
    broken.write_bytes(b"")
    (runs / "0101_000200").mkdir()  # killed before its first save
    for age, run in enumerate(sorted(runs.iterdir())):
        os.utime(run, (1000 + age, 1000 + age))
    assert find_newest_run_checkpoint(runs) == older


@pytest.mark.parametrize("module, trusted", [
    ("model.model", True), ("data_loader.data_loaders", True), ("torch.nn", True), ("torchvision.models", True),
    ("torch.hub", False), ("torch", False), ("torch.utils.cpp_extension", False), ("torchvision.models._api", False),
    ("os", False), ("modelling", False),
])
def test_only_project_modules_and_model_namespaces_are_trusted(module, trusted):
    assert is_trusted_module(module) == trusted


def test_untrusted_config_needs_the_trust_flag_for_other_modules_and_private_names():
    with pytest.raises(ConfigError, match=r"arch\.module is 'torch\.hub'.*pass --trust"):
        import_config_module("torch.hub", "arch", trusted=False)
    assert import_config_module("torch.hub", "arch", trusted=True) is torch.hub
    with pytest.raises(ConfigError, match=r"'_api' is a private name"):
        resolve_type({"type": "_api", "module": "torchvision.models"}, "arch", trusted=False)
