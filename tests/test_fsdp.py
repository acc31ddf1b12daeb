"""trainer.strategy "fsdp": settings checked before the run, sharded .dcp checkpoint folders
(complete or ignored, never half), a one-process sharded run in this process, and, under
torchrun on the CPU (gloo), the proofs: parity with one process, 1/N of the bytes per process,
a save killed halfway and resumed bit for bit, and resumes on 1 and 3 processes."""
import json
import logging
import os
import pickle
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch
import torch.distributed as torch_dist

from conftest import PROJECT_ROOT, only_run, run_dirs, script_env, tiny_config
from fsdp_probe import train_with_probe
from model.model import MnistModel
from reliability_helpers import assert_same_state, run_in_process, run_train_in_process
from run.checkpoints import latest_valid_checkpoint, rolling_checkpoints
from run.folder import RunFolder
from trainer.fsdp import check_fsdp_settings, shard_model
from utils.checkpoint import Key, load_checkpoint, whole_checkpoint
from utils.convert_checkpoint import convert
from utils.dcp import METADATA, ShardedWeights, write_checkpoint_dir
from utils.errors import ConfigError

FSDP = {"trainer.strategy": "fsdp", "trainer.fsdp": {"shard_modules": ["Linear", "Conv2d"]}}
TOLERANCE = 1e-5
# 192 training digits (6 steps of a global batch of 32) and 65 validation digits: the two ranks
# validate 33 and 32 (5 and 4 batches of 8), so one of them runs an extra, uncounted forward pass
PROOF_DATA = {"data_loader.args.limit": 257, "data_loader.args.validation_split": 65, "arch.args.dropout": 0.0}


# ---- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("trainer,names", [
    ({"strategy": "fsdp", "fsdp": {"shard_module": ["Linear"]}}, "trainer.fsdp.shard_module"),
    ({"strategy": "fsdp", "fsdp": {"param_dtype": "float8"}}, "trainer.fsdp.param_dtype"),
    ({"strategy": "fsdp", "fsdp": {"shard_modules": "Linear"}}, "trainer.fsdp.shard_modules"),
    ({"strategy": "fsdp", "ema": {"decay": 0.9}}, "trainer.ema"),
    ({"strategy": "fsdp", "swa": {"start_epoch": 1, "lr": 0.01}}, "trainer.swa"),
    ({"strategy": "fsdp", "amp": "fp16"}, "trainer.amp"),
    ({"strategy": "fsdp", "channels_last": True}, "trainer.channels_last"),
])
def test_settings_that_cannot_work_sharded_are_refused(trainer, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        check_fsdp_settings(trainer)


def test_ema_under_fsdp_stops_before_any_run_folder(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {**FSDP, "trainer.ema": {"decay": 0.9}})
    code, _ = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2 and not (tmp_path / "saved").exists()


def test_an_unknown_module_class_names_the_classes_the_model_has():
    settings = {"shard_modules": ["TransformerBlock"], "cpu_offload": False}
    with pytest.raises(ConfigError, match="Conv2d, Dropout2d, Linear, MnistModel"):
        shard_model(MnistModel(), settings, torch.device("cpu"))


# ---- checkpoint folders (one process, no process group) -----------------------------------------
def write_folder(path, seed=0):
    """A sharded checkpoint folder as a run writes it, with plain tensors."""
    torch.manual_seed(seed)
    weights = MnistModel().state_dict()
    state = {Key.EPOCH: int(path.name.split("epoch")[1].split(".")[0]), Key.BATCHES_DONE: 0, "history": [],
             Key.OPTIMIZER: {"state": {}, "param_groups": [{"lr": 0.1, "params": list(weights)}]},
             Key.TORCH_VERSION: str(torch.__version__)}
    write_checkpoint_dir(path, {"state_dict": weights, "optimizer": {}}, state)
    return weights


def test_a_folder_loads_whole_and_converts_to_a_pth_file(tmp_path):
    weights = write_folder(tmp_path / "checkpoint-epoch1.dcp")
    checkpoint = load_checkpoint(tmp_path / "checkpoint-epoch1.dcp")
    assert isinstance(checkpoint[Key.STATE_DICT], ShardedWeights)
    assert {k: v.shape for k, v in checkpoint[Key.STATE_DICT].items()} == {k: v.shape for k, v in weights.items()}
    assert_same_state(weights, whole_checkpoint(checkpoint)[Key.STATE_DICT])
    converted = torch.load(convert(tmp_path / "checkpoint-epoch1.dcp"), weights_only=True)
    assert_same_state(weights, converted[Key.STATE_DICT])
    assert converted[Key.OPTIMIZER] == {"state": {}, "param_groups": [{"lr": 0.1, "params": list(range(8))}]}


def test_the_newest_valid_folder_is_found_and_half_written_ones_are_not(tmp_path, caplog):
    write_folder(tmp_path / "checkpoint-epoch1.dcp")
    write_folder(tmp_path / "checkpoint-epoch2.dcp")
    (tmp_path / "checkpoint-epoch2.dcp" / METADATA).unlink()  # a copy cut short
    write_folder(tmp_path / "checkpoint-epoch3.dcp")
    (tmp_path / "checkpoint-epoch3.dcp").rename(tmp_path / ".checkpoint-epoch3.dcp.writing.tmp")  # killed before rename
    write_folder(tmp_path / "checkpoint-epoch4.dcp")
    (tmp_path / "checkpoint-epoch4.dcp" / "__0_0.distcp").unlink()  # a shard file deleted by hand
    with caplog.at_level(logging.WARNING):
        path, checkpoint = latest_valid_checkpoint(tmp_path)
    assert path == tmp_path / "checkpoint-epoch1.dcp" and checkpoint[Key.EPOCH] == 1
    skipped = [name for name in ("checkpoint-epoch2.dcp", "checkpoint-epoch4.dcp")
               if any(name in record.getMessage() for record in caplog.records)]
    assert skipped == ["checkpoint-epoch2.dcp", "checkpoint-epoch4.dcp"]


def test_stale_temp_folders_go_and_a_replaced_folder_caught_mid_swap_comes_back(tmp_path):
    folder = RunFolder(tmp_path / "models", tmp_path / "log")
    folder.models_dir.mkdir()
    folder.log_dir.mkdir()
    write_folder(folder.models_dir / "checkpoint-epoch1.dcp")
    (folder.models_dir / "checkpoint-epoch1.dcp").rename(folder.models_dir / ".checkpoint-epoch2.dcp.writing.tmp")
    write_folder(folder.models_dir / "checkpoint-epoch1.dcp")
    (folder.models_dir / "checkpoint-epoch1.dcp").rename(folder.models_dir / ".model_best.dcp.old.tmp")
    folder.remove_stale_temp_files()
    assert sorted(p.name for p in folder.models_dir.iterdir()) == ["model_best.dcp"]
    assert load_checkpoint(folder.models_dir / "model_best.dcp")[Key.EPOCH] == 1


def test_pickled_code_in_the_metadata_is_refused_and_never_run(tmp_path):
    write_folder(tmp_path / "checkpoint-epoch1.dcp")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (tmp_path / "checkpoint-epoch1.dcp" / METADATA).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ConfigError, match="metadata"):
        load_checkpoint(tmp_path / "checkpoint-epoch1.dcp")
    assert not marker.exists()


def test_a_folder_from_another_torch_warns(tmp_path, caplog):
    path = tmp_path / "checkpoint-epoch1.dcp"
    write_folder(path)
    state = torch.load(path / "trainer_state.pth", weights_only=True)
    torch.save({**state, Key.TORCH_VERSION: "1.0.0"}, path / "trainer_state.pth")
    with caplog.at_level(logging.WARNING, logger="utils.checkpoint"):
        load_checkpoint(path)
    assert [record.levelno for record in caplog.records if record.name == "utils.checkpoint"] == [logging.WARNING]


# ---- one sharded process, in this process -------------------------------------------------------
@contextmanager
def one_process_group():
    """A gloo process group of one process (what torchrun --nproc_per_node=1 gives)."""
    torch_dist.init_process_group("gloo", store=torch_dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        if torch_dist.is_initialized():  # train.py leaves the group when it ends
            torch_dist.destroy_process_group()


@pytest.fixture
def process_group():
    with one_process_group():
        yield


def test_a_sharded_run_keeps_the_checkpoint_policy_and_its_folders_read_anywhere(
        tmp_path, mnist_dir, monkeypatch, capsys, process_group):
    config = tiny_config(tmp_path, mnist_dir, {**FSDP, "data_loader.args.limit": 128,
                                               "trainer.monitor": "min val_loss", "trainer.keep_last": 1,
                                               "trainer.save_top_k": 1, "trainer.save_last": True})
    code, captured = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 0, captured.err
    run = only_run(tmp_path / "saved")
    names = sorted(p.name for p in run.iterdir())
    assert [n for n in names if n.endswith(".dcp")] == sorted(
        ["checkpoint-epoch2.dcp", "checkpoint-last.dcp", "model_best.dcp", next(n for n in names if "=" in n)])
    assert all((run / name / METADATA).is_file() for name in names if name.endswith(".dcp"))
    assert [p.name for p in rolling_checkpoints(run)] == ["checkpoint-epoch2.dcp"]
    # checkpoint-last holds the newest state: the files of the folder written just before, hard-linked
    last_shard = run / "checkpoint-last.dcp" / "__0_0.distcp"
    assert any(os.path.samefile(last_shard, run / name / "__0_0.distcp") for name in names
               if name.endswith(".dcp") and name != "checkpoint-last.dcp")
    assert load_checkpoint(run / "checkpoint-last.dcp")[Key.EPOCH] == 2
    code, captured = run_in_process(monkeypatch, capsys, "test", "-r", run / "model_best.dcp", "--no-report")
    assert code == 0, captured.err
    assert json.loads((run / "model_best_test.json").read_text())["samples"] == 1000


# ---- torchrun: the proofs -----------------------------------------------------------------------
def probe(nproc, probe_dir, *args):
    """tests/fsdp_probe.py under torchrun with `nproc` processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "tests/fsdp_probe.py", str(probe_dir), *map(str, args)]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, env=script_env())


def whole(path):
    return whole_checkpoint(load_checkpoint(path))


def in_key_order(state):
    """Nested dicts with sorted keys (a parameter's optimizer state may list step first or last)."""
    return {key: in_key_order(state[key]) for key in sorted(state)} if isinstance(state, dict) else state


def max_difference(left, right):
    assert left.keys() == right.keys()
    return max((left[k] - right[k]).abs().max().item() for k in left)


@pytest.mark.slow
def test_fsdp_on_two_processes_matches_one_shards_its_bytes_and_resumes_on_any_number(
        tmp_path, mnist_dir, monkeypatch, capsys):
    """Three torchrun launches: (1) a 2-process run, then a second one SIGKILLed in the middle of
    its epoch-2 save; (2) the killed run resumed by its folder; (3) the first run's epoch-1
    checkpoint resumed on 3 processes (and, in this process, on 1)."""
    sharded = tiny_config(tmp_path, mnist_dir, {**FSDP, **PROOF_DATA, "data_loader.args.batch_size": 8,
                                                "trainer.accum_steps": 2})
    (tmp_path / "single").mkdir()
    single = tiny_config(tmp_path / "single", mnist_dir, PROOF_DATA)  # batch 32: the same global batch
    run_train_in_process(monkeypatch, capsys, "-c", single)
    reference = only_run(tmp_path / "single" / "saved")

    result = probe(2, tmp_path, "-c", sharded, "--then", "--kill-at-save", "3", "-c", sharded,
                   "-o", f"trainer.save_dir={tmp_path / 'killed'}")
    assert "exitcode  : -9" in result.stderr, result.stderr[-3000:]  # rank 0, at the epoch-2 folder's rename
    first = only_run(tmp_path / "saved")

    # parity: 2 processes x batch 8 x 2 accumulation steps against 1 process x batch 32; the
    # weights after epoch 1 (6 steps), the losses of both epochs. (Adam amplifies the rounding of
    # two averaged half-batch gradients: 3e-5 in the weights after 12 steps, as under DDP.)
    sharded_state = whole(first / "checkpoint-epoch1.dcp")
    single_state = torch.load(reference / "checkpoint-epoch1.pth", weights_only=True)
    assert max_difference(sharded_state[Key.STATE_DICT], single_state[Key.STATE_DICT]) < TOLERANCE
    sharded_history = whole(first / "checkpoint-epoch2.dcp")["history"]
    single_history = torch.load(reference / "checkpoint-epoch2.pth", weights_only=True)["history"]
    for sharded_row, single_row in zip(sharded_history, single_history, strict=True):
        for key in ("loss", "val_loss", "val_accuracy"):
            assert sharded_row[key] == pytest.approx(single_row[key], abs=TOLERANCE), key

    # each process holds half of the parameters and of the optimizer's tensors
    for rank_bytes in json.loads((tmp_path / "memory-world2.json").read_text()):
        for held, total in rank_bytes.values():
            assert held == total / 2

    # the killed save left its folder under a hidden temporary name only
    killed = only_run(tmp_path / "killed")
    assert sorted(p.name for p in killed.glob("*.dcp")) == ["checkpoint-epoch1.dcp", "model_best.dcp"]
    assert [p.name for p in killed.glob(".*.tmp")] == [".checkpoint-epoch2.dcp.writing.tmp"]
    result = probe(2, tmp_path, "-r", killed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(killed.glob(".*.tmp"))
    expected, resumed = whole(first / "checkpoint-epoch2.dcp"), whole(killed / "checkpoint-epoch2.dcp")
    for key in set(expected) - {"config"}:
        assert_same_state(expected[key], resumed[key], key)
    assert json.loads((killed / "status.json").read_text())["status"] == "finished"

    # another number of processes: exact after loading, then training goes on (one process: a
    # process group of one in this process, as torchrun --nproc_per_node=1 would give)
    saved = whole(first / "checkpoint-epoch1.dcp")
    for nproc in (1, 3):
        save_dir = tmp_path / f"world{nproc}"
        resume = ("-r", first / "checkpoint-epoch1.dcp", "--new-run", "-o", f"trainer.save_dir={save_dir}")
        if nproc == 1:
            with one_process_group():
                train_with_probe(resume, tmp_path)
        else:
            result = probe(nproc, tmp_path, *resume)
            assert result.returncode == 0, result.stderr[-3000:]
        loaded = torch.load(tmp_path / f"loaded-world{nproc}.pth", weights_only=True)
        assert_same_state(saved[Key.STATE_DICT], loaded[Key.STATE_DICT], "state_dict")
        assert_same_state(in_key_order(saved[Key.OPTIMIZER]), in_key_order(loaded[Key.OPTIMIZER]), "optimizer")
        continued = whole(only_run(save_dir) / "checkpoint-epoch2.dcp")
        assert continued["world_size"] == nproc and torch.isfinite(torch.tensor(continued["history"][-1]["loss"]))
    thirds = json.loads((tmp_path / "memory-world3.json").read_text())
    for part in ("parameters", "optimizer"):
        total = thirds[0][part][1]
        assert sum(rank_bytes[part][0] for rank_bytes in thirds) == total
        for rank_bytes in thirds:  # 1/3 up to uneven shards (a layer of 10 rows: 4, 4, 2)
            assert rank_bytes[part][0] == pytest.approx(total / 3, rel=0.1)
    assert run_dirs(tmp_path / "saved") == [first]
