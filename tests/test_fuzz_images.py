"""The image reader, fuzzed: a class folder holds good digits and one generated file (a real
PNG/JPEG/GIF/BMP/TIFF of random size, cut short or with bits flipped, under a wrong extension,
random bytes, or a decompression bomb). Building and iterating ImageFolderDataLoader either works
or fails with a ConfigError that names that file ("error"), or leaves out that file and only that
file ("skip"); nothing is ever decoded above max_image_pixels."""
import io
import itertools
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from data_loader.data_loaders import ImageFolderDataLoader
from data_loader.image_folder import IMAGE_EXTENSIONS
from fuzz_helpers import FolderSnapshot, fuzz_settings, mutated
from utils import ConfigError

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}
SMALL_LIMIT = 2500  # pixels: a 60x60 image is a bomb for this limit
_folders = itertools.count()


def png_header_bomb(width, height):
    """A valid PNG header claiming width x height pixels, followed by almost no data: the 27 KB
    decompression bombs of real attacks look the same up to where a reader starts decoding."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@st.composite
def image_bytes(draw):
    """(file bytes, whether its header says it is over SMALL_LIMIT pixels) of a real image."""
    image_format = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(["L", "RGB"] if image_format != "BMP" else ["L", "RGB", "1"]))
    width, height = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=image_format)
    return buffer.getvalue(), width * height > SMALL_LIMIT


@st.composite
def hostile_image_file(draw):
    """(file name, bytes, is a bomb for SMALL_LIMIT)."""
    kind = draw(st.sampled_from(["intact", "damaged", "damaged", "header bomb", "random bytes", "empty"]))
    extension = draw(st.sampled_from(IMAGE_EXTENSIONS))
    if kind == "header bomb":
        side = draw(st.integers(51, 60000))
        return f"bomb{extension}", png_header_bomb(side, draw(st.integers(51, 60000))), True
    if kind == "random bytes":
        return f"noise{extension}", draw(st.binary(max_size=300)), False
    if kind == "empty":
        return f"empty{extension}", b"", False
    data, too_large = draw(image_bytes())
    if kind == "damaged":
        data = draw(mutated(data))
    return f"fuzzed{extension}", data, too_large and kind == "intact"


@pytest.fixture(scope="module")
def good_digits():
    """Four 8x8 grey digits (two per class) as PNG bytes."""
    images = []
    for index in range(4):
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8), 60 * index, dtype=np.uint8)).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def class_folders(root, good_digits, name, data):
    """root/a and root/b with two good digits each; the fuzzed file goes into root/a."""
    for index, image in enumerate(good_digits):
        folder = root / "ab"[index % 2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"good{index}.png").write_bytes(image)
    (root / "a" / name).write_bytes(data)
    return root / "a" / name


def build_and_iterate(root, policy, in_memory):
    loader = ImageFolderDataLoader(train_dir=str(root), mode="L", image_size=8, batch_size=8, normalize=None,
                                   in_memory=in_memory, on_bad_sample=policy, max_image_pixels=SMALL_LIMIT)
    batches = sum(1 for _ in loader)
    return loader, batches


@fuzz_settings(40)
@given(case=hostile_image_file(), policy=st.sampled_from(["error", "skip"]), in_memory=st.booleans())
def test_a_hostile_image_is_read_or_named(tmp_path, good_digits, case, policy, in_memory):
    name, data, is_bomb = case
    root = tmp_path / f"case{next(_folders)}"
    fuzzed = class_folders(root, good_digits, name, data)
    snapshot = FolderSnapshot(root)
    try:
        loader, batches = build_and_iterate(root, policy, in_memory)
    except ConfigError as err:
        assert policy == "error" and str(fuzzed) in str(err), str(err)
    else:
        skipped = [path for path, _ in loader.skipped_samples]
        assert skipped in ([], [str(fuzzed)] if policy == "skip" else []) and batches == 1
        assert not is_bomb or skipped == [str(fuzzed)]  # a bomb is never read as an image
    assert snapshot.changes() == []
