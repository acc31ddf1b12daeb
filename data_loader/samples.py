"""Samples before any transform: image files decoded to uint8 tensors (C x H x W), decoded
images held in memory, and the wrapper that applies a split's transform per sample."""
import io
import logging
import re
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from utils import ConfigError, dist
from utils.bounded_read import ReadProblem, read_bounded
from utils.errors import first_line

from .file_limits import DEFAULT_LIMITS

logger = logging.getLogger("data_loader")
DECODE_CHUNK = 256
_PIL_LIMIT_LOCK = threading.Lock()


class BadSample(ConfigError):
    """A sample that cannot be used; the message names the file or row and the problem.
    `timed_out`: the file gave no data in time, which may pass (it is never cached as bad)."""

    def __init__(self, message, timed_out=False):
        super().__init__(_without_worker_traceback(message))
        self.timed_out = timed_out


def _without_worker_traceback(message):
    """A DataLoader worker's BadSample reaches the main process as BadSample("Caught BadSample in
    DataLoader worker process 0. Original Traceback ... BadSample: <message>"): keep the message."""
    marker = f"{BadSample.__module__}.{BadSample.__qualname__}: "
    if not message.startswith("Caught BadSample in DataLoader worker") or marker not in message:
        return message
    return message.rsplit(marker, 1)[1].strip()


def decode_image(path, mode, image_size, limits=DEFAULT_LIMITS):
    """The image at `path` as a uint8 tensor C x H x W in PIL `mode`, resized to `image_size`
    (height, width) when given. A file that cannot be read within `limits`, is no image or has
    more pixels than `limits.max_image_pixels` (checked from its header, before decoding) is a
    BadSample naming it."""
    try:
        data = read_bounded(path, None, limits.read_timeout_s)
    except ReadProblem as err:
        raise BadSample(f"image file '{path}' {err}", timed_out=err.timed_out) from None
    return decode_image_bytes(data, mode, image_size, path, limits)


def decode_image_bytes(data, mode, image_size, name, limits=DEFAULT_LIMITS):
    """decode_image of an image's encoded bytes (the file `name`'s, or a shard sample's)."""
    try:
        with warnings.catch_warnings():
            # PIL warns about damaged metadata and large images: the image decodes, or is a bad sample
            warnings.simplefilter("ignore")
            array = _decoded(name, data, mode, image_size, limits.max_image_pixels)
    except BadSample:
        raise
    except UnidentifiedImageError:
        raise BadSample(f"image file '{name}' cannot be read (not an image in a format PIL reads, or damaged)") \
            from None
    except Exception as err:  # PIL's decoders fail on damaged files with many types: all mean unreadable
        reason = first_line(err, 200, "no details")
        raise BadSample(f"image file '{name}' cannot be read ({type(err).__name__}: {reason})") from None
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


def _decoded(path, data, mode, image_size, max_pixels):
    """uint8 array (H x W or H x W x C) of the image file's bytes `data`, its size checked first."""
    with _open_image(path, data, max_pixels) as image:
        _check_pixels(path, image.size, max_pixels)
        image = image.convert(mode)
        if image_size is not None and image.size != (image_size[1], image_size[0]):
            image = image.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
        return np.array(image, dtype=np.uint8)


def _open_image(path, data, max_pixels):
    """PIL's image of the file's bytes, header only. Our `max_pixels` replaces PIL's own bomb
    check; PIL's global limit is lifted only while opening an image when ours is higher (the
    default is PIL's, so user code sees PIL's settings unchanged)."""
    if Image.MAX_IMAGE_PIXELS is None or max_pixels < 2 * Image.MAX_IMAGE_PIXELS:
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:  # over twice PIL's limit, so over ours
            found = re.search(r"\((\d+) pixels\)", str(err))
            raise _too_many_pixels(path, f"{int(found.group(1)):,}" if found else "too many", max_pixels) from None
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(path, size, max_pixels):
    width, height = size
    if width * height > max_pixels:
        raise _too_many_pixels(path, f"{width}x{height} = {width * height:,}", max_pixels)
    if width * height == 0:
        raise BadSample(f"image file '{path}' is {width}x{height} pixels: it holds no image")


def _too_many_pixels(path, pixels, max_pixels):
    return BadSample(f"image file '{path}' has {pixels} pixels, over data_loader.args.max_image_pixels "
                     f"({max_pixels:,}): a decompression bomb, or an image far larger than training needs. Shrink "
                     "or remove it, or raise max_image_pixels")


class ImageFiles(Dataset):
    """(uint8 image tensor, class index) for each of `paths`, decoded on access."""

    def __init__(self, paths, labels, mode="RGB", image_size=None, limits=DEFAULT_LIMITS):
        self.paths, self.labels = [str(p) for p in paths], np.asarray(labels)
        self.mode, self.image_size, self.limits = mode, image_size, limits

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            label = self.labels[index]
            return decode_image(self.paths[index], self.mode, self.image_size, self.limits), \
                (int(label) if self.labels.dtype.kind == "i" else torch.from_numpy(np.asarray(label)))
        except BadSample as err:
            raise BadSample(f"{err}. Fix or remove the file, or set data_loader.args.on_bad_sample to "
                            '"skip" to train without it.', err.timed_out) from None

    def subset(self, keep):
        return ImageFiles([self.paths[i] for i in keep], self.labels[keep], self.mode, self.image_size, self.limits)

    def with_labels(self, labels):
        return ImageFiles(self.paths, labels, self.mode, self.image_size, self.limits)

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
        return seeded_call(seed, self._transformed, index)

    def _transformed(self, index):
        data, target = self.samples[index]
        if self.targets is not None:
            target = self.targets[index]
        return (self.transform(data) if self.transform is not None else data), target


def seeded_call(seed, function, *args):
    """function(*args) with torch's CPU random generator seeded by `seed`; the process's own
    random stream is put back afterwards. (torch.manual_seed would seed every device too: 100x
    slower.)"""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        return function(*args)
    finally:
        generator.set_state(state)


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
    """Decode a list of files; (index, numpy array or the BadSample message, timed out) for each.
    Arrays, not tensors: torch would pass tensors between processes as shared-memory file handles."""
    paths, start, mode, image_size, limits = args
    results = []
    for offset, path in enumerate(paths):
        try:
            results.append((start + offset, decode_image(path, mode, image_size, limits).numpy(), False))
        except BadSample as err:
            results.append((start + offset, str(err), err.timed_out))
    return results


class Problems(dict):
    """{index: problem} of the files that could not be used; `timed_out` holds the indices whose
    read was given up on (the file may be fine on the next try, so it is never cached as bad)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.timed_out = set()


def decode_all(files, num_workers, keep_tensors=True):
    """Decode every file of an ImageFiles in `num_workers` processes with a progress bar.
    Returns (uint8 tensor N x C x H x W of the good files or None, good indices, {index: problem}).
    Each file's read has the time limit of `files.limits`: a file that never delivers its data is
    a problem naming it (listed in the problems' `timed_out`), and the pool goes on with the others."""
    chunks = [(files.paths[start:start + DECODE_CHUNK], start, files.mode, files.image_size, files.limits)
              for start in range(0, len(files), DECODE_CHUNK)]
    decoded, problems = {}, Problems()
    progress = tqdm(total=len(files), desc="decoding images", disable=None, leave=False)

    def collect(results):
        for index, value, timed_out in results:
            if isinstance(value, str):
                problems[index] = value
                if timed_out:
                    problems.timed_out.add(index)
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
