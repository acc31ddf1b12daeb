"""Evaluate a checkpoint on the test split: rebuilds data, model, loss and metrics from the
checkpoint's own config, prints a table and writes the numbers as JSON next to the checkpoint,
with the evaluation report (per-class table, confusion matrix, wrong samples, ROC/PR; for
regression per-target errors, predicted-vs-true and residual plots) in <checkpoint>_report/.
`-r RUN_FOLDER` tests the run's model_best.pth (its newest checkpoint when it has none). Another
test set (-o data_loader.args.test_csv=other.csv) gets files of its own: <checkpoint>_test-other.json
and <checkpoint>_report-other/."""
import argparse
from pathlib import Path

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
from data_loader.task import task_of_run
from evaluation.evaluate import evaluate, evaluate_with_outputs, evaluation_weights, model_from_checkpoint  # noqa: F401
from parse_config import ConfigParser
from run.folder import RunFolder, report_dir, test_result_file
from utils import ConfigError, main_guard, prepare_device, write_json
from utils.checkpoint import Key

# the test split of the config's loader: same data folder, batch size, task and fast path, but no
# shuffling and no validation split
TEST_SPLIT_ARGS = {"shuffle": False, "validation_split": 0.0, "training": False}
# the data_loader.args that say which data is the test data
TEST_DATA_KEYS = ("test_csv", "test_dir", "data_dir", "dataset", "dataset_args")


def main(config, write_evaluation_report=True):
    """Evaluate the checkpoint of `config` (ConfigParser) on the test split; write and return
    {"checkpoint", "epoch", "samples", <loss and metrics>}."""
    logger = config.get_logger("test")
    settings = config.settings.trainer
    checkpoint_path = config.resume or config.init_weights  # -r alone, or -c CONFIG -r CHECKPOINT
    data_loader = build_test_loader(config)

    model, checkpoint = model_from_checkpoint(config)
    task = task_of_run(config, checkpoint)
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
        from evaluation.report import write_report  # matplotlib and torchmetrics: only for the report

        out_dir = report_dir(checkpoint_path, test_set)
        describe = getattr(data_loader, "describe_samples", None)
        write_report(out_dir, outputs, targets, task, wrong, tensorboard_dir=run_log_dir(checkpoint_path) or out_dir,
                     source_rows=describe)
        logger.info(f"Evaluation report ({task.kind}) in {out_dir}")
    return summary


def build_test_loader(config):
    """The config's data loader on its test split; `limit` sizes training runs, so every test
    sample counts."""
    no_limit = {"limit": 0} if "limit" in config["data_loader"]["args"] else {}
    return config.init_obj("data_loader", module_data, **TEST_SPLIT_ARGS, **no_limit)


def test_data_of(data_loader_section):
    args = data_loader_section.get("args", {})
    return {key: args[key] for key in TEST_DATA_KEYS if key in args}


def test_set_name(config, checkpoint):
    """None for the test data the run was trained with; else a name for the other test set (the
    stem of its file or folder), so its results never overwrite the run's own."""
    trained = (checkpoint.get(Key.CONFIG) or {}).get("data_loader")
    current = test_data_of(config["data_loader"])
    if trained is None or test_data_of(trained) == current:
        return None
    changed = [value for key, value in current.items() if value != test_data_of(trained).get(key)]
    text = next((str(v) for v in changed if isinstance(v, str)), "other")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(text.rstrip("/")).stem) or "other"


def run_log_dir(checkpoint_path):
    """The log folder of the run a checkpoint belongs to, if it exists."""
    folder = RunFolder.containing(checkpoint_path)
    return folder.log_dir if folder is not None and folder.log_dir.is_dir() else None


def report(logger, checkpoint_path, checkpoint, results, n_samples, test_set=None, config=None):
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
    config = ConfigParser.from_args(args, create_dirs=False, prefer_best=True)
    if config.checkpoint is None:
        raise ConfigError("test.py needs -r CHECKPOINT (a .pth file or a run folder).")
    main(config, write_evaluation_report=not config.cli_args.no_report)


if __name__ == "__main__":
    run()
