"""Checks that need the project's code, run after the config is read and before any run folder
exists: every entry resolves and accepts its args, the monitored metric will be logged, the
data folder can be used and a checkpoint's weights fit the model. The Trainer checks the same
things again at run time; these checks only make the mistakes show up before any output."""
import difflib
import importlib
import inspect
import os
from pathlib import Path

import torch

from .checkpoint import check_weights_fit, load_checkpoint
from .errors import ConfigError
from .resolve import TORCH_FALLBACKS, check_call_args, resolve_type
from .transfer import replace_head

# the project module each section resolves in first (see ConfigParser.init_obj callers in train.py)
PROJECT_MODULES = {"arch": "model.model", "data_loader": "data_loader.data_loaders",
                   "loss": "model.loss", "metrics": "model.metric"}
# how many positional arguments the scripts pass: the optimizer gets the parameters, the
# scheduler the optimizer
POSITIONAL_ARGS = {"data_loader": 0, "arch": 0, "optimizer": 1}  # lr_scheduler: trainer.schedules
CHOICES = {"on_nonfinite": ("stop", "skip")}


def check_before_run(config):
    """Raise ConfigError for any mistake that would otherwise stop the run after it started."""
    modules = {section: importlib.import_module(name) for section, name in PROJECT_MODULES.items()}
    resolved = {section: _check_entry(config, section, modules.get(section), n_positional)
                for section, n_positional in POSITIONAL_ARGS.items() if config.get(section)}
    # trainer/ imports utils: import here, at call time
    from trainer.averaging import check_ema_settings
    from trainer.callbacks import build_callbacks
    from trainer.schedules import check_scheduler_entry
    check_scheduler_entry(config, config.trusted)
    check_ema_settings(config["trainer"].get("ema"))
    build_callbacks(config, check_only=True)
    config.init_loss(modules["loss"])
    metric_names = [metric.__name__ for metric in config.init_metrics(modules["metrics"])]
    _check_trainer_values(config["trainer"])
    _check_monitor(config["trainer"]["monitor"], metric_names, _validation_on(config, resolved["data_loader"]))
    _check_data_dir(config["data_loader"].get("args", {}), resolved["data_loader"])
    weights = config.resume or config.init_weights
    if weights is not None:
        _check_checkpoint_fits(config, modules["arch"], weights)


def _check_entry(config, section, project_module, n_positional):
    entry = config[section]
    fallbacks = TORCH_FALLBACKS.get(section, ())
    obj = resolve_type(entry, section, project_module, fallbacks, config.trusted)
    check_call_args(obj, (None,) * n_positional, dict(entry.get("args", {})), section)
    return obj


def _check_trainer_values(trainer):
    for key, allowed in CHOICES.items():
        if key in trainer and trainer[key] not in allowed:
            raise ConfigError(f"trainer.{key} is {trainer[key]!r}; use one of "
                              f"{', '.join(repr(a) for a in allowed)}.")
    keep_last = trainer.get("keep_last", 0)
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise ConfigError(f"trainer.keep_last is {keep_last!r}; write a whole number of checkpoints "
                          "to keep (0 keeps all of them).")


def _arg_value(args, loader_class, name):
    """The value `loader_class` will see for `name`: from the config, else its default."""
    if name in args:
        return args[name]
    try:
        parameter = inspect.signature(loader_class).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _validation_on(config, loader_class):
    split = _arg_value(config["data_loader"].get("args", {}), loader_class, "validation_split")
    return split is None or bool(split)  # unknown: a custom loader may validate on its own data


def _check_monitor(monitor, metric_names, validation):
    if monitor == "off":
        return
    metric = monitor.split()[1]
    train_keys = ["loss", *metric_names]
    logged = [*train_keys, "lr", *(f"val_{key}" for key in train_keys if validation)]
    if metric in logged:
        return
    if metric.startswith("val_") and not validation:
        reason = ("val_* metrics are only logged with a validation split, and "
                  "data_loader.args.validation_split is 0. Set it (e.g. 0.1) or monitor a training metric")
    else:
        close = difflib.get_close_matches(metric, logged, n=3)
        reason = f"logged keys are {', '.join(logged)}{'; did you mean ' + close[0] + '?' if close else ''}"
    raise ConfigError(f"trainer.monitor is '{monitor}', but '{metric}' is never logged: {reason}. "
                      "Fix trainer.monitor or set it to \"off\".")


def _check_data_dir(args, loader_class):
    key = "data_loader.args.data_dir"
    if "data_dir" not in args:
        return
    if not isinstance(args["data_dir"], str):
        raise ConfigError(f"{key} is {args['data_dir']!r}; write the folder as a string.")
    path = Path(args["data_dir"])
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key} '{path}' is a file, not a folder. Point it at the folder that holds "
                          "(or will hold) the data.")
    if path.exists():
        return
    ancestor = next(parent for parent in path.absolute().parents if parent.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{key} '{path}' does not exist and cannot be created: '{ancestor}' is not "
                          "a writable folder. Point data_dir at a folder you can write to.")
    if _arg_value(args, loader_class, "download") is False:
        raise ConfigError(f"{key} '{path}' does not exist and data_loader.args.download is false. "
                          "Fix the path, or set download to true to fetch the data there.")


def _check_checkpoint_fits(config, arch_module, checkpoint_path):
    checkpoint = load_checkpoint(checkpoint_path, mmap=True)
    try:  # the meta device gives every shape without allocating or initialising weights
        with torch.device("meta"):
            model = config.init_obj("arch", arch_module)
            if config["arch"].get("replace_head"):  # the checkpoint holds the new head's weights
                replace_head(model, config["arch"]["replace_head"], log=False)
    except ConfigError:
        raise
    except Exception:  # a model that cannot be built on meta is checked when its weights load
        return
    check_weights_fit(model.state_dict(), checkpoint["state_dict"], checkpoint_path)
