"""Helpers for the reliability tests: training subprocesses that can be signalled or killed
while their output is read, and an exact comparison of saved training states."""
import importlib
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from conftest import PROJECT_ROOT, script_env

# One thread per process: the test machine's two cores are shared by several runs, and torch's
# default thread pool then spends more time waiting than computing.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


class ScriptProcess:
    """`python <args>` started in the project; a thread collects its merged stdout/stderr lines."""

    def __init__(self, *args):
        self.process = subprocess.Popen([sys.executable, *map(str, args)], cwd=PROJECT_ROOT, env=script_env(ONE_THREAD),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, pattern, timeout=120):
        """Block until an output line matches `pattern`; fail if the process ends first."""
        regex, deadline = re.compile(pattern), time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(regex.search(line) for line in list(self.lines)):
                return
            if self.process.poll() is not None:
                self._reader.join(5)
                if any(regex.search(line) for line in self.lines):
                    return
                raise AssertionError(f"process ended ({self.process.returncode}) before '{pattern}':\n{self.output}")
            time.sleep(0.01)
        raise AssertionError(f"no line matching '{pattern}' within {timeout} s:\n{self.output}")

    def wait_for_file(self, root, pattern, timeout=300):
        """Block until a file matching `pattern` exists under `root`; return it. Fail if the
        process ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = sorted(Path(root).glob(pattern))
            if found:
                return found[0]
            if self.process.poll() is not None:
                raise AssertionError(f"process ended ({self.process.returncode}) before {pattern}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {pattern} under {root} within {timeout} s:\n{self.output}")

    def finish(self, timeout=300):
        """Wait for the exit; return the exit code."""
        self.process.wait(timeout)
        self._reader.join(5)
        return self.process.returncode

    @property
    def output(self):
        return "".join(self.lines)


def assert_same_state(left, right, where="checkpoint"):
    """Exact equality of nested checkpoint contents: tensors bit for bit, numbers with ==."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor) and left.dtype == right.dtype and torch.equal(left, right), where
    elif isinstance(left, dict):
        assert isinstance(right, dict) and list(left) == list(right), f"{where}: keys {list(left)} vs {list(right)}"
        for key in left:
            assert_same_state(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, (list, tuple)):
        assert isinstance(right, (list, tuple)) and len(left) == len(right), f"{where}: lengths differ"
        for index, (a, b) in enumerate(zip(left, right)):
            assert_same_state(a, b, f"{where}[{index}]")
    else:
        assert left == right, f"{where}: {left!r} != {right!r}"


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training(expected_path, actual_path):
    """Weights, optimizer, scheduler, history, best value, early-stop counter and random states
    of two checkpoints are identical (their configs may differ only in what the caller set)."""
    expected, actual = load(expected_path), load(actual_path)
    for key in expected:
        if key != "config":
            assert_same_state(expected[key], actual[key], key)


def run_train_in_process(monkeypatch, capsys, *argv):
    """train.py's entry point in this process (no import cost) with one torch thread; returns
    (exit code, captured output). A run that ends normally returns exit code 0."""
    return run_in_process(monkeypatch, capsys, "train", *argv)


def run_in_process(monkeypatch, capsys, script, *argv, check=False):
    """`python <script>.py <argv>` (train, test or tune) through its `run()` in this process."""
    module = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, argv)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module.run()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        torch.set_num_threads(threads)
        remove_root_handlers()  # they write to this test's captured streams, closed after it
    captured = capsys.readouterr()
    if check and code != 0:
        raise AssertionError(f"{script}.py {argv} exited {code}\n{captured.out}\n{captured.err}")
    return code, captured


def remove_root_handlers():
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


class NanLossAt:
    """nll_loss that turns NaN at the `step`-th training batch (counted from 1; validation
    batches, which carry no gradient, are not counted)."""

    def __init__(self, step):
        self.step, self.calls = step, 0

    def __call__(self, output, target):
        loss = torch.nn.functional.nll_loss(output, target)
        if output.requires_grad:
            self.calls += 1
            if self.calls == self.step:
                return loss * float("nan")
        return loss
