"""Command-line overrides and the checks a config passes before anything is built."""
import json
import re

from .errors import ConfigError

MONITOR_PATTERN = re.compile(r"^(off|(min|max) \S+)$")

# key path -> (required, expected types, default); types are checked where a value is present
TRAINER_KEYS = {
    "epochs": (True, int, None),
    "save_dir": (False, str, "saved/"),
    "save_period": (False, int, 1),
    "verbosity": (False, int, 2),
    "monitor": (False, str, "off"),
    "early_stop": (False, int, 0),
    "tensorboard": (False, bool, True),
}
REQUIRED_SECTIONS = ("name", "arch", "data_loader", "optimizer", "loss", "metrics", "trainer")


def parse_override(text):
    """'a.b.c=value' -> (['a','b','c'], value, force). The value is JSON where it parses
    (numbers, true, null, lists), else the raw string. A leading '+' allows a new key."""
    key, sep, raw_value = text.partition("=")
    if not sep or not key.strip("+"):
        raise ConfigError(
            f"override '{text}' is not of the form key.path=value, e.g. -o optimizer.args.lr=0.01"
        )
    force = key.startswith("+")
    try:  # NaN and Infinity stay strings: `-o name=NaN` names a run, it is not a number
        value = json.loads(raw_value, parse_constant=_not_a_json_value)
    except ValueError:
        value = raw_value
    return key.lstrip("+").split("."), value, force


def _not_a_json_value(constant):
    raise ValueError(constant)


def set_by_path(tree, keys, value, force=False, source="override"):
    """Set tree[k0][k1]... = value. Without `force`, every key must already exist, so a typo
    is an error rather than a silently ignored setting."""
    node = tree
    for depth, key in enumerate(keys):
        path = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"{source} '{'.'.join(keys)}': '{path}' is not an index of the list.")
            key = int(key)
        elif not isinstance(node, dict):
            raise ConfigError(f"{source} '{'.'.join(keys)}': '{path}' is inside a value that is not a dict.")
        elif key not in node:
            if not force:
                close = [k for k in node if k.lower().startswith(key[:2].lower())] if key else []
                hint = f" Keys there: {', '.join(map(str, node))}." if node else ""
                raise ConfigError(
                    f"{source} '{'.'.join(keys)}': key '{path}' does not exist in the config."
                    f"{hint} Fix the spelling, or prefix the key with '+' to add it "
                    f"(e.g. -o +{'.'.join(keys)}=...).{' Did you mean ' + close[0] + '?' if close else ''}"
                )
            if depth < len(keys) - 1:
                node[key] = {}
        if depth == len(keys) - 1:
            node[key] = value
        else:
            node = node[key]


def validate_config(config):
    """Check the structure that every run needs and fill defaults for optional trainer keys."""
    missing = [key for key in REQUIRED_SECTIONS if key not in config]
    if missing:
        raise ConfigError(
            f"config is missing the required key(s) {', '.join(missing)}. See the config "
            "reference in docs/config.md; config.json in the project root is a complete example."
        )
    _expect(config["name"], str, "name")
    for section in ("arch", "data_loader", "optimizer"):
        _check_entry(config[section], section)
    if config.get("lr_scheduler") is not None:
        _check_entry(config["lr_scheduler"], "lr_scheduler")
    _expect(config["metrics"], list, "metrics")
    _expect(config.get("n_gpu", 1), int, "n_gpu")
    _expect(config.get("seed", 0), int, "seed")
    _validate_trainer(config["trainer"])


def _validate_trainer(trainer):
    _expect(trainer, dict, "trainer")
    for key, (required, kind, default) in TRAINER_KEYS.items():
        if key not in trainer:
            if required:
                raise ConfigError(f"config is missing the required key trainer.{key}.")
            trainer[key] = default
        _expect(trainer[key], kind, f"trainer.{key}")
    if trainer["epochs"] < 1:
        raise ConfigError(f"trainer.epochs is {trainer['epochs']}; it must be at least 1.")
    if not MONITOR_PATTERN.match(trainer["monitor"]):
        raise ConfigError(
            f"trainer.monitor is '{trainer['monitor']}'; write 'off', 'min <metric>' or "
            "'max <metric>', e.g. 'min val_loss' or 'max val_accuracy'."
        )


def _check_entry(entry, key_path):
    _expect(entry, dict, key_path)
    if "type" not in entry:
        raise ConfigError(f"{key_path} has no 'type'. Write it as {{\"type\": \"Name\", \"args\": {{...}}}}.")
    _expect(entry.get("args", {}), dict, f"{key_path}.args")


def _expect(value, kind, key_path):
    wrong_bool = kind in (int, float) and isinstance(value, bool)
    if not isinstance(value, kind) or wrong_bool:
        raise ConfigError(
            f"{key_path} is {value!r} ({type(value).__name__}), but a {kind.__name__} is "
            f"expected. Fix the value in the config file or override it with -o {key_path}=..."
        )
