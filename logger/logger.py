import logging
import logging.config
from pathlib import Path

from utils.io import read_json

DEFAULT_CONFIG = Path(__file__).with_name("logger_config.json")


def setup_logging(save_dir, log_config=DEFAULT_CONFIG, default_level=logging.INFO):
    """Configure logging from `log_config`, writing file handlers into `save_dir`. With
    `save_dir=None` only the console handlers are kept (test.py writes no run folder)."""
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
