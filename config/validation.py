"""Checking a config against the schema: every problem is collected and reported in one
ConfigError, before anything is built or written. Then the defaults are filled in."""
import contextlib
import difflib
import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace

from utils.errors import ConfigError

from .schema import ABSENT, DATA_LOADER_ARGS, REQUIRED, SECTIONS, default_of, section_settings

logger = logging.getLogger("config")
TYPO_CUTOFF = 0.8  # difflib similarity above which an unknown key counts as a misspelt setting
ENTRY_SECTIONS = ("arch", "data_loader", "optimizer", "lr_scheduler")
CALLABLE_ENTRY_KEYS = ("type", "args", "name", "module")  # a loss or metric written as an object


class Problems:
    """Collects problem sentences, each under the key path it concerns."""

    def __init__(self):
        self.items = []  # (key path, sentence)

    def add(self, key_path, sentence):
        self.items.append((key_path, sentence))

    @contextlib.contextmanager
    def collect(self, key_path):
        """Record a ConfigError raised in the block instead of stopping at it."""
        try:
            yield
        except ConfigError as err:
            self.add(key_path, str(err))

    def about(self, *key_paths):
        """True when a problem concerns one of `key_paths` or a key below it."""
        return any(found == key or found.startswith(key + ".") for found, _ in self.items for key in key_paths)

    def about_exactly(self, *key_paths):
        """True when a problem concerns one of `key_paths` itself (not a key below it)."""
        return any(found in key_paths for found, _ in self.items)

    def raise_if_any(self):
        if not self.items:
            return
        if len(self.items) == 1:
            raise ConfigError(self.items[0][1])
        lines = "\n".join(f"  - {sentence}" for _, sentence in self.items)
        raise ConfigError(f"the config has {len(self.items)} problems:\n{lines}")


def check_config(config, problems):
    """Check `config` (a plain dict) against the schema, adding every problem to `problems`."""
    check_section(config, "", problems)
    for section in ("trainer", *ENTRY_SECTIONS):
        if isinstance(config.get(section), dict):
            check_section(config[section], section, problems)
    metrics = config.get("metrics")  # its type is checked with the top level; any JSON value may be here
    for index, entry in enumerate(metrics if isinstance(metrics, list) else []):
        _check_callable_entry(entry, f"metrics.{index}", problems)
    if "loss" in config:
        _check_callable_entry(config["loss"], "loss", problems)
    _check_loader_args(config.get("data_loader"), problems)
    trainer = config.get("trainer")
    if isinstance(trainer, dict) and not problems.about("trainer.save_dir"):
        _check_save_dir(trainer.get("save_dir", default_of("trainer", "save_dir")), problems)


def check_section(values, section, problems, settings=None, unknown_keys=True):
    """Check one section's values against `settings` (default: the section's declared ones);
    `unknown_keys`: also report keys that are not declared."""
    settings = section_settings(section) if settings is None else settings
    prefix = f"{section}." if section else ""
    declared = {setting.key: setting for setting in settings}
    for setting in settings:
        if setting.key not in values:
            if setting.default is REQUIRED:
                problems.add(prefix + setting.key, f"{prefix}{setting.key} is missing; it is required "
                                                   f"({setting.description}).")
            continue
        problem = setting.problem(values[setting.key])
        if problem:
            problems.add(prefix + setting.key, f"{prefix}{setting.key} {problem}.")
    for key in values if unknown_keys else ():
        if key not in declared:
            _unknown_key(prefix, key, list(declared), problems)


def _unknown_key(prefix, key, known, problems):
    """A near-miss of a declared key is an error; anything else a warning (user code may read it)."""
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=TYPO_CUTOFF)
    if close:
        problems.add(prefix + str(key), f"{prefix}{key} is not a setting; did you mean {prefix}{close[0]}?")
    else:
        logger.warning(f"{prefix}{key} is not a setting the framework reads; it is kept for your own code. "
                       f"Settings of {prefix.rstrip('.') or 'the top level'}: {', '.join(known)}.")


def _check_callable_entry(entry, key_path, problems):
    if isinstance(entry, str):
        return
    if not isinstance(entry, dict):
        problems.add(key_path, f"{key_path} is {entry!r}; write a function name or "
                               "{\"type\": name, \"args\": {...}}.")
        return
    if "type" not in entry:
        problems.add(f"{key_path}.type", f"{key_path} has no \"type\"; write {{\"type\": name, \"args\": {{...}}}}.")
    if not isinstance(entry.get("args", {}), dict):
        problems.add(f"{key_path}.args", f"{key_path}.args must be an object {{...}} of keyword arguments.")
    for key in entry:
        if key not in CALLABLE_ENTRY_KEYS:
            _unknown_key(f"{key_path}.", key, list(CALLABLE_ENTRY_KEYS), problems)


def _check_loader_args(entry, problems):
    """The declared arguments of a built-in data loader (other loaders are checked against
    their signature before the run, see config/preflight.py)."""
    if not isinstance(entry, dict) or entry.get("module") or not isinstance(entry.get("args", {}), dict):
        return
    loader_type = entry.get("type")  # any JSON value: a list or a dict must not be looked up
    settings = DATA_LOADER_ARGS.get(loader_type) if isinstance(loader_type, str) else None
    if settings is None:
        return
    args = entry.get("args", {})
    declared = [setting.key for setting in settings]
    for key in args:  # other unknown keys are checked against torch's DataLoader in config/preflight.py
        close = difflib.get_close_matches(str(key), declared, n=1, cutoff=TYPO_CUTOFF)
        if key not in declared and key not in _torch_loader_args() and close:
            problems.add(f"data_loader.args.{key}", f"data_loader.args.{key} is not an argument of "
                                                    f"{entry['type']}. Did you mean data_loader.args.{close[0]}?")
    for setting in settings:
        if setting.key in args:
            problem = setting.problem(args[setting.key])
            if problem:
                problems.add(f"data_loader.args.{setting.key}", f"data_loader.args.{setting.key} {problem}.")
        elif setting.default is REQUIRED:
            problems.add(f"data_loader.args.{setting.key}",
                         f"data_loader.args.{setting.key} is missing; it is required ({setting.description}).")


def _torch_loader_args():
    """What a built-in loader passes on to torch's DataLoader (pin_memory is not a typo of in_memory)."""
    import inspect

    from torch.utils.data import DataLoader

    return inspect.signature(DataLoader).parameters


def _check_save_dir(save_dir, problems):
    """The output root must be a folder we can write to (or create): probed with a temporary file
    that is removed at once, before any run folder is made."""
    path = Path(save_dir)
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: '{existing}' is a file"
        problems.add("trainer.save_dir", f"trainer.save_dir '{save_dir}' {where}, not a folder. Point "
                                         "save_dir at a folder you can write to.")
        return
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        where = "is" if existing == path else f"cannot be created: '{existing}' is"
        problems.add("trainer.save_dir", f"trainer.save_dir '{save_dir}' {where} not writable ({err.strerror}). "
                                         "Point save_dir at a folder you can write to.")


def fill_defaults(config):
    """Add every declared setting that is absent (except optional sections) with its default."""
    fill_section(config, section_settings(""))
    for section in SECTIONS:
        if section and isinstance(config.get(section), dict):
            fill_section(config[section], section_settings(section))
    return config


def fill_section(values, settings):
    for setting in settings:
        if setting.key not in values and setting.default not in (REQUIRED, ABSENT):
            default = setting.default
            values[setting.key] = type(default)() if isinstance(default, (dict, list)) else default


def settings_view(config):
    """The filled-in settings as attributes: view.seed, view.trainer.accum_steps, ..."""
    view = section_view(config, "")
    view.trainer = section_view(config.get("trainer", {}), "trainer")
    return view


def section_view(values, section):
    """One section's declared settings as attributes (read-only use: edit the config dict)."""
    return SimpleNamespace(**{s.key: _value(values, s) for s in section_settings(section)})


def _value(values, setting):
    if setting.key in values:
        return values[setting.key]
    return None if setting.default in (REQUIRED, ABSENT) else setting.default
