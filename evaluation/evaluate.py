"""One pass of a model over a loader: loss and config metrics (function metrics averaged over
samples, torchmetrics classes exact over the pass), every output and target, and the most
confidently wrong samples."""
import torch
from tqdm import tqdm

import model.model as module_arch
from utils import MetricTracker
from utils.checkpoint import load_checkpoint, load_weights
from utils.epoch_metrics import EpochMetrics, is_stateful_metric
from utils.transfer import build_model

from .outputs import WrongSamples, task_of


def model_from_checkpoint(config):
    """(model in eval mode on the CPU, checkpoint dict) for `config.resume`: the training-time
    architecture (new head, ...) from the checkpoint's config, the weights from the checkpoint."""
    model = build_model(config, module_arch, load_start_weights=False)
    checkpoint = load_checkpoint(config.resume)
    load_weights(model, evaluation_weights(config, checkpoint), config.resume)
    return model.eval(), checkpoint


def evaluation_weights(config, checkpoint):
    """The averaged weights when the run kept an EMA for evaluation (trainer.ema), else the trained ones."""
    ema_settings = config["trainer"].get("ema") or {}
    if checkpoint.get("ema") and ema_settings.get("use_for_eval", True):
        return checkpoint["ema"]["weights"]
    return checkpoint["state_dict"]


@torch.no_grad()
def evaluate_with_outputs(model, data_loader, loss_fn, metric_fns, device, keep_wrong=16):
    """Returns (results dict, outputs, targets, wrong samples) with tensors on the CPU."""
    functions = [m for m in metric_fns if not is_stateful_metric(m)]
    tracker = MetricTracker("loss", *[m.__name__ for m in functions])
    epoch_metrics = EpochMetrics([m for m in metric_fns if is_stateful_metric(m)], device)
    outputs, targets, wrong, seen = [], [], None, 0
    for data, target in tqdm(data_loader, disable=None, leave=False):
        data, target = data.to(device), target.to(device)
        output = model(data)
        n = target.size(0)
        tracker.update("loss", loss_fn(output, target), n)
        for metric in functions:
            tracker.update(metric.__name__, metric(output, target), n)
        epoch_metrics.update(output, target)
        if keep_wrong:
            wrong = wrong or WrongSamples(keep_wrong, task_of(output, target))
            wrong.update(data, output, target, seen)
        outputs.append(output.detach().float())
        targets.append(target)
        seen += n
    results = {**tracker.result(), **epoch_metrics.compute()}
    return results, torch.cat(outputs).cpu(), torch.cat(targets).cpu(), wrong.result() if wrong else None
