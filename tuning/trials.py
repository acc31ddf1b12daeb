"""Where a trial starts, and trials that train on several processes.

A retry of a trial (its worker died, or a stop signal ended it) continues from the newest
checkpoint that the earlier attempt left in its run folder, when this machine sees that folder;
otherwise it trains from the start.

Under torchrun each trial trains with DistributedDataParallel on every process. Only rank 0
talks to the study: it samples a trial and sends its number, values and starting checkpoint
to the other ranks, which train the same trial with it; a pruning decision goes the same way;
None ends the search."""
import warnings
from pathlib import Path

import optuna

from run.checkpoints import latest_valid_checkpoint
from utils import ConfigError, dist

from .study import RETRY_CALLBACK


def retried_checkpoint(trial):
    """The checkpoint a retried trial continues from, or None (a new trial, or no checkpoint
    of the earlier attempt on this machine). A retry carries the earlier attempt's user
    attributes, its run folder among them."""
    frozen = trial.study.get_trials(deepcopy=False)[trial.number]
    with warnings.catch_warnings():  # Optuna marks the retry API experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = RETRY_CALLBACK.retried_trial_number(frozen)
    if retried is None:
        return None
    run_dir = frozen.user_attrs.get("run_dir")
    if not run_dir or not Path(run_dir).is_dir():
        return None
    try:
        path, _ = latest_valid_checkpoint(run_dir)
    except ConfigError:  # killed before its first checkpoint
        return None
    return path


def retry_stopped_trial(study, number, max_retry):
    """Queue trial `number` again (a stop signal failed it), as the heartbeat does for a dead
    worker's trial, so that the next worker continues it from its stop checkpoint."""
    frozen = study.get_trials(deepcopy=False)[number]
    if frozen.state == optuna.trial.TrialState.FAIL:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RETRY_CALLBACK(max_retry, inherit_intermediate_values=True)(study, frozen)


def announce_trial(number, values, resume):
    """Rank 0: send the trial to the other ranks (nothing without torchrun)."""
    if dist.is_distributed():
        dist.broadcast_object({"number": number, "values": values, "resume": str(resume) if resume else None})


def announce_end():
    if dist.is_distributed():
        dist.broadcast_object(None)


def trials_from_rank_zero():
    """Ranks > 0: the trials rank 0 announces, until it announces the end."""
    while True:
        message = dist.broadcast_object(None)
        if message is None:
            return
        yield message


def agree(value):
    """Rank 0's `value` on every rank."""
    return dist.broadcast_object(value) if dist.is_distributed() else value
