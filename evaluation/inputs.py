"""New inputs for predict.py, prepared exactly as the model's test split was: image files
decoded and transformed by the eval pipeline of the checkpoint's data_loader section, CSV rows
through the table preprocessing fitted at training time. Each input becomes a tensor or an
error message; a bad input never stops the others."""
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data_loader.file_limits import FileLimits
from data_loader.samples import decode_image
from utils import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MNIST_LOADERS = ("MnistDataLoader",)


def list_inputs(path):
    """("images", [files]) for a folder (recursive) or an image file; ("table", csv path)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise ConfigError(f"input folder '{path}' holds no image files ({', '.join(IMAGE_EXTENSIONS)}). "
                              "Pass a folder of images, one image, or a CSV file.")
        return "images", files
    if not path.is_file():
        raise ConfigError(f"input '{path}' does not exist. Pass a folder of images, one image, or a CSV file with -i.")
    if path.suffix.lower() == ".csv":
        return "table", path
    return "images", [path]


class ImagePipeline:
    """How the model's training data turned an image file into a tensor: PIL `mode`, the
    (height, width) it was resized to (None: kept), and the eval transform (uint8 C x H x W
    tensor -> normalised float tensor)."""

    def __init__(self, mode, image_size, transform, expected_shape=None, limits=None):
        self.mode, self.image_size, self.transform = mode, image_size, transform
        self.expected_shape = tuple(expected_shape) if expected_shape else None
        self.limits = limits or FileLimits()

    def __call__(self, path):
        image = decode_image(path, self.mode, self.image_size, self.limits)
        if self.expected_shape is not None and tuple(image.shape[-2:]) != self.expected_shape[-2:]:
            raise ValueError(f"image is {image.shape[-1]}x{image.shape[-2]} pixels, the model takes "
                             f"{self.expected_shape[-1]}x{self.expected_shape[-2]}")
        return self.transform(image)


def image_pipeline(data_loader_section, trusted=True):
    """The eval pipeline of a config's data_loader section: the loader's image mode and size,
    then its "eval" transforms and normalisation (data_loader.transforms)."""
    args = data_loader_section.get("args", {})
    limits = FileLimits.of_args(args)  # the limits the model's training data was read with
    if data_loader_section.get("type") in MNIST_LOADERS:
        from data_loader.mnist_source import MNIST_MEAN, MNIST_STD

        return ImagePipeline("L", None, ScaleAndNormalize(MNIST_MEAN, MNIST_STD), (1, 28, 28), limits)
    if not any(key in args for key in ("mode", "image_size", "transforms", "normalize")):
        raise ConfigError(f"predict.py cannot rebuild the image pipeline of data_loader.type "
                          f"'{data_loader_section.get('type')}': its config names no image mode, size or "
                          "transforms. Predict with a model trained by a built-in image loader.")
    from data_loader.data_loaders import _image_size
    from data_loader.transforms import build_transform

    size = _image_size(args.get("image_size"))
    return ImagePipeline(args.get("mode", "RGB"), size, build_transform(data_loader_section, "eval", trusted), size,
                         limits)


class ScaleAndNormalize:
    """uint8 -> float in [0, 1] -> (x - mean) / std: ToTensor then Normalize, on a tensor."""

    def __init__(self, mean, std):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image):
        return (image.float() / 255 - self.mean) / self.std


def normalisation_of(config, loader=None):
    """{"mean", "std"} the model's inputs were normalised with, or None when unknown."""
    normalize = config["data_loader"].get("args", {}).get("normalize")
    if isinstance(normalize, dict) and {"mean", "std"} <= set(normalize):
        return {"mean": list(normalize["mean"]), "std": list(normalize["std"])}
    if loader is not None and getattr(loader, "mean", None) is not None:
        return {"mean": list(loader.mean), "std": list(loader.std)}
    if config["data_loader"].get("type") in MNIST_LOADERS:
        from data_loader.mnist_source import MNIST_MEAN, MNIST_STD

        return {"mean": list(MNIST_MEAN), "std": list(MNIST_STD)}
    return None


class ImageInputs(Dataset):
    """(index, tensor or None, error or "") per image file; decoding runs in loader workers."""

    def __init__(self, files, pipeline):
        self.files, self.pipeline = files, pipeline

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        try:
            return index, self.pipeline(self.files[index]), ""
        except Exception as err:  # any failure of one file is that file's error row, never the run's
            return index, None, str(err)


def collate_inputs(items):
    """(indices, stacked tensors of the good inputs or None, [(index, error)])."""
    good = [(i, x) for i, x, error in items if not error]
    errors = [(i, error) for i, _, error in items if error]
    shapes = {tuple(x.shape) for _, x in good}
    if len(shapes) > 1:  # differing sizes that the pipeline did not resize: keep the most common
        common = max(shapes, key=lambda s: sum(tuple(x.shape) == s for _, x in good))
        errors += [(i, f"its tensor is {tuple(x.shape)}, the others {common}: resize it") for i, x in good
                   if tuple(x.shape) != common]
        good = [(i, x) for i, x in good if tuple(x.shape) == common]
    batch = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], batch, errors


def table_inputs(csv_path, data_loader_section):
    """(row labels, float tensor of the good rows, [(row label, error)]) of a CSV file in the
    training table's format, through the preprocessing fitted on the training rows. A row is
    refused for what training would have refused: an empty cell (unless the config's
    missing_values is "fill"), text in a number column, a column the file lacks."""
    from data_loader.csv_reader import read_table
    from data_loader.table import apply_table_preprocessing

    args = data_loader_section.get("args", {})
    preprocessing = args.get("preprocessing")
    if not preprocessing:
        raise ConfigError(f"'{csv_path}' is a CSV file, but this model was not trained on a table (its config "
                          "has no data_loader.args.preprocessing). Pass image files or a folder with -i.")
    table = read_table(csv_path, "input file", FileLimits.of_args(args))
    frame = table.frame
    labels = [f"{Path(csv_path).name} line {line}" for line in table.lines]
    problems = {**row_problems(table, preprocessing, args.get("missing_values", "error")), **table.troubles}
    good = [position for position in range(len(frame)) if position not in problems]
    rows = None
    if good:
        rows = torch.from_numpy(apply_table_preprocessing(frame.iloc[good], preprocessing))
    errors = [(labels[position], problem) for position, problem in sorted(problems.items())]
    return [labels[position] for position in good], rows, errors


def row_problems(table, preprocessing, missing_values):
    """{row position: reason} for the rows of `table` (a CsvTable) the model cannot take."""
    import pandas as pd

    from data_loader.table import missing_value_problem

    frame, problems = table.frame, {}

    for column in preprocessing["features"]:
        if column not in frame.columns:
            return {position: f"the file has no column '{column}'" for position in range(len(frame))}
        values = frame[column]
        if missing_values == "error":
            for position in np.flatnonzero(values.isna().to_numpy()):
                problems.setdefault(int(position), missing_value_problem(column, table.written_cell(column, position),
                                                                         hint=False))
        if column in preprocessing["numeric"]:
            not_number = pd.to_numeric(values, errors="coerce").isna() & values.notna()
            for position in np.flatnonzero(not_number.to_numpy()):
                problems.setdefault(int(position), f"column '{column}' is {values.iloc[position]!r}, not a number")
    return problems
