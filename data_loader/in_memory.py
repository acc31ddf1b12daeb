"""The fast data path for datasets that fit in memory (MNIST and similar): the images stay one
uint8 tensor, and each batch is gathered by index and normalised with a few tensor ops, instead
of a PIL image, ToTensor and Normalize per sample and a collate per batch.

The split and the order come from BaseDataLoader's own samplers (this loader is one), so a seed
gives the same samples, in the same order, with the same validation split as the per-sample
path; the normalisation is the same arithmetic as ToTensor + Normalize, so the tensors match.
"""
import logging
import math

import torch
from torch.utils.data import Subset
from torch.utils.data.dataloader import default_collate
from torchvision import transforms

from base.base_data_loader import BaseDataLoader
from utils import ConfigError

logger = logging.getLogger("data_loader")


class InMemoryBatches:
    """Batches of (normalised images, targets) in the order of `sampler`. Offers what the
    trainer uses of a loader: iteration, len, batch_size, sampler and set_epoch."""

    def __init__(self, images, targets, sampler, batch_size, mean, std):
        self.images, self.targets = images, targets
        self.sampler, self.batch_size = sampler, batch_size
        shape = (-1, 1, 1)  # per channel, as transforms.Normalize broadcasts it
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(shape)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(shape)

    def __iter__(self):
        # the epoch's order as one index tensor: a single host-to-device copy per epoch
        order = torch.as_tensor(list(self.sampler), dtype=torch.long).to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.normalize(self.images[index]), self.targets[index]

    def normalize(self, batch):
        """uint8 -> float in [0, 1] -> (x - mean) / std: ToTensor then Normalize, batched."""
        return batch.float().div_(255).sub_(self.mean).div_(self.std)

    def __len__(self):
        return math.ceil(len(self.sampler) / self.batch_size)

    def set_epoch(self, epoch, skip_batches=0):
        self.sampler.set_epoch(epoch, skip_batches * self.batch_size)


class InMemoryDataLoader(BaseDataLoader):
    """A BaseDataLoader that, with `in_memory` (default), serves batches from one uint8 tensor.

    `dataset` (or the dataset under a Subset) must expose uint8 `.data` of shape (N, H, W) or
    (N, H, W, C) and `.targets`, as torchvision's MNIST, FashionMNIST, KMNIST and CIFAR do, and
    its transform must be ToTensor, optionally followed by Normalize: that is the transform the
    fast path applies. `in_memory=False` keeps the per-sample path (any transform, workers) for
    augmentation. `data_device` ("cuda") keeps the tensor on the GPU, so batches never cross the
    bus; workers, pin_memory and prefetching are unused on the fast path.
    """

    def __init__(self, dataset, batch_size, shuffle, validation_split, num_workers,
                 collate_fn=default_collate, seed=None, in_memory=True, data_device=None,
                 **loader_kwargs):
        super().__init__(dataset, batch_size, shuffle, validation_split, num_workers, collate_fn,
                         seed, **loader_kwargs)
        self.in_memory = in_memory
        if not in_memory:
            return
        images, targets, transform = dataset_tensors(dataset)
        self.mean, self.std = normalize_stats(transform, images.shape[1])
        device = data_device_or_cpu(data_device)
        self.images, self.targets = images.to(device), targets.to(device)
        self.batches = self._batches(self.sampler)

    def _batches(self, sampler):
        return InMemoryBatches(self.images, self.targets, sampler, self.batch_size, self.mean, self.std)

    def __iter__(self):
        return iter(self.batches) if self.in_memory else super().__iter__()

    def split_validation(self):
        if not self.in_memory or self.valid_sampler is None:
            return super().split_validation()
        return self._batches(self.valid_sampler)


def dataset_tensors(dataset):
    """(uint8 images as N x C x H x W, int64 targets, transform) of a dataset or a Subset of one."""
    index = None
    while isinstance(dataset, Subset):
        inner = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        index = inner if index is None else inner[index]
        dataset = dataset.dataset
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    if data is None or targets is None:
        raise ConfigError(f"in_memory needs a dataset with .data and .targets; {type(dataset).__name__} "
                          "has not both. Set data_loader.args.in_memory to false.")
    images = torch.as_tensor(data)
    if images.dtype != torch.uint8 or images.dim() not in (3, 4):
        raise ConfigError(f"in_memory needs uint8 images of shape (N, H, W) or (N, H, W, C); "
                          f"{type(dataset).__name__}.data is {images.dtype} {tuple(images.shape)}. "
                          "Set data_loader.args.in_memory to false.")
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    targets = torch.as_tensor(targets, dtype=torch.long)
    if index is not None:
        images, targets = images[index], targets[index]
    return images.contiguous(), transformed_targets(dataset, targets), getattr(dataset, "transform", None)


def transformed_targets(dataset, targets):
    """Apply the dataset's target_transform (e.g. a binary "is it a 0" task) once, up front."""
    target_transform = getattr(dataset, "target_transform", None)
    if target_transform is None:
        return targets
    return torch.stack([torch.as_tensor(target_transform(int(t))) for t in targets])


def normalize_stats(transform, channels):
    """(mean, std) of a ToTensor [+ Normalize] transform; anything else cannot be batched."""
    steps = transform.transforms if isinstance(transform, transforms.Compose) else [transform]
    if steps and isinstance(steps[0], transforms.ToTensor):
        if len(steps) == 1:
            return (0.0,) * channels, (1.0,) * channels
        if len(steps) == 2 and isinstance(steps[1], transforms.Normalize):
            return tuple(steps[1].mean), tuple(steps[1].std)
    raise ConfigError(f"in_memory applies ToTensor and Normalize per batch, but the dataset's "
                      f"transform is {transform!r}. Set data_loader.args.in_memory to false to keep "
                      "per-sample transforms (augmentation).")


def data_device_or_cpu(data_device):
    if data_device is None or data_device == "cpu":
        return torch.device("cpu")
    device = torch.device(data_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning(f"data_loader.args.data_device is '{data_device}' but CUDA is not available; "
                       "keeping the data on the CPU.")
        return torch.device("cpu")
    return device
