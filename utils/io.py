"""File helpers. Every write goes to a temporary file in the target folder, is flushed and
fsynced, then renamed into place, so a crash at any instant leaves the old file or the new one."""
import csv
import functools
import json
import math
import numbers
import os
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path


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
    import torch  # here, not at the top: the command-line programs read utils before torch

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


def atomic_write_rows(rows, fname):
    """Write a list of dicts (one per row) atomically as CSV, cell for cell as pandas writes
    `DataFrame(rows)` (columns in order of first appearance, a missing value as an empty cell,
    the whole numbers of a column that also holds fractions or gaps as floats), without
    importing pandas."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    floats = {column: _float_format([row.get(column) for row in rows]) for column in columns}
    with atomic_open(fname, "wt") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(_cell(row.get(column), floats[column]) for column in columns)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _float_format(values):
    """How pandas writes the numbers of a column of `values`: None when it keeps them as they are
    (not only numbers, or whole numbers without gaps), `str` for float32 numbers without gaps,
    else `repr` of float64 (numbers with fractions or gaps)."""
    present = [value for value in values if value is not None]
    if not present or not all(_is_number(v) for v in present):
        return None
    if len(present) == len(values) and all(type(v).__name__ == "float32" for v in present):
        return str
    if len(present) < len(values) or any(not isinstance(v, numbers.Integral) for v in present):
        return lambda value: repr(float(value))
    return None


def _cell(value, float_format):
    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return ""
    return value if float_format is None else float_format(value)
