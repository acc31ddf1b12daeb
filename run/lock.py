"""One training process per run folder. The process holds an OS file lock (flock) on
`train.lock` in its run folder for as long as it lives; the kernel drops the lock when the
process ends for any reason (SIGKILL and the OOM killer included), so there is never a stale
lock to clean up. The file records who holds it: PID, host and start time.

flock works between processes of one machine and on local file systems. Network file systems
may not honour it (NFS before v4, some FUSE mounts): see docs/reliability.md."""
import fcntl
import json
import os
import socket
from datetime import datetime
from pathlib import Path

from utils.errors import ConfigError
from utils.write_faults import write_site

LOCK_NAME = "train.lock"


class RunLock:
    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd = None

    def acquire(self):
        """Take the lock or raise ConfigError naming the process that holds it."""
        with write_site(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(busy_message(self.path, holder)) from None
        except OSError as err:  # e.g. ENOLCK: this file system has no locks
            os.close(fd)
            raise ConfigError(f"cannot lock '{self.path}': {err.strerror}. This file system does not support "
                              "file locks; put trainer.save_dir on a local disk.") from None
        self._fd = fd
        with write_site(self.path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder_record()) + "\n").encode(), 0)
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    @property
    def held(self):
        return self._fd is not None

    def __del__(self):
        self.release()


def holder_record():
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds")}


def _read_holder(fd):
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def busy_message(path, holder):
    who = (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
           f"{holder.get('started', '?')}") if holder else "another process (it has not written its details yet)"
    return (f"this run is already being trained by {who}: it holds the lock '{path}'. Two processes "
            "training one run would overwrite each other's checkpoints. Wait for it to finish or stop it "
            "(kill PID); to branch off a separate run from the same checkpoint instead, add --new-run.")
