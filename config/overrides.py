"""Command-line overrides: `-o key.path=value` and the template's --lr/--bs options."""
import difflib
import json

from utils.errors import ConfigError

from .schema import is_declared


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
    """Set tree[k0][k1]... = value. Without `force`, every key must already exist or be a declared
    setting (config/schema.py; for data_loader.args, of the config's built-in loader), so a typo
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
            if not force and not is_declared(keys[: depth + 1], tree):
                close = difflib.get_close_matches(key, [str(k) for k in node], n=1, cutoff=0.6)
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
