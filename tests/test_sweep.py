"""Sweeps: the grid, the summary over seeds and folds, bad sweep commands, and a real sweep
that is stopped by a signal and resumed from its folder."""
import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import train
from conftest import PROJECT_ROOT, script_env, tiny_config, wait_for_file
from experiments.sweep_grid import member_label, members, parse_grid, parsed_values, split_values
from experiments.sweep_summary import summarize
from utils import ConfigError


def test_grid_is_the_cartesian_product_in_order():
    grid = parse_grid(["optimizer.args.lr=1e-3,1e-2", "seed=1,2,3"])
    points = members(grid)
    assert len(points) == 6
    assert [parsed_values(p) for p in points[:2]] == [{"optimizer.args.lr": 0.001, "seed": 1},
                                                      {"optimizer.args.lr": 0.001, "seed": 2}]
    assert member_label(5, points[5]) == "005-lr=1e-2-seed=3"


def test_values_split_at_top_level_commas_only():
    assert split_values('1,[2,3],{"a":1,"b":2},"x,y"') == ["1", "[2,3]", '{"a":1,"b":2}', '"x,y"']


@pytest.mark.parametrize("texts, message", [
    (["seed"], "is not of the form key.path=v1,v2"),
    (["seed=1,,2"], "has an empty or unbalanced value"),
    (["seed=[1,2"], "has an empty or unbalanced value"),
    (["seed=1", "seed=2"], "is given twice"),
])
def test_bad_grid_is_a_config_error(texts, message):
    with pytest.raises(ConfigError) as err:
        parse_grid(texts)
    assert message in str(err.value)


def test_summary_averages_over_seeds_and_folds():
    manifest = {"grid": {"optimizer.args.lr": [], "seed": [], "data_loader.args.fold": []},
                "repeat_keys": ["seed", "data_loader.args.fold"], "monitor": "min val_loss"}
    results = pd.DataFrame({"optimizer.args.lr": [0.1, 0.1, 0.1, 0.01],
                            "seed": [1, 1, 2, 1], "data_loader.args.fold": [0, 1, 0, 0],
                            "best": [1.0, 2.0, 3.0, 5.0], "test_accuracy": [0.5, 0.7, 0.9, 0.1]})
    table = summarize(results, manifest).set_index("optimizer.args.lr")
    assert table.loc[0.1, "runs"] == 3
    assert table.loc[0.1, "best_val_loss_mean"] == pytest.approx(2.0)
    assert table.loc[0.1, "best_val_loss_std"] == pytest.approx(1.0)  # sample std of 1, 2, 3
    assert table.loc[0.1, "test_accuracy_mean"] == pytest.approx(0.7)
    assert table.loc[0.01, "runs"] == 1 and pd.isna(table.loc[0.01, "best_val_loss_std"])


@pytest.mark.parametrize("extra, message", [
    (["-m", "optimizer.args.lrr=0.1,0.2"], "key 'optimizer.args.lrr' does not exist"),
    (["-m", "seed"], "is not of the form key.path=v1,v2"),
    (["--jobs", "2"], "--jobs applies to sweeps only"),
    (["-m", "seed=1,2", "--jobs", "0"], "--jobs is 0"),
    (["-m", "seed=1,2", "--print-config"], "work on one run"),
])
def test_bad_sweep_command_exits_2_and_makes_no_folder(tmp_path, mnist_dir, monkeypatch, capsys, extra, message):
    config = tiny_config(tmp_path, mnist_dir)
    monkeypatch.setattr(sys, "argv", ["train.py", "-c", str(config), *extra])
    with pytest.raises(SystemExit) as exit_info:
        train.run()
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "saved").exists()


def sweep_dirs(tmp_path):
    return sorted((tmp_path / "saved" / "sweeps" / "Tiny").glob("*"))


def member_runs(member_dir):
    return sorted((member_dir / "models" / "Tiny").glob("*"))


@pytest.mark.slow
def test_sweep_stopped_by_signal_resumes_and_summarizes(tmp_path, mnist_dir):
    # 2 seeds; member 0 is stopped inside its run by SIGTERM to the sweep. One batch per epoch:
    # after its first checkpoint, 19 more epochs leave time for the signal to arrive
    config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 20, "data_loader.args.limit": 40,
                                               "trainer.save_period": 1})
    command = [sys.executable, "train.py", "-c", str(config), "-m", "seed=1,2", "--jobs", "1"]
    sweep = subprocess.Popen(command, cwd=PROJECT_ROOT, env=script_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    wait_for_file(tmp_path / "saved", "sweeps/Tiny/*/000-*/models/Tiny/*/checkpoint-epoch1.pth", sweep)
    sweep.send_signal(signal.SIGTERM)
    output = sweep.communicate(timeout=240)[0]
    assert sweep.returncode == 128 + signal.SIGTERM, output
    (sweep_dir,) = sweep_dirs(tmp_path)
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    folders = [m["folder"] for m in manifest["members"]]
    assert len(folders) == 2 and manifest["members"][1]["values"] == {"seed": 2}
    (stopped_run,) = member_runs(sweep_dir / folders[0])
    assert json.loads((stopped_run / "status.json").read_text())["status"] == "stopped"
    assert not member_runs(sweep_dir / folders[1])  # not started after the stop

    resumed = subprocess.run([sys.executable, "train.py", "-r", str(sweep_dir), "--jobs", "2"], cwd=PROJECT_ROOT,
                             env=script_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    newest = member_runs(sweep_dir / folders[0])[-1]
    status = json.loads((newest / "status.json").read_text())
    assert status["status"] == "finished" and status["resumed_from"]  # continued from its checkpoint
    history = pd.read_csv(newest.parents[2] / "log" / "Tiny" / newest.name / "metrics.csv")
    assert history["epoch"].tolist() == list(range(1, 21))
    (run,) = member_runs(sweep_dir / folders[1])
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert json.loads((run / "config.json").read_text())["trainer"]["save_dir"] == str(sweep_dir / folders[1])
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert summary["runs"].tolist() == [2]  # the two seeds of one setting
    assert summary["best_val_loss_mean"].notna().all() and summary["best_val_loss_std"].notna().all()

    # a finished sweep resumed again runs nothing and leaves every run folder as it was
    before = sorted(p for p in sweep_dir.rglob("*") if p.is_dir())
    again = subprocess.run([sys.executable, "train.py", "-r", str(sweep_dir)], cwd=PROJECT_ROOT, env=script_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and sorted(p for p in sweep_dir.rglob("*") if p.is_dir()) == before


@pytest.mark.slow
def test_members_of_a_killed_sweep_stop_with_a_checkpoint(tmp_path, mnist_dir):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 50, "data_loader.args.limit": 64,
                                               "trainer.save_period": 1})
    command = [sys.executable, "train.py", "-c", str(config), "-m", "seed=1,2", "--jobs", "2"]
    sweep = subprocess.Popen(command, cwd=PROJECT_ROOT, env=script_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    for member in ("000", "001"):
        wait_for_file(tmp_path / "saved", f"sweeps/Tiny/*/{member}-*/models/Tiny/*/checkpoint-epoch1.pth", sweep)
    sweep.kill()  # SIGKILL: the sweep passes nothing on; the members must notice by themselves
    sweep.communicate(timeout=60)
    (sweep_dir,) = sweep_dirs(tmp_path)

    def member_records():
        return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/models/Tiny/*/status.json"))]

    deadline = time.monotonic() + 120
    while any(record["status"] == "running" for record in member_records()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [(record["status"], record.get("signal")) for record in member_records()] == [("stopped", "SIGTERM")] * 2


@pytest.mark.slow
def test_prepare_only_then_one_member_as_an_array_task(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1, "data_loader.args.limit": 64})
    monkeypatch.setattr(sys, "argv", ["train.py", "-c", str(config), "-m", "seed=1,2", "--prepare-only"])
    train.run()
    (sweep_dir,) = sweep_dirs(tmp_path)
    assert f"sbatch --array=0-1 scripts/slurm_sweep.sbatch {sweep_dir}" in capsys.readouterr().out
    folders = [m["folder"] for m in json.loads((sweep_dir / "sweep.json").read_text())["members"]]
    assert all(not member_runs(sweep_dir / folder) for folder in folders)  # nothing ran

    monkeypatch.setattr(sys, "argv", ["train.py", "-r", str(sweep_dir), "--member", "1"])
    monkeypatch.chdir(PROJECT_ROOT)
    train.run()
    assert not member_runs(sweep_dir / folders[0])
    (run,) = member_runs(sweep_dir / folders[1])
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert summary["runs"].tolist() == [1]  # the finished members so far


def test_members_get_the_given_gpus_in_turn(tmp_path):
    from experiments.sweep_runner import SweepRunner
    from run.status import SWEEP_ENV

    manifest = {"name": "Tiny", "members": [{"index": i, "folder": f"00{i}"} for i in range(3)]}
    for member in manifest["members"]:
        (tmp_path / member["folder"]).mkdir()
    runner = SweepRunner(tmp_path, manifest, jobs=2, devices=["0", "1"])
    show = [sys.executable, "-c", f"import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['{SWEEP_ENV}'])"]
    for member in manifest["members"]:
        runner._run_process(member, show)
    printed = [(tmp_path / m["folder"] / "output.log").read_text().splitlines()[-1] for m in manifest["members"]]
    assert printed == [f"0 {tmp_path}#0", f"1 {tmp_path}#1", f"0 {tmp_path}#2"]


def test_unreadable_manifest_is_a_config_error(tmp_path):
    from experiments.sweep_manifest import read_manifest

    (tmp_path / "sweep.json").write_text('{"members": 3}')
    with pytest.raises(ConfigError, match="is not a readable sweep manifest"):
        read_manifest(tmp_path)
