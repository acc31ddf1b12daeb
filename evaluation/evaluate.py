"""One pass of a model over a loader with the validation's own function: loss and config
metrics (function metrics averaged over samples, torchmetrics classes exact over the pass),
every output and target, and the most confidently wrong samples."""
import model.model as module_arch
from model.transfer import build_model
from trainer.evaluation import CollectedOutputs, evaluate_into
from trainer.metric_tracker import MetricTracker
from utils.checkpoint import Key, load_weights
from utils.epoch_metrics import EpochMetrics, is_stateful_metric


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


def evaluate_with_outputs(model, data_loader, loss_fn, metric_fns, device, settings=None, keep_wrong=16):
    """Returns (results dict, outputs, targets, wrong samples) with tensors on the CPU.
    `settings`: the trainer settings (amp, channels_last), as validation uses them."""
    functions = [m for m in metric_fns if not is_stateful_metric(m)]
    tracker = MetricTracker("loss", *[m.__name__ for m in functions])
    epoch_metrics = EpochMetrics([m for m in metric_fns if is_stateful_metric(m)], device)
    collected = CollectedOutputs(keep_wrong)
    evaluate_into(tracker, model, data_loader, loss_fn, functions, device, settings, epoch_metrics,
                  collected.update)
    return ({**tracker.result(), **epoch_metrics.compute()}, *collected.result())
