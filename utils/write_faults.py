"""A full disk, an exceeded quota, a read-only file system or a refused permission while a run
writes its files: one clear message (which file, what the error means, which checkpoint to
resume from) instead of a traceback from deep inside torch, pandas or TensorBoard."""
import errno
from contextlib import contextmanager

from .errors import ConfigError

RESOURCE_ERRORS = {  # errno: (what it means, what fixes it)
    errno.ENOSPC: ("the disk is full (no space left on device)", "Free space on that disk"),
    errno.EDQUOT: ("the disk quota of this user is exceeded", "Free space within your quota"),
    errno.EROFS: ("the file system is read-only",
                  "Make it writable, or move the run's folders under saved/models and saved/log to a writable disk"),
    errno.EACCES: ("permission to write there is denied", "Give this user write permission on the folder"),
}


class WriteFailed(ConfigError):
    """Writing `path` failed for a reason outside the program (see RESOURCE_ERRORS)."""

    def __init__(self, path, os_error, last_checkpoint=None):
        self.path, self.os_error, self.last_checkpoint = path, os_error, last_checkpoint
        meaning, fix = RESOURCE_ERRORS[os_error.errno]
        if last_checkpoint is not None:
            resume = (f"Every file written before is intact; the last good checkpoint is '{last_checkpoint}'. "
                      f"{fix}, then resume with: python train.py -r {last_checkpoint}")
        else:
            resume = f"Every file written before is intact. {fix}."
        super().__init__(f"could not write '{path}': {meaning} ({errno.errorcode[os_error.errno]}). "
                         f"Training stopped. {resume}")

    def with_checkpoint(self, last_checkpoint):
        return WriteFailed(self.path, self.os_error, last_checkpoint)


def resource_error(err):
    """`err` if it is an OSError that a full disk, a quota or permissions explain, else None.
    torch.save turns a failed write into a RuntimeError; its cause is kept in __context__."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in RESOURCE_ERRORS:
            return err
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def write_site(path):
    """Turn a resource error while writing `path` into WriteFailed; other errors pass."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as err:
        os_error = resource_error(err)
        if os_error is None:
            raise
        raise WriteFailed(path, os_error) from err
