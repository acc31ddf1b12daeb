"""One evaluation pass, shared by the trainer's validation and test.py, so that both move
batches, autocast and accumulate metrics the same way."""
import torch

from utils.errors import blame, blamed_iter

from .amp import autocast_context
from .metric_tracker import MetricTracker


def to_device(data, device, non_blocking=False, channels_last=False):
    data = data.to(device, non_blocking=non_blocking)
    if channels_last and data.dim() == 4:
        data = data.contiguous(memory_format=torch.channels_last)
    return data


def update_metrics(tracker, metric_fns, loss, output, target, epoch_metrics=None):
    """Add one batch's loss and function metrics, weighted by its size (summed on the device: no
    sync), and feed the stateful torchmetrics metrics in `epoch_metrics`."""
    n = target.size(0)
    tracker.update("loss", loss, n)
    with blame("metrics"):
        for metric in metric_fns:
            tracker.update(metric.__name__, metric(output, target), n)
        if epoch_metrics:
            epoch_metrics.update(output, target)


def evaluate(model, data_loader, loss_fn, metric_fns, device, settings=None):
    """Loss and metrics of `model` over `data_loader`, sample-weighted: {name: value}.
    `settings`: the trainer settings (amp, channels_last, non_blocking); default: none of them."""
    tracker = MetricTracker("loss", *[m.__name__ for m in metric_fns])
    evaluate_into(tracker, model, data_loader, loss_fn, metric_fns, torch.device(device), settings)
    return tracker.result()


@torch.no_grad()
def evaluate_into(tracker, model, data_loader, loss_fn, metric_fns, device, settings=None, epoch_metrics=None,
                  on_batch=None):
    """Add the loss and metrics of every batch of `data_loader` to `tracker` (and `epoch_metrics`);
    `on_batch(data, output, target)` sees every batch (the evaluation report collects outputs)."""
    amp = settings.amp if settings is not None else None
    channels_last = settings is not None and settings.channels_last
    non_blocking = settings is not None and settings.non_blocking and device.type == "cuda"
    for data, target in blamed_iter(data_loader, "data_loader"):
        data = to_device(data, device, non_blocking, channels_last)
        target = target.to(device, non_blocking=non_blocking)
        with autocast_context(amp, device):
            with blame("arch"):
                output = model(data)
            with blame("loss"):
                loss = loss_fn(output, target)
        update_metrics(tracker, metric_fns, loss, output, target, epoch_metrics)
        if on_batch is not None:
            on_batch(data, output, target)


class CollectedOutputs:
    """Every output and target of one evaluation pass, and its `keep_wrong` most confidently
    wrong samples (for the evaluation report)."""

    def __init__(self, keep_wrong=16):
        self.outputs, self.targets, self.keep_wrong, self.wrong = [], [], keep_wrong, None

    def update(self, data, output, target):
        if self.keep_wrong:
            from evaluation.outputs import WrongSamples, task_of  # the report's helpers, only when collecting

            self.wrong = self.wrong or WrongSamples(self.keep_wrong, task_of(output, target))
            self.wrong.update(data, output.float(), target, sum(len(t) for t in self.targets))
        self.outputs.append(output.detach().float())
        self.targets.append(target)

    def result(self):
        """(outputs, targets, wrong samples or None), on the CPU."""
        return (torch.cat(self.outputs).cpu(), torch.cat(self.targets).cpu(),
                self.wrong.result() if self.wrong else None)
