"""Reading a config file (with its "base" files merged under it) and applying the command-line
overrides to it."""
import json
from pathlib import Path

from utils.bounded_read import ReadProblem, read_bounded
from utils.config_bases import resolve_bases
from utils.errors import ConfigError, first_line

from .overrides import set_by_path
from .schema import DEFAULT_READ_TIMEOUT_S, MAX_CONFIG_FILE_BYTES


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
    return read_json_object(path, "config file", "Check the path given to -c.")


def read_json_object(path, what, missing_hint):
    """The JSON object in the file at `path`, read within MAX_CONFIG_FILE_BYTES and the read time
    limit; every problem is a ConfigError naming the file (`what` says which kind it is)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} '{path}' does not exist. {missing_hint}")
    try:
        data = read_bounded(path, MAX_CONFIG_FILE_BYTES, DEFAULT_READ_TIMEOUT_S)
    except ReadProblem as err:
        raise ConfigError(f"{what} '{path}' cannot be read: it {err}.") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not content
    except UnicodeDecodeError as err:
        line, column = _position(data, err.start)
        raise ConfigError(f"{what} '{path}' is not UTF-8 text: byte 0x{data[err.start]:02x} at line {line}, "
                          f"column {column}. Save it as UTF-8.") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{what} '{path}' is not valid JSON: {err.msg} at line {err.lineno}, column "
            f"{err.colno}. Fix the file (a trailing comma or a missing quote is the usual cause)."
        ) from None
    except (ValueError, RecursionError) as err:  # a number of thousands of digits; nesting too deep
        raise ConfigError(f"{what} '{path}' cannot be used: {first_line(err)}. Fix the file.") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{what} '{path}' must hold a JSON object at the top level.")
    return config


def _position(data, offset):
    """(line, column) of byte `offset`, both from 1."""
    before = data[:offset]
    return before.count(b"\n") + 1, offset - (before.rfind(b"\n") + 1) + 1


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
