"""Fully sharded data parallel training (`trainer.strategy: "fsdp"` under torchrun), on torch's
FSDP2 `fully_shard`: every process holds 1/N of the weights, gradients and optimizer state, and
gathers a block's weights only while it runs that block.

    "trainer": {"strategy": "fsdp",
                "fsdp": {"shard_modules": ["TransformerBlock"], "reshard_after_forward": true,
                         "param_dtype": "bf16", "reduce_dtype": "fp32", "cpu_offload": false,
                         "activation_checkpointing": true}}

The model is built with its parameters on the meta device (no memory), sharded, and only then
given memory: each process allocates its own shards. A new run takes its initial weights from
rank 0, which builds the model once on the CPU with the run's seed (so they equal a
single-process run's); a resumed run reads each process's shards from the checkpoint folder.

torch's FSDP and distributed state-dict modules are imported inside the functions that use them:
importing them takes most of a second, which a run that shards nothing should not pay.
"""
import functools
import sys
from contextlib import contextmanager

import torch
import torch.nn as nn

from utils import ConfigError, dist, unwrap_model
from utils.checkpoint import merge_optimizer_state, optimizer_state_by_name, split_optimizer_state

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SETTINGS = {  # key: (default, accepted types, what it is)
    "shard_modules": ([], list, "module class names whose instances are sharded (and gathered) one by one"),
    "reshard_after_forward": (True, bool, "free a block's gathered weights after its forward pass"),
    "param_dtype": (None, str, "compute dtype of the gathered weights: \"bf16\", \"fp16\" or \"fp32\""),
    "reduce_dtype": (None, str, "dtype of the gradient reduction"),
    "cpu_offload": (False, bool, "keep the shards and their optimizer state in CPU memory (GPU runs)"),
    "activation_checkpointing": (False, bool, "recompute the shard_modules' activations in the backward pass"),
}


def is_sharded(model):
    # a sharded model's class derives from FSDPModule, which exists once shard_model imported it
    fsdp_module = sys.modules.get("torch.distributed.fsdp")
    return fsdp_module is not None and isinstance(unwrap_model(model), fsdp_module.FSDPModule)


def fsdp_settings(trainer):
    """trainer.fsdp with every key filled in (`trainer` is the plain section)."""
    return {key: (trainer.get("fsdp") or {}).get(key, default) for key, (default, _, _) in SETTINGS.items()}


def check_fsdp_settings(trainer):
    """ConfigError for a malformed trainer.fsdp, or for a setting that cannot work sharded."""
    given = trainer.get("fsdp") or {}
    for key, value in given.items():
        if key not in SETTINGS:
            raise ConfigError(f"trainer.fsdp.{key} is not an FSDP setting; the settings are {', '.join(SETTINGS)}.")
        default, kind, _ = SETTINGS[key]
        if value is not None and (not isinstance(value, kind) or kind is list and
                                  not all(isinstance(name, str) for name in value)):
            expected = "a list of class names" if kind is list else kind.__name__
            raise ConfigError(f"trainer.fsdp.{key} is {value!r}; expected {expected} (default {default!r}).")
        if key.endswith("_dtype") and value is not None and value not in DTYPES:
            raise ConfigError(f"trainer.fsdp.{key} is {value!r}; use one of {', '.join(DTYPES)}, or null.")
    if trainer.get("strategy") != "fsdp":
        return
    for key, what in (("ema", "an averaged copy of the whole model"), ("swa", "an averaged copy of the whole model")):
        if trainer.get(key):
            raise ConfigError(f"trainer.{key} keeps {what} on every process, which a sharded run cannot hold: "
                              f"trainer.strategy \"fsdp\" does not support it. Remove trainer.{key}, or train with "
                              "trainer.strategy \"ddp\".")
    if trainer.get("channels_last"):
        raise ConfigError("trainer.channels_last converts the weights in place, which FSDP's flat shards do not "
                          "allow: trainer.strategy \"fsdp\" does not support it. Set trainer.channels_last to false.")
    if trainer.get("amp") == "fp16":
        raise ConfigError("trainer.amp \"fp16\" needs a gradient scaler that knows sharded gradients, which "
                          "trainer.strategy \"fsdp\" does not have. Use trainer.amp \"bf16\", or "
                          "trainer.fsdp.param_dtype \"bf16\".")


# ---- building and sharding ----------------------------------------------------------------------
@contextmanager
def parameters_on_meta():
    """Modules built inside get their parameters on the meta device (shape and dtype only); buffers
    are real, so that values computed at construction (and not saved) survive."""
    register = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            kwargs = {**param.__dict__, "requires_grad": param.requires_grad}
            module._parameters[name] = type(param)(param.to("meta"), **kwargs)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def shard_model(model, settings, device):
    """fully_shard each instance of trainer.fsdp.shard_modules (innermost first), then the whole
    model, on a mesh of all processes of `device`'s type. gloo needs an explicit CPU mesh, even on
    a machine with GPUs."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
    from torch.utils.checkpoint import checkpoint

    block_names = set(settings["shard_modules"])
    classes = sorted({type(module).__name__ for module in model.modules()})
    unknown = sorted(block_names - set(classes))
    if unknown:
        raise ConfigError(f"trainer.fsdp.shard_modules names {', '.join(unknown)}, which the model does not "
                          f"contain. Its module classes are: {', '.join(classes)}.")
    if settings["cpu_offload"] and device.type != "cuda":
        raise ConfigError("trainer.fsdp.cpu_offload moves the shards between CPU and GPU memory, but this run "
                          "trains on the CPU. Set it to false.")
    options = {"mesh": init_device_mesh(device.type, (dist.world_size(),)),
               "reshard_after_forward": settings["reshard_after_forward"],
               "mp_policy": MixedPrecisionPolicy(param_dtype=DTYPES.get(settings["param_dtype"]),
                                                 reduce_dtype=DTYPES.get(settings["reduce_dtype"])),
               "offload_policy": CPUOffloadPolicy() if settings["cpu_offload"] else None}
    options = {key: value for key, value in options.items() if value is not None}
    blocks = [module for module in model.modules() if type(module).__name__ in block_names and module is not model]
    for block in reversed(blocks):  # modules() lists a parent before its children
        if settings["activation_checkpointing"]:
            # non-reentrant checkpointing inside FSDP's hooks: the recomputation sees gathered weights
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
        fully_shard(block, **options)
    fully_shard(model, **options)
    return model


def materialize(model, device, full_weights, offload):
    """Give the sharded meta parameters memory on `device` (CPU memory with offload), keep the
    buffers built, and, for a new run, fill the shards from rank 0's `full_weights` ({} on the
    other ranks; None when a checkpoint will fill them)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    buffers = {(owner, name): buffer.detach().clone() for owner, module in model.named_modules()
               for name, buffer in module._buffers.items() if buffer is not None}
    model.to_empty(device="cpu" if offload else device)
    for owner, module in model.named_modules():  # buffers stay on the device, also with offload
        for name in module._buffers:
            if (owner, name) in buffers:
                module._buffers[name] = buffers[owner, name].to(device)
    if full_weights is not None:
        set_model_state_dict(model, full_weights, options=StateDictOptions(full_state_dict=True,
                                                                           broadcast_from_rank0=True))


def sharded_bytes(model, optimizer):
    """{"parameters", "optimizer"}: (bytes this process holds, bytes of the whole model) of the
    weights and of the optimizer's tensors."""
    def sizes(tensors):
        local = sum(_local(t).numel() * t.element_size() for t in tensors)
        return local, sum(t.numel() * t.element_size() for t in tensors)

    state = [value for entry in optimizer.state.values() for value in entry.values()
             if isinstance(value, torch.Tensor) and value.dim() > 0]
    return {"parameters": sizes(list(model.parameters())), "optimizer": sizes(state)}


def _local(tensor):
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


# ---- checkpoint state ---------------------------------------------------------------------------
def sharded_weights(model):
    """The model's state as DTensors of this process's shards (what a .dcp folder stores); its
    buffers are rank 0's (see `utils.dist.share_buffers`)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    dist.share_buffers(unwrap_model(model))
    return get_model_state_dict(unwrap_model(model))


def sharded_optimizer_state(model, optimizer):
    """The optimizer's state keyed by parameter name, tensors as this process's shards. Before the
    first step it has no state, and torch's helper would make some by taking a step with zero
    gradients: the hyperparameters alone are kept then."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    if not optimizer.state:
        names = parameter_names(model, optimizer)
        groups = optimizer.state_dict()["param_groups"]
        return {"state": {}, "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                                              for group in groups]}
    return get_optimizer_state_dict(unwrap_model(model), optimizer)


def parameter_names(model, optimizer):
    """The names of the optimizer's parameters, in its group order (torch's numbering)."""
    name_of = {param: name for name, param in unwrap_model(model).named_parameters()}
    return [name_of[param] for group in optimizer.param_groups for param in group["params"]]


def load_sharded_weights(model, tensors_from):
    """Read this process's shards of the weights: `tensors_from(template)` fills a nested dict of
    DTensors (from a .dcp folder)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    model = unwrap_model(model)
    weights = get_model_state_dict(model)
    tensors_from(weights)
    set_model_state_dict(model, weights)


def load_whole_weights(model, weights):
    """Whole weights (from a .pth checkpoint) into a sharded model: each process keeps its shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(unwrap_model(model), weights, options=StateDictOptions(full_state_dict=True))


def load_sharded_optimizer(model, optimizer, plain, tensors_from, saved_names):
    """The optimizer state of a .dcp folder: `plain` holds its hyperparameters and non-tensor
    values, `tensors_from(template)` fills this process's shards of the tensors; `saved_names`
    are the parameters the checkpoint has state for."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    if not plain["state"] and not saved_names:  # saved before the first step: hyperparameters only
        for group, saved in zip(optimizer.param_groups, plain["param_groups"], strict=True):
            group.update({key: value for key, value in saved.items() if key != "params"})
        return
    template = get_optimizer_state_dict(unwrap_model(model), optimizer)
    tensors, _ = split_optimizer_state(template)
    tensors = {name: entry for name, entry in tensors.items() if name in saved_names}
    tensors_from(tensors)
    set_optimizer_state_dict(unwrap_model(model), optimizer, merge_optimizer_state(tensors, plain))


def load_whole_optimizer(model, optimizer, state):
    """torch's optimizer format (from a .pth checkpoint) into the optimizer of a sharded model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    by_name = optimizer_state_by_name(state, parameter_names(model, optimizer))
    set_optimizer_state_dict(unwrap_model(model), optimizer, by_name, options=StateDictOptions(full_state_dict=True))


# ---- training and evaluation --------------------------------------------------------------------
def set_gradient_sync(model, sync):
    """Inside an accumulation window, skip the reduce-scatter of gradients (each process keeps
    whole, unsharded gradients until the window's last micro-batch)."""
    unwrap_model(model).set_requires_gradient_sync(sync)


@torch.no_grad()
def repeat_forward_passes(model, count, make_batch):
    """Every forward pass of a sharded model gathers weights from all processes, so all must run
    the same number: a process whose (unpadded) validation share had fewer batches runs `count`
    more on `make_batch()`, whose outputs count nowhere."""
    if count > 0:
        batch = make_batch()
        for _ in range(count):
            model(batch)
