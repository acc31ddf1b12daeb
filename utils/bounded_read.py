"""Reading a user's file with bounds: a regular file only (a named pipe or a device would block
or never end), at most `max_bytes`, and, with a time limit, given up on when no data arrives for
that long (a hung network mount). Every file kind has its own reader on top of this one
(images, CSV tables, configs, checkpoints) that names the file and the setting to change."""
import os
import queue
import stat
import threading

CHUNK_BYTES = 1 << 20


class ReadProblem(Exception):
    """Why a file could not be read within its limits, as a phrase without the path.
    `timed_out`: it delivered no data in time (which may pass, unlike the other problems)."""

    def __init__(self, message, timed_out=False):
        super().__init__(message)
        self.timed_out = timed_out


def read_bounded(path, max_bytes=None, timeout_s=None):
    """The bytes of the regular file `path`. Raises ReadProblem for a file that is not a regular
    file, holds more than `max_bytes`, cannot be opened, or (with `timeout_s`) delivers no data for
    `timeout_s` seconds; that read is then left to its thread and never waited for again."""
    if timeout_s is None:
        return _read(path, max_bytes, [0])
    request = _Request(path, max_bytes)
    reader = _Reader.of_this_process()
    reader.queue.put(request)
    seen = -1
    while not request.done.wait(timeout_s):
        if request.progress[0] == seen:  # no new bytes for a whole time limit
            _Reader.abandon(reader)
            raise ReadProblem(f"delivered no data for {timeout_s:g} s (a hung network file system or a device "
                              "that never answers?); the read was given up", timed_out=True)
        seen = request.progress[0]
    if request.error is not None:
        raise request.error
    return request.data


class _Request:
    def __init__(self, path, max_bytes):
        self.path, self.max_bytes = path, max_bytes
        self.progress, self.data, self.error = [0], None, None
        self.done = threading.Event()


class _Reader:
    """One daemon thread per process that reads files for read_bounded (a thread per read costs
    more than reading a small image). A thread stuck in a read is abandoned and replaced; as a
    daemon it never keeps the process from exiting."""
    _current = None
    _lock = threading.Lock()

    def __init__(self):
        self.pid, self.queue = os.getpid(), queue.SimpleQueue()
        threading.Thread(target=self._serve, name="bounded-read", daemon=True).start()

    @classmethod
    def of_this_process(cls):
        with cls._lock:
            if cls._current is None or cls._current.pid != os.getpid():  # none yet, or a forked copy
                cls._current = cls()
            return cls._current

    @classmethod
    def abandon(cls, reader):
        with cls._lock:
            if cls._current is reader:
                cls._current = None

    def _serve(self):
        while True:
            request = self.queue.get()
            try:
                request.data = _read(request.path, request.max_bytes, request.progress)
            except BaseException as err:  # handed to the waiting thread
                request.error = err
            request.done.set()


def _read(path, max_bytes, progress):
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
        if kind != stat.S_IFREG:
            raise ReadProblem(f"is {_kind_name(kind)}, not a regular file")
        # O_NONBLOCK: were the file swapped for a named pipe after the check, opening it must not block
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ReadProblem(f"cannot be opened ({err.strerror or type(err).__name__})") from None
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ReadProblem("is not a regular file")
        size = os.fstat(descriptor).st_size
        if max_bytes is not None and size > max_bytes:
            raise ReadProblem(f"is {size:,} bytes, over the limit of {max_bytes:,}")
        chunks, total = [], 0
        while True:
            try:
                chunk = handle.read(CHUNK_BYTES)
            except OSError as err:
                raise ReadProblem(f"cannot be read ({err.strerror or type(err).__name__})") from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            progress[0] = total
            if max_bytes is not None and total > max_bytes:  # the file grew while it was read
                raise ReadProblem(f"holds more than {max_bytes:,} bytes, the limit")


def _kind_name(kind):
    return {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}.get(kind, "not a regular file")
