"""torchrun with the exit codes a job scheduler expects, and no launcher traceback.

    python -m utils.launch --standalone --nproc_per_node=4 train.py -c config.json

takes exactly torchrun's arguments. When the launcher receives SIGTERM or SIGINT, torchrun
forwards it to the workers, waits for them (they write a checkpoint and exit with 128 + the
signal number) and then raises in the launcher: exit code 1 and a traceback. Here the launcher
exits with 128 + the signal number instead, as the workers do, and a failed worker is reported
by torchrun's own summary without the launcher's traceback.
"""
import signal
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun_main

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(argv=None):
    try:
        torchrun_main(argv)
    except SignalException as stop:
        name = signal.Signals(stop.sigval).name
        print(f"launcher: stopped by {name}; the workers have exited (a stopped worker saves a "
              "checkpoint and prints the command that resumes it).", file=sys.stderr)
        sys.exit(128 + stop.sigval)
    except ChildFailedError as failed:
        print(failed.format_msg(), file=sys.stderr)
        sys.exit(_exit_code(failed))


def _exit_code(failed):
    """128 + signal when every failed worker stopped on SIGTERM/SIGINT (they saved), else 1."""
    codes = {failure.exitcode for failure in failed.failures.values()}
    stopped = {128 + signum for signum in STOP_SIGNALS}
    return codes.pop() if len(codes) == 1 and codes <= stopped else 1


if __name__ == "__main__":
    main()
