"""Where a run's config comes from: the -c file, the checkpoint of -r (read once, and handed on
with the config), and the command-line overrides."""
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from utils.checkpoint import Key, latest_valid_checkpoint, load_checkpoint, newest_run_checkpoint
from utils.config_bases import resolve_bases
from utils.errors import ConfigError

from .overrides import set_by_path
from .schema import default_of

logger = logging.getLogger(__name__)


@dataclass
class Source:
    """config: the plain dict; resume: the checkpoint to continue; init_weights: the checkpoint
    whose weights start a new run; checkpoint: the loaded file of either; trusted: False for a
    config that came out of a checkpoint."""
    config: dict
    resume: Path | None = None
    init_weights: Path | None = None
    checkpoint: dict | None = None
    trusted: bool = True


def load_source(config_path, resume, modification=None):
    """-c alone: new run. -r alone: resume with the checkpoint's config. -c and -r: fine-tune,
    i.e. weights from the checkpoint, everything else from the new config. -c and -r auto:
    resume the newest run of the config's name (after `modification`, the overrides), or start
    the first one."""
    if config_path is None and resume is None:
        raise ConfigError("no config given. Add -c config.json to start a run, or -r CHECKPOINT to resume one.")
    if resume == "auto":
        return _auto_resume(config_path, modification or {})
    path, checkpoint = _resolve_resume_path(resume) if resume else (None, None)
    if config_path is not None:
        return Source(read_config_file(config_path), init_weights=path, checkpoint=checkpoint)
    return Source(_checkpoint_config(path, checkpoint), resume=path, checkpoint=checkpoint, trusted=False)


def _auto_resume(config_path, modification):
    """Restarting the same command after a crash or preemption continues the newest run. The
    run is looked up by the name and save_dir that the overrides give."""
    if config_path is None:
        raise ConfigError("-r auto needs -c CONFIG to know which run name to look for.")
    config = read_config_file(config_path)
    lookup = apply_modification(config, modification)
    save_dir = lookup.get("trainer", {}).get("save_dir", default_of("trainer", "save_dir"))
    runs_dir = Path(save_dir) / "models" / str(lookup.get("name", ""))
    found = newest_run_checkpoint(runs_dir)
    if found is None:
        logger.warning(f"-r auto: no checkpoint in '{runs_dir}' yet; starting a new run from {config_path}.")
        return Source(config)
    path, checkpoint = found
    return Source(_checkpoint_config(path, checkpoint), resume=path, checkpoint=checkpoint, trusted=False)


def _checkpoint_config(path, checkpoint):
    config = checkpoint.get(Key.CONFIG) or read_config_file(path.parent / "config.json")
    return json.loads(json.dumps(config))


def _resolve_resume_path(resume):
    """(path, loaded checkpoint) for -r: a file, or the newest valid checkpoint of a run folder."""
    path = Path(resume)
    if path.is_dir():
        return latest_valid_checkpoint(path)
    if not path.exists():
        raise ConfigError(f"resume path '{path}' does not exist. Pass a checkpoint .pth file, a run "
                          "folder under saved/models/, or 'auto' (with -c) for the newest run.")
    return path, load_checkpoint(path, mmap=True)


def read_config_file(path):
    """The config file at `path` with its bases (its "base" key) merged under it."""
    return resolve_bases(_read_json_object(path), path, _read_json_object)


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
