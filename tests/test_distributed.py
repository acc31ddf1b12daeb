"""DDP under torchrun on the CPU (gloo): 2 processes with batch 8 and 2 accumulation steps must
train like one process with batch 32 (EMA included), write one set of outputs, leave
checkpoints that any number of processes can resume exactly (from an epoch, and with SWA from
inside an epoch), and stop together on a signal. One torchrun launch costs seconds of start-up,
so each launch here checks several things."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from conftest import PROJECT_ROOT, only_run, run_dirs, run_script, tiny_config
from data_loader.samplers import EpochSampler
from reliability_helpers import assert_same_state, assert_same_training, remove_root_handlers, run_in_process
from run.checkpoints import checkpoint_order, find_latest_checkpoint

# Two half-batch gradients averaged by DDP round differently from one full-batch gradient, and
# training amplifies it (one measurement with Adam: 1.7e-6 after 2 epochs, 3.7e-5 after 3). The
# runs compared here therefore end at epoch 2.
TOLERANCE = 1e-5
NO_DROPOUT = {"arch.args.dropout": 0.0}  # dropout masks differ per rank; the math must not
# 384 training samples (12 global batches of 32) and 129 validation samples: rank 0 validates 65
# (9 batches of 8), rank 1 64 (8 batches); a padded or double-counted sample would move val_loss.
UNEVEN_VALIDATION = {"data_loader.args.limit": 513, "data_loader.args.validation_split": 129}
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


# ---- sharding (no processes) -------------------------------------------------------------------
@pytest.mark.parametrize("n_samples", [96, 100])
def test_interleaved_shards_rebuild_the_single_process_batches(n_samples):
    global_batch, world = 32, 2
    single = EpochSampler(range(n_samples), shuffle=True, seed=7)
    shards = [EpochSampler(range(n_samples), shuffle=True, seed=7, num_replicas=world, rank=r)
              for r in range(world)]
    for sampler in (single, *shards):
        sampler.set_epoch(3)
    order, rank_orders = list(single), [list(s) for s in shards]
    assert len(rank_orders[0]) == len(rank_orders[1]) == len(shards[0]) == -(-n_samples // world)
    per_rank = global_batch // world
    for start in range(0, n_samples - n_samples % global_batch, global_batch):
        k = start // global_batch
        combined = sorted(i for ro in rank_orders for i in ro[k * per_rank:(k + 1) * per_rank])
        assert combined == sorted(order[start:start + global_batch])


@pytest.mark.parametrize("n_samples,world", [(128, 2), (127, 2), (10, 3)])
def test_validation_shards_count_every_sample_once(n_samples, world):
    shards = [EpochSampler(range(n_samples), shuffle=False, seed=1, num_replicas=world, rank=r, pad=False)
              for r in range(world)]
    seen = [i for shard in shards for i in shard]
    assert sorted(seen) == list(range(n_samples))
    assert sum(len(shard) for shard in shards) == n_samples


# ---- helpers ----------------------------------------------------------------------------------
def torchrun(*args, **kwargs):
    return run_script(*TORCHRUN, "train.py", *args, **kwargs)


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def max_weight_difference(path_a, path_b):
    a, b = weights(path_a), weights(path_b)
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def metrics_rows(run):
    log_dir = run.parents[2] / "log" / run.parent.name / run.name
    with (log_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


EMA = {"trainer.ema": {"decay": 0.9}}  # the average must be synchronized and resumed like the weights


REFERENCE_GROUP = pytest.mark.xdist_group("ddp_reference")  # the tests of reference_runs share one worker


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, mnist_dir):
    """One process with batch 32 (in this process); two processes with batch 8 and 2
    accumulation steps (global batch 32, and DDP's gradient sync skipped on the first
    micro-batch); 2 epochs each, with an EMA of the weights."""
    single_dir, ddp_dir = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("ddp")
    single_cfg = tiny_config(single_dir, mnist_dir, {**NO_DROPOUT, **UNEVEN_VALIDATION, **EMA})
    ddp_cfg = tiny_config(ddp_dir, mnist_dir, {**NO_DROPOUT, **UNEVEN_VALIDATION, **EMA,
                                               "data_loader.args.batch_size": 8, "trainer.accum_steps": 2,
                                               "trainer.tensorboard": True})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["train.py", "-c", str(single_cfg)])
        train.run()
    remove_root_handlers()
    ddp = torchrun("-c", ddp_cfg, check=True)
    return {"single": only_run(single_dir / "saved"), "ddp": only_run(ddp_dir / "saved"),
            "ddp_dir": ddp_dir, "ddp_result": ddp}


# ---- end to end under torchrun -----------------------------------------------------------------
@pytest.mark.slow
@REFERENCE_GROUP
def test_two_processes_match_one_process_with_the_same_global_batch(reference_runs):
    single, ddp = reference_runs["single"], reference_runs["ddp"]
    for epoch in (1, 2):
        name = f"checkpoint-epoch{epoch}.pth"
        assert max_weight_difference(single / name, ddp / name) < TOLERANCE
    for single_row, ddp_row in zip(metrics_rows(single), metrics_rows(ddp), strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_top_k_acc"):
            assert float(ddp_row[key]) == pytest.approx(float(single_row[key]), abs=TOLERANCE), key
    single_ema, ddp_ema = (torch.load(run / "checkpoint-epoch2.pth", weights_only=True)["ema"] for run in (single, ddp))
    assert int(ddp_ema["updates"]) == int(single_ema["updates"]) == 24  # 12 optimizer steps per epoch
    assert max((ddp_ema["weights"][k] - single_ema["weights"][k]).abs().max().item()
               for k in single_ema["weights"]) < TOLERANCE
    checkpoint = torch.load(ddp / "checkpoint-epoch2.pth", weights_only=True)
    assert checkpoint["world_size"] == 2 and checkpoint["config"]["trainer"]["accum_steps"] == 2


@pytest.mark.slow
@REFERENCE_GROUP
def test_two_processes_write_one_set_of_outputs(reference_runs):
    ddp_dir, result = reference_runs["ddp_dir"], reference_runs["ddp_result"]
    run = only_run(ddp_dir / "saved")
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint-epoch1.pth", "checkpoint-epoch2.pth", "config.json", "model_best.pth", "record", "record.json",
        "status.json", "train.lock"]
    assert json.loads((run / "record.json").read_text())["parts"][0]["world_size"] == 2  # written once, by rank 0
    assert [p.name for p in (ddp_dir / "saved" / "log" / "Tiny").iterdir()] == [run.name]
    log_dir = ddp_dir / "saved" / "log" / "Tiny" / run.name
    # event files are named events.out.tfevents.<time>.<host>.<pid>.<n>: one process wrote them all
    # (the training scalars and, at the end, the hparams record)
    writer_pids = {path.name.split(".")[-2] for path in log_dir.glob("events.out.tfevents.*")}
    assert len(writer_pids) == 1
    info_log = (log_dir / "info.log").read_text()
    assert info_log.count("    val_loss ") == 2  # rank 1 logs nothing
    assert result.stdout.count("    val_loss ") == 2
    assert len(metrics_rows(run)) == 2
    assert not any(key.startswith("module.") for key in weights(run / "model_best.pth"))
    assert "terminate called" not in result.stderr


@pytest.mark.slow
@REFERENCE_GROUP
def test_resume_under_two_processes_continues_exactly(reference_runs):
    ddp = reference_runs["ddp"]
    torchrun("-r", ddp / "checkpoint-epoch1.pth", "--new-run", check=True)  # the reference run stays as it is
    resumed = [r for r in run_dirs(reference_runs["ddp_dir"] / "saved") if r != ddp]
    assert len(resumed) == 1
    assert sorted(p.name for p in resumed[0].glob("*.pth")) == ["checkpoint-epoch2.pth", "model_best.pth"]
    for name in ("checkpoint-epoch2.pth", "model_best.pth"):  # weights, optimizer, EMA, history: bit for bit
        assert_same_training(ddp / name, resumed[0] / name)


@pytest.mark.slow
@REFERENCE_GROUP
def test_two_process_checkpoint_loads_in_one_process(reference_runs, tmp_path, monkeypatch, capsys):
    """Resume with batch 32 (the same global batch) in one process, and evaluate with test.py."""
    single, ddp = reference_runs["single"], reference_runs["ddp"]
    save_dir = tmp_path / "resumed"
    run_in_process(monkeypatch, capsys, "train", "-r", ddp / "checkpoint-epoch1.pth", "--new-run", "--bs", "32",
                   "-o", "trainer.accum_steps=1", "-o", f"trainer.save_dir={save_dir}", check=True)
    resumed = only_run(save_dir)
    assert max_weight_difference(single / "checkpoint-epoch2.pth", resumed / "checkpoint-epoch2.pth") < TOLERANCE

    # strict loading: a `module.` prefix or any other key mismatch fails test.py
    run_in_process(monkeypatch, capsys, "test", "-r", ddp / "checkpoint-epoch2.pth", check=True)
    numbers = json.loads((ddp / "checkpoint-epoch2_test.json").read_text())
    assert numbers["samples"] == 1000 and numbers["epoch"] == 2


# ---- stop signal -------------------------------------------------------------------------------
def worker_pid(launcher_pid, rank, timeout=60):
    """The pid of torchrun's worker process with RANK=`rank`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                environ = (proc / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if parent == launcher_pid and f"RANK={rank}".encode() in environ:
                return int(proc.name)
        time.sleep(0.2)
    raise AssertionError(f"no worker with RANK={rank} under torchrun pid {launcher_pid}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc")
def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step(tmp_path, mnist_dir):
    config = tiny_config(tmp_path, mnist_dir, {**NO_DROPOUT, "data_loader.args.batch_size": 16,
                                               "trainer.epochs": 1000})
    launcher = subprocess.Popen([sys.executable, *TORCHRUN, "train.py", "-c", str(config)], cwd=PROJECT_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        rank1 = worker_pid(launcher.pid, rank=1)
        deadline = time.monotonic() + 300
        while not list((tmp_path / "saved" / "models").glob("Tiny/*/checkpoint-epoch1.pth")):
            assert time.monotonic() < deadline and launcher.poll() is None, "no epoch finished"
            time.sleep(0.2)
        os.kill(rank1, signal.SIGTERM)  # rank 0 gets no signal: it must learn of it from rank 1
        stdout, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:  # SIGTERM first: torchrun then ends its workers too
            launcher.terminate()
            try:
                launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launcher.kill()
    assert launcher.returncode != 0
    assert "terminate called" not in stderr
    run = only_run(tmp_path / "saved")
    status = json.loads((run / "status.json").read_text())
    assert (status["status"], status["signal"]) == ("stopped", "SIGTERM")  # written by rank 0
    stop_file = find_latest_checkpoint(run)  # what -r RUN_FOLDER resumes
    assert stop_file == max(run.glob("checkpoint-epoch*.pth"), key=checkpoint_order)
    assert len(list(run.glob("checkpoint-epoch*-step*.pth"))) <= 1
    checkpoint = torch.load(stop_file, weights_only=True)
    assert checkpoint["world_size"] == 2
    batches_per_epoch = 512 * 3 // 4 // 2 // 16  # 384 training samples, 2 ranks, batch 16
    if checkpoint["batches_done"]:  # the ranks agree every 4th optimizer step (log_step = sqrt(16))
        assert (checkpoint["batches_done"] - 1) % 4 == 0 or checkpoint["batches_done"] == batches_per_epoch


@pytest.mark.slow
def test_swa_validations_and_step_checkpoints_inside_epochs_under_two_processes(tmp_path, mnist_dir):
    """192 training digits, 2 ranks x batch 16: 6 optimizer steps per epoch, a validation every 2
    and a step checkpoint every 3, SWA from epoch 1. A run resumed from a step checkpoint under
    two processes ends with the same state (averaged weights included) as the run that went
    through."""
    config = tiny_config(tmp_path, mnist_dir, {
        "data_loader.args.limit": 256, "data_loader.args.batch_size": 16, "trainer.monitor": "min val_loss",
        "trainer.val_every_n_steps": 2, "trainer.save_every_n_steps": 3, "trainer.save_top_k": 1,
        "trainer.save_last": True, "trainer.swa": {"start_epoch": 1, "lr": 0.001, "anneal_epochs": 1}})
    torchrun("-c", config, check=True)
    run = only_run(tmp_path / "saved")
    assert sorted(p.name for p in run.glob("checkpoint-epoch*-step?.pth")) == [
        "checkpoint-epoch1-step3.pth", "checkpoint-epoch1-step6.pth", "checkpoint-epoch2-step3.pth",
        "checkpoint-epoch2-step6.pth"]
    assert len([p for p in run.glob("checkpoint-epoch*=*.pth")]) == 1  # the top-1 file
    assert int(torch.load(run / "checkpoint-epoch2.pth", weights_only=True)["swa"]["updates"]) == 2  # epoch ends
    torchrun("-r", run / "checkpoint-epoch2-step3.pth", "--new-run", check=True)
    resumed = next(r for r in run_dirs(tmp_path / "saved") if r != run)
    for name in ("checkpoint-epoch2.pth", "checkpoint-last.pth", "model_swa.pth"):
        expected, actual = torch.load(run / name, weights_only=True), torch.load(resumed / name, weights_only=True)
        # the partial training-loss sums of the step checkpoint go to rank 0 alone, so float
        # rounding of the epoch's training averages may differ; everything else is exact
        for key in set(expected) - {"config", "history", "train_metrics"}:
            assert_same_state(expected[key], actual[key], f"{name}: {key}")
        for expected_row, actual_row in zip(expected["history"], actual["history"], strict=True):
            assert actual_row == pytest.approx(expected_row, rel=1e-6)
