"""One split of the shards as a LitData StreamingDataset that yields decoded samples. Imported
only when shards are read, as litdata is an optional package."""
import torch
from litdata import StreamingDataset

from utils import ConfigError

from .samples import BadSample, seeded_call
from .shard_format import decode_sample_image


class ShardReadError(ConfigError):
    """A shard could not be read (damaged, changed, or the network dropped): exit 2 with the
    message, before the run folder is made when the check of the first batch meets it."""


class ShardDataset(StreamingDataset):
    """(uint8 image C x H x W, or float32 row; class index) of each sample of a split.

    With `sample_transform` (the per-sample path) each sample's random draws are seeded by
    (seed, epoch, the sample's index in the split): the same in every worker process, on every
    rank and after a resume, whatever the number of processes."""

    def __init__(self, input_dir, decode, sample_transform=None, draw_seed=0, **kwargs):
        super().__init__(input_dir, **kwargs)
        self.decode, self.sample_transform, self.draw_seed = decode, sample_transform, draw_seed
        self.draw_epoch = 0

    def __getitem__(self, index):
        data, target, name = super().__getitem__(index)
        target = torch.as_tensor(target)  # a class index, 0/1, or a row of labels or regression targets
        if self.decode["kind"] == "table":
            return torch.as_tensor(data, dtype=torch.float32), target
        position = int(getattr(index, "index", index))
        try:
            image = decode_sample_image(bytes(data), self.decode["mode"], self.decode["image_size"], "")
        except BadSample as err:  # it decoded when it was written: the shard changed since
            source = f" (written from '{bytes(name).decode()}')" if bytes(name) else ""
            raise ShardReadError(f"sample {position} of the shards in '{self.location()}'{source} cannot be decoded "
                                 f"({str(err).split('(', 1)[-1].rstrip(')')}); it could when the shards were "
                                 "written, so a shard file there is damaged") from None
        if self.sample_transform is not None:
            # int tuples hash the same in every process
            image = seeded_call(hash((self.draw_seed, self.draw_epoch, position)) % 2**63, self.sample_transform,
                                image)
        return image, target

    def location(self):
        return self.input_dir.url or self.input_dir.path
