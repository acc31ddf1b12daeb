"""Evaluate a checkpoint on the test split: rebuilds data, model, loss and metrics from the
checkpoint's own config, prints a table and writes the numbers as JSON next to the checkpoint,
with the evaluation report (per-class table, confusion matrix, wrong samples, ROC/PR; for
regression per-target errors, predicted-vs-true and residual plots) in <checkpoint>_report/.
`-r RUN_FOLDER` tests the run's model_best.pth (its newest checkpoint when it has none). Another
test set (-o data_loader.args.test_csv=other.csv) gets files of its own: <checkpoint>_test-other.json
and <checkpoint>_report-other/. The command line is read first, so --help answers before torch
is imported."""
import argparse
import importlib
from pathlib import Path

from config.cli import parse_command_line
from utils import ConfigError, main_guard, write_json

# names other code imports from test.py (the template's `from test import evaluate`); their
# modules import torch, so they load when first asked for, not when test.py starts
IMPORTED_ON_USE = {"evaluate": "evaluation.evaluate", "evaluation_weights": "evaluation.evaluate",
                   "model_from_checkpoint": "evaluation.evaluate", "report_dir": "run.folder",
                   "test_result_file": "run.folder"}


def __getattr__(name):
    if name not in IMPORTED_ON_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(IMPORTED_ON_USE[name]), name)


# the test split of the config's loader: same data folder, batch size, task and fast path, but no
# shuffling and no validation split
TEST_SPLIT_ARGS = {"shuffle": False, "validation_split": 0.0, "training": False}
# the data_loader.args that say which data is the test data
TEST_DATA_KEYS = ("test_csv", "test_dir", "data_dir", "dataset", "dataset_args")


def main(config, write_evaluation_report=True):
    """Evaluate the checkpoint of `config` (ConfigParser) on the test split; write and return
    {"checkpoint", "epoch", "samples", <loss and metrics>}."""
    import torch

    import model.loss as module_loss
    import model.metric as module_metric
    from data_loader.task import DAMAGED_CHECKPOINT_FIX, task_of_saved_run
    from evaluation.evaluate import evaluate_with_outputs, model_from_checkpoint
    from utils import prepare_device

    logger = config.get_logger("test")
    settings = config.settings.trainer
    checkpoint_path = config.resume or config.init_weights  # -r alone, or -c CONFIG -r CHECKPOINT
    data_loader = build_test_loader(config)

    model, checkpoint = model_from_checkpoint(config)
    task = task_of_saved_run(f"checkpoint '{checkpoint_path}'", DAMAGED_CHECKPOINT_FIX, config, checkpoint)
    device, _ = prepare_device(config.settings.n_gpu, warn=False)
    model = model.to(device).eval()
    if settings.channels_last:  # as the trainer ran it
        model.to(memory_format=torch.channels_last)

    loss_fn = config.init_loss(module_loss)
    metric_fns = config.init_metrics(module_metric)
    results, outputs, targets, wrong = evaluate_with_outputs(model, data_loader, loss_fn, metric_fns, device,
                                                             settings, task=task)
    test_set = test_set_name(config, checkpoint)
    summary = report(logger, checkpoint_path, checkpoint, results, len(data_loader.sampler), test_set, config)
    if write_evaluation_report:
        write_evaluation_report_of(config, checkpoint_path, test_set, outputs, targets, task, wrong,
                                   getattr(data_loader, "describe_samples", None), logger)
    return summary


def write_evaluation_report_of(config, checkpoint_path, test_set, outputs, targets, task, wrong, source_rows,
                               logger):
    """The report in <checkpoint>_report/; its figures also go to TensorBoard (when the run's
    config has trainer.tensorboard on) in the run's log folder, or the report folder when the
    checkpoint is not in a run folder. W&B and MLflow get the figures of training only."""
    from evaluation.report import write_report  # matplotlib and torchmetrics: only for the report
    from logger import TensorboardWriter
    from run.folder import report_dir

    out_dir = report_dir(checkpoint_path, test_set)
    writer = TensorboardWriter(run_log_dir(checkpoint_path) or out_dir, logger, config.settings.trainer.tensorboard)
    try:
        write_report(out_dir, outputs, targets, task, wrong, writer=writer, source_rows=source_rows,
                     tag_prefix="test")
    finally:
        writer.close()
    logger.info(f"Evaluation report ({task.kind}) in {out_dir}")


def build_test_loader(config):
    """The config's data loader on its test split; `limit` sizes training runs, so every test
    sample counts."""
    import data_loader.data_loaders as module_data

    no_limit = {"limit": 0} if "limit" in config["data_loader"]["args"] else {}
    return config.init_obj("data_loader", module_data, **TEST_SPLIT_ARGS, **no_limit)


def test_data_of(data_loader_section):
    args = data_loader_section.get("args", {})
    return {key: args[key] for key in TEST_DATA_KEYS if key in args}


def test_set_name(config, checkpoint):
    """None for the test data the run was trained with; else a name for the other test set (the
    stem of its file or folder), so its results never overwrite the run's own."""
    from utils.checkpoint import Key

    trained = (checkpoint.get(Key.CONFIG) or {}).get("data_loader")
    current = test_data_of(config["data_loader"])
    if trained is None or test_data_of(trained) == current:
        return None
    changed = [value for key, value in current.items() if value != test_data_of(trained).get(key)]
    text = next((str(v) for v in changed if isinstance(v, str)), "other")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(text.rstrip("/")).stem) or "other"


def run_log_dir(checkpoint_path):
    """The log folder of the run a checkpoint belongs to, if it exists."""
    from run.folder import RunFolder

    folder = RunFolder.containing(checkpoint_path)
    return folder.log_dir if folder is not None and folder.log_dir.is_dir() else None


def report(logger, checkpoint_path, checkpoint, results, n_samples, test_set=None, config=None):
    from run.folder import test_result_file
    from utils.checkpoint import Key

    rows = [("samples", n_samples), *results.items()]
    width = max(len(name) for name, _ in rows)
    logger.info(f"Test results for {checkpoint_path} (epoch {checkpoint[Key.EPOCH]}"
                f"{', test set ' + test_set if test_set else ''}):")
    for name, value in rows:
        shown = f"{value:.6f}" if isinstance(value, float) else value
        logger.info(f"    {name:<{width}}  {shown}")
    out_path = test_result_file(checkpoint_path, test_set)
    test_data = test_data_of(config["data_loader"]) if config is not None else {}
    summary = {"checkpoint": str(checkpoint_path), "epoch": checkpoint[Key.EPOCH], "test_data": test_data,
               "samples": n_samples, **results}
    write_json(summary, out_path)
    logger.info(f"Saved to {out_path}")
    return summary


@main_guard
def run():
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str, help="config file path (default: None)")
    args.add_argument("-r", "--resume", default=None, type=str,
                      help="checkpoint to test, or a run folder (its model_best.pth, else its newest checkpoint)")
    args.add_argument("-d", "--device", default=None, type=str, help="indices of GPUs to enable (default: all)")
    args.add_argument("--no-report", action="store_true",
                      help="skip the evaluation report (per-class table, confusion matrix, wrong samples, ROC/PR)")
    cli_args = parse_command_line(args)  # --help answers here, before torch is imported
    from parse_config import ConfigParser

    config = ConfigParser.from_args(cli_args, create_dirs=False, prefer_best=True)
    if config.checkpoint is None:
        raise ConfigError("test.py needs -r CHECKPOINT (a .pth file or a run folder).")
    main(config, write_evaluation_report=not config.cli_args.no_report)


if __name__ == "__main__":
    run()
