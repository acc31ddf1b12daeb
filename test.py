"""Evaluate a checkpoint on the test split: rebuilds data, model, loss and metrics from the
checkpoint's own config, prints a table and writes the numbers as JSON next to the checkpoint,
with the evaluation report (per-class table, confusion matrix, wrong samples, ROC/PR) in
<checkpoint>_report/."""
import argparse
from pathlib import Path

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
from evaluation.evaluate import evaluate_with_outputs, model_from_checkpoint
from evaluation.outputs import class_names_for
from parse_config import ConfigParser
from utils import ConfigError, main_guard, prepare_device, write_json
from utils.resolve import check_call_args, resolve_type

TEST_SPLIT_ARGS = {"shuffle": False, "validation_split": 0.0, "training": False}


def main(config, write_evaluation_report=True):
    logger = config.get_logger("test")
    data_loader = build_test_loader(config)

    model, checkpoint = model_from_checkpoint(config)
    device, _ = prepare_device(config["n_gpu"], warn=False)
    model = model.to(device).eval()

    loss_fn = config.init_loss(module_loss)
    metric_fns = config.init_metrics(module_metric)
    results, outputs, targets, wrong = evaluate_with_outputs(model, data_loader, loss_fn, metric_fns, device)
    report(logger, config, checkpoint, results, len(data_loader.sampler))
    if write_evaluation_report:
        from evaluation.report import write_report  # matplotlib and torchmetrics: only for the report

        out_dir = report_dir(config.resume)
        write_report(out_dir, outputs, targets, lambda count: class_names_for(checkpoint, config, count),
                     wrong, tensorboard_dir=run_log_dir(config.resume) or out_dir)
        logger.info(f"Evaluation report (per-class table, confusion matrix, wrong samples) in {out_dir}")
    return results


def evaluate(model, data_loader, loss_fn, metric_fns, device):
    """{"loss": ..., <metric>: ...} of `model` over `data_loader` (samples weighted equally)."""
    return evaluate_with_outputs(model, data_loader, loss_fn, metric_fns, device, keep_wrong=0)[0]


def report_dir(checkpoint_path):
    return checkpoint_path.with_name(checkpoint_path.stem + "_report")


def run_log_dir(checkpoint_path):
    """saved/log/<name>/<run_id> of a checkpoint in saved/models/<name>/<run_id>, if it exists."""
    parts = Path(checkpoint_path).resolve().parents
    if len(parts) < 4 or parts[2].name != "models":
        return None
    log_dir = parts[3] / "log" / parts[1].name / parts[0].name
    return log_dir if log_dir.is_dir() else None


def build_test_loader(config):
    """The config's data loader on its test split: the same arguments (data folder, batch size,
    task, fast path), but no shuffling, no validation split and no `limit`, which sizes
    training runs: every test sample counts."""
    entry = config["data_loader"]
    loader_class = resolve_type(entry, "data_loader", module_data, (), config.trusted)
    args = {key: value for key, value in entry.get("args", {}).items() if key != "limit"}
    args.update(TEST_SPLIT_ARGS)
    check_call_args(loader_class, (), args, "data_loader")
    return loader_class(**args)


def report(logger, config, checkpoint, results, n_samples):
    rows = [("samples", n_samples), *results.items()]
    width = max(len(name) for name, _ in rows)
    logger.info(f"Test results for {config.resume} (epoch {checkpoint['epoch']}):")
    for name, value in rows:
        shown = f"{value:.6f}" if isinstance(value, float) else value
        logger.info(f"    {name:<{width}}  {shown}")
    out_path = config.resume.with_name(config.resume.stem + "_test.json")
    write_json({"checkpoint": str(config.resume), "epoch": checkpoint["epoch"],
                "samples": n_samples, **results}, out_path)
    logger.info(f"Saved to {out_path}")


@main_guard
def run():
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str, help="config file path (default: None)")
    args.add_argument("-r", "--resume", default=None, type=str, help="path to the checkpoint to test")
    args.add_argument("-d", "--device", default=None, type=str, help="indices of GPUs to enable (default: all)")
    args.add_argument("--no-report", action="store_true",
                      help="skip the evaluation report (per-class table, confusion matrix, wrong samples, ROC/PR)")
    config = ConfigParser.from_args(args, create_dirs=False)
    if config.resume is None:
        if config.init_weights is None:
            raise ConfigError("test.py needs -r CHECKPOINT (a .pth file or a run folder).")
        config.resume = config.init_weights
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--no-report", action="store_true")
    main(config, write_evaluation_report=not early.parse_known_args()[0].no_report)


if __name__ == "__main__":
    run()
