"""What the fuzz tests share: hypothesis settings (seeded in the suite, a long unseeded run on
request), byte mutations of valid files, and a snapshot of a folder to show nothing else changed.

    python -m pytest -q tests/test_fuzz_*.py                                  # the suite: seeded, small
    FUZZ_EXAMPLES=2000 python -m pytest -q -n 2 tests/test_fuzz_*.py --hypothesis-show-statistics
                                                                              # long, unseeded
"""
import hashlib
import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

LONG_RUN_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples):
    """`examples` cases, the same ones on every run (derandomized, no example database); with
    FUZZ_EXAMPLES=N set, N new random cases instead."""
    long_run = LONG_RUN_EXAMPLES > 0
    return settings(max_examples=LONG_RUN_EXAMPLES if long_run else examples, derandomize=not long_run,
                    database=None, deadline=None, print_blob=long_run,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@st.composite
def mutated(draw, data):
    """`data` (bytes) damaged as files are: cut short, bits flipped, bytes inserted, dropped or
    repeated, one or more times."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "repeat"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


class FolderSnapshot:
    """Every file under `root` with its size and content hash: `changes()` lists what differs now."""

    def __init__(self, root, ignore=()):
        self.root, self.ignore = Path(root), tuple(Path(p) for p in ignore)
        self.before = self._state()

    def _state(self):
        state = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_symlink() or not path.is_file() or any(path.is_relative_to(p) for p in self.ignore):
                continue
            state[str(path.relative_to(self.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return state

    def changes(self):
        after = self._state()
        return sorted(name for name in set(self.before) | set(after) if self.before.get(name) != after.get(name))
