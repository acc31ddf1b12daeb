"""The check of every run before its folder is made: one training batch through the model, the
loss and the metrics, compared with the task's shape rule (data_loader/task.py). Each mismatch
is a ConfigError naming the config key to change and the number it should be. `--dry-run`
prints what this check saw."""
import logging
import warnings
from dataclasses import dataclass

import torch

from utils.errors import ConfigError, first_line
from utils.metric_tracker import is_stateful_metric
from utils.resource_faults import explain_resource_fault
from utils.seed import get_rng_states, set_rng_states

logger = logging.getLogger("train")

# losses that only fit one kind of target; names not listed here (a project's own) are not judged
TASK_LOSSES = {
    "classification": ("cross_entropy", "nll_loss", "crossentropyloss", "nllloss", "multi_margin_loss",
                       "multimarginloss"),
    "binary": ("bce_with_logits", "binary_cross_entropy_with_logits", "binary_cross_entropy", "bcewithlogitsloss",
               "bceloss"),
    "regression": ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "mseloss", "l1loss", "smoothl1loss",
                   "huberloss"),
}
TASK_LOSSES["multilabel"] = TASK_LOSSES["binary"] + ("multilabel_soft_margin_loss", "multilabelsoftmarginloss")
LOSS_ADVICE = {
    "classification": "cross_entropy (raw scores) or nll_loss (log-probabilities)",
    "binary": "bce_with_logits (one raw score per sample)",
    "multilabel": "bce_with_logits (one raw score per label)",
    "regression": "mse_loss, l1_loss, smooth_l1_loss or huber_loss",
}
# metrics that only fit class targets
CLASS_METRICS = ("accuracy", "top_k_acc", "binary_accuracy")
# arch.args keys that hold the width of the model's output, in the order they are looked for
OUTPUT_ARGS = ("num_classes", "num_outputs", "out_features", "num_labels", "n_classes")


@dataclass
class BatchCheck:
    """What one batch looked like: the inputs, targets, outputs and the loss."""
    data: torch.Tensor
    target: torch.Tensor
    output: torch.Tensor
    loss: torch.Tensor


def check_one_batch(config, model, data_loader, criterion, metrics, device):
    """Run one training batch through `model` (the bare module), `criterion` and `metrics` and
    check their shapes against the loader's task; returns the BatchCheck. Random states are put
    back afterwards, so the run draws exactly what it would have drawn without the check."""
    task = getattr(data_loader, "task", None)
    if task is not None:
        check_loss_fits_task(config, task)
        check_metrics_fit_task(config, task)
    warn_about_batch_size(data_loader)
    states = get_rng_states()
    was_training = model.training
    try:
        data, target = _first_batch(data_loader, device)
        model.eval()
        with torch.no_grad():
            check_input_width(config, data_loader, data)
            output = run_part(lambda: model(data), "arch", "the model", config, data)
            if task is not None and task.names:  # a loader that names no classes: no width to compare
                check_output_shape(config, task, output)
            loss = _run_loss(config, criterion, output, target, data)
            _run_metrics(config, metrics, output, target, task)
    finally:
        model.train(was_training)
        set_rng_states(states)
    return BatchCheck(data, target, output, loss)


def _first_batch(data_loader, device):
    try:
        data, target = next(iter(data_loader))
    except StopIteration:
        raise ConfigError("the training data is empty: data_loader yields no batch. Check data_loader.args "
                          "(the data files, validation_split, limit).") from None
    return data.to(device), target.to(device)


def run_part(step, section, what, config, data):
    """Run one step on the batch; a failure names the config section behind it."""
    try:
        return step()
    except ConfigError:
        raise
    except Exception as err:  # a model or loss that does not fit the data: report, don't dump
        explained = explain_resource_fault(err, config)  # out of memory is not a config mistake
        if explained is not None:
            raise explained from err
        built_from = config[section]["type"] if isinstance(config[section], dict) else config[section]
        reason = first_line(err).rstrip(".")
        raise ConfigError(
            f"{what} ({section}: {built_from}) failed on one batch of data_loader ({config['data_loader']['type']}, "
            f"input {tuple(data.shape)}): {type(err).__name__}: {reason}. Make {section} fit the data "
            "(its args, or a model made for this input), or pick another data_loader.") from err


def warn_about_batch_size(data_loader):
    samples, batch_size = len(data_loader.sampler), data_loader.batch_size
    if batch_size and samples and batch_size > samples:
        logger.warning(f"data_loader.args.batch_size is {batch_size}, larger than the {samples} training samples: "
                       f"an epoch will be {_count(len(data_loader), 'step')} of {samples} samples. Lower batch_size "
                       "for more steps per epoch.")


def _loss_name(config):
    loss = config["loss"]
    return (loss if isinstance(loss, str) else loss.get("type", "")).lower()


def check_loss_fits_task(config, task):
    name = _loss_name(config)
    suited = [kind for kind, names in TASK_LOSSES.items() if name in names]
    if not suited or task.kind in suited:
        return
    hint = {"regression": " If the target holds values to predict, set data_loader.args.task to \"regression\".",
            "classification": " If the target holds classes, set data_loader.args.task to \"classification\"."}
    raise ConfigError(f"loss is {config['loss'] if isinstance(config['loss'], str) else config['loss']['type']}, a "
                      f"{' / '.join(suited)} loss, but the task is {task.kind} ({task.what}). Use "
                      f"{LOSS_ADVICE[task.kind]}.{hint.get(suited[0], '')}")


def check_metrics_fit_task(config, task):
    if task.kind != "regression":
        return
    for index, entry in enumerate(config["metrics"]):
        name = entry if isinstance(entry, str) else entry.get("type", "")
        if name in CLASS_METRICS or name.startswith(("Multiclass", "Binary", "Multilabel")):
            raise ConfigError(f"metrics.{index} is {name}, which counts classes, but the task is regression "
                              f"({task.what}). Use MeanAbsoluteError, MeanSquaredError (\"squared\": false for "
                              "RMSE) or R2Score from torchmetrics, or a metric of your own.")


def check_input_width(config, data_loader, data):
    """A table's width against arch.args.num_inputs, an image's channels against in_channels."""
    args = config["arch"].get("args", {})
    width = getattr(data_loader, "num_inputs", None)
    if width is not None and "num_inputs" in args and args["num_inputs"] != width:
        raise ConfigError(f"arch.args.num_inputs is {args['num_inputs']}, but the table gives the model {width} "
                          "inputs per row (its numeric feature columns plus one per category of each categorical "
                          f"column). Set arch.args.num_inputs to {width}.")
    if data.dim() == 4 and isinstance(args.get("in_channels"), int) and args["in_channels"] != data.shape[1]:
        raise ConfigError(f"arch.args.in_channels is {args['in_channels']}, but the images have {data.shape[1]} "
                          f"channel(s) (data_loader.args.mode). Set arch.args.in_channels to {data.shape[1]}, or "
                          "change data_loader.args.mode.")


def output_arg(config):
    """(config key, value) of the setting that makes the model's output width, or (None, None)."""
    head = config["arch"].get("replace_head")
    if isinstance(head, dict) and "num_classes" in head:
        return "arch.replace_head.num_classes", head["num_classes"]
    args = config["arch"].get("args", {})
    for key in OUTPUT_ARGS:
        if isinstance(args.get(key), int):
            return f"arch.args.{key}", args[key]
    return None, None


def check_output_shape(config, task, output):
    """The output against the task's shape rule: (N, classes), (N, 1), (N, labels), (N, targets)."""
    if not isinstance(output, torch.Tensor):
        raise ConfigError(f"the model (arch: {config['arch']['type']}) returns {type(output).__name__}, not a "
                          "tensor. Make its forward() return the output tensor.")
    expected = task.expected_output_shape(len(output))
    fits = tuple(output.shape) == expected or (task.kind == "binary" and tuple(output.shape) == expected[:1])
    if fits:
        return
    key, value = output_arg(config)
    width = output.shape[1] if output.dim() == 2 else None
    what = f"{_count(width, 'output')} per sample" if width is not None else f"an output of shape {tuple(output.shape)}"
    wanted = f"{_count(expected[1], 'output')} per sample"
    names = f" ({', '.join(task.names[:8])}{' ...' if len(task.names) > 8 else ''})"
    fix = f"Set {key} to {expected[1]}" if key is not None and width is not None else \
        f"Make the model (arch: {config['arch']['type']}) return shape (batch, {expected[1]})"
    extra = {"binary": (" A binary task has one score per sample (the probability of "
                        f"'{task.names[-1]}'), for bce_with_logits; for one score per class, set "
                        "data_loader.args.task to \"classification\" and use cross_entropy."),
             "regression": (" A regression output is (batch, targets), also for one target, never (batch,): "
                            "the loss must not broadcast.")}.get(task.kind, "")
    raise ConfigError(f"{key + ' is ' + str(value) + ': ' if key is not None else ''}the model returns {what} "
                      f"(shape {tuple(output.shape)}), but the task is {task.kind} with {task.what}{names}, which "
                      f"needs {wanted}. {fix}.{extra}")


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _run_loss(config, criterion, output, target, data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = run_part(lambda: criterion(output, target), "loss", "the loss", config, data)
    broadcast = [w for w in caught if "target size" in str(w.message).lower() or "broadcast" in str(w.message).lower()]
    if broadcast:
        raise ConfigError(f"loss ({_loss_name(config)}) gets an output of shape {tuple(output.shape)} and a target "
                          f"of shape {tuple(target.shape)}, which fit only by broadcasting ({broadcast[0].message}). "
                          "Make the model's output the target's shape (arch), or pick the loss of the task.")
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ConfigError(f"loss ({_loss_name(config)}) returns {shape}, not one number per batch. Give it a "
                          "reduction (\"mean\") in loss.args, or reduce it in your loss function.")
    return loss


def _run_metrics(config, metrics, output, target, task):
    """Each metric on the batch (torchmetrics with their argument checks on), in the units
    the trainer gives them."""
    if task is not None and task.scaling is not None:
        output, target = task.original_units(output), task.original_units(target)
    for index, metric in enumerate(metrics):
        where = f"metrics.{index}"
        try:
            if is_stateful_metric(metric):
                trial = metric.clone() if hasattr(metric, "clone") else metric
                if hasattr(trial, "validate_args"):
                    trial.validate_args = True
                if isinstance(trial, torch.nn.Module):
                    trial.to(output.device)
                trial.update(output, target)
            else:
                metric(output, target)
        except Exception as err:
            reason = first_line(err).rstrip(".")
            raise ConfigError(f"{where} ({metric.__name__}) fails on one batch (output {tuple(output.shape)}, "
                              f"target {tuple(target.shape)}): {type(err).__name__}: {reason}. Fix {where} "
                              "(its args, e.g. num_classes) or pick a metric for this task.") from err
