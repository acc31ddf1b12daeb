"""Transfer learning from the `arch` section: pretrained weights from a local file, a new
classifier head, weights from another checkpoint, frozen parameters, and per-group learning
rates for the optimizer.

    "arch": {"type": "mobilenet_v3_small", "module": "torchvision.models", "args": {},
             "pretrained": "weights/mobilenet_v3_small.pth",
             "replace_head": {"path": "classifier.3", "num_classes": 2},
             "init_from": {"path": "saved/models/X/run/model_best.pth", "strict": false},
             "freeze": ["features.*"]}
    "optimizer": {"type": "Adam", "args": {"lr": 1e-3},
                  "param_groups": [{"params": "classifier.0.*", "lr": 1e-4}]}
"""
import fnmatch
import logging
from pathlib import Path

import torch.nn as nn

from utils.checkpoint import load_weights, safe_load
from utils.errors import ConfigError

logger = logging.getLogger("transfer")


def build_model(config, module_arch, load_start_weights=True):
    """`config.init_obj("arch")`, then pretrained weights, head replacement, init_from and
    freezing, in that order (weights of the old head load before it is replaced)."""
    arch = config["arch"]
    model = config.init_obj("arch", module_arch)
    if load_start_weights and arch.get("pretrained"):
        _load_weight_file(model, arch["pretrained"], "arch.pretrained", default_strict=True)
    elif load_start_weights and str(arch.get("module", "")).startswith("torchvision.models"):
        logger.info(f"arch.pretrained is not set: {arch['type']} starts from random weights. For transfer "
                    "learning, save pretrained weights to a local file and name it in arch.pretrained.")
    if arch.get("replace_head"):
        replace_head(model, arch["replace_head"])
    if load_start_weights and arch.get("init_from"):
        _load_weight_file(model, arch["init_from"], "arch.init_from", default_strict=False)
    set_trainable(model, arch.get("freeze"), arch.get("trainable"))
    return model


def _load_weight_file(model, entry, key_path, default_strict):
    """`entry` is a path or {"path", "strict"}; the file is a framework checkpoint or a bare
    state dict (e.g. torchvision weights saved with torch.save(model.state_dict(), path))."""
    path, strict = (entry, default_strict) if isinstance(entry, str) else \
        (entry.get("path"), entry.get("strict", default_strict))
    if not isinstance(path, str):
        raise ConfigError(f"{key_path} needs a file path (a string or {{\"path\": ..., \"strict\": ...}}).")
    if not Path(path).is_file():
        raise ConfigError(f"{key_path}: weight file '{path}' does not exist. Weights are never "
                          "downloaded at run time; save them to a local file first.")
    missing, unexpected = load_weights(model, safe_load(path), path, strict=strict)
    logger.info(f"Weights loaded from {path} ({'strict' if strict else 'non-strict'}).")
    if missing:
        logger.info(f"    missing keys (left as initialised) ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        logger.info(f"    unexpected or reshaped keys (ignored) ({len(unexpected)}): {', '.join(unexpected)}")


def replace_head(model, spec, log=True):
    """Swap the nn.Linear at `spec["path"]` (dotted module name) for a freshly initialised one
    with `spec["num_classes"]` outputs."""
    path, num_classes = spec.get("path"), spec.get("num_classes")
    if not isinstance(path, str) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError('arch.replace_head needs {"path": "<module name>", "num_classes": <int >= 1>}, '
                          f"got {spec!r}.")
    try:
        old = model.get_submodule(path)
    except AttributeError:
        linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ConfigError(f"arch.replace_head.path '{path}' is not a module of the model; its "
                          f"Linear layers are: {', '.join(linear) or '(none)'}.") from None
    if not isinstance(old, nn.Linear):
        raise ConfigError(f"arch.replace_head.path '{path}' is a {type(old).__name__}, not a Linear layer.")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    parent_name, _, child_name = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child_name, new)
    if log:
        logger.info(f"Head {path} replaced: {old.out_features} -> {num_classes} outputs.")


def set_trainable(model, freeze=None, trainable=None):
    """`trainable`: only parameters matching these patterns train; `freeze`: parameters matching
    these patterns do not. Patterns are fnmatch globs on parameter names ("features.*")."""
    names = [name for name, _ in model.named_parameters()]
    frozen = set()
    if trainable is not None:
        keep = _matching(names, trainable, "arch.trainable")
        frozen.update(n for n in names if n not in keep)
    if freeze is not None:
        frozen.update(_matching(names, freeze, "arch.freeze"))
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)


def _matching(names, patterns, key_path):
    if isinstance(patterns, str) or not isinstance(patterns, list):
        raise ConfigError(f"{key_path} must be a list of parameter-name patterns, e.g. [\"features.*\"].")
    matched = set()
    for i, pattern in enumerate(patterns):
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise ConfigError(f"{key_path}.{i}: pattern '{pattern}' matches no parameter. Parameter "
                              f"names look like: {', '.join(names[:6])} ...")
        matched.update(hits)
    return matched


def optimizer_param_groups(model, optimizer_config):
    """The trainable parameters as optimizer groups. Each entry of
    `optimizer.param_groups` ({"params": pattern or [patterns], other optimizer args}) takes the
    trainable parameters its patterns match (first entry wins); the rest form the first group,
    which uses optimizer.args."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("no parameter is trainable: arch.freeze / arch.trainable froze the whole model.")
    taken, groups = set(), []
    for i, spec in enumerate(optimizer_config.get("param_groups") or []):
        key_path = f"optimizer.param_groups.{i}"
        if not isinstance(spec, dict) or "params" not in spec:
            raise ConfigError(f'{key_path} must be {{"params": "pattern", "lr": ...}}.')
        patterns = [spec["params"]] if isinstance(spec["params"], str) else spec["params"]
        matched = _matching([n for n, _ in trainable if n not in taken], patterns, f"{key_path}.params")
        taken.update(matched)
        groups.append({**spec, "params": [p for n, p in trainable if n in matched]})
    rest = [p for n, p in trainable if n not in taken]
    return ([{"params": rest}] if rest else []) + groups


def parameter_counts(model):
    """(trainable, frozen) numbers of parameter elements."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen
