"""The earlier module path of the callback classes, which live in trainer/callback.py."""
from trainer.callback import Callback, EarlyStopping

__all__ = ["Callback", "EarlyStopping"]
