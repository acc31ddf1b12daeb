"""Configuration in-process: overrides, name resolution, args for losses and metrics."""
import argparse
import collections
import json

import pytest
import torch

import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from config.overrides import set_by_path
from conftest import PROJECT_ROOT
from parse_config import ConfigParser
from utils import ConfigError

CustomArgs = collections.namedtuple("CustomArgs", "flags type target")
TEMPLATE_OPTIONS = [
    CustomArgs(["--lr", "--learning_rate"], type=float, target="optimizer;args;lr"),
    CustomArgs(["--bs", "--batch_size"], type=int, target="data_loader;args;batch_size"),
]


def base_config():
    return json.loads((PROJECT_ROOT / "config.json").read_text())


def parse_cli(argv, tmp_path, options=TEMPLATE_OPTIONS, create_dirs=False):
    config_path = tmp_path / "config.json"
    if not config_path.exists():
        config = base_config()
        config["trainer"]["save_dir"] = str(tmp_path / "saved")
        config_path.write_text(json.dumps(config))
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", default=None)
    parser.add_argument("-r", "--resume", default=None)
    parser.add_argument("-d", "--device", default=None)
    return ConfigParser.from_args(parser, options, create_dirs=create_dirs, argv=["-c", str(config_path), *argv])


def test_template_flags_and_generic_overrides_reach_the_objects(tmp_path):
    config = parse_cli(["--lr", "0.05", "--bs", "16", "-o", "optimizer.type=SGD",
                        "-o", "optimizer.args={\"lr\": 0.05, \"momentum\": 0.9}",
                        "-o", "trainer.epochs=3", "-o", "name=renamed"], tmp_path)
    assert config["data_loader"]["args"]["batch_size"] == 16
    assert config["trainer"]["epochs"] == 3 and config["name"] == "renamed"
    model = config.init_obj("arch", module_arch)
    optimizer = config.init_obj("optimizer", torch.optim, model.parameters())
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.05 and optimizer.param_groups[0]["momentum"] == 0.9


def test_overrides_are_saved_in_the_run_config(tmp_path):
    config = parse_cli(["-o", "trainer.epochs=7", "-o", "+trainer.note=hello world"], tmp_path, create_dirs=True)
    saved = json.loads((config.save_dir / "config.json").read_text())
    assert saved["trainer"]["epochs"] == 7
    assert saved["trainer"]["note"] == "hello world"  # not JSON: kept as a string


def test_override_of_unknown_key_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer\.epoch.*does not exist.*prefix the key with '\+'"):
        parse_cli(["-o", "trainer.epoch=3"], tmp_path)
    assert not (tmp_path / "saved").exists()


def test_override_may_set_a_declared_argument_of_the_built_in_loader():
    config = {"data_loader": {"type": "CsvDataLoader", "args": {"train_csv": "t.csv"}}}
    set_by_path(config, ["data_loader", "args", "limit"], 60)
    assert config["data_loader"]["args"]["limit"] == 60
    with pytest.raises(ConfigError, match=r"data_loader\.args\.limt.*does not exist"):
        set_by_path(config, ["data_loader", "args", "limt"], 60)
    custom = {"data_loader": {"type": "MyLoader", "args": {}}}  # its arguments are not declared
    with pytest.raises(ConfigError, match=r"data_loader\.args\.limit.*does not exist"):
        set_by_path(custom, ["data_loader", "args", "limit"], 60)


@pytest.mark.parametrize("section, entry, expected", [
    ("optimizer", {"type": "AdamW", "args": {"lr": 0.01}}, torch.optim.AdamW),
    ("lr_scheduler", {"type": "CosineAnnealingLR", "args": {"T_max": 5}},
     torch.optim.lr_scheduler.CosineAnnealingLR),
])
def test_names_fall_back_to_torch_namespaces(section, entry, expected):
    config_dict = base_config()
    config_dict[section] = entry
    config = ConfigParser(config_dict, create_dirs=False)
    model = config.init_obj("arch", module_arch)
    optimizer = config.init_obj("optimizer", torch.optim, model.parameters())
    built = optimizer if section == "optimizer" else config.init_obj(section, torch.optim.lr_scheduler, optimizer)
    assert isinstance(built, expected)


def test_losses_and_metrics_take_args_and_resolve_in_torch():
    config_dict = base_config()
    config_dict["loss"] = {"type": "CrossEntropyLoss", "args": {"label_smoothing": 0.1}}
    config_dict["metrics"] = ["accuracy", {"type": "top_k_acc", "args": {"k": 5}, "name": "top5"}]
    config = ConfigParser(config_dict, create_dirs=False)
    loss = config.init_loss(module_loss)
    metrics = config.init_metrics(module_metric)
    assert isinstance(loss, torch.nn.CrossEntropyLoss) and loss.label_smoothing == 0.1
    assert [m.__name__ for m in metrics] == ["accuracy", "top5"]
    output = torch.tensor([[0.0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    target = torch.tensor([1, 1])  # rank 5 of 6 and rank 2 of 6
    assert float(metrics[1](output, target)) == pytest.approx(1.0)
    assert float(module_metric.top_k_acc(output, target, k=3)) == pytest.approx(0.5)


def test_module_key_selects_any_importable_module():
    config_dict = base_config()
    config_dict["arch"] = {"type": "resnet18", "module": "torchvision.models", "args": {"num_classes": 3}}
    model = ConfigParser(config_dict, create_dirs=False).init_obj("arch", module_arch)
    assert model.fc.out_features == 3


def test_unknown_type_lists_closest_names():
    config_dict = base_config()
    config_dict["optimizer"]["type"] = "Adamm"
    config = ConfigParser(config_dict, create_dirs=False)
    with pytest.raises(ConfigError, match=r"optimizer\.type 'Adamm' was not found.*Closest names: Adam"):
        config.init_obj("optimizer", torch.optim, [torch.nn.Parameter(torch.zeros(1))])


def test_rejected_constructor_arg_names_it_and_the_accepted_ones():
    config_dict = base_config()
    config_dict["arch"]["args"] = {"num_clases": 3}
    config = ConfigParser(config_dict, create_dirs=False)
    expected = r"arch\.args do not fit MnistModel.*num_clases.*Accepted arguments: num_classes"
    with pytest.raises(ConfigError, match=expected):
        config.init_obj("arch", module_arch)
