"""Reading a config file (with its "base" files merged under it) and applying the command-line
overrides to it."""
import json
from pathlib import Path

from utils.config_bases import resolve_bases
from utils.errors import ConfigError

from .overrides import set_by_path


def read_config_file(path):
    """The config file at `path` with its bases (its "base" key) merged under it."""
    return resolve_bases(_read_json_object(path), path, _read_json_object)


def read_config(config):
    """A config given as a file path, or as a dict (a private copy; its "base" paths are relative
    to the working folder), with its bases merged under it."""
    if not isinstance(config, dict):
        return read_config_file(config)
    return resolve_bases(json.loads(json.dumps(config)), Path.cwd() / "(config dict)", _read_json_object)


def _read_json_object(path):
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist. Check the path given to -c.") from None
    except OSError as err:
        raise ConfigError(f"config file '{path}' cannot be read: {err.strerror}.") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"config file '{path}' is not valid JSON: {err.msg} at line {err.lineno}, column "
            f"{err.colno}. Fix the file (a trailing comma or a missing quote is the usual cause)."
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file '{path}' must hold a JSON object at the top level.")
    return config


def apply_modification(config, modification):
    """A private, plain copy of `config` with the overrides applied: keys (keys, force) from -o,
    or the template's 'optimizer;args;lr' strings from its custom options."""
    config = json.loads(json.dumps(config))
    for target, value in modification.items():
        if value is None:
            continue
        if isinstance(target, tuple):  # from -o: (keys, force)
            keys, force = target
            set_by_path(config, list(keys), value, force=force)
        else:  # template style 'optimizer;args;lr' (or dotted)
            keys = target.replace(";", ".").split(".")
            set_by_path(config, keys, value, force=True, source="option")
    return config
