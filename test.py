"""Evaluate a checkpoint on the test split: rebuilds data, model, loss and metrics from the
checkpoint's own config, prints a table and writes the numbers as JSON next to the checkpoint."""
import argparse

import torch
from tqdm import tqdm

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from parse_config import ConfigParser
from utils import ConfigError, MetricTracker, main_guard, prepare_device, write_json
from utils.checkpoint import load_checkpoint, load_weights
from utils.resolve import check_call_args, resolve_type
from utils.transfer import build_model

TEST_SPLIT_ARGS = {"shuffle": False, "validation_split": 0.0, "training": False}


def main(config):
    logger = config.get_logger("test")
    data_loader = build_test_loader(config)

    # the training-time architecture (new head, ...); the checkpoint supplies the weights
    model = build_model(config, module_arch, load_start_weights=False)
    checkpoint = load_checkpoint(config.resume)
    load_weights(model, checkpoint["state_dict"], config.resume)
    device, _ = prepare_device(config["n_gpu"], warn=False)
    model = model.to(device).eval()

    loss_fn = config.init_loss(module_loss)
    metric_fns = config.init_metrics(module_metric)
    results = evaluate(model, data_loader, loss_fn, metric_fns, device)
    report(logger, config, checkpoint, results, len(data_loader.sampler))


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


@torch.no_grad()
def evaluate(model, data_loader, loss_fn, metric_fns, device):
    tracker = MetricTracker("loss", *[m.__name__ for m in metric_fns])
    for data, target in tqdm(data_loader, disable=None, leave=False):
        data, target = data.to(device), target.to(device)
        output = model(data)
        tracker.update("loss", loss_fn(output, target), target.size(0))
        for metric in metric_fns:
            tracker.update(metric.__name__, metric(output, target), target.size(0))
    return tracker.result()


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
    config = ConfigParser.from_args(args, create_dirs=False)
    if config.resume is None:
        if config.init_weights is None:
            raise ConfigError("test.py needs -r CHECKPOINT (a .pth file or a run folder).")
        config.resume = config.init_weights
    main(config)


if __name__ == "__main__":
    run()
