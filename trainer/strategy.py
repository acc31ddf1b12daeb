"""How a run spreads over processes (`trainer.strategy`), decided once the process group is up:

    one process         the model on one device (DataParallel with n_gpu > 1)
    "ddp" (and "auto")  under torchrun: a full copy per process, gradients averaged (DDP)
    "fsdp"              under torchrun: weights, gradients and optimizer state sharded (trainer/fsdp.py)

`build_placed_model` builds the model the way its strategy needs and puts it where it trains."""
import logging

import torch

from model.transfer import build_model
from utils import dist, prepare_device
from utils.seed import seed_everything

from . import fsdp

logger = logging.getLogger("train")


def run_strategy(config):
    """"single", "ddp" or "fsdp" for this process."""
    chosen = config.settings.trainer.strategy
    if not dist.is_distributed():
        return "single"
    return "fsdp" if chosen == "fsdp" else "ddp"


def build_placed_model(config, module_arch, data_loader, warn=True):
    """(device, model) ready to train: built (with pretrained weights, a new head, frozen parts as
    the config says, unless a resumed checkpoint brings the weights), moved and wrapped."""
    strategy = run_strategy(config)
    if strategy == "fsdp":
        return place_model_fsdp(config, module_arch, data_loader)
    model = build_model(config, module_arch, load_start_weights=config.resume is None)
    if strategy == "ddp":
        return place_model_ddp(model, data_loader, config)
    if config.settings.trainer.strategy == "fsdp" and warn:
        logger.info("trainer.strategy is \"fsdp\", but this is a single process: nothing to shard; the "
                    "model trains whole and checkpoints are .pth files. Start it with torchrun to shard it.")
    device, device_ids = prepare_device(config.settings.n_gpu, warn=warn)
    model = model.to(device)
    if len(device_ids) > 1:
        logger.info("Using DataParallel over GPUs %s; torchrun with DDP is faster: "
                    "torchrun --nproc_per_node=%d train.py -c CONFIG", device_ids, len(device_ids))
        model = torch.nn.DataParallel(model, device_ids=device_ids)
    return device, model


def place_model_ddp(model, data_loader, config):
    """Move the model to this rank's device and wrap it in DistributedDataParallel."""
    device = dist.device()
    model = dist.wrap_model(model.to(device))
    _log_processes("DistributedDataParallel", data_loader, config, device)
    _seed_this_rank(config)
    return device, model


def place_model_fsdp(config, module_arch, data_loader):
    """Build the model with its parameters on the meta device, shard it, then give each process
    memory for its shards only. A new run's weights come from rank 0, which builds the model
    once on the CPU with the run's seed (and pretrained weights), so they equal a single-process
    run's; a resumed run's come from the checkpoint, read shard by shard."""
    device, settings = dist.device(), fsdp.fsdp_settings(config["trainer"])
    full_weights = None
    if config.resume is None:  # a new run, or fine-tuning (the trainer then loads those weights)
        full_weights = build_model(config, module_arch).state_dict() if dist.is_main_process() else {}
    with fsdp.parameters_on_meta():
        model = build_model(config, module_arch, load_start_weights=False)
    fsdp.shard_model(model, settings, device)
    fsdp.materialize(model, device, full_weights, settings["cpu_offload"])
    _log_processes("FSDP (fully sharded)", data_loader, config, device)
    _seed_this_rank(config)
    return device, model


def _log_processes(kind, data_loader, config, device):
    world, accum_steps = dist.world_size(), config.settings.trainer.accum_steps
    logger.info(f"{kind}: {world} processes, backend {dist.backend()}, {device.type}; batch_size "
                f"{data_loader.batch_size} per process, global batch {data_loader.batch_size * world * accum_steps} "
                f"= {data_loader.batch_size} x {world} processes x {accum_steps} accumulation steps.")


def _seed_this_rank(config):
    # The split, the sample order and the initial weights already agree across ranks; from here
    # on each rank gets its own random stream, or all ranks would draw the same dropout masks
    # and augmentations.
    seed_everything(config["seed"] + dist.rank())
