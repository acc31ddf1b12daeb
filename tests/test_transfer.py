"""Transfer learning: torchvision model with local pretrained weights and a new head, frozen
parameters, per-group learning rates, and fine-tuning a checkpoint with a different head."""
import json

import pytest
import torch

import model.model as module_arch
from conftest import only_run, tiny_config
from model.transfer import build_model, optimizer_param_groups, parameter_counts
from parse_config import ConfigParser
from reliability_helpers import run_in_process
from utils import ConfigError


def parsed(tmp_path, mnist_dir, updates):
    return ConfigParser(json.loads(tiny_config(tmp_path, mnist_dir, updates).read_text()), create_dirs=False)


def test_torchvision_model_with_local_weights_new_head_and_trainable_head(tmp_path, mnist_dir):
    import torchvision

    source = torchvision.models.mobilenet_v3_small()
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    config = parsed(tmp_path, mnist_dir, {"arch": {
        "type": "mobilenet_v3_small", "module": "torchvision.models", "args": {},
        "pretrained": str(tmp_path / "weights.pth"),
        "replace_head": {"path": "classifier.3", "num_classes": 2}, "trainable": ["classifier.*"]}})
    model = build_model(config, module_arch)
    assert torch.equal(model.features[0][0].weight, source.features[0][0].weight)
    assert model.classifier[3].out_features == 2
    trainable, frozen = parameter_counts(model)
    head = sum(p.numel() for p in model.classifier.parameters())
    assert trainable == head and frozen == sum(p.numel() for p in source.features.parameters())


def test_param_groups_take_their_own_learning_rate(tmp_path, mnist_dir):
    config = parsed(tmp_path, mnist_dir, {"arch.freeze": ["conv1.*"], "optimizer.param_groups": [
        {"params": ["conv2.*"], "lr": 0.0001}]})
    model = build_model(config, module_arch)
    optimizer = config.init_obj("optimizer", torch.optim, optimizer_param_groups(model, config["optimizer"]))
    lrs = [(group["lr"], sum(p.numel() for p in group["params"])) for group in optimizer.param_groups]
    assert lrs == [(0.002, 50 * 320 + 50 + 51 * 10), (0.0001, 5020)]


@pytest.mark.parametrize("arch, message", [
    ({"freeze": ["backbone.*"]}, "arch.freeze.0: pattern 'backbone.*' matches no parameter"),
    ({"replace_head": {"path": "conv1", "num_classes": 2}}, "arch.replace_head.path 'conv1' is a Conv2d"),
    ({"pretrained": "missing.pth"}, "arch.pretrained: weight file 'missing.pth' does not exist"),
])
def test_transfer_settings_errors_name_the_key(tmp_path, mnist_dir, arch, message):
    config = parsed(tmp_path, mnist_dir, {f"arch.{key}": value for key, value in arch.items()})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("*", r"\*").replace(".", r"\.")):
        build_model(config, module_arch)


def test_trainable_as_a_string_is_refused_when_the_config_is_read(tmp_path, mnist_dir):
    with pytest.raises(ConfigError, match=r"arch\.trainable is 'fc2\.\*' \(str\), but a list"):
        parsed(tmp_path, mnist_dir, {"arch.trainable": "fc2.*"})


def test_finetune_checkpoint_with_new_head_and_frozen_convolutions(tmp_path, mnist_dir, monkeypatch, capsys):
    (tmp_path / "base").mkdir()
    base = tiny_config(tmp_path / "base", mnist_dir, {"trainer.epochs": 1})
    run_in_process(monkeypatch, capsys, "train", "-c", base, check=True)
    source = only_run(tmp_path / "base" / "saved") / "model_best.pth"
    source_weights = torch.load(source, weights_only=True)["state_dict"]

    binary = tiny_config(tmp_path, mnist_dir, {
        "trainer.epochs": 1, "arch.args": {"num_classes": 1, "logits": True},
        "arch.init_from": {"path": str(source), "strict": False}, "arch.freeze": ["conv*"],
        "data_loader.args.binary_target": 0, "loss": "bce_with_logits", "metrics": ["binary_accuracy"],
        "trainer.monitor": "max val_binary_accuracy"})
    run_in_process(monkeypatch, capsys, "train", "-c", binary, check=True)

    tuned = torch.load(only_run(tmp_path / "saved") / "checkpoint-epoch1.pth", weights_only=True)["state_dict"]
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        assert torch.equal(tuned[name], source_weights[name]), name  # loaded, then frozen
    assert not torch.equal(tuned["fc1.weight"], source_weights["fc1.weight"])  # loaded, then trained
    assert tuned["fc2.weight"].shape == (1, 50)

    strict = parsed(tmp_path, mnist_dir, {"arch.args": {"num_classes": 1, "logits": True},
                                          "arch.init_from": {"path": str(source), "strict": True}})
    with pytest.raises(ConfigError, match=r"shape mismatch \(2\): fc2\.weight"):
        build_model(strict, module_arch)
