from .logger import setup_logging
from .visualization import NullWriter, TensorboardWriter
from .writers import MultiWriter, make_writer

__all__ = ["MultiWriter", "NullWriter", "TensorboardWriter", "make_writer", "setup_logging"]
