"""Config inheritance ("base"), --print-config, and the resolved config in the run folder."""
import json
import sys

import pytest

import train
from config.sources import read_config_file
from conftest import tiny_config
from parse_config import ConfigParser
from utils import ConfigError


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def test_base_is_deep_merged_lists_replaced_null_removes(tmp_path, mnist_dir):
    base = tiny_config(tmp_path, mnist_dir)
    child = write(tmp_path / "variants" / "child.json", {
        "base": "../Tiny.json", "optimizer": {"args": {"lr": 0.01}}, "lr_scheduler": None,
        "metrics": ["accuracy"], "trainer": {"epochs": 1}})
    resolved = read_config_file(child)
    original = json.loads(base.read_text())
    assert "base" not in resolved and "lr_scheduler" not in resolved
    assert resolved["optimizer"] == {"type": "Adam", "args": {**original["optimizer"]["args"], "lr": 0.01}}
    assert resolved["metrics"] == ["accuracy"]
    assert resolved["trainer"] == {**original["trainer"], "epochs": 1}
    assert resolved["data_loader"] == original["data_loader"]


def test_list_of_bases_later_wins_and_bases_chain(tmp_path):
    write(tmp_path / "root.json", {"name": "A", "trainer": {"epochs": 5, "monitor": "off"}})
    write(tmp_path / "a.json", {"base": "root.json", "seed": 1, "trainer": {"epochs": 2}})
    write(tmp_path / "b.json", {"seed": 2, "extra": {"x": [1, 2]}})
    child = write(tmp_path / "child.json", {"base": ["a.json", "b.json"], "extra": {"y": 3}})
    assert read_config_file(child) == {"name": "A", "trainer": {"epochs": 2, "monitor": "off"}, "seed": 2,
                                        "extra": {"x": [1, 2], "y": 3}}


@pytest.mark.parametrize("files, message", [
    ({"a.json": {"base": "b.json"}, "b.json": {"base": "a.json"}}, "config inheritance loops"),
    ({"a.json": {"base": "a.json"}}, "config inheritance loops"),
    ({"a.json": {"base": "missing.json"}}, "names the base"),
    ({"a.json": {"base": 3}}, "\"base\" is 3"),
    ({"a.json": {"base": "b.json"}, "b.json": "[1, 2]"}, "must hold a JSON object"),
])
def test_bad_bases_are_config_errors(tmp_path, files, message):
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ConfigError) as err:
        read_config_file(tmp_path / "a.json")
    assert message in str(err.value)


def test_print_config_shows_bases_overrides_defaults_and_makes_no_folder(tmp_path, mnist_dir, monkeypatch, capsys):
    base = json.loads(tiny_config(tmp_path, mnist_dir).read_text())
    del base["seed"]  # filled in by the default
    write(tmp_path / "base.json", base)
    child = write(tmp_path / "child.json", {"base": "base.json", "trainer": {"epochs": 7}})
    monkeypatch.setattr(sys, "argv", ["train.py", "-c", str(child), "-o", "optimizer.args.lr=0.5", "--print-config"])
    with pytest.raises(SystemExit) as exit_info:
        train.run()
    assert exit_info.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["trainer"]["epochs"] == 7 and printed["optimizer"]["args"]["lr"] == 0.5
    assert printed["seed"] == 123 and "base" not in printed
    assert not (tmp_path / "saved").exists()


def test_run_folder_holds_the_resolved_config(tmp_path, mnist_dir):
    write(tmp_path / "base.json", json.loads(tiny_config(tmp_path, mnist_dir).read_text()))
    child = write(tmp_path / "child.json", {"base": "base.json", "trainer": {"epochs": 1}})
    parser = ConfigParser.from_args(train.make_arg_parser()[0], argv=["-c", str(child)])
    saved = json.loads((parser.save_dir / "config.json").read_text())
    assert saved == parser.config and "base" not in saved and saved["trainer"]["epochs"] == 1
