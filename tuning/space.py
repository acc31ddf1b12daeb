"""The "tune.space" section: dotted config keys mapped to search spaces, checked up front so a
mistake names its key instead of failing inside a trial.

    "optimizer.args.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": true}
    "arch.args.width":   {"type": "int", "low": 16, "high": 64, "step": 16}
    "data_loader.args.batch_size": {"type": "categorical", "choices": [32, 64]}   (or just [32, 64])

A key starting with "+" may name a key the config does not have yet (as with -o +key=value)."""
import copy
import math

from config.overrides import set_by_path
from utils import ConfigError

RANGE_TYPES = ("float", "int")
CHOICE_TYPES = (type(None), bool, int, float, str)


def parse_space(space, config):
    """Return {key: spec} with each spec checked and shorthand lists turned into categoricals."""
    if not isinstance(space, dict) or not space:
        raise ConfigError('tune.space must map config keys to search spaces, e.g. '
                          '{"optimizer.args.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": true}}.')
    parsed = {}
    for key, spec in space.items():
        key_path = f"tune.space.{key}"
        _check_key_exists(key, config, key_path)
        if isinstance(spec, list):
            spec = {"type": "categorical", "choices": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"{key_path}: expected a list of choices or a dict with \"type\", got {spec!r}.")
        _check_spec(spec, key_path)
        parsed[key] = spec
    return parsed


def _check_key_exists(key, config, key_path):
    force = key.startswith("+")
    try:
        set_by_path(copy.deepcopy(config), key.lstrip("+").split("."), None, force=force)
    except ConfigError as err:
        raise ConfigError(f"{key_path}: {err}") from None


def _check_spec(spec, key_path):
    kind = spec.get("type")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{key_path}: 'choices' must be a non-empty list.")
        bad = [c for c in choices if not isinstance(c, CHOICE_TYPES)]
        if bad:
            raise ConfigError(f"{key_path}: choices must be numbers, strings, booleans or null; "
                              f"{bad[0]!r} is not (Optuna stores choices as plain values).")
        return
    if kind not in RANGE_TYPES:
        raise ConfigError(f"{key_path}: 'type' is {kind!r}; use \"float\", \"int\" or \"categorical\".")
    number = int if kind == "int" else (int, float)
    for bound in ("low", "high"):
        value = spec.get(bound)
        if not isinstance(value, number) or isinstance(value, bool):
            raise ConfigError(f"{key_path}: '{bound}' must be {'an integer' if kind == 'int' else 'a number'}, "
                              f"got {value!r}.")
    if spec["low"] >= spec["high"]:
        raise ConfigError(f"{key_path}: 'low' must be < 'high' (got {spec['low']} and {spec['high']}).")
    if spec.get("log") and spec["low"] <= 0:
        raise ConfigError(f"{key_path}: a log scale needs 'low' > 0 (got {spec['low']}).")
    if spec.get("log") and spec.get("step") is not None:
        raise ConfigError(f"{key_path}: 'step' and 'log' cannot be combined; drop one of them.")
    unknown = set(spec) - {"type", "low", "high", "log", "step"}
    if unknown:
        raise ConfigError(f"{key_path}: unknown setting(s) {', '.join(sorted(unknown))}; "
                          "a range takes low, high, log and step.")


def suggest(trial, key, spec):
    """Draw the value of `key` for this Optuna trial; the parameter's name is the key."""
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step") or 1,
                                 log=spec.get("log", False))
    return trial.suggest_float(key, spec["low"], spec["high"], step=spec.get("step"),
                               log=spec.get("log", False))


def grid_values(space):
    """The finite grid of every key, for the grid sampler."""
    grid = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            grid[key] = spec["choices"]
        elif spec["type"] == "int" and not spec.get("log"):
            grid[key] = list(range(spec["low"], spec["high"] + 1, spec.get("step") or 1))
        else:
            raise ConfigError(f"tune.space.{key}: the grid sampler needs a finite set of values; write "
                              "it as a list of choices (or an int range without log).")
    return grid


def grid_size(grid):
    return math.prod(len(values) for values in grid.values())


def apply_values(config, values):
    """A copy of `config` with each dotted (maybe "+"-prefixed) key set to its value."""
    config = copy.deepcopy(config)
    for key, value in values.items():
        set_by_path(config, key.lstrip("+").split("."), value, force=key.startswith("+"))
    return config
