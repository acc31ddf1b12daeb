"""One error type for every mistake a user can fix, and the wrapper that turns it into a short
message and exit code 2 instead of a traceback."""
import functools
import sys
import traceback

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class ConfigError(Exception):
    """A mistake in the config, the command line or an input file. The message says which key
    or file is wrong and how to fix it."""


def main_guard(main_fn):
    """Run `main_fn()`, printing ConfigError as one paragraph (exit 2); `--debug` keeps the
    traceback."""

    @functools.wraps(main_fn)
    def wrapper(*args, **kwargs):
        try:
            return main_fn(*args, **kwargs)
        except ConfigError as err:
            if "--debug" in sys.argv:
                traceback.print_exc()
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        except TrainingStopped as stop:
            print(str(stop), file=sys.stderr)
            sys.exit(stop.exit_code)
        except KeyboardInterrupt as interrupt:  # a second Ctrl-C during training, or one before it started
            run_dir = interrupt.args[0] if interrupt.args else None
            hint = (f" Resume from the run's last checkpoint with: python train.py -r {run_dir}"
                    if run_dir is not None else "")
            print(f"interrupted: exited at once without saving.{hint}", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


class TrainingStopped(Exception):
    """Raised by the trainer after a stop signal, once a resumable checkpoint is written."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code
