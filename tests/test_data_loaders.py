"""The built-in loaders on real data written to tmp_path: image folders (scikit-learn's digits),
CSV tables (scikit-learn's wine) and torchvision datasets; splits, transforms, class weights,
the in-memory fast path and its on-disk cache."""
import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.transforms import v2

from data_loader.data_loaders import CsvDataLoader, ImageFolderDataLoader, TorchvisionDataLoader
from data_loader.table import apply_table_preprocessing
from data_loader.transforms import build_transform
from scripts.make_digits_folder import write_digits_folder
from scripts.make_wine_csv import write_wine_csv

AUGMENT = {"train": [{"type": "RandomAffine", "args": {"degrees": 90, "translate": [0.2, 0.2]}}], "eval": []}


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits_folder(root)
    return root


@pytest.fixture(scope="session")
def wine_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("wine")
    write_wine_csv(root)
    return root


def folder_loader(digits_dir, **args):
    defaults = {"train_dir": str(digits_dir / "train"), "mode": "L", "batch_size": 64, "seed": 3}
    return ImageFolderDataLoader(**{**defaults, **args})


def all_batches(loader):
    data, targets = zip(*loader)
    return torch.cat(data), torch.cat(targets)


@pytest.mark.parametrize("in_memory", [True, False])
def test_validation_batches_are_never_augmented(digits_dir, in_memory):
    loader = folder_loader(digits_dir, validation_split=0.2, transforms=AUGMENT, in_memory=in_memory,
                           normalize={"mean": [0.3], "std": [0.4]})
    assert loader.in_memory is in_memory
    valid_data, valid_targets = all_batches(loader.split_validation())
    eval_transform = build_transform({"args": {"transforms": AUGMENT, "normalize": {"mean": [0.3], "std": [0.4]}}})
    files = [loader.dataset.samples[int(i)] for i in loader.valid_indices] if not in_memory else None
    raw = [f[0] for f in files] if files else list(loader.images[torch.as_tensor(loader.valid_indices)])
    expected = torch.stack([eval_transform(image) for image in raw])
    torch.testing.assert_close(valid_data, expected)
    assert valid_targets.tolist() == loader.labels[loader.valid_indices].tolist()
    train_data, _ = all_batches(loader)  # the training side is augmented: no batch is the plain image
    order = [key[0] if isinstance(key, tuple) else key for key in loader.sampler]  # (index, seed): per sample
    train_plain = torch.stack([eval_transform(loader.dataset.samples[int(i)][0]) for i in order])
    assert not torch.allclose(train_data, train_plain)


def test_stratified_split_keeps_class_proportions(digits_dir):
    loader = folder_loader(digits_dir, validation_split=0.25, stratify=True)
    labels = loader.labels
    for cls in range(10):
        share = np.mean(labels[loader.valid_indices] == cls)
        assert abs(share - np.mean(labels == cls)) < 0.01
    assert set(loader.train_indices).isdisjoint(loader.valid_indices)


@pytest.mark.parametrize("stratify", [False, True])
def test_k_folds_are_disjoint_cover_the_data_and_repeat(digits_dir, stratify):
    folds = [folder_loader(digits_dir, n_folds=5, fold=i, stratify=stratify, in_memory=False).valid_indices
             for i in range(5)]
    together = np.concatenate(folds)
    assert len(together) == len(set(together.tolist())) == 1437
    again = folder_loader(digits_dir, n_folds=5, fold=2, stratify=stratify, in_memory=False)
    assert again.valid_indices.tolist() == folds[2].tolist()
    assert set(again.train_indices.tolist()) == set(range(1437)) - set(folds[2].tolist())


def test_normalize_auto_is_measured_on_the_training_split(digits_dir):
    loader = folder_loader(digits_dir, validation_split=0.2, normalize="auto")
    pixels = loader.images[torch.as_tensor(loader.train_indices)].double() / 255
    mean, std = loader.fitted_args["normalize"]["mean"], loader.fitted_args["normalize"]["std"]
    assert mean == pytest.approx([pixels.mean().item()], abs=1e-5)
    assert std == pytest.approx([pixels.std(unbiased=False).item()], abs=1e-5)
    data, _ = all_batches(loader)  # no augmentation here: the batches are normalised to mean 0, std 1
    assert data.mean().item() == pytest.approx(0.0, abs=0.02)
    assert data.std().item() == pytest.approx(1.0, abs=0.02)


def test_class_weights_and_weighted_sampler_balance_the_classes(digits_dir, tmp_path):
    # an imbalanced copy: class 0 keeps all its images, the others 20 each
    for cls_dir in sorted((digits_dir / "train").iterdir()):
        target = tmp_path / cls_dir.name
        target.mkdir()
        for png in sorted(cls_dir.glob("*.png"))[: None if cls_dir.name == "0" else 20]:
            (target / png.name).write_bytes(png.read_bytes())
    loader = ImageFolderDataLoader(train_dir=str(tmp_path), mode="L", batch_size=32, class_weights="balanced",
                                   weighted_sampler=True, seed=0)
    counts = np.bincount(loader.labels)
    expected = len(loader.labels) / (10 * counts)
    np.testing.assert_allclose(loader.class_weights.numpy(), expected, rtol=1e-6)
    drawn = np.bincount(loader.labels[list(loader.sampler)], minlength=10)
    assert drawn[0] < 3 * drawn[1:].mean()  # without the sampler class 0 would be 7x the others
    assert counts[0] > 7 * counts[1]


def test_fast_path_resumes_mid_epoch_with_the_same_augmented_batches(digits_dir):
    loader = folder_loader(digits_dir, transforms=AUGMENT, batch_size=100)
    loader.set_epoch(3)
    full = [batch for batch, _ in loader]
    loader.set_epoch(3, skip_batches=5)
    resumed = [batch for batch, _ in loader]
    assert len(resumed) == len(full) - 5
    for a, b in zip(full[5:], resumed):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_per_sample_path_resumes_mid_epoch_with_the_same_augmented_batches(digits_dir, num_workers):
    loader = folder_loader(digits_dir, transforms=AUGMENT, batch_size=16, in_memory=False, limit=128,
                           num_workers=num_workers)
    loader.set_epoch(3)
    full = [batch for batch, _ in loader]
    torch.manual_seed(99)  # the draws do not come from the process's random stream
    loader.set_epoch(3, skip_batches=5)
    resumed = [batch for batch, _ in loader]
    assert len(resumed) == len(full) - 5 == 3
    for a, b in zip(full[5:], resumed):
        torch.testing.assert_close(a, b)
    loader.set_epoch(4)
    assert not torch.equal(full[0], next(iter(loader))[0])  # another epoch, other draws


def test_disk_cache_is_reused_and_follows_file_changes(digits_dir, tmp_path):
    cache = tmp_path / "cache"
    first = folder_loader(digits_dir, cache_dir=str(cache))
    files = list(cache.glob("decoded-*.pt"))
    assert len(files) == 1
    second = folder_loader(digits_dir, cache_dir=str(cache))
    assert torch.equal(first.images, second.images)
    assert list(cache.glob("decoded-*.pt")) == files  # no new entry: the same key
    copy = tmp_path / "copy"
    for png in (digits_dir / "train").rglob("*.png"):
        (copy / png.parent.name).mkdir(parents=True, exist_ok=True)
        (copy / png.parent.name / png.name).write_bytes(png.read_bytes())
    folder_loader(digits_dir, train_dir=str(copy), cache_dir=str(cache))
    assert len(list(cache.glob("decoded-*.pt"))) == 2  # other files: another key


def test_csv_table_preprocessing_is_plain_data_that_reproduces_the_inputs(wine_dir):
    loader = CsvDataLoader(train_csv=str(wine_dir / "train.csv"), target="cultivar", validation_split=0.2,
                           stratify=True, batch_size=200, seed=1)
    preprocessing = loader.fitted_args["preprocessing"]
    assert loader.class_names == ["0", "1", "2"] and loader.num_inputs == 13
    frame = pd.read_csv(wine_dir / "train.csv")
    inputs = torch.from_numpy(apply_table_preprocessing(frame, preprocessing))
    data, targets = next(iter(loader))
    order = list(loader.sampler)
    torch.testing.assert_close(data, inputs[order])
    assert targets.tolist() == frame["cultivar"].to_numpy()[order].tolist()
    train_inputs = inputs[torch.as_tensor(loader.train_indices)]  # standardised on the training rows
    torch.testing.assert_close(train_inputs.mean(0), torch.zeros(13), atol=1e-5, rtol=0)


def test_csv_categorical_columns_are_one_hot_and_missing_values_filled(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("size,colour,label\n1.0,red,a\n2.0,blue,b\n,red,a\n4.0,,b\n")
    loader = CsvDataLoader(csv_file=str(path), missing_values="fill", normalize=None, batch_size=4, shuffle=False)
    data, targets = next(iter(loader))
    assert loader.class_names == ["a", "b"]
    # size (median 2.0 fills row 3), then colour one-hot [blue, red] (most frequent "red" fills row 4)
    assert data.tolist() == [[1.0, 0.0, 1.0], [2.0, 1.0, 0.0], [2.0, 0.0, 1.0], [4.0, 0.0, 1.0]]
    assert targets.tolist() == [0, 1, 0, 1]


def test_csv_of_image_paths(digits_dir, tmp_path):
    rows = [(str(p.relative_to(digits_dir)), p.parent.name) for p in sorted((digits_dir / "test").rglob("*.png"))]
    pd.DataFrame(rows, columns=["file", "digit"]).to_csv(digits_dir / "test_images.csv", index=False)
    loader = CsvDataLoader(csv_file=str(digits_dir / "test_images.csv"), target="digit", image_column="file",
                           mode="L", batch_size=400, shuffle=False)
    data, targets = next(iter(loader))
    assert data.shape == (360, 1, 8, 8) and loader.class_names == [str(d) for d in range(10)]
    assert targets.tolist() == [int(digit) for _, digit in rows]


def test_torchvision_dataset_by_name(mnist_dir):
    loader = TorchvisionDataLoader(dataset="MNIST", data_dir=str(mnist_dir), batch_size=50, limit=200,
                                   validation_split=0.25, normalize="auto")
    data, targets = next(iter(loader))
    assert data.shape == (50, 1, 28, 28) and loader.in_memory
    assert loader.class_names[0].startswith("0") and len(loader.class_names) == 10
    assert len(loader.valid_indices) == 50


def test_per_sample_augmentation_runs_in_workers(digits_dir):
    steps = {"train": [{"type": "RandomAffine", "args": {"degrees": 10, "shear": 10}}], "eval": []}  # not batched
    loader = folder_loader(digits_dir, transforms=steps, num_workers=2, limit=256)
    assert not loader.in_memory  # shear has no batched version: per sample, from the decoded cache
    data, _ = all_batches(loader)
    assert data.shape == (256, 1, 8, 8)


def test_eval_pipeline_is_public_and_matches_the_loader(digits_dir):
    section = {"args": {"transforms": {"eval": [{"type": "CenterCrop", "args": {"size": 6}}]},
                        "normalize": {"mean": [0.5], "std": [0.25]}}}
    transform = build_transform(section, "eval")
    image = torch.full((1, 8, 8), 255, dtype=torch.uint8)
    assert transform(image).shape == (1, 6, 6)
    assert transform(image).unique().tolist() == [2.0]
    assert isinstance(transform.transforms[0], v2.CenterCrop)


def test_parallel_decoding_gives_the_serial_result(digits_dir):
    serial = folder_loader(digits_dir, num_workers=0)
    parallel = folder_loader(digits_dir, num_workers=2)  # 1437 files: several chunks, two processes
    assert torch.equal(serial.images, parallel.images)
