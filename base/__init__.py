"""pytorch-template's base classes under their template names, for code written against the
template. The classes live with what they belong to; this package only hands them on:

    from base import BaseModel        model/base_model.py
    from base import BaseDataLoader   data_loader/base_data_loader.py
    from base import BaseTrainer      trainer/base_trainer.py (the epoch loop)
    from base import Callback         trainer/callback.py

`from base import BaseModel` (what a model file needs) imports neither the trainer nor its
dependencies: BaseTrainer and Callback are imported when first asked for. The same names stay
importable from the template's module paths (base.base_model, base.base_data_loader,
base.base_trainer), and base.callback keeps its Callback and EarlyStopping.

Other names kept for code written against the template or earlier versions of this project:
`from utils import MetricTracker, inf_loop, prepare_device, read_json, write_json` (utils/);
`from test import evaluate, evaluation_weights, model_from_checkpoint` (evaluation/evaluate.py);
`config.init_obj(name, module, ...)` and `config.init_ftn(...)` (config/instantiate.py); the
trainer attributes `mnt_mode`, `mnt_best`, `mnt_metric`, `monitor_best`, `monitor_metric`,
`epochs_since_improvement` and `early_stop` (trainer/template_names.py); and checkpoints whose
callback states are a list (trainer/callback.py).
"""
from data_loader.base_data_loader import BaseDataLoader
from model.base_model import BaseModel

LAZY = {"BaseTrainer": "trainer.base_trainer", "Callback": "trainer.callback"}


def __getattr__(name):
    """BaseTrainer and Callback on first use, so that importing a base class for a model or a
    data loader does not import the training loop."""
    if name not in LAZY:
        raise AttributeError(f"module 'base' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(LAZY[name]), name)


__all__ = ["BaseDataLoader", "BaseModel", "BaseTrainer", "Callback"]
