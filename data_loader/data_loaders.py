import logging

import torch
from torch.utils.data import Subset
from torchvision import datasets, transforms

from data_loader.in_memory import InMemoryDataLoader
from utils import dist

from .mnist_source import ensure_mnist

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


class MnistDataLoader(InMemoryDataLoader):
    """MNIST data loading demo using BaseDataLoader."""

    def __init__(self, data_dir, batch_size: int, shuffle: bool = True, validation_split=0.0,
                 num_workers: int = 1, training: bool = True, download: bool = True, limit: int = 0,
                 binary_target=None, in_memory: bool = True, data_device=None, **loader_kwargs):
        """limit: use only the first `limit` samples of the split (0: all), for quick runs.
        binary_target: a digit; targets become float 1.0 for it and 0.0 for the others (a
        binary task such as "is it a 0").
        in_memory: gather batches from one uint8 tensor (fast, same samples and order); false
        for per-sample transforms and workers. data_device: "cuda" keeps that tensor on the GPU.
        Other keyword arguments (pin_memory, persistent_workers, prefetch_factor) go to torch's
        DataLoader and matter on the per-sample path only."""
        trsfm = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)])
        self.data_dir = data_dir
        with dist.local_main_process_first():  # DDP: one rank per machine fetches the files
            source = ensure_mnist(data_dir, download)
        target_transform = IsDigit(binary_target) if binary_target is not None else None
        self.dataset = datasets.MNIST(self.data_dir, train=training, download=False, transform=trsfm,
                                      target_transform=target_transform)
        if limit:
            self.dataset = Subset(self.dataset, range(min(limit, len(self.dataset))))
        logging.getLogger("data_loader").info(
            f"MNIST {'train' if training else 'test'} split: {len(self.dataset)} samples from {source}"
        )
        super().__init__(self.dataset, batch_size, shuffle, validation_split, num_workers,
                         in_memory=in_memory, data_device=data_device, **loader_kwargs)


class IsDigit:
    """Target transform: 1.0 when the label is `digit`, else 0.0 (a class, so workers can pickle it)."""

    def __init__(self, digit):
        self.digit = digit

    def __call__(self, label):
        return torch.tensor(float(label == self.digit))
