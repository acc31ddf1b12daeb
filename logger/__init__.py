from .logger import setup_logging
from .visualization import NullWriter, TensorboardWriter

__all__ = ["NullWriter", "TensorboardWriter", "setup_logging"]
