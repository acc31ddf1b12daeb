import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate

from utils import ConfigError, dist
from utils.seed import worker_init_fn

from .samplers import EpochSampler


class BaseDataLoader(DataLoader):
    """Base class for all data loaders: batching, shuffling and a validation split.

    The split is drawn from its own generator seeded by `seed` (default: the run's torch seed),
    and the training order of each epoch depends only on (seed, epoch): see `set_epoch`.
    Under DDP (torchrun) the split is identical on every rank and each rank loads its share of
    both parts: `batch_size` is per process, the global batch is batch_size x world size.
    Extra keyword arguments (pin_memory, persistent_workers, prefetch_factor, ...) go to
    torch's DataLoader.
    """

    def __init__(self, dataset, batch_size, shuffle, validation_split, num_workers,
                 collate_fn=default_collate, seed=None, **loader_kwargs):
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.seed = torch.initial_seed() if seed is None else seed
        self.batch_idx = 0
        self.n_samples = len(dataset)
        self.sampler, self.valid_sampler = self._split_sampler(self.validation_split)
        # Its own generator: creating an iterator draws a worker base seed from it, which would
        # otherwise come from the global torch RNG and shift dropout after a mid-epoch resume.
        loader_kwargs.setdefault("generator", torch.Generator().manual_seed(self.seed))
        if num_workers == 0:
            loader_kwargs.pop("persistent_workers", None)
            loader_kwargs.pop("prefetch_factor", None)
        self.init_kwargs = {
            "dataset": dataset,
            "batch_size": batch_size,
            "collate_fn": collate_fn,
            "num_workers": num_workers,
            "worker_init_fn": worker_init_fn,
            **loader_kwargs,
        }
        super().__init__(sampler=self.sampler, **self.init_kwargs)

    def _split_sampler(self, split):
        len_valid = validation_size(split, self.n_samples)
        shard = {"num_replicas": dist.world_size(), "rank": dist.rank()}
        if len_valid == 0:
            return EpochSampler(np.arange(self.n_samples), self.shuffle, self.seed, **shard), None
        permutation = np.random.default_rng(self.seed).permutation(self.n_samples)
        valid_idx = np.sort(permutation[:len_valid])
        train_idx = np.sort(permutation[len_valid:])
        self.n_samples = len(train_idx)
        # Validation is sharded without padding so every sample counts exactly once once the
        # ranks' metric totals are summed.
        return (EpochSampler(train_idx, self.shuffle, self.seed, **shard),
                EpochSampler(valid_idx, shuffle=False, seed=self.seed, pad=False, **shard))

    def set_epoch(self, epoch, skip_batches=0):
        """Fix the sample order to that of `epoch` and start after `skip_batches` batches."""
        self.sampler.set_epoch(epoch, skip_batches * self.batch_size)
        if self.generator is not None:  # worker seeds follow (seed, epoch, rank) too
            # int tuples hash the same in every process; the rank keeps DDP workers' seeds apart
            self.generator.manual_seed(hash((self.seed, epoch, dist.rank())) % 2**63)

    def split_validation(self):
        if self.valid_sampler is None:
            return None
        return DataLoader(sampler=self.valid_sampler, **self.init_kwargs)


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
