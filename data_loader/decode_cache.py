"""Decoded images in memory, optionally kept on disk: a file in `cache_dir` named by a hash of
the file list, each file's size and modification time, and the decode settings (mode, size).
A second run with the same files and settings loads it instead of decoding; a changed, added
or removed file makes a new key, so a stale cache is never used."""
import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from utils import dist
from utils.io import atomic_torch_save

from .samples import decode_all

logger = logging.getLogger("data_loader")
CACHE_VERSION = 1


def decoded_images(files, cache_dir, num_workers):
    """(uint8 tensor N x C x H x W of the good files or None, {index: problem}) for an ImageFiles."""
    if cache_dir is None:
        images, _, problems = decode_all(files, num_workers)
        return images, problems
    path = Path(cache_dir) / f"decoded-{cache_key(files)}.pt"
    with dist.local_main_process_first():  # DDP: one rank per machine decodes, the others load
        if path.exists():
            cached = torch.load(path, weights_only=True)
            logger.info(f"Decoded images loaded from the cache {path}.")
            return cached["images"], {int(k): v for k, v in cached["problems"].items()}
        images, _, problems = decode_all(files, num_workers)
        if problems.timed_out:  # those files may read fine next time: keep no copy that calls them bad
            logger.info(f"Decoded images not cached: {len(problems.timed_out)} file(s) gave no data in time.")
        elif images is not None and dist.local_rank() == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({"images": images, "problems": {str(k): v for k, v in problems.items()}}, path)
            logger.info(f"Decoded images cached in {path}.")
    return images, problems


def cache_key(files):
    """A hash of every input to decoding: paths, sizes, mtimes, mode, image size and pixel limit."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, files.mode, files.image_size,
                                        files.limits.max_image_pixels]).encode())
    for name in files.paths:
        try:
            stat = os.stat(name)
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\0missing\n".encode())
    return digest.hexdigest()[:24]
