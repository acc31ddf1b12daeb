"""Which samples train and which validate: a random or stratified hold-out, or fold `fold` of a
k-fold split. Every split is a function of the seed alone, so all DDP ranks and a resumed run
draw the same one."""
import numpy as np

from utils import ConfigError


def split_indices(n_samples, validation_split, seed, labels=None, stratify=False, n_folds=0, fold=0):
    """(train indices, validation indices), both sorted; validation is empty without a split."""
    state = seed % 2**32  # scikit-learn takes 32-bit seeds
    if stratify and labels is None:
        raise ConfigError("data_loader.args.stratify is true, but this data loader has no labels to "
                          "stratify by. Set stratify to false.")
    if n_folds:
        return _fold_indices(n_samples, n_folds, fold, state, labels if stratify else None)
    len_valid = validation_size(validation_split, n_samples)
    if len_valid == 0:
        return np.arange(n_samples), np.arange(0)
    if stratify:
        from sklearn.model_selection import StratifiedShuffleSplit  # scikit-learn only for stratified splits

        splitter = StratifiedShuffleSplit(n_splits=1, test_size=len_valid, random_state=state)
        try:
            train_idx, valid_idx = next(splitter.split(np.zeros(n_samples), labels))
        except ValueError as err:
            raise ConfigError(f"data_loader.args.stratify: cannot keep the class proportions ({err}). "
                              "Use a larger validation_split, or set stratify to false.") from None
        return np.sort(train_idx), np.sort(valid_idx)
    permutation = np.random.default_rng(seed).permutation(n_samples)
    return np.sort(permutation[len_valid:]), np.sort(permutation[:len_valid])


def validation_size(split, n_samples):
    """How many of `n_samples` the validation split takes: a fraction in [0, 1) or a count in
    [0, n). A ConfigError (with the sizes) when the split is out of range or nothing is left
    to train on."""
    key = "data_loader.args.validation_split"
    if isinstance(split, bool) or not isinstance(split, (int, float)):
        raise ConfigError(f"{key} is {split!r}; write a fraction in [0, 1) or a whole number of samples.")
    if isinstance(split, float) and not 0.0 <= split < 1.0:
        raise ConfigError(f"{key} is {split}; a fraction must be in [0, 1), e.g. 0.1.")
    len_valid = split if isinstance(split, int) else int(n_samples * split)
    if isinstance(split, int) and not 0 <= split < n_samples:
        raise ConfigError(f"{key} is {split} samples, but the dataset has only {n_samples}; it must be "
                          f"below {n_samples} so that samples are left to train on.")
    if n_samples - len_valid < 1:
        raise ConfigError(f"the training set is empty: the dataset has {n_samples} samples and {key} "
                          f"({split}) takes {len_valid} of them. Use more data or a smaller split.")
    return len_valid


def _fold_indices(n_samples, n_folds, fold, state, labels):
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= n_samples:
        raise ConfigError(f"data_loader.args.n_folds is {n_folds!r}; use a whole number from 2 to the "
                          f"number of training samples ({n_samples}), or 0 for no k-fold split.")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < n_folds:
        raise ConfigError(f"data_loader.args.fold is {fold!r}; with n_folds {n_folds} use 0 to {n_folds - 1}.")
    from sklearn.model_selection import KFold, StratifiedKFold  # only for k-fold splits

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
