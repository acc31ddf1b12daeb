"""Building objects from config entries: `{"type": T, "args": {...}, "module"?: M}` or a bare name.
The keyword arguments of the calling code win over the entry's args."""
import functools

from utils.errors import ConfigError
from utils.metric_tracker import is_stateful_metric

from .resolve import TORCH_FALLBACKS, check_call_args, resolve_type


def resolve(entry, key_path, module, trusted=True):
    """The class or function an entry names, looked up in `module`, then in the torch namespace
    of its section (the first part of `key_path`)."""
    section = key_path.split(".")[0]
    return resolve_type(entry, key_path, module, TORCH_FALLBACKS.get(section, ()), trusted)


def entry_args(entry, kwargs):
    """The entry's args updated with the caller's `kwargs` (which win)."""
    config_args = dict(entry.get("args", {})) if isinstance(entry, dict) else {}
    return {**config_args, **kwargs}


def instantiate(entry, key_path, module, *args, trusted=True, **kwargs):
    """T(*args, **entry args, **kwargs), with a ConfigError naming `key_path` for a name that is
    not found, an argument T does not take, or a value T's constructor refuses."""
    target = resolve(entry, key_path, module, trusted)
    call_args = entry_args(entry, kwargs)
    check_call_args(target, args, call_args, key_path)
    name = entry if isinstance(entry, str) else entry["type"]
    try:
        return target(*args, **call_args)
    except ConfigError:
        raise
    except ValueError as err:  # the constructor refused a value (torch's own checks say which)
        raise ConfigError(f"{key_path}: {name} rejected its arguments ({err}). Fix {key_path}.args in "
                          "the config.") from err
    except Exception as err:  # anything else: say which section, keep the traceback for --debug
        raise ConfigError(f"{key_path}: building {name} failed ({type(err).__name__}: {err}). Check "
                          f"{key_path} in the config and the code it names (--debug shows the "
                          "traceback).") from err


def bind(entry, key_path, module, *args, trusted=True, **kwargs):
    """A function with the entry's arguments bound (functools.partial); the rest come per call."""
    target = resolve(entry, key_path, module, trusted)
    call_args = entry_args(entry, kwargs)
    check_call_args(target, args, call_args, key_path, partial=True)
    return functools.partial(target, *args, **call_args)


def named_callable(entry, key_path, module, trusted=True):
    """A loss or metric entry as a callable with a `__name__` (the entry's "name", else its
    type): a class (torch.nn.CrossEntropyLoss) is instantiated, a function gets its args bound."""
    target = resolve(entry, key_path, module, trusted)
    build = instantiate if isinstance(target, type) else bind
    fn = build(entry, key_path, module, trusted=trusted)
    if is_stateful_metric(fn) and "validate_args" not in entry_args(entry, {}) and hasattr(fn, "validate_args"):
        # torchmetrics' argument checks read values back from the GPU: a host-device sync every
        # step. An entry's args can switch them back on.
        fn.validate_args = False
    type_name = entry if isinstance(entry, str) else entry["type"]
    fn.__name__ = entry.get("name", type_name) if isinstance(entry, dict) else type_name
    return fn
