"""The template's module path of BaseDataLoader, which lives in data_loader/base_data_loader.py."""
from data_loader.base_data_loader import BaseDataLoader

__all__ = ["BaseDataLoader"]
