"""What works for MNIST works for the image folder and CSV loaders: --dry-run, limit, test.py on
the test split, tune.py, and DDP where each rank trains on its own shard. Their exact resume is
in test_resume_exact.py's matrix."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import PROJECT_ROOT, only_run, run_dirs, run_script
from data_loader import data_loaders
from data_loader.data_loaders import CsvDataLoader, ImageFolderDataLoader
from reliability_helpers import load, run_in_process, run_train_in_process
from scripts.make_digits_folder import write_digits_folder
from scripts.make_wine_csv import write_wine_csv
from utils import ConfigError

EPOCHS = 2
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits_folder(root, test_fraction=0.5, per_class=10)  # 100 training and 100 test images
    return root


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    root = tmp_path_factory.mktemp("wine")
    write_wine_csv(root)  # 133 training and 45 test rows
    return root


def example_config(tmp_path, example, data_args, updates=None):
    """configs/<example>.json as run "Tiny" under tmp_path: 2 epochs, a checkpoint each epoch."""
    config = json.loads((PROJECT_ROOT / "configs" / f"{example}.json").read_text())
    config["name"] = "Tiny"
    config["data_loader"]["args"].update(batch_size=16, validation_split=0.2, **data_args)
    config["trainer"].update(epochs=EPOCHS, save_dir=str(tmp_path / "saved"), save_period=1, verbosity=1)
    if "lr_scheduler" in config:
        config["lr_scheduler"]["args"]["T_max"] = EPOCHS  # the schedule does not follow -o trainer.epochs
    config.update(updates or {})
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def folder_config(tmp_path, digits, updates=None, **args):
    """The digits folder example: decoded into memory, RandomAffine run on whole batches."""
    return example_config(tmp_path, "digits_folder", {"train_dir": str(digits / "train"),
                                                      "test_dir": str(digits / "test"), **args}, updates)


def csv_config(tmp_path, wine, updates=None, **args):
    """The wine table example on the per-sample path (a torch DataLoader over the rows)."""
    return example_config(tmp_path, "wine_csv", {"train_csv": str(wine / "train.csv"),
                                                 "test_csv": str(wine / "test.csv"), "in_memory": False, **args},
                          updates)


CASES = {"folder_in_memory_augmented": lambda tmp, digits, wine: folder_config(tmp, digits),
         "csv_per_sample": lambda tmp, digits, wine: csv_config(tmp, wine)}


def loader_of(config_path):
    entry = json.loads(config_path.read_text())["data_loader"]
    return getattr(data_loaders, entry["type"])(**entry["args"])


# ---- data_device, dry run, limit, test.py ------------------------------------------------------
def test_in_memory_data_device_cpu_gives_the_same_augmented_batches(digits):
    args = {"train_dir": str(digits / "train"), "mode": "L", "batch_size": 16, "seed": 5,
            "transforms": {"train": [{"type": "RandomRotation", "args": {"degrees": 20}}], "eval": []}}
    default, explicit = ImageFolderDataLoader(**args), ImageFolderDataLoader(**args, data_device="cpu")
    assert explicit.in_memory and explicit.images.device.type == "cpu" and explicit.batches.augment is not None
    for loader in (default, explicit):
        loader.set_epoch(2)
    for (x_default, y_default), (x_explicit, y_explicit) in zip(default, explicit, strict=True):
        assert torch.equal(x_default, x_explicit) and torch.equal(y_default, y_explicit)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_in_memory_data_device_cuda_without_cuda_is_a_config_error(wine):
    with pytest.raises(ConfigError, match=r"data_loader\.args\.data_device is 'cuda', but CUDA is not available"):
        CsvDataLoader(train_csv=str(wine / "train.csv"), target="cultivar", data_device="cuda")


@pytest.mark.parametrize("case", CASES)
def test_dry_run_trains_nothing_and_writes_nothing(case, tmp_path, digits, wine, monkeypatch, capsys):
    config = CASES[case](tmp_path, digits, wine)
    _, result = run_in_process(monkeypatch, capsys, "train", "-c", config, "--dry-run", check=True)
    assert "data    (16, " in result.out and "output  (16, " in result.out
    assert not (tmp_path / "saved").exists()


def test_limit_is_a_fixed_subset_of_the_training_data(digits, wine):
    folder = {"train_dir": str(digits / "train"), "mode": "L", "batch_size": 8, "validation_split": 0.25, "seed": 5}
    table = {"train_csv": str(wine / "train.csv"), "target": "cultivar", "batch_size": 8,
             "validation_split": 0.25, "seed": 5}
    for loader_class, args in ((ImageFolderDataLoader, folder), (CsvDataLoader, table)):
        limited = loader_class(**args, limit=40)
        assert len(limited.train_indices) == 30 and len(limited.valid_indices) == 10
        assert sum(len(target) for _, target in limited) == 30
        again = loader_class(**args, limit=40)
        assert torch.equal(torch.cat([x for x, _ in again]), torch.cat([x for x, _ in limited]))


def test_test_py_scores_the_whole_test_split_of_a_limited_run(tmp_path, wine, monkeypatch, capsys):
    config = csv_config(tmp_path, wine)  # test.py on an image folder: test_bad_data.py
    assert run_train_in_process(monkeypatch, capsys, "-c", config, "-o", "data_loader.args.limit=60",
                                "-o", "trainer.epochs=1")[0] == 0
    checkpoint = only_run(tmp_path / "saved") / "checkpoint-epoch1.pth"
    run_in_process(monkeypatch, capsys, "test", "-r", checkpoint, check=True)
    result = json.loads(checkpoint.with_name("checkpoint-epoch1_test.json").read_text())
    assert result["samples"] == len(pd.read_csv(wine / "test.csv")) == 45 and result["epoch"] == 1


# ---- tune.py -----------------------------------------------------------------------------------
@pytest.mark.slow  # about 16 s: two trials
def test_tune_runs_a_two_trial_study_on_the_csv_loader(tmp_path, wine, monkeypatch, capsys):
    space = {"data_loader.args.validation_split": [0.2, 0.4]}  # each trial fits the table on other rows
    config = csv_config(tmp_path, wine, {"tune": {"n_trials": 2, "sampler": "grid", "pruner": "none",
                                                  "space": space}}, in_memory="auto")
    run_in_process(monkeypatch, capsys, "tune", "-c", config, "-o", "trainer.epochs=1", check=True)
    trials = pd.read_csv(tmp_path / "saved" / "tune" / "Tiny" / "trials.csv").sort_values("number")
    assert trials["state"].tolist() == ["COMPLETE", "COMPLETE"] and trials["value"].notna().all()
    assert sorted(trials["params_data_loader.args.validation_split"]) == [0.2, 0.4]
    runs = run_dirs(tmp_path / "saved")
    assert [run.name for run in runs] == ["trial-0", "trial-1"]
    fitted = []
    for run, split in zip(runs, trials["params_data_loader.args.validation_split"], strict=True):
        saved = load(run / "checkpoint-epoch1.pth")["config"]["data_loader"]["args"]
        fitted.append(saved["preprocessing"])
        expected = CsvDataLoader(train_csv=str(wine / "train.csv"), target="cultivar", validation_split=split,
                                 stratify=True, seed=1)  # the config's seed
        assert saved["validation_split"] == split
        assert saved["preprocessing"] == expected.fitted_args["preprocessing"]
    assert fitted[0] != fitted[1]
    best = json.loads((tmp_path / "saved" / "tune" / "Tiny" / "best_config.json").read_text())
    assert best["data_loader"]["type"] == "CsvDataLoader" and "tune" not in best


# ---- DDP ---------------------------------------------------------------------------------------
# A callback that each rank runs: after each epoch's training it writes which sample indices its
# sampler gave it and the class counts of the targets it actually trained on.
SHARD_PROBE = """
import json, os
from pathlib import Path
import numpy as np
from trainer.callback import Callback

class ShardProbe(Callback):
    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)

    def on_epoch_start(self, trainer, epoch):
        self.targets = []

    def on_step_end(self, trainer, batch_idx, loss, output, target):
        self.targets += target.tolist()

    def on_validation_end(self, trainer, epoch, log):
        loader = trainer.data_loader
        record = {"indices": [int(i) for i in loader.sampler], "train_indices": [int(i) for i in loader.train_indices],
                  "labels": [int(v) for v in loader.labels], "targets": self.targets}
        rank = os.environ["RANK"]
        (self.out_dir / f"rank{rank}-epoch{epoch}.json").write_text(json.dumps(record))
"""


# Both loaders' runs in one torchrun launch (the processes' start-up is most of the time):
# train.py's own parse_args and main, one config after the other, in one process group.
TWO_RUNS = """
import sys
import train
from utils import dist

with dist.distributed_session():
    for path in sys.argv[1:]:
        sys.argv = ["train.py", "-c", path]
        config = train.parse_args()
        try:
            train.main(config)
        finally:
            config.release_run_lock()
"""


@pytest.mark.slow  # about 50 s: one torchrun launch of two processes, two runs each
def test_ddp_ranks_train_on_disjoint_shards_and_save_a_checkpoint(tmp_path, digits, wine):
    (tmp_path / "shard_probe.py").write_text(SHARD_PROBE)
    (tmp_path / "two_runs.py").write_text(TWO_RUNS)
    configs = []
    for case in CASES:
        config = CASES[case](tmp_path / case, digits, wine)
        updated = json.loads(config.read_text())
        (tmp_path / case / "probe").mkdir()
        updated["callbacks"] = [{"type": "ShardProbe", "module": "shard_probe",
                                 "args": {"out_dir": str(tmp_path / case / "probe")}}]
        updated["data_loader"]["args"].update(limit=100, validation_split=20, batch_size=8)  # 40 samples per rank
        config.write_text(json.dumps(updated))
        configs.append(config)
    run_script(*TORCHRUN, tmp_path / "two_runs.py", *configs, env={"PYTHONPATH": f"{tmp_path}:{PROJECT_ROOT}"},
               check=True)

    for case in CASES:
        checkpoint = load(only_run(tmp_path / case / "saved") / f"checkpoint-epoch{EPOCHS}.pth")
        assert checkpoint["world_size"] == 2 and checkpoint["epoch"] == EPOCHS
        for epoch in range(1, EPOCHS + 1):
            ranks = [json.loads((tmp_path / case / "probe" / f"rank{r}-epoch{epoch}.json").read_text()) for r in (0, 1)]
            assert ranks[0]["train_indices"] == ranks[1]["train_indices"]  # one split, drawn alike on both
            shards = [set(rank["indices"]) for rank in ranks]
            assert len(shards[0]) == len(shards[1]) == 40 and not shards[0] & shards[1], case
            assert shards[0] | shards[1] == set(ranks[0]["train_indices"]), case
            for rank in ranks:  # the batches a rank trained on are its shard's samples
                labels = np.asarray(rank["labels"])[rank["indices"]]
                assert np.bincount(rank["targets"], minlength=10).tolist() == \
                    np.bincount(labels, minlength=10).tolist(), case


@pytest.mark.parametrize("monitor", ["max val_accuracy"])
def test_a_val_dir_is_validation_data_that_a_monitor_can_follow(tmp_path, digits, monkeypatch, capsys, monitor):
    config_path = folder_config(tmp_path, digits, val_dir=str(digits / "test"))
    config = json.loads(config_path.read_text())
    config["data_loader"]["args"].update(validation_split=0.0, stratify=False)
    config["trainer"].update(monitor=monitor, epochs=1)
    config_path.write_text(json.dumps(config))
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config_path)
    assert code == 0, captured.err
    run = only_run(tmp_path / "saved")
    assert (run / "model_best.pth").is_file()
    assert "val_accuracy" in pd.read_csv(tmp_path / "saved" / "log" / "Tiny" / run.name / "metrics.csv")
