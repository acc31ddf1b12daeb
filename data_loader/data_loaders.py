import logging

from torch.utils.data import Subset
from torchvision import datasets, transforms

from base import BaseDataLoader
from utils import dist

from .mnist_source import ensure_mnist

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


class MnistDataLoader(BaseDataLoader):
    """MNIST data loading demo using BaseDataLoader."""

    def __init__(self, data_dir, batch_size: int, shuffle: bool = True, validation_split=0.0,
                 num_workers: int = 1, training: bool = True, download: bool = True, limit: int = 0,
                 **loader_kwargs):
        """limit: use only the first `limit` samples of the split (0: all), for quick runs."""
        trsfm = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)])
        self.data_dir = data_dir
        with dist.local_main_process_first():  # DDP: one rank per machine fetches the files
            source = ensure_mnist(data_dir, download)
        self.dataset = datasets.MNIST(self.data_dir, train=training, download=False, transform=trsfm)
        if limit:
            self.dataset = Subset(self.dataset, range(min(limit, len(self.dataset))))
        logging.getLogger("data_loader").info(
            f"MNIST {'train' if training else 'test'} split: {len(self.dataset)} samples from {source}"
        )
        super().__init__(self.dataset, batch_size, shuffle, validation_split, num_workers, **loader_kwargs)
