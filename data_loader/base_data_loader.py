import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate

from utils import dist
from utils.seed import worker_init_fn

from .samplers import EpochSampler, WeightedEpochSampler
from .splits import split_indices, validation_size  # noqa: F401 (validation_size: public here)


class BaseDataLoader(DataLoader):
    """Base class for all data loaders: batching, shuffling and a validation split.

    The split is drawn from its own generator seeded by `seed` (default: the run's torch seed),
    and the training order of each epoch depends only on (seed, epoch): see `set_epoch`.
    Under DDP (torchrun) the split is identical on every rank and each rank loads its share of
    both parts: `batch_size` is per process, the global batch is batch_size x world size.
    Extra keyword arguments (pin_memory, persistent_workers, prefetch_factor, ...) go to
    torch's DataLoader.

    With `labels` (one class index per sample), `stratify` keeps the class proportions in both
    parts, `n_folds`/`fold` make fold `fold` of a k-fold split the validation part (instead of
    validation_split), and `weighted_sampler` draws training samples with replacement, each
    class equally often.
    """

    def __init__(self, dataset, batch_size, shuffle, validation_split, num_workers,
                 collate_fn=default_collate, seed=None, *, labels=None, stratify=False, n_folds=0, fold=0,
                 weighted_sampler=False, **loader_kwargs):
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.seed = torch.initial_seed() if seed is None else seed
        self.batch_idx = 0
        self.n_samples = len(dataset)
        self.labels = None if labels is None else np.asarray(labels)
        self.split_options = {"stratify": stratify, "n_folds": n_folds, "fold": fold}
        self.weighted_sampler = weighted_sampler
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
        shard = {"num_replicas": dist.world_size(), "rank": dist.rank()}
        train_idx, valid_idx = self.split_indices(split)
        self.train_indices, self.valid_indices = train_idx, valid_idx
        self.n_samples = len(train_idx)
        train_sampler = self._train_sampler(train_idx, shard)
        if len(valid_idx) == 0:
            return train_sampler, None
        # Validation is sharded without padding so every sample counts exactly once once the
        # ranks' metric totals are summed.
        return train_sampler, EpochSampler(valid_idx, shuffle=False, seed=self.seed, pad=False, **shard)

    def split_indices(self, split):
        """(train, validation) sample indices; a subclass with a fixed validation set overrides it."""
        return split_indices(self.n_samples, split, self.seed, self.labels, **self.split_options)

    def _train_sampler(self, train_idx, shard):
        if not self.weighted_sampler:
            return EpochSampler(train_idx, self.shuffle, self.seed, **shard)
        if self.labels is None:
            raise ValueError("weighted_sampler needs the samples' labels")
        labels = self.labels[train_idx]
        per_class = np.bincount(labels)
        return WeightedEpochSampler(train_idx, 1.0 / per_class[labels], self.seed, **shard)

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

