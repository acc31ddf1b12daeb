"""Image folders with one sub-folder per class (torchvision's ImageFolder layout):

    data/digits/train/0/img001.png, data/digits/train/1/..., data/digits/test/0/...
"""
from pathlib import Path

import numpy as np

from utils import ConfigError

from .samples import ImageFiles

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def scan_class_folders(root, key, extensions, class_names=None):
    """(class names, file paths, class indices) of the folder `root` (named by config `key`).
    With `class_names` (the training classes), a folder of another name is an error."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{key} '{root}' is not a folder. Point it at a folder with one sub-folder "
                          "of images per class.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ConfigError(f"{key} '{root}' has no class sub-folders. Put each class's images in "
                          f"their own folder: {root}/<class name>/<image files>.")
    names = [p.name for p in folders]
    if class_names is not None:
        unknown = [p for p in folders if p.name not in class_names]
        if unknown:
            raise ConfigError(f"{key} '{root}' has class folder(s) {', '.join(repr(str(p)) for p in unknown)} "
                              f"that the training data lacks (its classes: {', '.join(class_names)}). The "
                              "model cannot predict a class it never saw: add training images of it, or "
                              "remove the folder.")
        names = list(class_names)
    paths, labels = [], []
    suffixes = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise ConfigError(f"class folder '{folder}' has no image files (extensions "
                              f"{', '.join(sorted(suffixes))}). Add images to it, remove it, or set "
                              "data_loader.args.extensions.")
        paths += files
        labels += [names.index(folder.name)] * len(files)
    return names, paths, np.asarray(labels, dtype=np.int64)


def folder_samples(dirs, training, extensions, mode, image_size, limits):
    """(ImageFiles, class names, fixed-validation mask) for `dirs` = {"data_dir", "train_dir",
    "val_dir", "test_dir"} (config values, None where not set)."""
    train_key = "data_loader.args.train_dir" if dirs["train_dir"] else "data_loader.args.data_dir"
    train_root = dirs["train_dir"] or dirs["data_dir"]
    if train_root is None:
        raise ConfigError("ImageFolderDataLoader needs data_loader.args.data_dir (split into training and "
                          "validation) or train_dir (with optional val_dir and test_dir).")
    if not training:
        if not dirs["test_dir"]:
            raise ConfigError("test.py evaluates on data_loader.args.test_dir, which is not set. Add "
                              "\"test_dir\": \"<folder with one sub-folder per class>\" to the config.")
        class_names = scan_class_folders(train_root, train_key, extensions)[0] if Path(train_root).is_dir() \
            else None
        names, paths, labels = scan_class_folders(dirs["test_dir"], "data_loader.args.test_dir", extensions,
                                                  class_names)
        return ImageFiles(paths, labels, mode, image_size, limits), names, None
    names, paths, labels = scan_class_folders(train_root, train_key, extensions)
    fixed_valid = np.zeros(len(paths), dtype=bool)
    if dirs["val_dir"]:
        _, val_paths, val_labels = scan_class_folders(dirs["val_dir"], "data_loader.args.val_dir", extensions,
                                                      names)
        paths, labels = paths + val_paths, np.concatenate([labels, val_labels])
        fixed_valid = np.concatenate([fixed_valid, np.ones(len(val_paths), dtype=bool)])
    return ImageFiles(paths, labels, mode, image_size, limits), names, fixed_valid
