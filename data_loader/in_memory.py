"""The fast data path for datasets that fit in memory: the images stay one uint8 tensor (a
table one float tensor), and each batch is gathered by index, augmented as a batch (each sample
with its own random parameters) and normalised with a few tensor ops, instead of a PIL image,
transforms and Normalize per sample and a collate per batch.

The split and the order come from BaseDataLoader's own samplers (this loader is one), so a seed
gives the same samples, in the same order, with the same validation split as the per-sample
path; the normalisation is the same arithmetic as ToTensor + Normalize, so the tensors match.
"""
import logging
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.dataloader import default_collate

from data_loader.base_data_loader import BaseDataLoader
from utils import ConfigError, dist

logger = logging.getLogger("data_loader")


class InMemoryData(NamedTuple):
    """What the fast path serves: uint8 images (N x C x H x W) or float rows, int64 targets,
    per-channel mean and std (None: the data are used as they are) and a training augmentation
    (a callable (float batch, generator) -> batch, or None)."""
    data: torch.Tensor
    targets: torch.Tensor
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    augment: Callable | None = None


class InMemoryBatches:
    """Batches of (normalised, augmented inputs, targets) in the order of `sampler`. Offers what
    the trainer uses of a loader: iteration, len, batch_size, sampler and set_epoch."""

    def __init__(self, images, targets, sampler, batch_size, mean, std, augment=None, seed=0):
        self.images, self.targets = images, targets
        self.sampler, self.batch_size = sampler, batch_size
        self.augment, self.seed = augment, seed
        self.epoch, self.skip_batches = 0, 0
        shape = (-1, 1, 1)  # per channel, as transforms.Normalize broadcasts it
        self.mean = None if mean is None else \
            torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(shape)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32, device=images.device).view(shape)

    def __iter__(self):
        # the epoch's order as one index tensor: a single host-to-device copy per epoch
        order = torch.as_tensor(list(self.sampler), dtype=torch.long).to(self.images.device)
        for number, start in enumerate(range(0, len(order), self.batch_size), start=self.skip_batches):
            index = order[start:start + self.batch_size]
            batch = self.to_float(self.images[index])
            if self.augment is not None:
                batch = self.augment(batch, self._generator(number))
            yield self.normalize(batch), self.targets[index]

    def _generator(self, batch_number):
        """Each batch's random draws depend on (seed, epoch, batch, rank) alone, so a run resumed
        inside an epoch augments its remaining batches exactly as the uninterrupted run did."""
        seed = hash((self.seed, self.epoch, batch_number, dist.rank())) % 2**63
        return torch.Generator(device=self.images.device).manual_seed(seed)

    @staticmethod
    def to_float(batch):
        """uint8 -> float in [0, 1] as ToTensor does; float rows stay as they are."""
        return batch.float().div_(255) if batch.dtype == torch.uint8 else batch

    def normalize(self, batch):
        """(x - mean) / std: Normalize, batched."""
        if self.mean is None:
            return batch
        return batch.sub_(self.mean).div_(self.std)

    def __len__(self):
        return math.ceil(len(self.sampler) / self.batch_size)

    def set_epoch(self, epoch, skip_batches=0):
        self.epoch, self.skip_batches = epoch, skip_batches
        self.sampler.set_epoch(epoch, skip_batches * self.batch_size)


class InMemoryDataLoader(BaseDataLoader):
    """A BaseDataLoader that, with `in_memory` (default), serves batches from one tensor.

    Either `cache` gives the tensors (an InMemoryData: the built-in folder, table and
    torchvision loaders decode their samples into one), or `dataset` (or the dataset under a
    Subset) exposes uint8 `.data` of shape (N, H, W) or (N, H, W, C) and `.targets`, as
    torchvision's MNIST, FashionMNIST, KMNIST and CIFAR do, with ToTensor [+ Normalize] as its
    transform. `in_memory=False` keeps the per-sample path (any transform, workers); there
    `eval_dataset` (same samples, evaluation transform) serves the validation split.
    `data_device` ("cuda") keeps the tensor on the GPU, so batches never cross the bus and the
    augmentation runs there; workers, pin_memory and prefetching are unused on the fast path.
    """

    def __init__(self, dataset, batch_size, shuffle, validation_split, num_workers,
                 collate_fn=default_collate, seed=None, in_memory=True, data_device=None,
                 *, cache=None, eval_dataset=None, **loader_kwargs):
        super().__init__(dataset, batch_size, shuffle, validation_split, num_workers, collate_fn,
                         seed, **loader_kwargs)
        self.in_memory = bool(in_memory)
        self.eval_dataset = eval_dataset
        if not in_memory:
            return
        if cache is None:
            images, targets, transform = dataset_tensors(dataset)
            cache = InMemoryData(images, targets, *normalize_stats(transform, images.shape[1]))
        device = data_device_or_cpu(data_device)
        self.images, self.targets = cache.data.to(device), cache.targets.to(device)
        self.mean, self.std, self.augment = cache.mean, cache.std, cache.augment
        self.batches = self._batches(self.sampler, self.augment)

    def _batches(self, sampler, augment=None):
        return InMemoryBatches(self.images, self.targets, sampler, self.batch_size, self.mean, self.std,
                               augment, self.seed)

    def __iter__(self):
        return iter(self.batches) if self.in_memory else super().__iter__()

    def set_epoch(self, epoch, skip_batches=0):
        if self.in_memory:
            self.batches.set_epoch(epoch, skip_batches)
        super().set_epoch(epoch, skip_batches)

    def split_validation(self):
        if self.valid_sampler is None:
            return None
        if self.in_memory:
            return self._batches(self.valid_sampler)  # never augmented
        if self.eval_dataset is None:
            return super().split_validation()
        return DataLoader(sampler=self.valid_sampler, **{**self.init_kwargs, "dataset": self.eval_dataset})


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
    from torchvision import transforms  # a dataset's own transform: torchvision is loaded already

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
    """The device that holds the in-memory tensors: data_loader.args.data_device (null: the CPU)."""
    if data_device is None or data_device == "cpu":
        return torch.device("cpu")
    try:
        device = torch.device(data_device)
    except RuntimeError:
        raise ConfigError(f"data_loader.args.data_device is {data_device!r}, which is not a device name. "
                          "Write \"cuda\" (or \"cuda:1\") to keep the data on a GPU, or null for the CPU.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"data_loader.args.data_device is '{data_device}', but CUDA is not available on this "
                          "machine. Set it to null to keep the data on the CPU (on the command line: "
                          "-o data_loader.args.data_device=null).")
    return device
