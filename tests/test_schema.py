"""The declared schema: defaults filled in one place, unknown keys, a Trainer subclass's own
keys, the docs generated from it, and the built-in loaders' declared defaults."""
import inspect
import json
import logging

import pytest

from config import docs
from config.schema import DATA_LOADER_ARGS, REQUIRED, TRAINER, Setting
from config.validation import Problems, check_config, fill_defaults
from conftest import PROJECT_ROOT
from data_loader import data_loaders
from data_loader.splits import validation_size
from parse_config import ConfigParser
from trainer import Trainer
from trainer.preflight import loader_parameters
from utils import ConfigError


def template_config(tmp_path):
    config = json.loads((PROJECT_ROOT / "tests" / "fixtures" / "template_config.json").read_text())
    config["trainer"]["save_dir"] = str(tmp_path / "saved")
    return config


def problems_of(config):
    problems = Problems()
    check_config(config, problems)
    return [sentence for _, sentence in problems.items]


def test_template_config_passes_and_gets_every_default(tmp_path):
    config = template_config(tmp_path)
    assert problems_of(config) == []
    fill_defaults(config)
    for setting in TRAINER:
        assert setting.key in config["trainer"], setting.key
    assert config["seed"] == 123 and config["trainer"]["accum_steps"] == 1
    assert config["trainer"]["epochs"] == 100  # given values are kept
    assert "tune" not in config  # optional sections stay absent


def test_settings_are_read_as_attributes(tmp_path):
    config = template_config(tmp_path)
    config["trainer"]["amp"] = "bf16"
    settings = ConfigParser(config, create_dirs=False).settings
    assert settings.trainer.amp == "bf16" and settings.trainer.on_nonfinite == "stop"
    assert settings.n_gpu == 1 and settings.lr_scheduler["type"] == "StepLR"


def test_declared_setting_can_be_overridden_without_plus(tmp_path):
    config = ConfigParser(template_config(tmp_path), modification={(("trainer", "amp"), False): "fp16"},
                          create_dirs=False)
    assert config["trainer"]["amp"] == "fp16"


def test_unknown_key_is_a_warning_naming_it(tmp_path, caplog):
    config = template_config(tmp_path)
    config["trainer"]["my_note"] = "kept for my own trainer"
    with caplog.at_level(logging.WARNING, logger="config"):
        assert problems_of(config) == []
    assert any("trainer.my_note" in record.getMessage() for record in caplog.records)


def test_close_typo_is_an_error_and_all_problems_are_reported_together(tmp_path):
    config = template_config(tmp_path)
    config["trainer"].update(acum_steps=4, epochs=0)
    config["data_loader"]["args"]["validation_split"] = 2.0
    problems = problems_of(config)
    assert problems == ["trainer.epochs is 0; it must be at least 1.",
                        "trainer.acum_steps is not a setting; did you mean trainer.accum_steps?",
                        "data_loader.args.validation_split is 2.0; write a fraction in [0, 1) (e.g. 0.1) or a "
                        "whole number of validation samples."]
    with pytest.raises(ConfigError, match=r"^the config has 3 problems:\n  - trainer\.epochs"):
        ConfigParser(config, create_dirs=False)
    assert not (tmp_path / "saved").exists()


class WarmupTrainer(Trainer):
    extra_settings = (Setting("schema_test_warmup", int, 2, "epochs of warm-up", minimum=0),)


def test_a_trainer_subclass_declares_its_own_keys(tmp_path):
    config = template_config(tmp_path)
    config["trainer"]["schema_test_warmup"] = -1
    assert problems_of(config) == ["trainer.schema_test_warmup is -1; it must be at least 0."]
    config["trainer"]["schema_test_warmpu"] = config["trainer"].pop("schema_test_warmup")
    assert problems_of(config) == ["trainer.schema_test_warmpu is not a setting; did you mean "
                                   "trainer.schema_test_warmup?"]
    del config["trainer"]["schema_test_warmpu"]
    assert ConfigParser(config, create_dirs=False).settings.trainer.schema_test_warmup == 2


def test_a_subclass_cannot_redeclare_a_builtin_key():
    with pytest.raises(TypeError, match="trainer.epochs, which is a built-in setting"):
        type("Clash", (Trainer,), {"extra_settings": (Setting("epochs", int, 1, "x"),)})


def test_docs_config_md_matches_the_schema():
    text = docs.DOC_PATH.read_text()
    assert docs.updated_document(text) == text, "docs/config.md is out of date: run python -m config.docs"


@pytest.mark.parametrize("loader", DATA_LOADER_ARGS)
def test_builtin_loader_defaults_match_its_signature(loader):
    parameters = loader_parameters(getattr(data_loaders, loader))
    for setting in DATA_LOADER_ARGS[loader]:
        default = parameters[setting.key].default
        expected = REQUIRED if default is inspect.Parameter.empty else default
        assert setting.default == expected, f"{loader}.{setting.key}"


NEW_LOADERS = {"ImageFolderDataLoader": {"train_dir": "data/digits/train"},
               "CsvDataLoader": {"train_csv": "data/wine/train.csv", "target": "cultivar"},
               "TorchvisionDataLoader": {"dataset": "FashionMNIST"}}


@pytest.mark.parametrize("loader", NEW_LOADERS)
def test_new_loaders_args_are_checked_all_at_once(tmp_path, loader):
    config = template_config(tmp_path)
    config["data_loader"] = {"type": loader, "args": {**NEW_LOADERS[loader], "stratfy": True, "pin_memory": True,
                                                      "in_memory": "yes", "image_size": [8], "limit": -1}}
    assert sorted(problems_of(config)) == sorted([
        f"data_loader.args.stratfy is not an argument of {loader}. Did you mean data_loader.args.stratify?",
        "data_loader.args.in_memory is 'yes'; use one of true, false, 'auto'.",
        "data_loader.args.image_size is [8]; write one positive number (28) or [height, width].",
        "data_loader.args.limit is -1; it must be at least 0."])  # pin_memory goes to torch's DataLoader


def test_docs_data_md_names_every_argument_of_the_new_loaders():
    text = (PROJECT_ROOT / "docs" / "data.md").read_text()
    for loader in NEW_LOADERS:
        assert [s.key for s in DATA_LOADER_ARGS[loader] if f"`{s.key}`" not in text] == [], loader


@pytest.mark.parametrize("split, n_samples, expected", [
    (0.0, 10, 0), (0, 10, 0), (0.25, 10, 2), (0.99, 10, 9), (3, 10, 3), (9, 10, 9)])
def test_validation_size(split, n_samples, expected):
    assert validation_size(split, n_samples) == expected


@pytest.mark.parametrize("split, n_samples, message", [
    (10, 10, r"is 10 samples, but the dataset has only 10"),
    (-1, 10, r"is -1 samples, but the dataset has only 10"),
    (1.0, 10, r"is 1\.0; a fraction must be in \[0, 1\)"),
    (0.0, 0, r"the training set is empty: the dataset has 0 samples"),
    ("0.1", 10, r"is '0\.1'; write a fraction"),
])
def test_validation_size_refuses(split, n_samples, message):
    with pytest.raises(ConfigError, match=message):
        validation_size(split, n_samples)
