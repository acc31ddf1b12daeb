"""Stateful epoch metrics: config metrics that are torchmetrics classes (or any object with
update/compute/reset, such as a torchmetrics.Metric). They accumulate their state on the
device over the whole epoch and are computed once at its end, synced across DDP ranks, so
F1 or AUC are exact over the epoch rather than an average of per-batch values."""
import torch


def is_stateful_metric(metric):
    return all(callable(getattr(metric, name, None)) for name in ("update", "compute", "reset"))


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
