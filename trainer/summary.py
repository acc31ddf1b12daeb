"""The model summary at the start of a run (info.log) and in --dry-run, on the batch that the
check before every run put through the model (trainer/batch_check.py)."""
import contextlib

from model.summary import summarize
from utils import unwrap_model

from . import fsdp


def model_summary(model, data, optimizer=None, autocast=contextlib.nullcontext):
    """The ModelSummary of `model` (unwrapped from DDP and torch.compile) on the first sample of
    the batch `data`. A sharded (FSDP) model is counted without a forward pass: its forward is
    a collective that this summary must not start on its own."""
    bare = unwrap_model(model)
    return summarize(bare, data, optimizer, autocast, forward=not fsdp.is_sharded(bare))


def log_model_summary(logger, model, data, optimizer, autocast=contextlib.nullcontext):
    """Log the summary; a model the summary cannot describe gets a warning, and training goes on."""
    try:
        summary = model_summary(model, data, optimizer, autocast)
    except Exception as err:  # never stop a run for its summary
        logger.warning(f"No model summary: {type(err).__name__}: {err}")
        return None
    for line in summary.lines():
        logger.info(line)
    return summary
