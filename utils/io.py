"""File helpers. Every write goes to a temporary file in the target folder, is flushed and
fsynced, then renamed into place, so a crash at any instant leaves the old file or the new one."""
import functools
import json
import os
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch


def read_json(fname):
    with Path(fname).open("rt") as handle:
        return json.load(handle, object_hook=OrderedDict)


@contextmanager
def atomic_open(fname, mode="wb"):
    """Yield a file object; on success the file replaces `fname` atomically."""
    fname = Path(fname)
    fd, tmp_name = tempfile.mkstemp(dir=fname.parent, prefix=f".{fname.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, fname)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    _fsync_dir(fname.parent)


@functools.cache
def _umask():
    mask = os.umask(0)  # reading the umask means setting it; restore it at once
    os.umask(mask)
    return mask


def _fsync_dir(folder):
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # some filesystems refuse fsync on folders; the rename is still atomic
        pass
    finally:
        os.close(dir_fd)


def write_json(content, fname):
    with atomic_open(fname, "wt") as handle:
        json.dump(content, handle, indent=4, sort_keys=False)
        handle.write("\n")


def atomic_torch_save(obj, fname):
    with atomic_open(fname, "wb") as handle:
        writer = _WriteErrorKeeper(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError as err:
            if writer.error is None:
                raise
            # torch reports a failed write as "[enforce fail at inline_container.cc] unexpected
            # pos"; the OSError (full disk, quota...) is the real cause
            raise writer.error from err


def atomic_link_or_save(obj, fname, same_as=None):
    """Replace `fname` atomically with `obj`. When `same_as` is a file that already holds `obj`,
    a hard link to it takes the place of a second write; where links are refused, `obj` is written."""
    fname = Path(fname)
    if same_as is not None:
        link = fname.parent / f".{fname.name}.{os.getpid()}.link.tmp"  # removed with other temp files
        try:
            link.unlink(missing_ok=True)
            os.link(same_as, link)
            os.replace(link, fname)
            _fsync_dir(fname.parent)
            return
        except OSError:
            link.unlink(missing_ok=True)
    atomic_torch_save(obj, fname)


class _WriteErrorKeeper:
    """A binary file that remembers the OSError its write raised."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data):
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self):
        self.handle.flush()


def atomic_write_csv(frame, fname):
    """Write a pandas DataFrame atomically."""
    with atomic_open(fname, "wt") as handle:
        frame.to_csv(handle, index=False)
