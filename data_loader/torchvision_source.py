"""Any `torchvision.datasets` class by name, as samples for the built-in loaders."""
import inspect
import logging
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from data_loader.in_memory import dataset_tensors
from utils import ConfigError

from .mnist_source import download_error_reason
from .samples import TensorSamples

logger = logging.getLogger("data_loader")


def torchvision_samples(name, data_dir, training, download, dataset_args, mode, image_size):
    """(samples, labels, class names) of torchvision.datasets.`name` on the train or test split."""
    dataset_class = getattr(torchvision.datasets, name, None)
    if not isinstance(dataset_class, type) or not issubclass(dataset_class, Dataset):
        known = sorted(n for n in torchvision.datasets.__all__ if n[0].isupper())
        raise ConfigError(f"data_loader.args.dataset '{name}' is not a torchvision.datasets class. "
                          f"Known: {', '.join(known)}.")
    args = dict(dataset_args or {})
    parameters = inspect.signature(dataset_class).parameters
    if "train" in parameters:
        args.setdefault("train", training)
    elif "split" in parameters:
        args.setdefault("split", "train" if training else "test")
    if "download" in parameters:
        args["download"] = download
    try:
        dataset = dataset_class(str(data_dir), **args)
    except (RuntimeError, OSError) as err:  # offline: the download failed, or the files are absent
        where = _expected_folder(dataset_class, data_dir, name)
        raise ConfigError(f"torchvision dataset {name} could not be loaded from '{data_dir}' "
                          f"({download_error_reason(err)}). Without "
                          f"internet, download it elsewhere and copy its files to '{where}' (the layout "
                          f"torchvision's {name} expects), or set data_loader.args.data_dir to where they are.") \
            from None
    except TypeError as err:
        raise ConfigError(f"data_loader.args.dataset_args do not fit {name}: {err}.") from None
    class_names = [str(c) for c in getattr(dataset, "classes", [])]
    if _has_uint8_tensors(dataset) and mode is None and image_size is None:
        images, targets, _ = dataset_tensors(dataset)
        return TensorSamples(images, targets), targets.numpy(), class_names or _index_names(targets.numpy())
    samples = DecodedDataset(dataset, mode, image_size)
    labels = np.asarray([int(t) for t in getattr(dataset, "targets", [])] or
                        [int(samples.dataset[i][1]) for i in range(len(dataset))])
    return samples, labels, class_names or _index_names(labels)


def _expected_folder(dataset_class, data_dir, name):
    """Where torchvision looks for the files: CIFAR-style datasets name a `base_folder`, the
    MNIST family reads <data_dir>/<name>/raw."""
    base_folder = getattr(dataset_class, "base_folder", None)
    if isinstance(base_folder, str):
        return Path(data_dir) / base_folder
    if issubclass(dataset_class, torchvision.datasets.MNIST):
        return Path(data_dir) / name / "raw"
    return Path(data_dir)


def _has_uint8_tensors(dataset):
    data = getattr(dataset, "data", None)
    return data is not None and getattr(dataset, "targets", None) is not None and \
        torch.as_tensor(data[:1]).dtype == torch.uint8 and torch.as_tensor(data[:1]).dim() in (3, 4)


def _index_names(labels):
    return [str(i) for i in range(int(np.max(labels)) + 1)] if len(labels) else []


class DecodedDataset(Dataset):
    """A torchvision dataset's PIL images as uint8 tensors (C x H x W) in `mode`, at `image_size`."""

    def __init__(self, dataset, mode, image_size):
        self.dataset, self.mode, self.image_size = dataset, mode, image_size

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, target = self.dataset[index]
        if self.mode is not None:
            image = image.convert(self.mode)
        tensor = TF.pil_to_tensor(image)
        if self.image_size is not None:
            tensor = TF.resize(tensor, list(self.image_size), antialias=True)
        return tensor, int(target)
