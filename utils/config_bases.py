"""Config inheritance: a config file's "base" key names a file, or a list of files, that the
config is deep-merged onto. Paths are relative to the file that names them; a base may have
bases of its own. Merging: dicts merge key by key, any other value (lists included) replaces
the base's, and null removes the key."""
from pathlib import Path

from .errors import ConfigError

BASE_KEY = "base"


def resolve_bases(config, path, read_file, chain=()):
    """`config` (read from `path`) with its bases merged under it and the "base" key removed.
    `read_file(path)` reads one JSON object; `chain` holds the files that led here."""
    path = Path(path)
    chain = (*chain, path.resolve())
    if BASE_KEY not in config:
        return config
    merged = {}
    for base_path in _base_paths(config[BASE_KEY], path):
        if base_path.resolve() in chain:
            cycle = " -> ".join(str(p) for p in (*chain, base_path.resolve()))
            raise ConfigError(f"config inheritance loops: {cycle}. Remove one of these \"base\" entries.")
        if not base_path.is_file():
            raise ConfigError(f"config file '{path}' names the base '{base_path}', which does not exist. "
                              "Fix the \"base\" entry; its paths are relative to the file that names them.")
        base = resolve_bases(read_file(base_path), base_path, read_file, chain)
        merged = deep_merge(merged, base)
    own = {key: value for key, value in config.items() if key != BASE_KEY}
    return deep_merge(merged, own)


def deep_merge(base, override):
    """A new dict: `override` merged onto `base` (dicts recursively, null deletes a key)."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            below = merged.get(key)
            merged[key] = deep_merge(below if isinstance(below, dict) else {}, value)
        else:
            merged[key] = value
    return merged


def _base_paths(entry, path):
    entries = [entry] if isinstance(entry, str) else entry
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f"config file '{path}': \"base\" is {entry!r}; it must be a path or a list of "
                          "paths to config files, e.g. \"base\": \"config.json\".")
    return [path.parent / e for e in entries]
