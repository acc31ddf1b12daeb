"""status.json in a run folder: "running" while train.py trains, then "finished", "stopped"
(a stop signal, with a resumable checkpoint), "pruned" (tune.py) or "crashed". A run whose file
still says "running" but whose process is gone from this machine was killed (crashed)."""
import ctypes
import json
import os
import signal
import socket
import sys
import time
from contextlib import contextmanager

from utils import dist
from utils.errors import TrainingStopped
from utils.io import write_json

STATUS_FILE = "status.json"
SWEEP_ENV = "TEMPLATE_SWEEP"  # set by a sweep for its members: "<sweep folder>#<member index>"
SWEEP_PID_ENV = "TEMPLATE_SWEEP_PID"  # the sweep's process id, for its members
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def stop_with_the_sweep():
    """A sweep member gets SIGTERM (it saves a checkpoint and records "stopped") when the sweep
    that started it dies, even by SIGKILL, instead of training on unseen. Linux only."""
    sweep_pid = os.environ.get(SWEEP_PID_ENV)
    if not sweep_pid or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(sweep_pid):  # the sweep died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def recorded_status(config):
    """Write the run's status around training (rank 0 of a run that has a folder)."""
    if config.save_dir is None or not dist.is_main_process():
        yield
        return
    path = config.save_dir / STATUS_FILE
    record = {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
              "started": time.time(), "resumed_from": str(config.resume) if config.resume else None,
              "sweep": os.environ.get(SWEEP_ENV),
              # a run resumed into its own folder adds to the time of its earlier parts
              "earlier_seconds": _seconds_so_far(read_status(config.save_dir))}
    write_json(record, path)
    try:
        yield
    except TrainingStopped as stop:
        _finish(record, path, "stopped", signal=_signal_name(stop.exit_code - 128))
        raise
    except KeyboardInterrupt:
        _finish(record, path, "stopped", signal="SIGINT")
        raise
    except BaseException as err:
        pruned = type(err).__name__ == "TrialPruned"  # optuna's, raised by tune.py's epoch callback
        _finish(record, path, "pruned" if pruned else "crashed", error=f"{type(err).__name__}: {err}"[:500])
        raise
    else:
        _finish(record, path, "finished")


def read_status(run_folder):
    """The status record of a run folder (None when it has none), with a dead "running" run
    on this machine reported as "crashed"."""
    try:
        record = json.loads((run_folder / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") == "running" and record.get("host") == socket.gethostname() \
            and not _process_alive(record.get("pid")):
        record["status"] = "crashed"
        record["error"] = "the process ended without recording an outcome (killed?)"
    return record


def _seconds_so_far(record):
    if not record:
        return 0.0
    return record.get("seconds", record.get("earlier_seconds", 0.0))


def run_seconds(record):
    """Training time of a run: its finished parts, plus the current one while it runs."""
    if "seconds" in record:
        return record["seconds"]
    return record.get("earlier_seconds", 0.0) + time.time() - record["started"]


def _finish(record, path, status, **details):
    ended = time.time()
    record.update(status=status, ended=ended, seconds=record["earlier_seconds"] + ended - record["started"],
                  **details)
    write_json(record, path)


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _process_alive(pid):
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
