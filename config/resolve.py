"""Turn a config entry's `"type"` into a Python object: first the project module of its
section, then the torch namespace that fits, or the module an explicit `"module"` key names.
The project modules are looked up by name when an entry is resolved; config/ itself imports
only utils/."""
import difflib
import importlib
import inspect

from utils.errors import ConfigError

# where a section's "type" is looked up first, by the key path's leading parts (the longest
# prefix that matches wins): "data_loader.args.transforms.train.0" is a transform
PROJECT_MODULES = {
    "arch": "model.model",
    "data_loader": "data_loader.data_loaders",
    "loss": "model.loss",
    "metrics": "model.metric",
    "callbacks": "trainer.callbacks",
    "data_loader.args.transforms": "data_loader.transforms",
}
# torch namespaces searched after the project module, by the same key-path prefixes
TORCH_FALLBACKS = {
    "optimizer": ["torch.optim"],
    "lr_scheduler": ["torch.optim.lr_scheduler"],
    "loss": ["torch.nn", "torch.nn.functional"],
    # torchmetrics' metric classes by name: {"type": "R2Score"}, {"type": "MulticlassF1Score", ...}
    "metrics": ["torch.nn.functional", "torchmetrics.regression", "torchmetrics.classification"],
    "arch": ["torch.nn"],
    "data_loader.args.transforms": ["torchvision.transforms.v2"],
}


def section_of(key_path, table):
    """The longest leading part of `key_path` that is a key of `table`, or None."""
    parts = key_path.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in table:
            return ".".join(parts[:end])
    return None


def project_module(key_path):
    """The project module a key path's "type" is looked up in first (imported now), or None."""
    section = section_of(key_path, PROJECT_MODULES)
    return importlib.import_module(PROJECT_MODULES[section]) if section else None


def torch_fallbacks(key_path):
    section = section_of(key_path, TORCH_FALLBACKS)
    return TORCH_FALLBACKS[section] if section else ()
# What a config loaded from a checkpoint may name in "module" without --trust: the project's
# packages (any module in them) and these torch/torchvision namespaces. Not all of torch:
# torch.hub.load, torch.load or torch.utils.cpp_extension would run code from elsewhere.
# torchmetrics: only the classification and regression metrics, whose every public name is a
# Metric class doing tensor arithmetic; not the top level, whose CLIPScore, BERTScore or FID
# load model files named by their arguments.
PROJECT_PACKAGES = ("model", "data_loader", "trainer", "base")
TRUSTED_MODULES = (
    "torch.nn", "torch.nn.functional", "torch.optim", "torch.optim.lr_scheduler",
    "torchvision.models", "torchvision.models.detection", "torchvision.models.segmentation",
    "torchvision.models.video", "torchvision.models.optical_flow", "torchvision.models.quantization",
    "torchvision.transforms", "torchvision.transforms.v2",
    "torchmetrics.classification", "torchmetrics.regression",
)


def is_trusted_module(name):
    return name in TRUSTED_MODULES or name.split(".")[0] in PROJECT_PACKAGES


def import_config_module(name, key_path, trusted=True):
    if not trusted and not is_trusted_module(name):
        raise ConfigError(
            f"{key_path}.module is '{name}', but this config came from a checkpoint, which may "
            f"only name the project's modules ({', '.join(PROJECT_PACKAGES)}) and "
            f"{', '.join(TRUSTED_MODULES)}. If you trust the checkpoint's source, pass --trust."
        )
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ConfigError(
            f"{key_path}.module names '{name}', which cannot be imported ({err}). "
            "Use an importable module path such as 'torchvision.models', or remove the key."
        ) from None


def resolve_type(entry, key_path, project_module=None, fallbacks=(), trusted=True):
    """Find `entry["type"]` (or a bare string entry) in the candidate modules: the entry's
    "module", else `project_module` and then the `fallbacks` namespaces."""
    type_name = entry if isinstance(entry, str) else entry.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ConfigError(
            f"{key_path}.type is missing or not a string (got {type_name!r}). "
            'Write the entry as {"type": "ClassName", "args": {...}}.'
        )
    if not trusted and type_name.startswith("_"):
        raise ConfigError(f"{key_path}.type '{type_name}' is a private name, which a config from a "
                          "checkpoint may not use. If you trust the checkpoint's source, pass --trust.")
    modules = []
    for module in _candidate_modules(entry, key_path, project_module, fallbacks, trusted):
        modules.append(module)
        obj = getattr(module, type_name, None)
        if obj is not None and callable(obj):
            return obj
    raise ConfigError(_unknown_type_message(type_name, key_path, modules))


def _candidate_modules(entry, key_path, project_module, fallbacks, trusted):
    """The modules to look in, in order; each fallback is imported only when the ones before it
    lack the name (torchmetrics takes a second to import)."""
    if isinstance(entry, dict) and entry.get("module"):
        yield import_config_module(entry["module"], key_path, trusted)
        return
    if project_module is not None:
        yield project_module
    for name in fallbacks:
        yield importlib.import_module(name)


def _unknown_type_message(type_name, key_path, modules):
    names = sorted({n for m in modules for n in dir(m) if not n.startswith("_") and callable(getattr(m, n))})
    close = difflib.get_close_matches(type_name, names, n=5, cutoff=0.5)
    where = ", ".join(m.__name__ for m in modules)
    hint = f" Closest names: {', '.join(close)}." if close else ""
    return (
        f"{key_path}.type '{type_name}' was not found in {where}.{hint} Fix the spelling, "
        'define it in the project module, or add "module": "package.module" to the entry.'
    )


def check_call_args(obj, args, kwargs, key_path, partial=False):
    """Raise a ConfigError naming the rejected argument before calling `obj(*args, **kwargs)`.
    `partial`: the remaining arguments come later (a loss gets output and target per batch)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    try:
        bound = signature.bind_partial(*args, **kwargs) if partial else signature.bind(*args, **kwargs)
    except TypeError as err:
        accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
        raise ConfigError(
            f"{key_path}.args do not fit {getattr(obj, '__name__', obj)}: {err}. "
            f"Accepted arguments: {', '.join(accepted) or '(none)'}."
        ) from None
    _check_arg_types(signature, bound.arguments, kwargs, key_path)


def _check_arg_types(signature, arguments, config_args, key_path):
    """Catch the common `"batch_size": "64"` mistake: a string where the default is a number."""
    for name, value in arguments.items():
        if name not in config_args:
            continue
        expected = _expected_number_type(signature.parameters[name])
        if expected is None or value is None:
            continue
        if isinstance(value, str) or (expected is bool) != isinstance(value, bool):
            raise ConfigError(
                f"{key_path}.args.{name} is {value!r} ({type(value).__name__}), but "
                f"{expected.__name__} is expected. Write it as a JSON "
                f"{'true/false' if expected is bool else 'number'} without quotes, "
                "e.g. 64 rather than \"64\"."
            )


def _expected_number_type(parameter):
    """bool/int/float from the annotation, else from the default value; None when unknown."""
    if parameter.annotation in (bool, int, float):
        return parameter.annotation
    default = parameter.default
    return type(default) if isinstance(default, (bool, int, float)) else None
