"""Samplers whose order is a function of (seed, epoch) alone, so an epoch can be replayed or
resumed part-way without saving any sampler state."""
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields `indices`, shuffled with a generator seeded by (seed, epoch) when `shuffle`,
    skipping the first `skip` positions (resuming inside an epoch).

    Under DDP each of `num_replicas` ranks takes the positions `rank::num_replicas` of the same
    permuted order (every rank draws the same permutation from the shared seed). Interleaving
    makes the ranks' k-th batches of size B/num_replicas together exactly the k-th batch of size
    B of a single process, so N processes reproduce a single-process run with the global batch.
    `pad` repeats the first positions so every rank gets as many samples (training: all ranks
    must take the same number of steps); without it a rank may get one sample fewer and each
    sample appears exactly once over all ranks (validation).
    """

    def __init__(self, indices, shuffle, seed, num_replicas=1, rank=0, pad=True):
        self.indices = list(indices)
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas, self.rank, self.pad = num_replicas, rank, pad
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch, skip=0):
        """`skip`: positions of this rank's share to leave out."""
        self.epoch, self.skip = epoch, skip

    def order(self):
        """The full order of this epoch, before it is shared out over the ranks."""
        if not self.shuffle:
            return self.indices
        # modulo: an unseeded run's seed (torch.initial_seed(), up to 2**64) would overflow
        generator = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) % 2**63)
        permutation = torch.randperm(len(self.indices), generator=generator).tolist()
        return [self.indices[i] for i in permutation]

    def rank_order(self):
        order = self.order()
        if self.pad and order:
            padded_length = -(-len(order) // self.num_replicas) * self.num_replicas
            order = (order * -(-padded_length // len(order)))[:padded_length]
        return order[self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self.rank_order()[self.skip:])

    def __len__(self):
        share = -(-len(self.indices) // self.num_replicas) if self.pad else \
            len(range(self.rank, len(self.indices), self.num_replicas))
        return share - self.skip


class WeightedEpochSampler(EpochSampler):
    """Draws len(indices) samples with replacement, index i with probability proportional to
    `weights[i]` (e.g. 1 / its class's count, so every class comes up equally often); the draw
    is a function of (seed, epoch), sharded over the ranks like EpochSampler."""

    def __init__(self, indices, weights, seed, num_replicas=1, rank=0):
        super().__init__(indices, shuffle=True, seed=seed, num_replicas=num_replicas, rank=rank)
        self.weights = torch.as_tensor(weights, dtype=torch.double)

    def order(self):
        generator = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) % 2**63)
        draw = torch.multinomial(self.weights, len(self.indices), replacement=True, generator=generator)
        return [self.indices[i] for i in draw.tolist()]
