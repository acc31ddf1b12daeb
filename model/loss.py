import torch
import torch.nn.functional as F


def nll_loss(output, target, weight=None):
    """weight: one number per class (data_loader.args.class_weights "balanced" sets it)."""
    return F.nll_loss(output, target, weight=weight)


def cross_entropy(output, target, label_smoothing=0.0, weight=None):
    return F.cross_entropy(output, target, weight=weight, label_smoothing=label_smoothing)


def bce_with_logits(output, target, pos_weight=None):
    """Binary / multi-label loss on raw scores; `output` may be (N,) or (N, 1) for binary tasks.
    pos_weight: a number or one per label (from JSON), weighting the positive class."""
    output = output.reshape(target.shape) if output.numel() == target.numel() else output
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=output.dtype, device=output.device)
    return F.binary_cross_entropy_with_logits(output, target.to(output.dtype), pos_weight=pos_weight)
