import argparse
import collections
import functools
import inspect
import json
import sys

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from experiments.sweep_cli import add_sweep_arguments, is_sweep_command, run_sweep
from model.transfer import optimizer_param_groups
from parse_config import ConfigParser
from run.status import recorded_status, stop_with_the_sweep
from trainer import Trainer
from trainer.batch_check import check_one_batch
from trainer.callbacks import ActivationStatistics, build_callbacks
from trainer.dry_run import print_dry_run
from trainer.schedules import build_lr_scheduler, optimizer_steps_per_epoch
from trainer.strategy import build_placed_model
from trainer.summary import log_model_summary
from utils import ConfigError, dist, main_guard, unwrap_model, write_json
from utils.device import autocast_context
from utils.io import atomic_open
from utils.seed import seed_everything
from utils.write_faults import write_site

PROFILE_STEPS = 20  # --profile without a number


def main(config, epoch_callbacks=(), dry_run=False, callbacks=()):
    """Train one run; `callbacks` (base.Callback objects) run after the config's, and
    `epoch_callbacks` (functions of (epoch, log)) after each epoch's checkpoint.
    Everything is built before the run folder is made, so a mistake that shows only while
    building leaves nothing behind. Returns the trainer (None for a dry run)."""
    logger = config.get_logger("train")
    settings = config.settings
    seed_everything(settings.seed)

    # setup data_loader instances
    data_loader = config.init_obj("data_loader", module_data)
    valid_data_loader = data_loader.split_validation()
    record_data_settings(config, data_loader, logger)

    # build model architecture (+ pretrained weights, new head, frozen parts; a resume brings its
    # own weights) and place it: one device, DataParallel, DDP or sharded (trainer.strategy)
    device, model = build_placed_model(config, module_arch, data_loader, warn=not dry_run)
    # groups of the bare model's parameters (after sharding, which replaces them), so patterns see
    # the model's own parameter names
    param_groups = optimizer_param_groups(unwrap_model(model), config["optimizer"])

    # get function handles of loss and metrics
    criterion = with_class_weights(config.init_loss(module_loss), getattr(data_loader, "class_weights", None),
                                   device, logger)
    metrics = config.init_metrics(module_metric)

    # build optimizer, learning rate scheduler. delete every line containing lr_scheduler for disabling scheduler
    optimizer = config.init_obj("optimizer", torch.optim, param_groups)
    len_epoch = settings.trainer.len_epoch or len(data_loader)  # batches of this process
    steps_per_epoch = optimizer_steps_per_epoch(len_epoch, settings.trainer.accum_steps)
    lr_scheduler = build_lr_scheduler(config, optimizer, steps_per_epoch, config.trusted)
    # one batch through the model, the loss and the metrics: a model that does not fit the data
    # stops here, before the run folder exists
    batch = check_one_batch(config, unwrap_model(model), data_loader, criterion, metrics, device)
    if dry_run:
        print_dry_run(config, model, data_loader, batch, optimizer)
        return None

    if config.save_dir is None:  # train.py's own config: its run folder, now that all is built
        config.make_run_dirs()
    write_skipped_samples(config, data_loader, logger)
    logger.info(repr(unwrap_model(model)))  # BaseModel's str() adds a parameter count; the summary has more
    # modules, output shapes, parameters, FLOPs, memory; every rank runs it (a sharded forward is
    # a collective), rank 0 logs it
    log_model_summary(logger, model, batch.data, optimizer,
                      functools.partial(autocast_context, settings.trainer.amp, device))
    trainer = Trainer(model, criterion, metrics, optimizer,
                      config=config,
                      device=device,
                      data_loader=data_loader,
                      valid_data_loader=valid_data_loader,
                      lr_scheduler=lr_scheduler,
                      len_epoch=settings.trainer.len_epoch)
    for callback in build_callbacks(config) + list(callbacks):
        trainer.callbacks.append(callback)
    trainer.epoch_callbacks.extend(epoch_callbacks)
    if settings.trainer.activation_stats:  # every N training forward passes
        trainer.callbacks.append(ActivationStatistics(settings.trainer.activation_stats))
    try:
        with recorded_status(config):  # status.json: running, then finished / stopped / crashed
            trainer.train()
    finally:
        config.release_run_lock()  # in-process callers (tune.py trials, tests) may train the run again
    return trainer


def record_data_settings(config, data_loader, logger):
    """Keep what the data loader measured with the run: the task and class or target names
    (top-level "task", "class_names" / "target_names", also saved in checkpoints), fitted
    settings ("auto" normalisation, a table's preprocessing, the task "auto" chose, the target
    scaling) in data_loader.args, so test.py and prediction rebuild exactly this input pipeline,
    and the list of skipped bad samples in the run folder."""
    task = getattr(data_loader, "task", None)
    class_names = getattr(data_loader, "class_names", None)
    if task is not None:  # the task and the names of the outputs, read by test.py, predict.py, export.py
        config.config.update(task.record())
    elif class_names is not None:
        config.config["class_names"] = list(class_names)
    config.config["data_loader"].setdefault("args", {}).update(getattr(data_loader, "fitted_args", {}))
    if config.run_folder is not None and dist.is_main_process():  # a run folder made before (tune.py)
        with write_site(config.run_folder.config_file):
            write_json(config.config, config.run_folder.config_file)


def write_skipped_samples(config, data_loader, logger):
    """The list of bad samples the data loader skipped (on_bad_sample "skip"), in the run folder."""
    skipped = getattr(data_loader, "skipped_samples", None)
    if skipped and dist.is_main_process():
        path = config.run_folder.skipped_samples
        with write_site(path), atomic_open(path, "wt") as handle:
            handle.writelines(f"{one_line(sample)}\t{one_line(problem)}\n" for sample, problem in skipped)
        logger.warning(f"{len(skipped)} bad sample(s) skipped; the list is in {path}")


ESCAPED = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def one_line(text):
    """`text` on one line of skipped_samples.txt: a tab, line break or backslash in a file name escaped."""
    return str(text).translate(ESCAPED)


def with_class_weights(criterion, class_weights, device, logger):
    """The loss with `weight=` per class ("balanced" class_weights of the data loader)."""
    if class_weights is None:
        return criterion
    logger.info(f"Class weights for the loss: {[round(w, 4) for w in class_weights.tolist()]}")
    weights = class_weights.to(device)
    if isinstance(criterion, torch.nn.Module):
        if not hasattr(criterion, "weight"):
            raise ConfigError(f"data_loader.args.class_weights needs a loss that takes per-class weights; "
                              f"{type(criterion).__name__} does not. Use nll_loss or cross_entropy.")
        criterion.weight = weights
        return criterion
    if "weight" not in inspect.signature(criterion).parameters:
        raise ConfigError(f"data_loader.args.class_weights needs a loss with a `weight` argument; "
                          f"{criterion.__name__} has none. Use nll_loss or cross_entropy, or remove class_weights.")
    weighted = functools.partial(criterion, weight=weights)
    weighted.__name__ = criterion.__name__
    return weighted


def make_arg_parser():
    """train.py's command line: the parser and the template's custom options (--lr, --bs)."""
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str,
                      help="config file path (default: None)")
    args.add_argument("-r", "--resume", default=None, type=str,
                      help="checkpoint or run folder to resume from; 'auto' = newest run of the config's name; "
                           "a sweep folder continues the sweep")
    args.add_argument("-d", "--device", default=None, type=str,
                      help="indices of GPUs to enable (default: all)")
    args.add_argument("--dry-run", action="store_true",
                      help="build everything, show the model and one batch, then exit without training")
    args.add_argument("--new-run", action="store_true",
                      help="with -r: start a new run folder seeded from the checkpoint instead of continuing "
                           "the run in its own folder")
    args.add_argument("--print-config", action="store_true",
                      help="print the resolved config (bases, then overrides, then defaults) and exit")
    add_sweep_arguments(args)

    # custom cli options to modify configuration from default values given in json file.
    CustomArgs = collections.namedtuple("CustomArgs", "flags type target help nargs const metavar",
                                        defaults=(None,) * 4)
    options = [
        CustomArgs(["--lr", "--learning_rate"], type=float, target="optimizer;args;lr"),
        CustomArgs(["--bs", "--batch_size"], type=int, target="data_loader;args;batch_size"),
        CustomArgs(["--profile"], type=int, target="trainer;profile", nargs="?", const=PROFILE_STEPS, metavar="N",
                   help=f"profile N training steps (default {PROFILE_STEPS}) after a warm-up: trace, top operators "
                        "and time shares in the run's log folder, profile/ (trainer.profile)"),
    ]
    return args, options


def parse_args():
    args, options = make_arg_parser()
    # checked, but no run folder yet: main() makes it once everything is built
    config = ConfigParser.from_args(args, options, create_dirs=False)
    if config.cli_args.print_config:
        print(json.dumps(config.config, indent=4))
        sys.exit(0)
    return config


@main_guard
def run():
    if is_sweep_command(sys.argv[1:]):  # -m KEY=A,B ... or -r SWEEP_FOLDER
        return run_sweep(sys.argv[1:], make_arg_parser)
    stop_with_the_sweep()
    with dist.distributed_session():  # under torchrun: process group in, clean teardown out
        config = parse_args()
        try:
            main(config, dry_run=config.cli_args.dry_run)
        finally:
            config.release_run_lock()  # the process's end would too; in-process callers run again


if __name__ == "__main__":
    run()
