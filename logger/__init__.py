from .logger import console_logging, setup_logging
from .visualization import NullWriter, TensorboardWriter
from .writers import MultiWriter, make_writer

__all__ = ["MultiWriter", "console_logging", "NullWriter", "TensorboardWriter", "make_writer", "setup_logging"]
