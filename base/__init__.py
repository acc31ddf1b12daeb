from .base_data_loader import BaseDataLoader
from .base_model import BaseModel
from .base_trainer import BaseTrainer
from .callback import Callback

__all__ = ["BaseDataLoader", "BaseModel", "BaseTrainer", "Callback"]
