"""The loss and config metrics of one pass over data (a training epoch, a validation, a test):
function metrics are sample-weighted averages of per-batch values (MetricTracker); metrics
that are torchmetrics classes (or any object with update/compute/reset) accumulate their state
on the device over the whole pass and are computed once at its end, synced across DDP ranks, so
F1 or AUC are exact over the epoch rather than an average of per-batch values."""
import torch

from data_loader.task import task_of_run
from utils.errors import blame
from utils.metric_tracker import MetricTracker, is_stateful_metric


class PassMetrics:
    """The metrics of one pass, split once into function metrics (`tracker`, a MetricTracker of
    "loss" and each function) and stateful ones (`epoch_metrics`)."""

    def __init__(self, metric_fns, device, original_units=None):
        """`original_units(values)`: regression outputs and targets back in the units of the data
        (the task's target scaling), so that MAE or RMSE are in those units; the loss stays on
        the standardised values the model learns."""
        self.original_units = original_units
        self.functions = [m for m in metric_fns if not is_stateful_metric(m)]
        self.tracker = MetricTracker("loss", *[m.__name__ for m in self.functions])
        self.epoch_metrics = EpochMetrics([m for m in metric_fns if is_stateful_metric(m)], device)

    def reset(self):
        self.tracker.reset()
        self.epoch_metrics.reset()

    def update(self, loss, output, target):
        """Add one batch's loss and function metrics, weighted by its size (summed on the device:
        no sync), and queue it for the stateful metrics."""
        n = target.size(0)
        self.tracker.update("loss", loss, n)
        if self.original_units is not None:
            output, target = self.original_units(output.detach()), self.original_units(target)
        with blame("metrics"):
            for metric in self.functions:
                self.tracker.update(metric.__name__, metric(output, target), n)
            self.epoch_metrics.update(output, target)

    def result(self):
        """{name: value} over the whole pass; under DDP the stateful metrics are synced here (a
        collective), the tracker only after its `all_reduce`."""
        return {**self.tracker.result(), **self.epoch_metrics.compute()}


def metric_units(config):
    """The function that puts a run's regression outputs and targets back in the data's units
    for its metrics, or None (other tasks, or targets that were not scaled)."""
    task = task_of_run(config) if config.get("task") else None
    return task.original_units if task is not None and task.scaling is not None else None


class EpochMetrics:
    """The stateful metrics of one phase (training or validation), each a private copy.

    `update` only queues the batch's outputs and targets on the device; `flush` hands the queue
    to torchmetrics. Some of its updates wait for the GPU (torch.bincount reads the largest
    value back), so the trainer flushes where it waits anyway: at its logging steps, and at
    the latest every `max_pending` batches."""

    def __init__(self, metrics, device, max_pending=32):
        self.max_pending, self.pending = max_pending, []
        self.metrics = {}
        for metric in metrics:
            copy = metric.clone() if hasattr(metric, "clone") else metric
            if isinstance(copy, torch.nn.Module):
                copy.to(device)
            self.metrics[metric.__name__] = copy

    def __bool__(self):
        return bool(self.metrics)

    def update(self, output, target):
        if not self.metrics:
            return
        self.pending.append((output.detach(), target))
        if len(self.pending) >= self.max_pending:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        output = torch.cat([o for o, _ in self.pending])
        target = torch.cat([t for _, t in self.pending])
        self.pending = []
        for metric in self.metrics.values():
            metric.update(output, target)  # update(), not forward(): no per-batch compute

    def reset(self):
        self.pending = []
        for metric in self.metrics.values():
            metric.reset()

    def compute(self):
        """{name: float}, one value per metric (`name_<i>` per class for a per-class result).
        Under DDP, torchmetrics gathers every rank's state here: all ranks must call it."""
        self.flush()
        results = {}
        for name, metric in self.metrics.items():
            value = metric.compute()
            value = torch.as_tensor(value).detach().float().cpu()
            if value.dim() == 0:
                results[name] = value.item()
            else:
                results.update({f"{name}_{i}": v for i, v in enumerate(value.flatten().tolist())})
        return results

    def state(self):
        """Each metric's state as plain tensors (all ranks' states summed under DDP; a
        collective), for a checkpoint taken inside an epoch."""
        self.flush()
        states = {}
        for name, metric in self.metrics.items():
            context = metric.sync_context() if hasattr(metric, "sync_context") else _no_context()
            with context:
                states[name] = {key: _to_cpu(value) for key, value in metric.metric_state.items()}
        return states

    def load_state(self, states):
        for name, state in states.items():
            metric = self.metrics.get(name)
            if metric is None:
                continue
            device = next((v.device for v in metric.metric_state.values() if torch.is_tensor(v)), "cpu")
            for key, value in state.items():
                setattr(metric, key, value.to(device) if torch.is_tensor(value) else [v.to(device) for v in value])
            metric._update_count = max(getattr(metric, "_update_count", 0), 1)  # it has data now


def _to_cpu(value):
    return value.detach().cpu() if torch.is_tensor(value) else [v.detach().cpu() for v in value]


class _no_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
