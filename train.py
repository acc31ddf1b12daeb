"""Train a model from a config: python train.py -c config.json (see README.md). The command line
is read first, so --help and a mistyped flag answer before torch and the project are imported."""
import argparse
import collections
import functools
import importlib
import inspect
import json
import sys

from config.cli import parse_command_line
from experiments.sweep_args import add_sweep_arguments, is_sweep_command
from utils.errors import ConfigError, main_guard
from utils.io import atomic_open, write_json
from utils.write_faults import write_site

# what train.py offered as module attributes before it read its command line first
# (`train.Trainer`, `train.module_data`, ...): imported when first asked for
MODULES_ON_USE = {"torch": "torch", "module_data": "data_loader.data_loaders", "module_loss": "model.loss",
                  "module_metric": "model.metric", "module_arch": "model.model"}
NAMES_ON_USE = {
    "Trainer": "trainer", "ConfigParser": "parse_config", "run_sweep": "experiments.sweep_cli",
    "optimizer_param_groups": "model.transfer", "parameter_counts": "model.transfer",
    "recorded_status": "run.status", "stop_with_the_sweep": "run.status",
    "ActivationStatistics": "trainer.callbacks", "build_callbacks": "trainer.callbacks",
    "check_one_batch": "trainer.batch_check", "print_dry_run": "trainer.dry_run",
    "build_lr_scheduler": "trainer.schedules",
    "optimizer_steps_per_epoch": "trainer.schedules", "build_placed_model": "trainer.strategy",
    "dist": "utils", "unwrap_model": "utils", "seed_everything": "utils.seed",
}


def __getattr__(name):
    if name in MODULES_ON_USE:
        return importlib.import_module(MODULES_ON_USE[name])
    if name in NAMES_ON_USE:
        return getattr(importlib.import_module(NAMES_ON_USE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PROFILE_STEPS = 20  # --profile without a number


def main(config, epoch_callbacks=(), dry_run=False, callbacks=()):
    """Train one run; `callbacks` (base.Callback objects) run after the config's, and
    `epoch_callbacks` (functions of (epoch, log)) after each epoch's checkpoint.
    Everything is built before the run folder is made, so a mistake that shows only while
    building leaves nothing behind. Returns the trainer (None for a dry run)."""
    import torch

    import data_loader.data_loaders as module_data
    import model.loss as module_loss
    import model.metric as module_metric
    import model.model as module_arch
    from model.transfer import optimizer_param_groups
    from run.status import recorded_status
    from trainer import Trainer
    from trainer.batch_check import check_one_batch
    from trainer.callbacks import ActivationStatistics, build_callbacks
    from trainer.dry_run import print_dry_run
    from trainer.schedules import build_lr_scheduler, optimizer_steps_per_epoch
    from trainer.strategy import build_placed_model
    from trainer.summary import log_model_summary
    from utils import unwrap_model
    from utils.device import autocast_context
    from utils.seed import seed_everything

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
    from utils import dist

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
    from utils import dist

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
    import torch

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


def read_command_line(argv=None):
    """(parsed arguments, custom options) of train.py's command line (default sys.argv). Only
    argparse: --help and a mistyped flag answer here, before torch is imported."""
    parser, options = make_arg_parser()
    return parse_command_line(parser, options, argv), options


def parse_args(command_line=None):
    """The config of the command line (read_command_line's result; default: sys.argv's), checked,
    but no run folder yet: main() makes it once everything is built."""
    from parse_config import ConfigParser

    cli_args, options = command_line or read_command_line()
    config = ConfigParser.from_args(cli_args, options, create_dirs=False)
    if config.cli_args.print_config:
        print(json.dumps(config.config, indent=4))
        sys.exit(0)
    return config


@main_guard
def run():
    if is_sweep_command(sys.argv[1:]):  # -m KEY=A,B ... or -r SWEEP_FOLDER
        from experiments.sweep_cli import run_sweep

        return run_sweep(sys.argv[1:], make_arg_parser)
    command_line = read_command_line()
    from run.status import stop_with_the_sweep
    from utils import dist

    stop_with_the_sweep()
    with dist.distributed_session():  # under torchrun: process group in, clean teardown out
        config = parse_args(command_line)
        try:
            main(config, dry_run=config.cli_args.dry_run)
        finally:
            config.release_run_lock()  # the process's end would too; in-process callers run again


if __name__ == "__main__":
    run()
