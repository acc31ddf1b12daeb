"""Every kind of bad input ends with exit code 2 and one `error:` paragraph that names the file or
key path and the fix, without a traceback and before any run folder exists. In-process (fast);
one case also runs through the real command line."""
import json
import re

import pytest
import torch
from reliability_helpers import run_train_in_process

from conftest import DELETE, run_script, tiny_config
from model.model import MnistModel


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


CASES = {
    "no config": (lambda tmp_path, mnist_dir: [], r"no config given\. Add -c config\.json"),
    "missing config": (lambda tmp_path, mnist_dir: ["-c", tmp_path / "nope.json"],
                       r"config file '.*nope\.json' does not exist"),
    "unreadable config": (lambda tmp_path, mnist_dir: ["-c", tmp_path], r"config file '.*' cannot be read"),
    "invalid json": (config_text('{"name": "x",\n  "arch": }\n'),
                     r"broken\.json' is not valid JSON: Expecting value at line 2, column 11"),
    "missing section": (config_with({"optimizer": DELETE}), r"missing the required key\(s\) optimizer"),
    "missing trainer key": (config_with({"trainer.epochs": DELETE}), r"missing the required key trainer\.epochs"),
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
                          r"data_loader\.args\.batch_size is '64' \(str\), but int is expected.*64 rather than"),
    "string epochs": (config_with({"trainer.epochs": "3"}), r"trainer\.epochs is '3' \(str\), but a int is expected"),
    "bad monitor": (config_with({"trainer.monitor": "minimize val_loss"}),
                    r"trainer\.monitor is 'minimize val_loss'; write 'off', 'min <metric>'"),
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
                                               r"no valid checkpoint-epoch\*\.pth found in '.*old_run'"),
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
        lambda tmp_path, mnist_dir: config_with({"data_loader.args.data_dir": str(tmp_path / "no" / "mnist")})(
            tmp_path, mnist_dir), r"data_dir '.*/no/mnist' does not exist and data_loader\.args\.download is false"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_clear_message_and_no_run_folder(case, tmp_path, mnist_dir, monkeypatch, capsys):
    make_argv, expected = CASES[case]
    argv = make_argv(tmp_path, mnist_dir)
    code, captured = run_train_in_process(monkeypatch, capsys, *argv)
    assert code == 2, captured
    assert "Traceback" not in captured.err + captured.out
    last_line = captured.err.strip().splitlines()[-1]
    assert last_line.startswith("error: "), captured.err
    assert re.search(expected, last_line), last_line
    assert not (tmp_path / "saved").exists(), "no run or log folder may be created"


def test_debug_flag_shows_the_traceback(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"arch.type": "MnistModle"})
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config, "--debug")
    assert code == 2
    assert "Traceback (most recent call last)" in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("error: arch.type 'MnistModle' was not found")


def test_command_line_reports_invalid_json_with_exit_2(tmp_path):
    (tmp_path / "broken.json").write_text('{\n  "name": "x",\n}\n')
    result = run_script("train.py", "-c", tmp_path / "broken.json")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: config file '{tmp_path / 'broken.json'}' is not valid JSON: Expecting "
                                     "property name enclosed in double quotes at line 3, column 1. Fix the file (a "
                                     "trailing comma or a missing quote is the usual cause).")
    assert not (tmp_path / "saved").exists()
