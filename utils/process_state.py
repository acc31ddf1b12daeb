"""What a run changes in its process, put back afterwards, so that runs started one after the
other in one process (a notebook, a script, a test) are independent: the random generators,
the logging handlers (a run's info.log handler is closed and removed), the stop-signal
handlers, torch's thread count and backend flags, the warning filters, environment variables,
matplotlib's backend, and threads the run started (waited for)."""
import logging
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager

import torch

from .seed import get_rng_states, set_rng_states

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
THREAD_WAIT_SECONDS = 10.0


@contextmanager
def restored_process_state():
    saved = _save()
    try:
        with warnings.catch_warnings():
            yield
    finally:
        _restore(saved)


def _save():
    root = logging.getLogger()
    loggers = {name: (logger.level, logger.disabled) for name, logger in logging.Logger.manager.loggerDict.items()
               if isinstance(logger, logging.Logger)}
    return {
        "rng": get_rng_states(),
        "root_handlers": list(root.handlers), "root_level": root.level, "loggers": loggers,
        "signals": {signum: signal.getsignal(signum) for signum in STOP_SIGNALS},
        "threads": torch.get_num_threads(),
        "flags": _backend_flags(),
        "environ": dict(os.environ),
        "matplotlib_backend": _matplotlib_backend(),
        "live_threads": set(threading.enumerate()),
    }


def _restore(saved):
    set_rng_states(saved["rng"])
    _restore_logging(saved)
    if threading.current_thread() is threading.main_thread():
        for signum, handler in saved["signals"].items():
            if handler is not None:  # None: set outside Python; nothing to put back
                signal.signal(signum, handler)
    if torch.get_num_threads() != saved["threads"]:
        torch.set_num_threads(saved["threads"])
    _set_backend_flags(saved["flags"])
    _restore_environ(saved["environ"])
    _restore_matplotlib(saved["matplotlib_backend"], saved["environ"])
    _stop_progress_bar_monitor(saved["live_threads"])
    for thread in set(threading.enumerate()) - saved["live_threads"]:
        if not thread.daemon:  # a writer or loader thread still finishing: let it end first
            thread.join(THREAD_WAIT_SECONDS)


def _stop_progress_bar_monitor(threads_before):
    """tqdm starts a monitor thread with its first progress bar and keeps it for the process's
    life; one that the run started ends with it, once no bar is left."""
    tqdm = sys.modules.get("tqdm")
    monitor = getattr(getattr(tqdm, "tqdm", None), "monitor", None)
    if monitor is not None and monitor not in threads_before and not tqdm.tqdm._instances:
        monitor.exit()
        tqdm.tqdm.monitor = None


def _restore_logging(saved):
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in saved["root_handlers"]:
            root.removeHandler(handler)
            handler.close()
    for handler in saved["root_handlers"]:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved["root_level"])
    for name, (level, disabled) in saved["loggers"].items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.disabled = disabled


def _backend_flags():
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "matmul_precision": torch.get_float32_matmul_precision()}


def _set_backend_flags(flags):
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = flags["cudnn_deterministic"]
    torch.use_deterministic_algorithms(flags["deterministic"], warn_only=flags["deterministic_warn_only"])
    torch.set_float32_matmul_precision(flags["matmul_precision"])


def _restore_environ(before):
    for key in set(os.environ) - set(before):
        del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _matplotlib_backend():
    matplotlib = sys.modules.get("matplotlib")
    return matplotlib.get_backend() if matplotlib is not None else None


def _restore_matplotlib(backend, environ):
    """The run draws its figures with matplotlib's file-only backend; a notebook's inline
    backend comes back (the one in use before, else the one MPLBACKEND names)."""
    matplotlib = sys.modules.get("matplotlib")
    wanted = backend or environ.get("MPLBACKEND")
    if matplotlib is None or wanted is None or matplotlib.get_backend() == wanted:
        return
    try:
        matplotlib.use(wanted)
    except (ImportError, ValueError):  # the backend cannot load here: keep the file-only one
        pass
