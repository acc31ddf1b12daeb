"""Sample-weighted running averages (pytorch-template's MetricTracker). Values may be tensors:
they are summed on their own device and converted to Python numbers only when read, so updating
never forces a sync."""
import torch

from . import dist


def is_stateful_metric(metric):
    """A metric with update/compute/reset (a torchmetrics.Metric): exact over an epoch, not averaged."""
    return all(callable(getattr(metric, name, None)) for name in ("update", "compute", "reset"))


class MetricTracker:
    def __init__(self, *keys, writer=None):
        self.writer = writer
        self._keys = list(keys)
        self.reset()

    def reset(self):
        self._totals = {key: 0.0 for key in self._keys}
        self._counts = {key: 0 for key in self._keys}

    def update(self, key, value, n=1):
        if isinstance(value, torch.Tensor):
            value = value.detach()
        if self.writer is not None:  # pytorch-template behaviour: one scalar per update
            self.writer.add_scalar(key, float(value))
        self._totals[key] = self._totals[key] + value * n
        self._counts[key] += n

    def avg(self, key):
        count = self._counts[key]
        return float(self._totals[key]) / count if count else float("nan")

    def result(self):
        return {key: self.avg(key) for key in self._keys}

    def all_reduce(self):
        """Sum totals and counts over all DDP ranks (one collective), so every rank reads the
        averages over all samples and takes the same decisions; nothing for a single process."""
        if not dist.is_distributed():
            return
        sums = dist.all_reduce_sum([self._totals[k] for k in self._keys] + [self._counts[k] for k in self._keys])
        for i, key in enumerate(self._keys):
            self._totals[key], self._counts[key] = sums[i], round(sums[len(self._keys) + i])

    def state(self):
        """Totals and counts as plain numbers, for a checkpoint taken inside an epoch."""
        return {key: [float(self._totals[key]), self._counts[key]] for key in self._keys}

    def load_state(self, state):
        for key, (total, count) in state.items():
            self._totals[key], self._counts[key] = total, count
