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


def first_line(err, limit=None, empty=None):
    """The first non-blank line of an exception's message (a library's may run over many lines),
    cut to `limit` characters; `empty` (default: the exception's type name) when it has no text."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__ if empty is None else empty
    return lines[0][:limit]


class TrainingStopped(Exception):
    """Raised by the trainer after a stop signal, once a resumable checkpoint is written."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class PartFailed(Exception):
    """An object built from config section `section` raised `error` while the run used it."""

    def __init__(self, section, error):
        super().__init__(f"{section}: {type(error).__name__}: {error}")
        self.section, self.error = section, error


class blame:  # noqa: N801 (used like a function: `with blame("loss"): ...`)
    """Context manager: an exception from the block becomes PartFailed(section), so the run can
    say which config section built the failing object. The user's own ConfigErrors pass
    through. A class rather than a generator: it wraps a few calls of every training step."""
    __slots__ = ("section",)

    def __init__(self, section):
        self.section = section

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None or not issubclass(kind, Exception) or issubclass(kind, (ConfigError, PartFailed)):
            return False
        raise PartFailed(self.section, error) from error


def blamed_iter(iterable, section):
    """Iterate `iterable` (a data loader), turning its exceptions into PartFailed(section)."""
    with blame(section):
        iterator = iter(iterable)
    while True:
        with blame(section):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item
