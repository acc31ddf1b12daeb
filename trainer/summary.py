"""The model summary at the start of a run (info.log) and in --dry-run: one batch of the
training data through the model, leaving the random generators as they were, so that a run
trains exactly as it would without it."""
import contextlib

import torch

from model.summary import summarize
from utils import unwrap_model
from utils.seed import get_rng_states, set_rng_states


def first_batch(data_loader):
    """(data, target) of the loader's first batch; the random generators are left as they were
    (a loader without its own generator draws its order from torch's)."""
    states = get_rng_states()
    try:
        return next(iter(data_loader))
    finally:
        set_rng_states(states)


def model_summary(model, data, optimizer, autocast=contextlib.nullcontext):
    """The ModelSummary of `model` (unwrapped from DDP and torch.compile) on the first sample of
    the batch `data`."""
    return summarize(unwrap_model(model), data, optimizer, autocast)


def log_model_summary(logger, model, data_loader, optimizer, device, autocast=contextlib.nullcontext):
    """Log the summary of the model on the loader's first batch, under the training's autocast;
    a model the summary cannot run gets a warning, and training goes on."""
    try:
        data, _ = first_batch(data_loader)
        data = data.to(device) if isinstance(data, torch.Tensor) else data
        summary = model_summary(model, data, optimizer, autocast)
    except Exception as err:  # never stop a run for its summary
        logger.warning(f"No model summary: {type(err).__name__}: {err}")
        return None
    for line in summary.lines():
        logger.info(line)
    return summary
