"""Evaluate a checkpoint on the test split: rebuilds data, model, loss and metrics from the
checkpoint's own config, prints a table and writes the numbers as JSON next to the checkpoint."""
import argparse

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from model.transfer import build_model
from parse_config import ConfigParser
from trainer.evaluation import evaluate
from utils import ConfigError, main_guard, prepare_device, write_json
from utils.checkpoint import Key, load_weights

# the test split of the config's loader: same data folder, batch size, task and fast path, but no
# shuffling and no validation split
TEST_SPLIT_ARGS = {"shuffle": False, "validation_split": 0.0, "training": False}


def main(config):
    logger = config.get_logger("test")
    settings = config.settings.trainer
    checkpoint_path = config.resume or config.init_weights  # -r alone, or -c CONFIG -r CHECKPOINT
    # `limit` sizes training runs; every test sample counts
    no_limit = {"limit": 0} if "limit" in config["data_loader"]["args"] else {}
    data_loader = config.init_obj("data_loader", module_data, **TEST_SPLIT_ARGS, **no_limit)

    # the training-time architecture (new head, ...); the checkpoint supplies the weights
    model = build_model(config, module_arch, load_start_weights=False)
    load_weights(model, config.checkpoint, checkpoint_path)
    device, _ = prepare_device(config.settings.n_gpu)
    model = model.to(device).eval()
    if settings.channels_last:  # as the trainer ran it
        model.to(memory_format=torch.channels_last)

    loss_fn = config.init_loss(module_loss)
    metric_fns = config.init_metrics(module_metric)
    results = evaluate(model, data_loader, loss_fn, metric_fns, device, settings)
    report(logger, checkpoint_path, config.checkpoint, results, len(data_loader.sampler))


def report(logger, checkpoint_path, checkpoint, results, n_samples):
    rows = [("samples", n_samples), *results.items()]
    width = max(len(name) for name, _ in rows)
    logger.info(f"Test results for {checkpoint_path} (epoch {checkpoint[Key.EPOCH]}):")
    for name, value in rows:
        shown = f"{value:.6f}" if isinstance(value, float) else value
        logger.info(f"    {name:<{width}}  {shown}")
    out_path = checkpoint_path.with_name(checkpoint_path.stem + "_test.json")
    write_json({"checkpoint": str(checkpoint_path), "epoch": checkpoint[Key.EPOCH],
                "samples": n_samples, **results}, out_path)
    logger.info(f"Saved to {out_path}")


@main_guard
def run():
    args = argparse.ArgumentParser(description="PyTorch Template")
    args.add_argument("-c", "--config", default=None, type=str, help="config file path (default: None)")
    args.add_argument("-r", "--resume", default=None, type=str, help="path to the checkpoint to test")
    args.add_argument("-d", "--device", default=None, type=str, help="indices of GPUs to enable (default: all)")
    config = ConfigParser.from_args(args, create_dirs=False)
    if config.checkpoint is None:
        raise ConfigError("test.py needs -r CHECKPOINT (a .pth file or a run folder).")
    main(config)


if __name__ == "__main__":
    run()
