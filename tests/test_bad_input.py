"""Every kind of bad input ends with exit code 2 and one `error:` paragraph that names the file or
key path and the fix, without a traceback and before any run folder exists. In-process (fast);
one case also runs through the real command line."""
import json
import re

import pytest
import torch

from conftest import DELETE, tiny_config
from model.model import MnistModel
from reliability_helpers import run_train_in_process


def checkpoint_file(tmp_path, mnist_dir, name="checkpoint-epoch1.pth", num_classes=10, config_updates=None):
    """A small valid checkpoint of MnistModel (with the tiny config inside) in tmp_path/old_run."""
    path = tmp_path / "old_run" / name
    path.parent.mkdir(exist_ok=True)
    config = json.loads(tiny_config(path.parent, mnist_dir, config_updates).read_text())
    config["trainer"]["save_dir"] = str(tmp_path / "saved")
    torch.save({"epoch": 1, "state_dict": MnistModel(num_classes).state_dict(), "config": config}, path)
    return path


def config_with(updates):
    return lambda tmp_path, mnist_dir: ["-c", tiny_config(tmp_path, mnist_dir, updates)]


def config_text(text):
    def argv(tmp_path, mnist_dir):
        (tmp_path / "broken.json").write_text(text)
        return ["-c", tmp_path / "broken.json"]
    return argv


def truncated_checkpoint(tmp_path, mnist_dir):
    path = checkpoint_file(tmp_path, mnist_dir)
    path.write_bytes(path.read_bytes()[:2000])
    return ["-r", path]


def run_folder_without_valid_checkpoint(tmp_path, mnist_dir):
    truncated_checkpoint(tmp_path, mnist_dir)
    return ["-r", tmp_path / "old_run"]


def untrusted_module_in_checkpoint(tmp_path, mnist_dir):
    arch = {"type": "load", "module": "torch.hub", "args": {"repo_or_dir": "someone/repo", "model": "x"}}
    return ["-r", checkpoint_file(tmp_path, mnist_dir, config_updates={"arch": arch})]


def data_dir_under_a_file(tmp_path, mnist_dir):
    (tmp_path / "a_file").write_text("")
    return ["-c", tiny_config(tmp_path, mnist_dir, {"data_loader.args.data_dir": str(tmp_path / "a_file" / "data")})]


def save_dir_under_a_file(tmp_path, mnist_dir):
    (tmp_path / "a_file").write_text("")
    return [*config_with({})(tmp_path, mnist_dir), "-o", f"trainer.save_dir={tmp_path / 'a_file' / 'saved'}"]


CASES = {
    "no config": (lambda tmp_path, mnist_dir: [], r"no config given\. Add -c config\.json"),
    "missing config": (lambda tmp_path, mnist_dir: ["-c", tmp_path / "nope.json"],
                       r"config file '.*nope\.json' does not exist"),
    "unreadable config": (lambda tmp_path, mnist_dir: ["-c", tmp_path], r"config file '.*' cannot be read"),
    "invalid json": (config_text('{"name": "x",\n  "arch": }\n'),
                     r"broken\.json' is not valid JSON: Expecting value at line 2, column 11"),
    "missing section": (config_with({"optimizer": DELETE}), r"optimizer is missing; it is required"),
    "missing trainer key": (config_with({"trainer.epochs": DELETE}), r"trainer\.epochs is missing; it is required"),
    "unknown type": (config_with({"arch.type": "MnistModle"}),
                     r"arch\.type 'MnistModle' was not found in model\.model.*Closest names: MnistModel"),
    "unknown optimizer": (config_with({"optimizer.type": "Adamm"}), r"optimizer\.type 'Adamm'.*Closest names: Adam"),
    "rejected arg": (config_with({"arch.args": {"num_clases": 3}}),
                     r"arch\.args do not fit MnistModel.*num_clases.*Accepted arguments: num_classes"),
    "rejected loss arg": (config_with({"loss": {"type": "cross_entropy", "args": {"label_smothing": 0.1}}}),
                          r"loss\.args do not fit cross_entropy.*label_smothing.*Accepted arguments: output, "
                          r"target, label_smoothing"),
    "rejected scheduler arg": (config_with({"lr_scheduler.args.step": 3}),
                               r"lr_scheduler\.args do not fit StepLR.*'step'.*Accepted arguments: optimizer"),
    "string batch size": (config_with({"data_loader.args.batch_size": "64"}),
                          r"data_loader\.args\.batch_size is '64' \(str\), but a whole number is expected.*"
                          r"without quotes"),
    "string epochs": (config_with({"trainer.epochs": "3"}),
                      r"trainer\.epochs is '3' \(str\), but a whole number is expected"),
    "bad monitor": (config_with({"trainer.monitor": "minimize val_loss"}),
                    r"trainer\.monitor is 'minimize val_loss'; write \"off\", \"min <metric>\""),
    "monitor val without validation": (config_with({"data_loader.args.validation_split": 0}),
                                       r"'val_loss' is never logged.*validation_split is 0"),
    "monitor typo": (config_with({"trainer.monitor": "max val_acuracy"}),
                     r"'val_acuracy' is never logged.*did you mean val_accuracy\?"),
    "bad on_nonfinite": (config_with({"trainer.on_nonfinite": "ignore"}), r"trainer\.on_nonfinite is 'ignore'"),
    "override typo": (lambda tmp_path, mnist_dir: [*config_with({})(tmp_path, mnist_dir), "-o", "trainer.epoch=3"],
                      r"key 'trainer\.epoch' does not exist.*prefix the key with '\+'"),
    "resume missing": (lambda tmp_path, mnist_dir: ["-r", tmp_path / "gone.pth"],
                       r"resume path '.*gone\.pth' does not exist"),
    "resume not a checkpoint": (lambda tmp_path, mnist_dir: ["-r", tiny_config(tmp_path, mnist_dir)],
                                r"checkpoint '.*Tiny\.json' is truncated, corrupt or not a PyTorch checkpoint"),
    "resume corrupt": (truncated_checkpoint, r"checkpoint-epoch1\.pth' is truncated, corrupt"),
    "resume folder without valid checkpoint": (run_folder_without_valid_checkpoint,
                                               r"no valid checkpoint-epoch\* found in '.*old_run'"),
    "resume the folder above the runs": (
        lambda tmp_path, mnist_dir: ["-r", checkpoint_file(tmp_path, mnist_dir).parents[1]],
        r"no valid checkpoint.*It holds run folders: pass one of them"),
    "auto without config": (lambda tmp_path, mnist_dir: ["-r", "auto"], r"-r auto needs -c CONFIG"),
    "resumed weights do not fit": (
        lambda tmp_path, mnist_dir: ["-r", checkpoint_file(tmp_path, mnist_dir), "-o", "+arch.args.num_classes=5"],
        r"weights in '.*checkpoint-epoch1\.pth' do not fit.*shape mismatch \(2\): fc2\.weight: checkpoint "
        r"\(10, 50\) vs model \(5, 50\), fc2\.bias"),
    "fine-tune weights do not fit": (
        lambda tmp_path, mnist_dir: [*config_with({"arch.args": {"num_classes": 4}})(tmp_path, mnist_dir),
                                     "-r", checkpoint_file(tmp_path, mnist_dir)],
        r"do not fit the configured model.*fc2\.weight: checkpoint \(10, 50\) vs model \(4, 50\)"),
    "untrusted module in checkpoint": (
        untrusted_module_in_checkpoint, r"arch\.module is 'torch\.hub', but this config came from a checkpoint.*trust"),
    "data_dir is a file": (lambda tmp_path, mnist_dir: config_with({"data_loader.args.data_dir": str(
        tiny_config(tmp_path, mnist_dir))})(tmp_path, mnist_dir), r"data_dir '.*Tiny\.json' is a file, not a folder"),
    "data_dir cannot be created": (data_dir_under_a_file, r"data_dir '.*a_file/data' does not exist and cannot be "
                                                          r"created: '.*a_file' is not a writable folder"),
    "data_dir missing without download": (
        lambda tmp_path, mnist_dir: config_with({"data_loader": {"type": "TorchvisionDataLoader", "args": {
            "dataset": "FashionMNIST", "data_dir": str(tmp_path / "no" / "fashion")}}})(tmp_path, mnist_dir),
        r"data_dir '.*/no/fashion' does not exist and data_loader\.args\.download is false"),
    # one batch through the model and the loss before the run folder (trainer/batch_check.py)
    "fewer outputs than classes": (config_with({"arch.args": {"num_classes": 1, "logits": True},
                                                "loss": "cross_entropy"}),
                                   r"arch\.args\.num_classes is 1.*10 classes.*Set arch\.args\.num_classes to 10\."),
    "more outputs than classes": (config_with({"arch.args.num_classes": 12}),
                                  r"arch\.args\.num_classes is 12.*Set arch\.args\.num_classes to 10\."),
    "binary target with one output per class": (
        config_with({"data_loader.args.binary_target": 0, "arch.args": {"num_classes": 2, "logits": True},
                     "loss": "bce_with_logits", "metrics": ["binary_accuracy"]}),
        r"task is binary.*Set arch\.args\.num_classes to 1\."),
    "regression loss on class labels": (config_with({"loss": "mse_loss"}),
                                        r"loss is mse_loss, a regression loss, but the task is classification"),
    "sigmoid loss on class labels": (config_with({"loss": "bce_with_logits", "arch.args.logits": True}),
                                     r"loss is bce_with_logits, a binary / multilabel loss, but the task is "
                                     r"classification"),
    "class metric on the wrong output": (config_with({"metrics": [{"type": "BinaryAccuracy"}]}),
                                         r"metrics\.0 \(BinaryAccuracy\) fails on one batch"),
    "val_* monitor without validation data": (
        config_with({"data_loader.args.validation_split": 0.0, "trainer.monitor": "min val_loss"}),
        r"'val_loss' is never logged: val_\* metrics are only logged with validation data"),
}

# settings out of their declared range or choices, typos in the file, and mistakes that used to
# show only after the run had started
SCHEMA_CASES = {
    "trainer key typo in the file": (config_with({"trainer.acum_steps": 4}),
                                     r"trainer\.acum_steps is not a setting; did you mean trainer\.accum_steps\?"),
    "top-level typo": (config_with({"lr_schedular": {"type": "StepLR", "args": {"step_size": 1}}}),
                       r"lr_schedular is not a setting; did you mean lr_scheduler\?"),
    "arch key typo": (config_with({"arch.pretrianed": "weights.pth"}),
                      r"arch\.pretrianed is not a setting; did you mean arch\.pretrained\?"),
    "optimizer key typo": (config_with({"optimizer.param_group": []}),
                           r"optimizer\.param_group is not a setting; did you mean optimizer\.param_groups\?"),
    "metric entry key typo": (config_with({"metrics": [{"type": "accuracy", "nam": "acc"}]}),
                              r"metrics\.0\.nam is not a setting; did you mean metrics\.0\.name\?"),
    "metric entry without type": (config_with({"metrics": [{"args": {}}]}), r"metrics\.0 has no \"type\""),
    "trainer is not an object": (config_with({"trainer": 5}), r"trainer is 5 \(int\), but an object \{\.\.\.\} is"),
    "name is not a string": (config_with({"name": 7}), r"name is 7 \(int\), but a string is expected"),
    "negative n_gpu": (config_with({"n_gpu": -1}), r"n_gpu is -1; it must be at least 0"),
    "float seed": (config_with({"seed": 1.5}), r"seed is 1\.5 \(float\), but a whole number is expected"),
    "zero epochs": (config_with({"trainer.epochs": 0}), r"trainer\.epochs is 0; it must be at least 1"),
    "zero save_period": (config_with({"trainer.save_period": 0}), r"trainer\.save_period is 0; it must be at least 1"),
    "negative early_stop": (config_with({"trainer.early_stop": -1}),
                            r"trainer\.early_stop is -1; it must be at least 0"),
    "zero accum_steps": (config_with({"trainer.accum_steps": 0}), r"trainer\.accum_steps is 0; it must be at least 1"),
    "negative keep_last": (config_with({"trainer.keep_last": -2}), r"trainer\.keep_last is -2; it must be at least 0"),
    "zero log_step": (config_with({"trainer.log_step": 0}), r"trainer\.log_step is 0; it must be at least 1"),
    "zero len_epoch": (config_with({"trainer.len_epoch": 0}), r"trainer\.len_epoch is 0; it must be at least 1"),
    "verbosity out of choices": (config_with({"trainer.verbosity": 5}), r"trainer\.verbosity is 5; use one of 0, 1, 2"),
    "bad amp": (config_with({"trainer.amp": "fp8"}), r"trainer\.amp is 'fp8'; use one of 'bf16', 'fp16'"),
    "bad amp from the command line": (
        lambda tmp_path, mnist_dir: [*config_with({})(tmp_path, mnist_dir), "-o", "trainer.amp=fp8"],
        r"trainer\.amp is 'fp8'; use one of 'bf16', 'fp16'"),
    "bad compile mode": (config_with({"trainer.compile": "fast"}),
                         r"trainer\.compile is 'fast'; use one of true, false"),
    "negative clip_grad_norm": (config_with({"trainer.clip_grad_norm": -1.0}),
                                r"trainer\.clip_grad_norm is -1\.0; it must be at least 0"),
    "tensorboard as a string": (config_with({"trainer.tensorboard": "yes"}),
                                r"trainer\.tensorboard is 'yes' \(str\), but true or false is expected"),
    "wandb as a string": (config_with({"trainer.wandb": "on"}), r"trainer\.wandb is 'on' \(str\)"),
    "validation_split above 1": (config_with({"data_loader.args.validation_split": 1.5}),
                                 r"data_loader\.args\.validation_split is 1\.5; write a fraction in \[0, 1\)"),
    "negative validation_split": (config_with({"data_loader.args.validation_split": -0.1}),
                                  r"data_loader\.args\.validation_split is -0\.1; write a fraction in \[0, 1\)"),
    "validation_split as a bool": (config_with({"data_loader.args.validation_split": True}),
                                   r"data_loader\.args\.validation_split is True \(bool\)"),
    "validation_split larger than the dataset": (
        config_with({"data_loader.args.validation_split": 600, "trainer.monitor": "off"}),
        r"data_loader\.args\.validation_split is 600 samples, but the dataset has only 512"),
    "zero batch size": (config_with({"data_loader.args.batch_size": 0}),
                        r"data_loader\.args\.batch_size is 0; it must be at least 1"),
    "binary_target not a digit": (config_with({"data_loader.args.binary_target": 12}),
                                  r"data_loader\.args\.binary_target is 12; it must be at most 9"),
    "data loader arg typo": (config_with({"data_loader.args.num_worker": 0}),
                             r"data_loader\.args\.num_worker is not an argument of MnistDataLoader.*Did you mean "
                             r"data_loader\.args\.num_workers\?"),
    "save_dir cannot be created": (save_dir_under_a_file,
        r"trainer\.save_dir '.*a_file/saved' cannot be created: '.*a_file' is a file, not a folder"),
    "scheduler that fails when it steps": (config_with({"lr_scheduler.args.step_size": 0}),
                                           r"lr_scheduler: StepLR fails when it steps \(ZeroDivisionError"),
    "plateau scheduler against the monitor": (
        config_with({"trainer.monitor": "max val_accuracy", "lr_scheduler": {"type": "ReduceLROnPlateau", "args": {}}}),
        r"ReduceLROnPlateau with mode 'min'.*Set lr_scheduler\.args\.mode to \"max\""),
    "several problems at once": (
        config_with({"trainer.epochs": 0, "trainer.save_period": 0, "arch.type": "MnistModle"}),
        r"the config has 3 problems:\n  - trainer\.epochs is 0.*\n  - trainer\.save_period is 0.*\n  - arch\.type "
        r"'MnistModle' was not found"),
}


@pytest.mark.parametrize("case", [*CASES, *SCHEMA_CASES])
def test_bad_input_exits_2_with_one_clear_message_and_no_run_folder(case, tmp_path, mnist_dir, monkeypatch, capsys):
    make_argv, expected = {**CASES, **SCHEMA_CASES}[case]
    argv = make_argv(tmp_path, mnist_dir)
    code, captured = run_train_in_process(monkeypatch, capsys, *argv)
    assert code == 2, captured
    assert "Traceback" not in captured.err + captured.out
    assert "error: " in captured.err, captured.err
    message = captured.err[captured.err.index("error: "):]
    assert re.search(expected, message, re.DOTALL), message
    assert not (tmp_path / "saved").exists(), "no run or log folder may be created"


def test_the_table_has_at_least_40_cases():
    assert len(CASES) + len(SCHEMA_CASES) >= 40


def test_debug_flag_shows_the_traceback(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"arch.type": "MnistModle"})
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config, "--debug")
    assert code == 2
    assert "Traceback (most recent call last)" in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("error: arch.type 'MnistModle' was not found")


def test_command_line_reports_invalid_json_with_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken.json").write_text('{\n  "name": "x",\n}\n')
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", tmp_path / "broken.json")
    assert code == 2
    assert captured.err.strip() == (f"error: config file '{tmp_path / 'broken.json'}' is not valid JSON: Expecting "
                                     "property name enclosed in double quotes at line 3, column 1. Fix the file (a "
                                     "trailing comma or a missing quote is the usual cause).")
    assert not (tmp_path / "saved").exists()
