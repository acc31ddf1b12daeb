"""The one evaluation pass: a model over a data loader, with the loss and the config metrics
(function metrics averaged over samples, torchmetrics classes exact over the pass), optionally
keeping every output and target and the most confidently wrong samples. The trainer's
validation, test.py, the evaluation report and export.py all use it, so they move batches,
autocast and accumulate metrics the same way."""
import torch

import model.model as module_arch
from model.transfer import build_model
from utils.checkpoint import Key, load_weights
from utils.device import autocast_context
from utils.errors import blame, blamed_iter

from .metrics import PassMetrics


def to_device(data, device, non_blocking=False, channels_last=False):
    data = data.to(device, non_blocking=non_blocking)
    if channels_last and data.dim() == 4:
        data = data.contiguous(memory_format=torch.channels_last)
    return data


def evaluate(model, data_loader, loss_fn, metric_fns, device, settings=None, original_units=None):
    """Loss and metrics of `model` over `data_loader`, sample-weighted: {name: value}.
    `settings`: the trainer settings (amp, channels_last, non_blocking); default: none of them.
    `original_units`: see PassMetrics (regression metrics in the data's units)."""
    device = torch.device(device)
    metrics = PassMetrics(metric_fns, device, original_units)
    evaluate_into(metrics, model, data_loader, loss_fn, device, settings)
    return metrics.result()


def evaluate_with_outputs(model, data_loader, loss_fn, metric_fns, device, settings=None, keep_wrong=16,
                          task=None):
    """Returns (results dict, outputs, targets, wrong samples) with tensors on the CPU; `task`
    (data_loader/task.py) decides what a wrong sample is and the units of the metrics."""
    original_units = task.original_units if task is not None and task.scaling is not None else None
    metrics = PassMetrics(metric_fns, device, original_units)
    collected = CollectedOutputs(keep_wrong, task.kind if task is not None else "classification")
    evaluate_into(metrics, model, data_loader, loss_fn, device, settings, collected.update)
    return (metrics.result(), *collected.result())


@torch.no_grad()
def evaluate_into(metrics, model, data_loader, loss_fn, device, settings=None, on_batch=None):
    """Add the loss and metrics of every batch of `data_loader` to `metrics` (PassMetrics);
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
        metrics.update(loss, output, target)
        if on_batch is not None:
            on_batch(data, output, target)


class CollectedOutputs:
    """Every output and target of one evaluation pass, and, for a class task (`task_kind`), its
    `keep_wrong` most confidently wrong samples (for the evaluation report; a regression
    report ranks residuals from all outputs instead)."""

    def __init__(self, keep_wrong=16, task_kind="classification"):
        self.outputs, self.targets, self.wrong = [], [], None
        self.keep_wrong = keep_wrong if task_kind != "regression" else 0
        self.task_kind = task_kind

    def update(self, data, output, target):
        if self.keep_wrong:
            from .outputs import WrongSamples

            self.wrong = self.wrong or WrongSamples(self.keep_wrong, self.task_kind)
            self.wrong.update(data, output.float(), target, sum(len(t) for t in self.targets))
        self.outputs.append(output.detach().float())
        self.targets.append(target)

    def result(self):
        """(outputs, targets, wrong samples or None), on the CPU."""
        return (torch.cat(self.outputs).cpu(), torch.cat(self.targets).cpu(),
                self.wrong.result() if self.wrong else None)


def model_from_checkpoint(config):
    """(model in eval mode on the CPU, checkpoint dict) for the checkpoint given with -r: the
    training-time architecture (new head, ...) from its config, the weights from the file."""
    model = build_model(config, module_arch, load_start_weights=False)
    checkpoint = config.checkpoint
    load_weights(model, evaluation_weights(config, checkpoint), config.resume or config.init_weights)
    return model.eval(), checkpoint


def evaluation_weights(config, checkpoint):
    """The averaged weights when the run kept an EMA for evaluation (trainer.ema) or had begun its
    stochastic weight average (trainer.swa), else the trained ones: what validation evaluated."""
    swa = checkpoint.get(Key.SWA)
    if swa and int(swa["updates"]) > 0:
        return swa["weights"]
    ema_settings = config.settings.trainer.ema or {}
    if checkpoint.get(Key.EMA) and ema_settings.get("use_for_eval", True):
        return checkpoint[Key.EMA]["weights"]
    return checkpoint[Key.STATE_DICT]
