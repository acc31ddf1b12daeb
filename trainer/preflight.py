"""Checks that need the project's code, run after the schema checks and before any run folder
exists: every entry resolves and accepts its args, the optimizer and scheduler can step, the
monitored metric will be logged, the data folder can be used and a checkpoint's weights fit the
model. Each check adds its problems to the same collection, so all are reported at once."""
import difflib
import inspect
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from config.instantiate import check_entry, entry_args, resolve
from data_loader.base_data_loader import BaseDataLoader
from model.transfer import replace_head
from run.checkpoints import check_checkpoint_policy
from utils.checkpoint import Key, check_weights_fit
from utils.errors import ConfigError
from utils.monitor import Monitor, scheduler_monitor

from .averaging import check_ema_settings
from .callbacks import build_callbacks
from .fsdp import check_fsdp_settings
from .schedules import build_lr_scheduler, check_schedule_fits_resume, check_scheduler_entry
from .speed import check_determinism_settings
from .swa import check_swa_settings

# how many positional arguments the scripts pass: the optimizer gets the parameters, the
# scheduler the optimizer
POSITIONAL_ARGS = {"data_loader": 0, "arch": 0, "optimizer": 1}  # lr_scheduler: trainer.schedules
# what BaseDataLoader passes to torch's DataLoader itself: not for data_loader.args
LOADER_OWN_ARGS = ("dataset", "batch_size", "sampler", "batch_sampler", "collate_fn", "worker_init_fn",
                   "num_workers", "shuffle")
PLATEAU = torch.optim.lr_scheduler.ReduceLROnPlateau


def check_before_run(config, problems):
    """Add every mistake that would otherwise stop the run after it started to `problems`."""
    resolved = {}
    for section, n_positional in POSITIONAL_ARGS.items():
        if config.get(section) and not problems.about(section):
            with problems.collect(section):
                resolved[section] = check_entry(config[section], *(None,) * n_positional, key_path=section,
                                                trusted=config.trusted)
    _check_training_policies(config, problems)
    if not problems.about("loss"):
        with problems.collect("loss"):
            config.init_loss()
    metric_names = None
    if not problems.about("metrics"):
        with problems.collect("metrics"):
            metric_names = [metric.__name__ for metric in config.init_metrics()]
    loader_class = resolved.get("data_loader")
    if loader_class is not None:
        args = config["data_loader"].get("args", {})
        with problems.collect("data_loader.args"):
            _check_loader_kwargs(args, loader_class)
        with problems.collect("data_loader.args.data_dir"):
            _check_data_dir(args, loader_class)
    if metric_names is not None and loader_class is not None and not problems.about("trainer.monitor"):
        with problems.collect("trainer.monitor"):
            _check_monitor(Monitor(config["trainer"]["monitor"]), metric_names, _validation_on(config, loader_class))
    if "optimizer" in resolved:
        _check_optimizer_steps(config, problems)
    if config.resume is not None and config.checkpoint is not None and not problems.about("lr_scheduler"):
        with problems.collect("lr_scheduler"):
            check_schedule_fits_resume(config, config.checkpoint, config.resume)
    weights = config.resume or config.init_weights
    if weights is not None and "arch" in resolved:
        with problems.collect("arch"):
            _check_checkpoint_fits(config, weights, config.checkpoint)


def _arg_value(args, loader_class, name):
    """The value `loader_class` will see for `name`: from the config, else its default."""
    if name in args:
        return args[name]
    try:
        parameter = inspect.signature(loader_class).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _check_loader_kwargs(args, loader_class):
    """A BaseDataLoader passes arguments it does not name to torch's DataLoader, which would
    refuse an unknown one only when the loader is built: name it now."""
    if not (isinstance(loader_class, type) and issubclass(loader_class, BaseDataLoader)):
        return
    own = set(loader_parameters(loader_class))
    passed_on = set(inspect.signature(DataLoader).parameters) - set(LOADER_OWN_ARGS)
    for key in args:
        if key not in own and key not in passed_on:
            close = difflib.get_close_matches(key, [*own, *passed_on], n=1)
            hint = f" Did you mean data_loader.args.{close[0]}?" if close else ""
            raise ConfigError(f"data_loader.args.{key} is not an argument of {loader_class.__name__} or of "
                              f"torch's DataLoader.{hint}")


def loader_parameters(loader_class):
    """Name -> inspect.Parameter of a loader and of the base classes its **kwargs reach."""
    parameters = {}
    for cls in loader_class.__mro__:
        if cls is DataLoader or "__init__" not in cls.__dict__:
            continue
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                parameters.setdefault(name, parameter)
    return parameters


def _validation_on(config, loader_class):
    """Whether the loader will yield validation data: a validation split, k-fold, or a separate
    validation folder or table (val_dir, val_csv)."""
    args = config["data_loader"].get("args", {})
    if any(args.get(key) for key in ("val_dir", "val_csv", "n_folds")):
        return True
    split = _arg_value(args, loader_class, "validation_split")
    return split is None or bool(split)  # unknown: a custom loader may validate on its own data


def _check_monitor(monitor, metric_names, validation):
    if not monitor.enabled:
        return
    train_keys = ["loss", *metric_names]
    logged = [*train_keys, "lr", *(f"val_{key}" for key in train_keys if validation)]
    if monitor.key in logged:
        return
    if monitor.key.startswith("val_") and not validation:
        reason = ("val_* metrics are only logged with validation data, and the data loader has none "
                  "(data_loader.args.validation_split is 0, and no val_dir, val_csv or n_folds is set). Set "
                  "validation_split (e.g. 0.1) or monitor a training metric")
    else:
        close = difflib.get_close_matches(monitor.key, logged, n=3)
        reason = f"logged keys are {', '.join(logged)}{'; did you mean ' + close[0] + '?' if close else ''}"
    raise ConfigError(f"trainer.monitor is '{monitor}', but '{monitor.key}' is never logged: {reason}. "
                      "Fix trainer.monitor or set it to \"off\".")


def _check_training_policies(config, problems):
    """The lr_scheduler entry (interval, "auto" lengths, nested schedulers), trainer.ema, trainer.swa and the
    callbacks section."""
    if config.get("lr_scheduler") and not problems.about("lr_scheduler"):
        with problems.collect("lr_scheduler"):
            check_scheduler_entry(config, config.trusted)
    with problems.collect("trainer.ema"):
        check_ema_settings(config["trainer"].get("ema"))
    with problems.collect("trainer.save_top_k"):
        check_checkpoint_policy(config["trainer"])
    with problems.collect("trainer.swa"):
        check_swa_settings(config["trainer"].get("swa"), config["trainer"].get("ema"), config["trainer"].get("epochs"))
    with problems.collect("callbacks"):
        build_callbacks(config, check_only=True)
    with problems.collect("trainer.fsdp"):
        check_fsdp_settings(config["trainer"])
    with problems.collect("trainer.deterministic"):
        check_determinism_settings(config["trainer"])


def _check_optimizer_steps(config, problems):
    """Build the optimizer and scheduler on one dummy parameter and step both once, so that an
    argument that only breaks `step()` shows now rather than at the end of the first epoch."""
    optimizer = None
    with problems.collect("optimizer"):
        optimizer = config.init_obj("optimizer", torch.optim, [torch.nn.Parameter(torch.zeros(1))])
    if optimizer is not None and config.get("lr_scheduler") and not problems.about("lr_scheduler") \
            and not problems.about("trainer.monitor", "trainer.epochs"):
        with problems.collect("lr_scheduler"):
            _check_scheduler_steps(config, optimizer)


def _check_scheduler_steps(config, optimizer):
    scheduler = build_lr_scheduler(config, optimizer, steps_per_epoch=100, trusted=config.trusted)
    monitor = scheduler_monitor(config["trainer"]["monitor"])
    if isinstance(scheduler, PLATEAU) and scheduler.mode != monitor.mode:
        raise ConfigError(f"lr_scheduler is ReduceLROnPlateau with mode '{scheduler.mode}', but it steps on "
                          f"'{monitor.key}', which trainer.monitor wants to {monitor.mode}imize. Set "
                          f"lr_scheduler.args.mode to \"{monitor.mode}\".")
    try:
        optimizer.step()
        scheduler.step(*([0.0] if isinstance(scheduler, PLATEAU) else []))
    except Exception as err:  # whatever torch raises, the fix is in lr_scheduler.args
        raise ConfigError(f"lr_scheduler: {config['lr_scheduler']['type']} fails when it steps "
                          f"({type(err).__name__}: {err}). Fix lr_scheduler.args in the config.") from err


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
    offline = getattr(loader_class, "has_offline_source", None)
    if _arg_value(args, loader_class, "download") is False and not (offline is not None and offline()):
        raise ConfigError(f"{key} '{path}' does not exist and data_loader.args.download is false. "
                          "Fix the path, or set download to true to fetch the data there.")


def _check_checkpoint_fits(config, checkpoint_path, checkpoint):
    model_class = resolve(config["arch"], "arch", trusted=config.trusted)
    try:  # the meta device gives every shape without allocating or initialising weights
        with torch.device("meta"):
            model = model_class(**entry_args(config["arch"], {}))
            if config["arch"].get("replace_head"):  # the checkpoint holds the new head's weights
                replace_head(model, config["arch"]["replace_head"], log=False)
    except ConfigError:
        raise
    except Exception:  # a model that cannot be built on meta is checked when its weights load
        return
    check_weights_fit(model.state_dict(), checkpoint[Key.STATE_DICT], checkpoint_path)
