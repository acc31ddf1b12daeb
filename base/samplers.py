"""Samplers whose order is a function of (seed, epoch) alone, so an epoch can be replayed or
resumed part-way without saving any sampler state."""
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields `indices`, shuffled with a generator seeded by (seed, epoch) when `shuffle`,
    skipping the first `skip` positions (resuming inside an epoch)."""

    def __init__(self, indices, shuffle, seed):
        self.indices = list(indices)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch, skip=0):
        self.epoch, self.skip = epoch, skip

    def order(self):
        if not self.shuffle:
            return self.indices
        # modulo: an unseeded run's seed (torch.initial_seed(), up to 2**64) would overflow
        generator = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) % 2**63)
        permutation = torch.randperm(len(self.indices), generator=generator).tolist()
        return [self.indices[i] for i in permutation]

    def __iter__(self):
        return iter(self.order()[self.skip:])

    def __len__(self):
        return len(self.indices) - self.skip
