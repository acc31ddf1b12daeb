"""The template's module path of BaseTrainer, the epoch loop, which lives in trainer/base_trainer.py."""
from trainer.base_trainer import BaseTrainer

__all__ = ["BaseTrainer"]
