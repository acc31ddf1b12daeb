"""Building objects from config entries: `{"type": T, "args": {...}, "module"?: M}`, a bare name,
or a list of entries. One function builds every entry of a config:

    instantiate(config["optimizer"], model.parameters(), key_path="optimizer")
    instantiate({"type": "SequentialLR", "args": {"schedulers": [{"type": "LinearLR", ...}, ...],
                 "milestones": [100]}}, optimizer, key_path="lr_scheduler",
                nested_args={"schedulers": (optimizer,)})

`T` is looked up in the module the caller names, else in the project module and the torch
namespace of the key path's section (config/resolve.py). An argument whose value is itself an
entry, or a list of entries, is built first (its positional arguments come from `nested_args`),
so SequentialLR's children, a RandomApply's transforms or a list of callbacks need no code of
their own. The keyword arguments of the calling code win over the entry's args. Every failure
is a ConfigError naming the key path."""
import functools

from utils.errors import ConfigError
from utils.metric_tracker import is_stateful_metric

from .resolve import check_call_args, project_module, resolve_type, torch_fallbacks

ENTRY_KEYS = {"type", "args", "module", "name", "interval"}


def resolve(entry, key_path, module=None, trusted=True):
    """The class or function an entry names: in `module` when given, else in the project module
    of the key path's section; then in the torch namespace that fits."""
    return resolve_type(entry, key_path, module if module is not None else project_module(key_path),
                        torch_fallbacks(key_path), trusted)


def is_entry(value):
    """A {"type": ..., "args"?: ...} dict (a value to build, not data)."""
    return isinstance(value, dict) and isinstance(value.get("type"), str) and set(value) <= ENTRY_KEYS


def is_entry_list(value):
    return isinstance(value, list) and bool(value) and all(is_entry(item) for item in value)


def entry_args(entry, kwargs=None):
    """The entry's args updated with the caller's `kwargs` (which win)."""
    config_args = dict(entry.get("args", {})) if isinstance(entry, dict) else {}
    return {**config_args, **(kwargs or {})}


def instantiate(entry, *args, key_path, module=None, trusted=True, nested_args=None, **kwargs):
    """T(*args, **entry args, **kwargs), nested entries in the args built first; a list of
    entries gives a list. A ConfigError names `key_path` for a name that is not found, an
    argument T does not take, or a value T's constructor refuses."""
    if isinstance(entry, list):
        return [instantiate(item, *args, key_path=f"{key_path}.{i}", module=module, trusted=trusted,
                            nested_args=nested_args, **kwargs) for i, item in enumerate(entry)]
    target = resolve(entry, key_path, module, trusted)
    call_args = {**_built_nested(entry, key_path, trusted, nested_args or {}), **kwargs}
    check_call_args(target, args, call_args, key_path)
    return _call(target, args, call_args, entry, key_path)


def check_entry(entry, *args, key_path, module=None, trusted=True, nested_args=None):
    """What `instantiate` checks before it calls: every type resolves and takes its arguments,
    nested entries included. Builds nothing; `args` may be stand-ins (None)."""
    if isinstance(entry, list):
        for i, item in enumerate(entry):
            check_entry(item, *args, key_path=f"{key_path}.{i}", module=module, trusted=trusted,
                        nested_args=nested_args)
        return
    target = resolve(entry, key_path, module, trusted)
    call_args = entry_args(entry)
    for name, value, path in _nested(entry, key_path):
        check_entry(value, *(nested_args or {}).get(name, ()), key_path=path, trusted=trusted)
        call_args[name] = [] if isinstance(value, list) else None
    check_call_args(target, args, call_args, key_path)
    return target


def bind(entry, *args, key_path, module=None, trusted=True, **kwargs):
    """A function with the entry's arguments bound (functools.partial); the rest come per call."""
    target = resolve(entry, key_path, module, trusted)
    call_args = entry_args(entry, kwargs)
    check_call_args(target, args, call_args, key_path, partial=True)
    return functools.partial(target, *args, **call_args)


def named_callable(entry, key_path, module=None, trusted=True):
    """A loss or metric entry as a callable with a `__name__` (the entry's "name", else its
    type): a class (torch.nn.CrossEntropyLoss) is instantiated, a function gets its args bound."""
    target = resolve(entry, key_path, module, trusted)
    build = instantiate if isinstance(target, type) else bind
    fn = build(entry, key_path=key_path, module=module, trusted=trusted)
    if is_stateful_metric(fn) and "validate_args" not in entry_args(entry) and hasattr(fn, "validate_args"):
        # torchmetrics' argument checks read values back from the GPU: a host-device sync every
        # step. An entry's args can switch them back on.
        fn.validate_args = False
    type_name = entry if isinstance(entry, str) else entry["type"]
    fn.__name__ = entry.get("name", type_name) if isinstance(entry, dict) else type_name
    return fn


def _nested(entry, key_path):
    """(argument name, entry or list of entries, its key path) for each nested entry in the args."""
    for name, value in entry_args(entry).items():
        if is_entry(value) or is_entry_list(value):
            yield name, value, f"{key_path}.args.{name}"


def _built_nested(entry, key_path, trusted, nested_args):
    call_args = entry_args(entry)
    for name, value, path in _nested(entry, key_path):
        call_args[name] = instantiate(value, *nested_args.get(name, ()), key_path=path, trusted=trusted)
    return call_args


def _call(target, args, call_args, entry, key_path):
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
