"""Image transforms from the config. The loaders decode every image to a uint8 tensor
(C x H x W, in `mode`, resized to `image_size`); the pipeline then applies the configured steps,
scales to floats in [0, 1] and normalises:

    "transforms": {"train": [{"type": "RandomCrop", "args": {"size": 28, "padding": 2}}],
                   "eval": []},
    "normalize": "auto"            (or {"mean": [...], "std": [...]}, or null for none)

Each step is a class of `torchvision.transforms.v2` (or of this module) with its args; an argument
that is itself an entry, or a list of them, is built too (RandomApply's transforms). Validation
and test always use the "eval" list. "auto" is measured on the training split when the run starts
and the run's saved config holds the numbers, so `build_transform(config["data_loader"])` gives
test and prediction code exactly the pipeline the model was trained with.
"""
import torch

from config.instantiate import instantiate
from utils import ConfigError

SPLITS = ("train", "eval")


def build_transform(data_loader_section, split="eval", trusted=True):
    """The per-sample pipeline (uint8 C x H x W tensor -> normalised float tensor) that the
    config's data_loader section describes for `split` ("train" or "eval")."""
    args = data_loader_section.get("args", {})
    steps = transform_steps(args.get("transforms"), split, trusted)
    return pipeline(steps, normalize_values(args.get("normalize")))


def pipeline(steps, normalize):
    """Compose `steps`, the uint8 -> [0, 1] float scaling and (mean, std) normalisation."""
    from torchvision.transforms import v2  # torchvision: image data only (tables never get here)

    tail = [v2.ToDtype(torch.float32, scale=True)]
    if normalize is not None:
        tail.append(v2.Normalize(*normalize))
    return v2.Compose([*steps, *tail])


def step_entries(transforms, split):
    """The raw {"type", "args"} entries of one split's list (checked for shape)."""
    if transforms is None:
        return []
    if not isinstance(transforms, dict) or set(transforms) - set(SPLITS):
        raise ConfigError(f"data_loader.args.transforms is {transforms!r}; write "
                          '{"train": [{"type": ..., "args": {...}}, ...], "eval": [...]}.')
    entries = transforms.get(split, [])
    if not isinstance(entries, list):
        raise ConfigError(f"data_loader.args.transforms.{split} must be a list of {{\"type\", \"args\"}} entries.")
    return entries


def transform_steps(transforms, split, trusted=True):
    """One split's steps as transform objects, looked up in this module, then in
    torchvision.transforms.v2 (nested steps, e.g. RandomApply's transforms, are entries too)."""
    return instantiate(step_entries(transforms, split), key_path=f"data_loader.args.transforms.{split}",
                       trusted=trusted)


def normalize_values(normalize):
    """(mean, std) lists from a resolved `normalize` setting; None for no normalisation."""
    if normalize is None:
        return None
    if normalize == "auto":
        raise ConfigError('data_loader.args.normalize is still "auto": the mean and std are measured when '
                          "training starts and saved in the run's config. Use the config.json of a run "
                          '(or a checkpoint\'s config), or write {"mean": [...], "std": [...]}.')
    if not isinstance(normalize, dict) or not {"mean", "std"} <= set(normalize):
        raise ConfigError(f'data_loader.args.normalize is {normalize!r}; write "auto", null or '
                          '{"mean": [...], "std": [...]} with one number per channel.')
    return list(normalize["mean"]), list(normalize["std"])


def measure_normalize(images, chunk=4096):
    """Per-channel mean and std of uint8 images (N x C x H x W) scaled to [0, 1], as plain lists."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].to(torch.float64).div_(255)
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return {"mean": [round(v, 6) for v in mean.tolist()], "std": [round(max(v, 1e-6), 6) for v in std.tolist()]}
