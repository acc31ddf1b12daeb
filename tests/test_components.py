"""Components own their state: the checkpoint is gathered from registered parts and a resume
reads its file once; objects are built by one instantiate function; a failure of a config-built
object during training is reported with its section and the last good checkpoint."""
import json

import pytest
import torch

import model.loss as module_loss
import utils.checkpoint
from config.instantiate import instantiate
from conftest import PROJECT_ROOT, only_run, run_dirs, tiny_config
from parse_config import ConfigParser
from reliability_helpers import run_train_in_process
from utils import ConfigError
from utils.checkpoint import Key, load_checkpoint
from utils.state import StateParts


class FailsAtStep:
    """nll_loss that raises at the `step`-th training batch (validation batches not counted)."""

    def __init__(self, step):
        self.step, self.calls = step, 0

    def __call__(self, output, target):
        if output.requires_grad:
            self.calls += 1
            if self.calls == self.step:
                raise RuntimeError("the loss broke on purpose")
        return torch.nn.functional.nll_loss(output, target)


def test_a_failing_loss_names_its_section_and_keeps_the_finished_epochs(tmp_path, mnist_dir, monkeypatch, capsys):
    # 384 training samples in batches of 32: step 15 is in epoch 2
    monkeypatch.setattr(module_loss, "failing_loss", FailsAtStep(15), raising=False)
    config = tiny_config(tmp_path, mnist_dir, {"loss": "failing_loss", "trainer.epochs": 3})
    code, output = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2
    assert "Traceback" not in output.err
    message = output.err[output.err.index("error: "):]
    assert message.startswith("error: loss failed in epoch 2: RuntimeError: the loss broke on purpose")
    run = only_run(tmp_path / "saved")
    assert f"checkpoint is {run / 'checkpoint-epoch1.pth'}" in message
    assert load_checkpoint(run / "checkpoint-epoch1.pth")[Key.EPOCH] == 1
    assert not (run / "checkpoint-epoch2.pth").exists()


def test_debug_shows_the_original_traceback_of_a_late_failure(tmp_path, mnist_dir, monkeypatch, capsys):
    monkeypatch.setattr(module_loss, "failing_loss", FailsAtStep(1), raising=False)
    config = tiny_config(tmp_path, mnist_dir, {"loss": "failing_loss", "trainer.epochs": 1})
    code, output = run_train_in_process(monkeypatch, capsys, "-c", config, "--debug")
    assert code == 2
    assert "RuntimeError: the loss broke on purpose" in output.err and "Traceback" in output.err
    assert "No checkpoint was written before it" in output.err


def test_resume_reads_the_checkpoint_file_once(tmp_path, finished_run, monkeypatch, capsys):
    checkpoint = finished_run / "checkpoint-epoch1.pth"
    reads = []
    real_load = torch.load
    monkeypatch.setattr(utils.checkpoint.torch, "load", lambda path, *a, **k: reads.append(str(path))
                        or real_load(path, *a, **k))
    code, _ = run_train_in_process(monkeypatch, capsys, "-r", checkpoint, "-o", "trainer.epochs=2")
    assert code == 0
    assert reads.count(str(checkpoint)) == 1
    resumed_run = run_dirs(tmp_path / "saved")[-1]
    assert load_checkpoint(resumed_run / "checkpoint-epoch2.pth")[Key.EPOCH] == 2


class Counter:
    def __init__(self):
        self.count = 0

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_state_parts_gather_and_hand_back_each_piece():
    parts, counter, seen = StateParts(), Counter(), []
    counter.count = 3
    parts.register("counter", counter)
    parts.register("note", save=lambda: "saved",
                   load=lambda value, checkpoint: seen.append((value, checkpoint["epoch"])))
    state = {"epoch": 4, **parts.state()}
    assert state == {"epoch": 4, "counter": {"count": 3}, "note": "saved"}
    counter.count = 0
    parts.load(state)
    assert counter.count == 3 and seen == [("saved", 4)]
    parts.load({"epoch": 5}, skip=())  # an older checkpoint without these keys: nothing changes
    assert counter.count == 3 and len(seen) == 1
    with pytest.raises(ValueError, match="registered twice"):
        parts.register("counter", counter)


def test_checkpoint_keys_keep_the_template_names():
    assert (Key.ARCH, Key.EPOCH, Key.STATE_DICT, Key.OPTIMIZER, Key.MONITOR_BEST, Key.CONFIG) == (
        "arch", "epoch", "state_dict", "optimizer", "monitor_best", "config")


def test_the_callers_keyword_arguments_win_over_the_config():
    entry = {"type": "SGD", "args": {"lr": 0.5, "momentum": 0.9}}
    optimizer = instantiate(entry, [torch.nn.Parameter(torch.zeros(1))], key_path="optimizer", lr=0.01)
    assert optimizer.param_groups[0]["lr"] == 0.01 and optimizer.param_groups[0]["momentum"] == 0.9


def test_template_config_init_obj_lets_caller_kwargs_win(tmp_path):
    config_dict = json.loads((PROJECT_ROOT / "tests" / "fixtures" / "template_config.json").read_text())
    config_dict["trainer"]["save_dir"] = str(tmp_path)
    config = ConfigParser(config_dict, create_dirs=False)
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert config.init_obj("optimizer", torch.optim, params, lr=0.5).param_groups[0]["lr"] == 0.5


def test_instantiate_builds_nested_entries_with_their_key_paths():
    from torchvision.transforms import v2

    steps = instantiate([{"type": "RandomApply", "args": {"p": 0.5, "transforms": [
        {"type": "RandomRotation", "args": {"degrees": 10}}]}}], key_path="data_loader.args.transforms.train")
    assert isinstance(steps[0], v2.RandomApply) and isinstance(steps[0].transforms[0], v2.RandomRotation)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    children = [{"type": "LinearLR", "args": {"start_factor": 0.1, "total_iters": 2}}, {"type": "ConstantLR"}]
    entry = {"type": "SequentialLR", "args": {"schedulers": children, "milestones": [2]}}
    scheduler = instantiate(entry, optimizer, key_path="lr_scheduler", nested_args={"schedulers": (optimizer,)})
    assert [type(child).__name__ for child in scheduler._schedulers] == ["LinearLR", "ConstantLR"]
    children[1] = {"type": "ConstantRL"}
    with pytest.raises(ConfigError, match=r"lr_scheduler\.args\.schedulers\.1\.type 'ConstantRL' was not found"):
        instantiate(entry, optimizer, key_path="lr_scheduler", nested_args={"schedulers": (optimizer,)})
