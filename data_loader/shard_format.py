"""Sharded datasets, on a local disk or in object storage: LitData chunk files in one folder per
split and a manifest that says what they hold.

    <folder>/manifest.json          format version, classes, counts per split, source fingerprint,
                                    how images decode (mode, size) and their measured mean and std
    <folder>/train/index.json       LitData's index of the split's chunk files
    <folder>/train/chunk-0-0.bin    samples, in chunks of at most a few thousand samples / 64 MB
    <folder>/val/...  <folder>/test/...

`python -m data_loader.optimize` writes them from a config's image folder, CSV or torchvision
data; ShardDataLoader reads them. A sample is a tuple (data, target, name), the target a numpy
array as training uses it (a class index, 0/1, a row of labels or of standardised regression
targets: data_loader/task.py): for images the
encoded image (the file's own PNG or JPEG bytes; PNG for images that were decoded arrays) and
the source file's path as UTF-8 bytes (b"" when there is none); for tables the float32 model
inputs of the row and b"".
"""
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from utils import ConfigError
from utils.errors import first_line

from .samples import decode_image_bytes

SHARD_FORMAT = 1  # raise when the layout of a sample or of the manifest changes
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
REMOTE_SCHEMES = ("s3://", "gs://")
OPTIMIZE_COMMAND = "python -m data_loader.optimize -c <config of the source data> --out {out}"


def is_remote(location):
    return str(location).startswith(REMOTE_SCHEMES)


def split_location(input_dir, split):
    return f"{str(input_dir).rstrip('/')}/{split}" if is_remote(input_dir) else str(Path(input_dir) / split)


def require_litdata():
    """The litdata package, or a ConfigError saying how to install it without replacing torch."""
    try:
        import litdata
    except ImportError:
        raise ConfigError(f"ShardDataLoader and data_loader.optimize need the litdata package, which is not "
                          f"installed. Install it together with the torch you have, so that pip keeps it: "
                          f"{litdata_install_command()}") from None
    return litdata


def litdata_install_command():
    import torch
    import torchvision

    def public(version):  # 2.14.1+cu130 -> 2.14.1, which the installed local build satisfies
        return version.split("+")[0]

    return f'pip install litdata "torch=={public(torch.__version__)}" "torchvision=={public(torchvision.__version__)}"'


def encode_png(image):
    """PNG bytes of a uint8 image C x H x W (1 or 3 channels)."""
    from PIL import Image

    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ConfigError(f"an image of shape {tuple(array.shape)} cannot be written to shards: only 1-channel "
                          "(grey) and 3-channel (RGB) images are supported.")
    pil = Image.fromarray(array[0], mode="L") if array.shape[0] == 1 else Image.fromarray(array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=1)  # fast to write; decoding speed is the same
    return buffer.getvalue()


def decode_sample_image(data, mode, image_size, name):
    """uint8 tensor C x H x W of a sample's encoded image bytes."""
    return decode_image_bytes(data, mode, tuple(image_size) if image_size else None, name)


def read_manifest(input_dir, storage_options=None):
    """The manifest of the shards at `input_dir` (a folder or an s3:// / gs:// URL), checked:
    a ConfigError names the folder and the fix when they are missing, half-written or of
    another format version."""
    key = "data_loader.args.input_dir"
    fix = OPTIMIZE_COMMAND.format(out=input_dir)
    if is_remote(input_dir):
        text = _remote_text(f"{str(input_dir).rstrip('/')}/{MANIFEST}", key, storage_options)
    else:
        folder = Path(input_dir)
        if not folder.is_dir():
            raise ConfigError(f"{key} '{folder}' does not exist. Write the shards there first: {fix}, or point "
                              "input_dir at the folder that holds them.")
        path = folder / MANIFEST
        if not path.is_file():
            raise ConfigError(f"{key} '{folder}' has no {MANIFEST}: the shards there were not (completely) written. "
                              f"Finish writing them, which resumes where it stopped: {fix}")
        text = path.read_text()
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"'{input_dir}/{MANIFEST}' is not valid JSON ({err}). Write the shards again: {fix} "
                          "--overwrite") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SHARD_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ConfigError(f"'{input_dir}/{MANIFEST}' is of shard format {found!r}; this version reads format "
                          f"{SHARD_FORMAT}. Write the shards again with this version: {fix} --overwrite")
    return manifest


def _remote_text(url, key, storage_options):
    """The text of a small object in object storage. S3 goes through boto3 with its default
    retries (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE), so an unreachable endpoint fails within
    seconds (LitData's own client retries a thousand times); gs:// through LitData's client."""
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / "object"
        try:
            if url.startswith("s3://"):
                import boto3

                bucket, _, name = url[len("s3://"):].partition("/")
                boto3.client("s3", **(storage_options or {})).download_file(bucket, name, str(local))
            else:
                from litdata.streaming.fs_provider import _get_fs_provider

                _get_fs_provider(url, storage_options or {}).download_file(url, str(local))
            return local.read_text()
        except Exception as err:  # boto3/google raise many types: all mean the object cannot be had
            raise ConfigError(f"{key}: '{url}' cannot be read ({type(err).__name__}: {first_line(err, 200)}). Check "
                              "the URL, the network and the credentials in the environment (AWS_ACCESS_KEY_ID, "
                              "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for S3-compatible servers; "
                              "GOOGLE_APPLICATION_CREDENTIALS for gs://), and that the shards were copied there "
                              "with their manifest.json.") from None


def allow_plain_http_endpoint():
    """LitData downloads chunks with obstore, which refuses a plain-HTTP endpoint unless its
    client options allow it, and LitData sets those options itself. An S3-compatible server named
    by AWS_ENDPOINT_URL=http://... (MinIO inside a cluster, a local test server) needs it."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if endpoint.startswith("http://"):
        from litdata.streaming import downloader

        options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
        if isinstance(options, dict):
            options["allow_http"] = True


def check_local_chunks(split_dir, split):
    """Every chunk file that a local split's index names exists and has the size the index
    records; a ConfigError names the first that does not (a copy cut short, a damaged disk)."""
    index_path = Path(split_dir) / "index.json"
    fix = OPTIMIZE_COMMAND.format(out=Path(split_dir).parent) + " --overwrite"
    try:
        chunks = json.loads(index_path.read_text())["chunks"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"the {split} shards in '{split_dir}' have no readable index.json ({first_line(err, 200)}). "
                          f"Write the shards again: {fix}") from None
    for chunk in chunks:
        path = Path(split_dir) / chunk["filename"]
        size = path.stat().st_size if path.is_file() else None
        if size != chunk["chunk_bytes"]:
            found = "is missing" if size is None else f"has {size} bytes, the index records {chunk['chunk_bytes']}"
            raise ConfigError(f"shard file '{path}' {found}: the shards are damaged or were copied only in part. "
                              f"Copy them again from where they were written, or write them again: {fix}")
