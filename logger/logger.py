import logging
import logging.config
import sys
from pathlib import Path

from utils import dist
from utils.io import read_json
from utils.write_faults import WriteFailed, resource_error

DEFAULT_CONFIG = Path(__file__).with_name("logger_config.json")


class _EarlyRecords(logging.Handler):
    """Keeps what is logged before the run folder exists (the run folder is made once the data,
    model and optimizer are built), so that info.log gets those lines too."""
    LIMIT = 10_000

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        if len(self.records) < self.LIMIT:
            self.records.append(record)


def setup_logging(save_dir, log_config=DEFAULT_CONFIG, default_level=logging.INFO):
    """Configure logging from `log_config`, writing file handlers into `save_dir`. With
    `save_dir=None` only the console handlers are kept (test.py writes no run folder), and the
    lines are kept for the file handlers of a later call with a folder."""
    early = [record for handler in logging.getLogger().handlers if isinstance(handler, _EarlyRecords)
             for record in handler.records]
    log_config = Path(log_config)
    if not log_config.is_file():
        logging.basicConfig(level=default_level)
        logging.warning(f"Logging configuration file is not found in {log_config}.")
        return
    config = read_json(log_config)
    handlers = config["handlers"]
    for name in list(handlers):
        if "filename" not in handlers[name]:
            continue
        if save_dir is None:
            del handlers[name]
            config["root"]["handlers"].remove(name)
        else:
            handlers[name]["filename"] = str(Path(save_dir) / handlers[name]["filename"])
    logging.config.dictConfig(config)
    if save_dir is None:
        logging.getLogger().addHandler(_EarlyRecords())
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            _stop_on_resource_errors(handler)
            for record in early:
                if record.levelno >= handler.level:
                    handler.handle(record)


def _stop_on_resource_errors(handler):
    """logging prints a traceback for a failed write and goes on; a full disk or a read-only
    folder instead ends the run with WriteFailed (once; later lines go to the console only)."""
    print_error = handler.handleError

    def handle_error(record):
        error = sys.exc_info()[1]
        if isinstance(error, WriteFailed):  # raised by the inner emit: RotatingFileHandler nests two
            raise error
        if getattr(handler, "write_failed", False):
            return
        os_error = resource_error(error)
        if os_error is None:
            return print_error(record)
        handler.write_failed = True
        raise WriteFailed(handler.baseFilename, os_error) from None

    handler.handleError = handle_error


def console_logging():
    """Log to the console only (no run folder yet, or none at all). Under DDP, ranks > 0 log
    only warnings, so that each line appears once."""
    setup_logging(None)
    if not dist.is_main_process():
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
