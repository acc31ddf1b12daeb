"""The grid of a sweep: `-m optimizer.args.lr=1e-3,1e-2 seed=1,2,3` is the Cartesian product
of each key's comma-separated values (commas inside [...], {...} or quotes do not split)."""
import itertools
import re

from utils import ConfigError
from utils.config_checks import parse_override

# keys whose values repeat one setting rather than define a new one: the summary averages over them
REPEAT_KEYS = ("seed", "data_loader.args.fold")


def parse_grid(texts):
    """["a.b=1,2", "seed=1,2,3"] -> {"a.b": ["1", "2"], "seed": ["1", "2", "3"]} (raw value texts)."""
    grid = {}
    for text in texts:
        key, sep, values = text.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"sweep value '{text}' is not of the form key.path=v1,v2,..., e.g. "
                              "-m optimizer.args.lr=0.001,0.01 seed=1,2,3")
        if key.lstrip("+") in {k.lstrip("+") for k in grid}:
            raise ConfigError(f"sweep key '{key}' is given twice after -m; list all its values once: {key}=v1,v2")
        grid[key] = split_values(values, text)
    return grid


def split_values(values, text=None):
    """Split at top-level commas: "1,[2,3],'a,b'" -> ["1", "[2,3]", "'a,b'"]."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(values):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(values[start:i])
            start = i + 1
    parts.append(values[start:])
    if any(not part for part in parts) or depth != 0 or quote:
        raise ConfigError(f"sweep value '{text or values}' has an empty or unbalanced value; separate the "
                          "values with single commas, e.g. seed=1,2,3")
    return parts


def members(grid):
    """One dict {key: raw value text} per grid point, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]


def parsed_values(member):
    """{key (without '+'): value parsed as the -o option parses it}."""
    return {key.lstrip("+"): parse_override(f"{key}={raw}")[1] for key, raw in member.items()}


def member_label(index, member):
    """A folder name such as '003-lr=0.01-seed=2' (last key part, file-name-safe)."""
    parts = [f"{key.split('.')[-1]}={raw}" for key, raw in member.items()]
    label = re.sub(r"[^\w.=+-]", "_", "-".join([f"{index:03d}", *parts]))
    return label[:100]
