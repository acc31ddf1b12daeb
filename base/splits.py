"""Which samples train and which validate: a random or stratified hold-out, or fold `fold` of a
k-fold split. Every split is a function of the seed alone, so all DDP ranks and a resumed run
draw the same one."""
import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, StratifiedShuffleSplit

from utils import ConfigError


def split_indices(n_samples, validation_split, seed, labels=None, stratify=False, n_folds=0, fold=0):
    """(train indices, validation indices), both sorted; validation is empty without a split."""
    state = seed % 2**32  # scikit-learn takes 32-bit seeds
    if stratify and labels is None:
        raise ConfigError("data_loader.args.stratify is true, but this data loader has no labels to "
                          "stratify by. Set stratify to false.")
    if n_folds:
        return _fold_indices(n_samples, n_folds, fold, state, labels if stratify else None)
    len_valid = _validation_count(n_samples, validation_split)
    if len_valid == 0:
        return np.arange(n_samples), np.arange(0)
    if stratify:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=len_valid, random_state=state)
        try:
            train_idx, valid_idx = next(splitter.split(np.zeros(n_samples), labels))
        except ValueError as err:
            raise ConfigError(f"data_loader.args.stratify: cannot keep the class proportions ({err}). "
                              "Use a larger validation_split, or set stratify to false.") from None
        return np.sort(train_idx), np.sort(valid_idx)
    permutation = np.random.default_rng(seed).permutation(n_samples)
    return np.sort(permutation[len_valid:]), np.sort(permutation[:len_valid])


def _validation_count(n_samples, validation_split):
    if isinstance(validation_split, bool) or not isinstance(validation_split, int | float):
        raise ConfigError(f"data_loader.args.validation_split is {validation_split!r}; write a fraction "
                          "(0.1) or a number of samples (500).")
    if isinstance(validation_split, int):
        if not 0 <= validation_split < n_samples:
            raise ConfigError(f"data_loader.args.validation_split is {validation_split} samples, but the "
                              f"training data has {n_samples}. Use a smaller count or a fraction.")
        return validation_split
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"data_loader.args.validation_split is {validation_split}; a fraction must be "
                          "at least 0 and below 1.")
    return int(n_samples * validation_split)


def _fold_indices(n_samples, n_folds, fold, state, labels):
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= n_samples:
        raise ConfigError(f"data_loader.args.n_folds is {n_folds!r}; use a whole number from 2 to the "
                          f"number of training samples ({n_samples}), or 0 for no k-fold split.")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < n_folds:
        raise ConfigError(f"data_loader.args.fold is {fold!r}; with n_folds {n_folds} use 0 to {n_folds - 1}.")
    if labels is None:
        folds = KFold(n_splits=n_folds, shuffle=True, random_state=state).split(np.zeros(n_samples))
    else:
        try:
            folds = list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=state)
                         .split(np.zeros(n_samples), labels))
        except ValueError as err:
            raise ConfigError(f"data_loader.args.n_folds: a stratified {n_folds}-fold split is not "
                              f"possible ({err}). Use fewer folds or stratify false.") from None
    train_idx, valid_idx = list(folds)[fold]
    return np.sort(train_idx), np.sort(valid_idx)


def balanced_class_weights(labels, num_classes):
    """Inverse-frequency weights n / (k * count), as scikit-learn's "balanced"; 0 for an absent class."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights
