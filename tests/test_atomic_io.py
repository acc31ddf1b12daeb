"""A writer killed with SIGKILL in the middle of a save leaves the previous file whole: the
target is always one complete version, never a mix or a truncated file."""
import os
import random
import signal
import time

import pytest
from reliability_helpers import ScriptProcess

from utils import write_json

CHUNK, CHUNKS = 64 * 1024, 40  # one version: 40 chunks written 10 ms apart, about 0.4 s
WRITER = f"""
import sys, time
from utils.io import atomic_open
version = 0
while True:
    version += 1
    print(f"start {{version}}", flush=True)
    with atomic_open(sys.argv[1], "wb") as handle:
        for _ in range({CHUNKS}):
            handle.write(bytes([version]) * {CHUNK})
            handle.flush()
            time.sleep(0.01)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_during_atomic_write_leaves_the_old_file_whole(tmp_path, seed):
    target = tmp_path / "checkpoint.pth"
    writer = ScriptProcess("-c", WRITER, target)
    writer.wait_for(r"^start 3$")  # versions 1 and 2 are complete, 3 is being written
    time.sleep(random.Random(seed).uniform(0.0, 0.15))
    writer.process.send_signal(signal.SIGKILL)
    assert writer.finish() == -signal.SIGKILL
    content = target.read_bytes()
    assert len(content) == CHUNK * CHUNKS
    assert set(content) in ({2}, {3}), "the target must be exactly one complete version"
    assert list(tmp_path.glob(".checkpoint.pth.*.tmp")), "the kill must have landed inside a save"


def test_atomic_write_gives_the_file_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_json({"a": 1}, tmp_path / "config.json")
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
