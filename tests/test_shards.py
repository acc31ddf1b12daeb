"""Data larger than memory: `python -m data_loader.optimize` writes a config's data as LitData
shards, ShardDataLoader streams them. The shards hold every split with a manifest; a stopped
write resumes; a loader resumed inside an epoch gives the remaining batches exactly, also on
another number of ranks; bad shard folders stop before any run folder exists."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("litdata")

from conftest import PROJECT_ROOT  # noqa: E402
from data_loader import optimize, shard_writer  # noqa: E402
from data_loader.data_loaders import ImageFolderDataLoader, ShardDataLoader  # noqa: E402
from reliability_helpers import run_in_process, run_train_in_process  # noqa: E402
from scripts.make_digits_folder import write_digits_folder  # noqa: E402
from utils import ConfigError, dist  # noqa: E402

CHUNK = 16  # samples per chunk: several chunks even for these small splits
pytestmark = pytest.mark.xdist_group("shards")  # the module's shards are written once, in one worker


def source_config(tmp_path, digits, name="source.json", **args):
    """configs/digits_folder.json reading `digits`: 120 training images, 24 of them validation."""
    config = json.loads((PROJECT_ROOT / "configs" / "digits_folder.json").read_text())
    config["data_loader"]["args"].update(train_dir=str(digits / "train"), test_dir=str(digits / "test"),
                                         **{"validation_split": 0.2, **args})
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def write(config, out, *extra):
    optimize.write_shards(optimize.parse_args(["-c", str(config), "--out", str(out), "--workers", "1",
                                               "--chunk-samples", str(CHUNK), *extra]))
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits_folder(root, test_fraction=0.5, per_class=12)  # 120 training and 120 test images
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory, digits):
    folder = tmp_path_factory.mktemp("shards")
    write(source_config(folder, digits), folder / "out")
    return folder / "out"


@pytest.fixture(scope="module")
def table_shards(tmp_path_factory):
    """101 table rows whose first column is the row's id (no standardisation), 3 classes."""
    folder = tmp_path_factory.mktemp("table")
    frame = pd.DataFrame({"id": np.arange(101), "x": np.arange(101) % 7, "label": np.arange(101) % 3})
    frame.to_csv(folder / "rows.csv", index=False)
    config = json.loads((PROJECT_ROOT / "configs" / "wine_csv.json").read_text())
    config["data_loader"] = {"type": "CsvDataLoader", "args": {"train_csv": str(folder / "rows.csv"),
                                                               "target": "label", "normalize": None}}
    (folder / "config.json").write_text(json.dumps(config))
    write(folder / "config.json", folder / "out")
    return folder / "out"


def ids(batches):
    return [int(i) for data, _ in batches for i in data[:, 0].tolist()]


def checkpoint_round_trip(state, tmp_path):
    """The state as a checkpoint stores and loads it (weights_only: plain containers only)."""
    torch.save({"data_loader": state}, tmp_path / "state.pth")
    return torch.load(tmp_path / "state.pth", weights_only=True)["data_loader"]


# ---- writing -----------------------------------------------------------------------------------
def test_the_shards_hold_every_split_of_the_source_with_its_classes_and_normalisation(shards, digits):
    manifest = json.loads((shards / "manifest.json").read_text())
    assert {name: split["count"] for name, split in manifest["splits"].items()} == {"train": 96, "val": 24,
                                                                                     "test": 120}
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert sum(manifest["splits"]["test"]["class_counts"]) == 120 and manifest["mode"] == "L"
    assert manifest["format"] == 1 and len(manifest["source_fingerprint"]) == 64
    assert len(list((shards / "train").glob("chunk-*.bin"))) == 96 // CHUNK
    folder = ImageFolderDataLoader(train_dir=str(digits / "train"), mode="L", image_size=8, validation_split=0.2,
                                   stratify=True, seed=1, in_memory=True)
    # "auto" normalisation: the same numbers as the folder loader measures on the same training split
    assert manifest["normalize"]["mean"] == pytest.approx(folder.fitted_args["normalize"]["mean"], abs=1e-5)
    assert manifest["normalize"]["std"] == pytest.approx(folder.fitted_args["normalize"]["std"], abs=1e-5)
    loader = ShardDataLoader(str(shards), batch_size=96, normalize=None, seed=1)
    images, labels = next(iter(loader))
    assert sorted(labels.tolist()) == sorted(folder.labels[folder.train_indices].tolist())
    decoded = {bytes(image.numpy()) for image in folder.images[torch.as_tensor(folder.train_indices)]}
    assert {bytes((image * 255).round().to(torch.uint8).numpy()) for image in images} == decoded


def test_a_stopped_write_resumes_and_other_data_is_refused(tmp_path, digits, shards, monkeypatch):
    config, out = source_config(tmp_path, digits), tmp_path / "out"
    original, calls = shard_writer.write_part, []

    def stop_at_the_third_part(task):
        calls.append(task[1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(task)

    monkeypatch.setattr(shard_writer, "write_part", stop_at_the_third_part)
    with pytest.raises(KeyboardInterrupt):
        write(config, out)
    assert not (out / "manifest.json").exists() and (out / "progress.json").exists()
    first_part = sorted((out / "train").glob("chunk-0-*.bin"))
    written = [path.stat().st_mtime_ns for path in first_part]
    monkeypatch.setattr(shard_writer, "write_part", original)
    manifest = write(config, out)
    assert [path.stat().st_mtime_ns for path in first_part] == written  # kept, not written again
    reference = json.loads((shards / "manifest.json").read_text())
    assert manifest["shards_id"] == reference["shards_id"] and manifest["splits"] == reference["splits"]
    assert not list(out.rglob("part-*.json")) and not (out / "progress.json").exists()
    assert write(config, out)["written_at"] == manifest["written_at"]  # complete: nothing is written again

    other = source_config(tmp_path, digits, "other.json", validation_split=0.3)
    with pytest.raises(ConfigError, match="other data"):
        write(other, out)
    assert write(other, out, "--overwrite")["splits"]["val"]["count"] == 36
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not shards")
    with pytest.raises(ConfigError, match="not empty"):
        write(config, tmp_path / "foreign")
    assert (tmp_path / "foreign" / "notes.txt").exists()


# ---- reading and resuming -------------------------------------------------------------------------
AUGMENT = {"train": [{"type": "RandomAffine", "args": {"degrees": 10, "translate": [0.1, 0.1]}}], "eval": []}
PER_SAMPLE = {"train": [{"type": "RandomAffine", "args": {"degrees": 10}}, {"type": "ColorJitter",
                                                                          "args": {"brightness": 0.5}}], "eval": []}


@pytest.mark.parametrize("transforms,workers", [(AUGMENT, 0), (PER_SAMPLE, 2)], ids=["batched", "per_sample_workers"])
def test_a_loader_resumed_inside_an_epoch_gives_the_remaining_batches_exactly(shards, tmp_path, transforms, workers):
    def loader():
        return ShardDataLoader(str(shards), batch_size=8, seed=5, num_workers=workers, transforms=transforms)

    reference = loader()
    reference.set_epoch(2)
    expected = list(reference)
    assert len(expected) == len(reference) == 12
    stopped = loader()
    stopped.set_epoch(2)
    seen = []
    for batch in stopped:
        seen.append(batch)
        if len(seen) == 5:
            break
    state = checkpoint_round_trip(stopped.state_dict(), tmp_path)
    resumed = loader()
    resumed.load_state_dict(state)
    assert resumed.resume_batches(5) == 5
    resumed.set_epoch(2, 5)
    for (data, target), (expected_data, expected_target) in zip(seen + list(resumed), expected, strict=True):
        assert torch.equal(data, expected_data) and torch.equal(target, expected_target)
    resumed.set_epoch(3)
    reference.set_epoch(3)
    assert torch.equal(next(iter(resumed))[0], next(iter(reference))[0])  # the next epoch follows as well


def as_rank(monkeypatch, rank, world):
    """This process plays rank `rank` of `world` (LitData reads the environment, the loader utils.dist)."""
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("GLOBAL_RANK", str(rank))
    monkeypatch.setattr(dist, "world_size", lambda: world)
    monkeypatch.setattr(dist, "rank", lambda: rank)


def test_two_ranks_share_an_epoch_and_one_process_finishes_it_with_every_remaining_sample_once(
        table_shards, tmp_path, monkeypatch):
    epochs, states = {}, {}
    for rank in (0, 1):
        as_rank(monkeypatch, rank, 2)
        loader = ShardDataLoader(str(table_shards), batch_size=8, seed=3)
        loader.set_epoch(2)
        batches = list(loader)
        epochs[rank] = ids(batches)
        loader.set_epoch(2)
        for count, _ in enumerate(loader, start=1):
            if count == 3:
                break
        states[rank] = checkpoint_round_trip(loader.state_dict(), tmp_path)
    # disjoint, equal shares of full batches; together the epoch (at most a global batch is left out)
    assert len(epochs[0]) == len(epochs[1]) == 48 and not set(epochs[0]) & set(epochs[1])
    epoch = set(epochs[0]) | set(epochs[1])
    assert len(epoch) == 96 and epoch <= set(range(101))
    assert states[0]["litdata"]["dataset"]["sample_in_epoch"] == 48

    as_rank(monkeypatch, 0, 1)
    single = ShardDataLoader(str(table_shards), batch_size=8, seed=3)
    single.load_state_dict(states[0])  # a checkpoint holds rank 0's state
    resume_at = single.resume_batches(3)
    single.set_epoch(2, resume_at)
    rest = ids(single)
    seen = set(epochs[0][:24]) | set(epochs[1][:24])
    assert sorted(rest) == sorted(epoch - seen)  # every remaining sample exactly once
    assert resume_at + len(rest) // 8 == len(single) == 12  # the trainer's batch count ends with the data
    single.set_epoch(3)
    assert len(ids(single)) == 96  # the next epoch is whole again


def test_limit_and_the_test_split(shards):
    limited = ShardDataLoader(str(shards), batch_size=8, seed=1, limit=40)
    assert len(limited) == 5 and limited.sampler.count == 40
    test = ShardDataLoader(str(shards), batch_size=50, training=False, shuffle=False, validation_split=0.0)
    assert test.sampler.count == 120 and sum(len(target) for _, target in test) == 120
    assert sum(len(target) for _, target in ShardDataLoader(str(shards), batch_size=8).split_validation()) == 24


# ---- bad input ---------------------------------------------------------------------------------
def shard_config(tmp_path, input_dir, **args):
    config = json.loads((PROJECT_ROOT / "configs" / "digits_shards.json").read_text())
    config["data_loader"]["args"].update(input_dir=str(input_dir), batch_size=8, **args)
    config["trainer"].update(epochs=1, save_dir=str(tmp_path / "saved"), verbosity=1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def copy_of(shards, tmp_path):
    import shutil

    shutil.copytree(shards, tmp_path / "copy")
    return tmp_path / "copy"


def missing_folder(tmp_path, shards, monkeypatch):
    return tmp_path / "nowhere", tmp_path / "nowhere"


def half_written(tmp_path, shards, monkeypatch):
    folder = copy_of(shards, tmp_path)
    (folder / "manifest.json").unlink()
    return folder, folder


def truncated_chunk(tmp_path, shards, monkeypatch):
    folder = copy_of(shards, tmp_path)
    chunk = sorted((folder / "train").glob("chunk-*.bin"))[1]
    chunk.write_bytes(chunk.read_bytes()[:100])
    return folder, chunk


def other_classes(tmp_path, shards, monkeypatch):
    return shards, shards  # the config expects other classes than the manifest's


def unreachable_url(tmp_path, shards, monkeypatch):
    """An S3-compatible endpoint where nothing listens (a port just given up), one attempt."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "x", "AWS_MAX_ATTEMPTS": "1",
                   "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return "s3://no-bucket/shards", "s3://no-bucket/shards/manifest.json"


BAD_SHARDS = {"missing folder": missing_folder, "half-written": half_written, "corrupt shard": truncated_chunk,
              "manifest of other classes": other_classes, "unreachable URL": unreachable_url}


@pytest.mark.parametrize("case", BAD_SHARDS)
def test_bad_shards_exit_2_naming_the_path_and_the_fix_with_no_run_folder(case, tmp_path, shards, monkeypatch,
                                                                          capsys):
    input_dir, named = BAD_SHARDS[case](tmp_path, shards, monkeypatch)
    extra = {"class_names": ["cat", "dog"]} if case == "manifest of other classes" else {}
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", shard_config(tmp_path, input_dir, **extra))
    assert code == 2, captured
    assert "Traceback" not in captured.err + captured.out
    assert f"'{named}'" in captured.err, captured.err
    fix = "AWS_ENDPOINT_URL" if case == "unreachable URL" else "python -m data_loader.optimize"
    assert fix in captured.err, captured.err
    assert not (tmp_path / "saved").exists()


# ---- object storage ----------------------------------------------------------------------------
@pytest.fixture
def s3_server(monkeypatch):
    """An S3-compatible server (moto) on 127.0.0.1, started and stopped here; the AWS_* variables
    point boto3 and LitData at it."""
    import socket
    import subprocess
    import sys
    import time

    pytest.importorskip("moto.server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the S3 server did not start"
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(30)


def test_shards_in_object_storage_stream_the_same_batches_as_local_ones(s3_server, shards, tmp_path):
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="data")
    for path in shards.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "data", f"digits/{path.relative_to(shards)}")
    cache = tmp_path / "cache"

    def loaders(input_dir, **storage):
        loader = ShardDataLoader(input_dir, batch_size=8, seed=5, transforms=AUGMENT, **storage)
        return loader, loader.split_validation()

    local, local_valid = loaders(str(shards))
    remote, remote_valid = loaders("s3://data/digits", cache_dir=str(cache), max_cache_gb=1.0)
    remote.set_epoch(1)
    local.set_epoch(1)
    for (data, target), (expected, expected_target) in zip(remote, local, strict=True):
        assert torch.equal(data, expected) and torch.equal(target, expected_target)
    for (data, _), (expected, _) in zip(remote_valid, local_valid, strict=True):
        assert torch.equal(data, expected)
    assert list(cache.rglob("chunk-*.bin"))  # the chunks came through the cache


# ---- DDP end to end ----------------------------------------------------------------------------
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


def kill_with_children(pid):
    """SIGKILL `pid` and every process below it (torchrun starts its workers in sessions of their own)."""
    import signal
    from pathlib import Path

    children = {}
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    family, pending = [], [pid]
    while pending:
        family.append(pending.pop())
        pending += children.get(family[-1], [])
    for member in reversed(family):  # the workers first, then the launcher
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow  # about 60 s on 2 cores: three torchrun launches and one single-process run
def test_a_ddp_run_killed_inside_an_epoch_resumes_bit_identical_and_one_process_can_finish_the_epoch(
        shards, tmp_path):
    """Two ranks x batch 8 on 96 training digits: 6 steps per epoch, a step checkpoint every 2."""
    import subprocess
    import sys

    from conftest import only_run, run_script, script_env, wait_for_file
    from reliability_helpers import assert_same_state, load

    def config(name):
        path = shard_config(tmp_path / name, shards)
        settings = json.loads(path.read_text())
        settings["trainer"].update(epochs=2, save_every_n_steps=2, save_period=1)
        settings["lr_scheduler"]["args"]["T_max"] = 2
        path.write_text(json.dumps(settings))
        return path

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run_script(*TORCHRUN, "train.py", "-c", config("a"), check=True)
    reference = only_run(tmp_path / "a" / "saved", "Digits_Shards")
    killed = subprocess.Popen([sys.executable, *TORCHRUN, "train.py", "-c", str(config("b"))], cwd=PROJECT_ROOT,
                              env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the experiment folder appears before the run folder inside it: wait for the file itself
        step_checkpoint = "Digits_Shards/*/checkpoint-epoch1-step4.pth"
        run = wait_for_file(tmp_path / "b" / "saved" / "models", step_checkpoint, killed).parent
    finally:
        kill_with_children(killed.pid)  # both ranks and torchrun, at once
        killed.wait(60)
    assert not (run / "checkpoint-epoch2.pth").exists(), "the run ended before it was killed"
    run_script(*TORCHRUN, "train.py", "-r", run, check=True)
    expected, actual = load(reference / "checkpoint-epoch2.pth"), load(run / "checkpoint-epoch2.pth")
    # the partial training-loss sums of a step checkpoint go to rank 0 alone, so the epoch's
    # training averages may round differently; weights, optimizer and random states are exact
    for key in set(expected) - {"config", "history", "train_metrics"}:
        assert_same_state(expected[key], actual[key], key)
    for expected_row, actual_row in zip(expected["history"], actual["history"], strict=True):
        assert actual_row == pytest.approx(expected_row, rel=1e-6)

    # saved after the epoch's last step, before its validation: each rank's batch-norm statistics
    # are its own by then, the checkpoint holds rank 0's, so both ranks validate with rank 0's
    after_last_step = tmp_path / "after_last_step"
    run_script(*TORCHRUN, "train.py", "-r", reference / "checkpoint-epoch1-step6.pth", "--new-run", "-o",
               f"trainer.save_dir={after_last_step}", check=True)
    resumed = load(only_run(after_last_step, "Digits_Shards") / "checkpoint-epoch2.pth")
    assert [row["val_loss"] for row in resumed["history"]] == [row["val_loss"] for row in expected["history"]]

    # one process resumes the 2-process step checkpoint: the epoch's remaining 32 samples, once
    single = tmp_path / "single"
    run_script("train.py", "-r", reference / "checkpoint-epoch1-step4.pth", "--new-run", "-o",
               f"trainer.save_dir={single}", check=True)
    finished = load(only_run(single, "Digits_Shards") / "checkpoint-epoch1.pth")
    assert finished["world_size"] == 1 and finished["data_loader"]["batches_done"] == 12
    assert finished["train_metrics"]["loss"][1] == 96  # 64 samples before the stop + 32 after it


def test_a_shard_damaged_inside_stops_training_with_exit_2_naming_the_shards(tmp_path, shards, monkeypatch, capsys):
    """Same size, other bytes: found when the sample is read; the message names the split's folder."""
    folder = copy_of(shards, tmp_path)
    for chunk in (folder / "train").glob("chunk-*.bin"):
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2 - 300:len(data) // 2 + 300] = bytes(600)
        chunk.write_bytes(bytes(data))
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", shard_config(tmp_path, folder))
    assert code == 2, captured
    assert "Traceback" not in captured.err and f"'{folder / 'train'}'" in captured.err, captured.err


def test_a_run_records_what_test_py_needs_and_test_py_scores_the_test_split(tmp_path, shards, table_shards,
                                                                           monkeypatch, capsys):
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", shard_config(tmp_path, shards))
    assert code == 0, captured
    checkpoint = next((tmp_path / "saved" / "models" / "Digits_Shards").glob("*/checkpoint-epoch1.pth"))
    recorded = torch.load(checkpoint, weights_only=True)["config"]["data_loader"]["args"]
    assert recorded["class_names"] == [str(d) for d in range(10)] and recorded["image_size"] == [8, 8]
    assert recorded["normalize"] == json.loads((shards / "manifest.json").read_text())["normalize"]
    code, captured = run_in_process(monkeypatch, capsys, "test", "-r", checkpoint)
    assert code == 0, captured
    assert json.loads(checkpoint.with_name("checkpoint-epoch1_test.json").read_text())["samples"] == 120

    table = ShardDataLoader(str(table_shards), batch_size=8)
    again = ShardDataLoader(str(table_shards), batch_size=8, **table.fitted_args)  # as a resumed run builds it
    assert again.num_inputs == 2 and again.fitted_args == table.fitted_args
    with pytest.raises(ConfigError, match="preprocessing"):
        ShardDataLoader(str(table_shards), batch_size=8, preprocessing={**table.fitted_args["preprocessing"],
                                                                         "features": ["x"]})


def test_with_other_workers_the_resumed_epoch_ends_with_the_trainers_batch_count(table_shards, tmp_path):
    """One process without workers stops after 5 of its 12 batches; resumed with 2 workers, the
    rest comes in whole batches for both workers (48 of the 56 samples left) and ends at batch 12."""
    stopped = ShardDataLoader(str(table_shards), batch_size=8, seed=3)
    stopped.set_epoch(2)
    seen = []
    for data, _ in stopped:
        seen += data[:, 0].int().tolist()
        if len(seen) == 40:
            break
    resumed = ShardDataLoader(str(table_shards), batch_size=8, seed=3, num_workers=2)
    resumed.load_state_dict(checkpoint_round_trip(stopped.state_dict(), tmp_path))
    resume_at = resumed.resume_batches(5)
    resumed.set_epoch(2, resume_at)
    rest = ids(resumed)
    assert resume_at + len(rest) // 8 == len(resumed) == 12 and len(rest) == 48
    assert not set(rest) & set(seen) and len(set(rest)) == 48


def test_a_regression_table_trains_from_shards_and_test_py_reads_its_targets_in_the_original_units(
        tmp_path, monkeypatch, capsys):
    """The diabetes example (10 columns, one numeric target): the shards keep the standardised
    targets and their scaling; a run trains on them and test.py scores the test split."""
    from scripts.make_diabetes_csv import write_diabetes_csv

    write_diabetes_csv(tmp_path / "diabetes")
    source = json.loads((PROJECT_ROOT / "configs" / "diabetes_csv.json").read_text())
    source["data_loader"]["args"].update(train_csv=str(tmp_path / "diabetes" / "train.csv"),
                                         test_csv=str(tmp_path / "diabetes" / "test.csv"))
    (tmp_path / "source.json").write_text(json.dumps(source))
    manifest = write(tmp_path / "source.json", tmp_path / "shards")
    assert manifest["task"] == "regression" and manifest["class_names"] == ["progression"]
    assert set(manifest["target_scaling"]) == {"mean", "scale"}
    loader = ShardDataLoader(str(tmp_path / "shards"), batch_size=283, shuffle=False)  # the training split
    _, targets = next(iter(loader))
    assert targets.dtype == torch.float32 and targets.shape[1] == 1 and abs(float(targets.mean())) < 0.2

    config = {**source, "data_loader": {"type": "ShardDataLoader", "args": {"input_dir": str(tmp_path / "shards"),
                                                                            "batch_size": 32}}}
    config["trainer"].update(epochs=1, save_dir=str(tmp_path / "saved"), verbosity=1)
    (tmp_path / "run.json").write_text(json.dumps(config))
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", tmp_path / "run.json")
    assert code == 0, captured
    checkpoint = next((tmp_path / "saved").rglob("checkpoint-epoch1.pth"))
    assert torch.load(checkpoint, weights_only=True)["target_scaling"] == manifest["target_scaling"]
    code, captured = run_in_process(monkeypatch, capsys, "test", "-r", checkpoint)
    assert code == 0, captured
    assert json.loads(checkpoint.with_name("checkpoint-epoch1_test.json").read_text())["samples"] == \
        manifest["splits"]["test"]["count"]
