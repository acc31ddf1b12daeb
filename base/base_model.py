"""The template's module path of BaseModel, which lives in model/base_model.py."""
from model.base_model import BaseModel

__all__ = ["BaseModel"]
