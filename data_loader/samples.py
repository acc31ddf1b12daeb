"""Samples before any transform: image files decoded to uint8 tensors (C x H x W), decoded
images held in memory, and the wrapper that applies a split's transform per sample."""
import logging
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from utils import ConfigError, dist

logger = logging.getLogger("data_loader")
DECODE_CHUNK = 256


class BadSample(ConfigError):
    """A sample that cannot be used; the message names the file or row and the problem."""


def decode_image(path, mode, image_size):
    """The image at `path` as a uint8 tensor C x H x W in PIL `mode`, resized to `image_size`
    (height, width) when given."""
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if image_size is not None and image.size != (image_size[1], image_size[0]):
                image = image.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            array = np.array(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadSample(f"image file '{path}' cannot be read ({type(err).__name__}: {err})") from None
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


class ImageFiles(Dataset):
    """(uint8 image tensor, class index) for each of `paths`, decoded on access."""

    def __init__(self, paths, labels, mode="RGB", image_size=None):
        self.paths, self.labels = [str(p) for p in paths], np.asarray(labels)
        self.mode, self.image_size = mode, image_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            label = self.labels[index]
            return decode_image(self.paths[index], self.mode, self.image_size), \
                (int(label) if self.labels.dtype.kind == "i" else torch.from_numpy(np.asarray(label)))
        except BadSample as err:
            raise BadSample(f"{err}. Fix or remove the file, or set data_loader.args.on_bad_sample to "
                            '"skip" to train without it.') from None

    def subset(self, keep):
        return ImageFiles([self.paths[i] for i in keep], self.labels[keep], self.mode, self.image_size)

    def with_labels(self, labels):
        return ImageFiles(self.paths, labels, self.mode, self.image_size)

    def describe(self, index):
        return self.paths[index]


class TensorSamples(Dataset):
    """(data[i], targets[i]) of tensors held in memory: decoded images or table rows."""

    def __init__(self, data, targets):
        self.data, self.targets = data, targets

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self.data[index], self.targets[index]


class Transformed(Dataset):
    """`samples` with `transform` applied to each input; the split's own view of shared samples.
    A key (index, seed) from SeededDraws runs the transform's random draws from that seed.
    `targets` (one per sample) replace the samples' own labels: the task's encoded, scaled ones."""

    def __init__(self, samples, transform=None, targets=None):
        self.samples, self.transform, self.targets = samples, transform, targets

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self._transformed(key)
        index, seed = key
        # the CPU generator alone (torch.manual_seed would seed every device too: 100x slower);
        # the process's own random stream is put back afterwards
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self._transformed(index)
        finally:
            generator.set_state(state)

    def _transformed(self, index):
        data, target = self.samples[index]
        if self.targets is not None:
            target = self.targets[index]
        return (self.transform(data) if self.transform is not None else data), target


class SeededDraws(Sampler):
    """A training sampler's indices, each paired with the seed of its random transform: a function
    of (seed, epoch, rank, position in the epoch). Per-sample augmentation then does not depend on
    which worker process runs it, so a run resumed inside an epoch augments its remaining samples
    exactly as the uninterrupted run did (a worker's own random stream would restart instead)."""

    def __init__(self, sampler, seed):
        self.sampler, self.seed = sampler, seed

    def set_epoch(self, epoch, skip=0):
        self.sampler.set_epoch(epoch, skip)

    def __iter__(self):
        epoch, skip = self.sampler.epoch, self.sampler.skip
        for position, index in enumerate(self.sampler, start=skip):
            # int tuples hash the same in every process
            yield index, hash((self.seed, epoch, dist.rank(), position)) % 2**63

    def __len__(self):
        return len(self.sampler)


def _decode_chunk(args):
    """Decode a list of files; (index, numpy array or the BadSample message) for each. Arrays, not
    tensors: torch would pass tensors between processes as shared-memory file handles, one each."""
    paths, start, mode, image_size = args
    results = []
    for offset, path in enumerate(paths):
        try:
            results.append((start + offset, decode_image(path, mode, image_size).numpy()))
        except BadSample as err:
            results.append((start + offset, str(err)))
    return results


def decode_all(files, num_workers, keep_tensors=True):
    """Decode every file of an ImageFiles in `num_workers` processes with a progress bar.
    Returns (uint8 tensor N x C x H x W of the good files or None, good indices, {index: problem})."""
    chunks = [(files.paths[start:start + DECODE_CHUNK], start, files.mode, files.image_size)
              for start in range(0, len(files), DECODE_CHUNK)]
    decoded, problems = {}, {}
    progress = tqdm(total=len(files), desc="decoding images", disable=None, leave=False)

    def collect(results):
        for index, value in results:
            if isinstance(value, str):
                problems[index] = value
            elif keep_tensors:
                decoded[index] = torch.from_numpy(value)
            else:
                decoded[index] = None
        progress.update(len(results))

    if num_workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(num_workers) as pool:
            for results in pool.map(_decode_chunk, chunks):
                collect(results)
    else:
        for chunk in chunks:
            collect(_decode_chunk(chunk))
    progress.close()
    good = sorted(decoded)
    if not keep_tensors or not good:
        return None, good, problems
    shapes = {tuple(decoded[i].shape) for i in good}
    if len(shapes) > 1:
        return None, good, problems  # sizes differ: cannot be one tensor (set image_size)
    return torch.stack([decoded[i] for i in good]), good, problems
