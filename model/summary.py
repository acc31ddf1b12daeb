"""A model summary: per top-level module its output shape, parameters (trainable or frozen) and
forward FLOPs; the totals; the forward FLOPs per sample (torch.utils.flop_counter counts a
multiply-add as 2 FLOPs, so MACs are half of it: the figure most papers and torchvision's
tables quote as "FLOPs"); and the memory that parameters, gradients and optimizer state take."""
import contextlib
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from utils.seed import get_rng_states, set_rng_states


@dataclass
class ModuleRow:
    name: str
    output_shape: str  # per sample: the batch dimension is left out
    trainable: int
    frozen: int
    flops: int | None

    @property
    def training(self):
        if not self.trainable and not self.frozen:
            return "-"
        return "frozen" if not self.trainable else ("partly" if self.frozen else "yes")


@dataclass
class ModelSummary:
    model_name: str
    input_shape: str
    rows: list = field(default_factory=list)
    trainable: int = 0
    frozen: int = 0
    flops_per_sample: int | None = None
    parameter_bytes: int = 0
    gradient_bytes: int = 0
    optimizer_bytes: int | None = None  # None: the optimizer's state size is unknown before its first step
    optimizer_name: str | None = None

    def as_dict(self):
        return {"model": self.model_name, "input_shape": self.input_shape, "trainable": self.trainable,
                "frozen": self.frozen, "flops_per_sample": self.flops_per_sample,
                "parameter_bytes": self.parameter_bytes, "gradient_bytes": self.gradient_bytes,
                "optimizer_bytes": self.optimizer_bytes,
                "modules": [{"name": r.name, "output_shape": r.output_shape, "trainable": r.trainable,
                             "frozen": r.frozen, "flops": r.flops} for r in self.rows]}

    def lines(self):
        header = ("module", "output shape", "parameters", "trains", "FLOPs")
        table = [header] + [(r.name, r.output_shape, f"{r.trainable + r.frozen:,}", r.training, _count(r.flops))
                            for r in self.rows]
        table.append(("total", "", f"{self.trainable + self.frozen:,}", "", _count(self.flops_per_sample)))
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [f"Model summary of {self.model_name}, for one input sample {self.input_shape}:"]
        lines += ["    " + "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w)
                                     in enumerate(zip(row, widths))) for row in table]
        lines.append(f"    parameters: {self.trainable:,} trainable, {self.frozen:,} frozen")
        if self.flops_per_sample is not None:
            lines.append(f"    forward: {_count(self.flops_per_sample, 'FLOPs')} per sample "
                         f"({_count(self.flops_per_sample // 2, 'MACs')}, multiply-adds)")
        memory = f"    memory: parameters {_bytes(self.parameter_bytes)}, gradients {_bytes(self.gradient_bytes)}"
        if self.optimizer_name is not None:
            state = "unknown until its first step" if self.optimizer_bytes is None else _bytes(self.optimizer_bytes)
            memory += f", optimizer state {state} ({self.optimizer_name})"
        lines.append(memory)
        return lines


def summarize(model, batch, optimizer=None, autocast=contextlib.nullcontext, forward=True):
    """The summary of `model` (unwrapped from DDP) run in eval mode on the first sample of
    `batch`, under `autocast()` (the training's mixed precision). The model's modes, weights
    and the random generators are as before. Without `forward` only the parameters and memory
    are counted (output shapes and FLOPs are left unknown)."""
    sample = batch[:1] if isinstance(batch, torch.Tensor) else batch
    summary = ModelSummary(type(model).__name__, _shape(sample))
    outputs = {}

    def keep_shape(name):
        def hook(module, inputs, output):  # returns None: the output goes on unchanged
            outputs.setdefault(name, _shape(output))
        return hook

    hooks = [child.register_forward_hook(keep_shape(name)) for name, child in model.named_children()]
    modes = {module: module.training for module in model.modules()}
    rng = get_rng_states()
    counter = FlopCounterMode(display=False)
    flops = None
    try:
        if forward:
            model.eval()
            with torch.no_grad(), autocast(), counter:
                model(sample)
            flops = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items()}
    except Exception:  # an op the counter cannot trace: the shapes and counts still help
        flops = None
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
        set_rng_states(rng)
    for name, child in model.named_children():
        trainable, frozen = _counts(child.parameters())
        flop = None if flops is None else flops.get(f"{summary.model_name}.{name}", 0)
        summary.rows.append(ModuleRow(name, outputs.get(name, "-"), trainable, frozen, flop))
    own = list(model.parameters(recurse=False))
    if own:
        summary.rows.append(ModuleRow("(own)", "-", *_counts(own), None))
    summary.trainable, summary.frozen = _counts(model.parameters())
    summary.flops_per_sample = None if flops is None else flops.get("Global", 0)
    summary.parameter_bytes = sum(p.nbytes for p in model.parameters())
    summary.gradient_bytes = sum(p.nbytes for p in model.parameters() if p.requires_grad)
    if optimizer is not None:
        summary.optimizer_name = type(optimizer).__name__
        summary.optimizer_bytes = optimizer_state_bytes(optimizer)
    return summary


def optimizer_state_bytes(optimizer):
    """Bytes of the optimizer's state: measured when it has stepped, else found by one step of
    the same optimizer on shape-only (meta) copies of its parameters; None when that fails."""
    if optimizer.state:
        return _state_bytes(optimizer.state)
    groups = []
    for group in optimizer.param_groups:
        params = []
        for param in group["params"]:
            copy = torch.nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=param.requires_grad)
            copy.grad = torch.empty_like(copy)
            params.append(copy)
        groups.append({**{k: v for k, v in group.items() if k not in ("params", "fused", "foreach")},
                       "params": params})
    try:
        shadow = type(optimizer)(groups)
        shadow.step()
    except Exception:  # needs a closure (LBFGS), or values that meta tensors do not have
        return None
    return _state_bytes(shadow.state)


def _state_bytes(state):
    return sum(value.nbytes for per_param in state.values() for value in per_param.values()
               if isinstance(value, torch.Tensor))


def _counts(parameters):
    trainable = frozen = 0
    for param in parameters:
        if param.requires_grad:
            trainable += param.numel()
        else:
            frozen += param.numel()
    return trainable, frozen


def _shape(value):
    """[C, H, W] of a tensor's first sample; shapes of the tensors in a tuple, list or dict."""
    if isinstance(value, torch.Tensor):
        return str(list(value.shape[1:]))
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_shape(item) for item in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_shape(item)}" for key, item in value.items()) + "}"
    return type(value).__name__


def _count(number, unit=""):
    """1.23 G, 456.78 M, 12.30 k (with `unit` after the prefix); '?' for None."""
    if number is None:
        return "?"
    for prefix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if number >= size:
            return f"{number / size:.2f} {prefix}{unit}"
    return f"{number} {unit}".strip()


def _bytes(count):
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"
