"""tune.py: search-space errors, a pruned and resumed study with its results, and two
processes sharing one SQLite study."""
import json
import os
import subprocess
import sys

import optuna
import pandas as pd
import pytest
import torch

from conftest import PROJECT_ROOT, only_run, run_dirs, run_script, script_env, tiny_config
from reliability_helpers import load, run_in_process
from tune import tune
from tuning.space import parse_space
from utils import ConfigError
from utils.errors import TrainingStopped

CONFIG = {"optimizer": {"type": "Adam", "args": {"lr": 0.01}}, "trainer": {"epochs": 2}}
# a good and a hopeless learning rate: a seeded random sampler draws 0.003, 1e-6, 0.003, 1e-6
# (seed 11: 11 for the first run, 11 + 2 for the resumed one), so the median pruner stops the 1e-6 trials
SPACE = {"optimizer.args.lr": {"type": "categorical", "choices": [0.003, 0.000001]}}


@pytest.mark.parametrize("space, message", [
    ({"optimizer.args.lr": {"type": "float", "low": 0.1, "high": 0.01}},
     "tune.space.optimizer.args.lr: 'low' must be < 'high'"),
    ({"optimizer.args.lr": {"type": "float", "low": 0, "high": 0.1, "log": True}},
     "tune.space.optimizer.args.lr: a log scale needs 'low' > 0"),
    ({"optimizer.args.lrr": [0.1]}, "tune.space.optimizer.args.lrr: override 'optimizer.args.lrr'"),
    ({"trainer.epochs": {"type": "int", "low": 1.5, "high": 3}}, "tune.space.trainer.epochs: 'low' must be an integer"),
    ({"trainer.epochs": {"type": "range", "low": 1, "high": 3}}, "tune.space.trainer.epochs: 'type' is 'range'"),
    ({"trainer.epochs": []}, "tune.space.trainer.epochs: 'choices' must be a non-empty list"),
])
def test_bad_space_names_the_key(space, message):
    with pytest.raises(ConfigError) as err:
        parse_space(space, CONFIG)
    assert str(err.value).startswith(message), str(err.value)


def test_bad_space_exits_2_from_the_script(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"tune.space": {"optimizer.args.lr": {"type": "float", "low": 1,
                                                                                   "high": 1}}})
    code, captured = run_in_process(monkeypatch, capsys, "tune", "-c", config)
    assert code == 2 and "Traceback" not in captured.err
    assert "error: tune.space.optimizer.args.lr: 'low' must be < 'high'" in captured.err
    assert not (tmp_path / "saved").exists()


@pytest.mark.parametrize("settings, message", [
    ({"space": SPACE, "n_trial": 4}, "tune.n_trial is not a tune setting"),
    ({"space": SPACE, "sampler": "bayes"}, "tune.sampler is 'bayes'; use one of grid, random, tpe"),
    ({"space": SPACE, "pruner": {"type": "median", "args": {"startup": 1}}}, "tune.pruner.args do not fit"),
    ({"space": {"optimizer.args.lr": {"type": "float", "low": 0.1, "high": 1}}, "sampler": "grid"},
     "tune.space.optimizer.args.lr: the grid sampler needs a finite set"),
    ({"space": SPACE, "heartbeat_interval": 0}, "tune.heartbeat_interval is 0; it must be a whole number"),
    ({"space": SPACE, "max_retry": "3"}, "tune.max_retry is '3'; it must be a whole number"),
])
def test_bad_tune_settings_name_the_key(tmp_path, settings, message):
    config = {**CONFIG, "name": "T", "tune": settings,
              "trainer": {"epochs": 1, "monitor": "min val_loss", "save_dir": str(tmp_path)}}
    with pytest.raises(ConfigError) as err:
        tune(config)
    assert str(err.value).startswith(message), str(err.value)


def tune_config(tmp_path, mnist_dir, tune, updates=None):
    return tiny_config(tmp_path, mnist_dir, {"data_loader.args.limit": 256, "tune": tune, **(updates or {})})


def trials_table(tmp_path):
    return pd.read_csv(tmp_path / "saved" / "tune" / "Tiny" / "trials.csv").sort_values("number")


def test_study_resumes_prunes_and_writes_a_best_config_that_trains(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tune_config(tmp_path, mnist_dir, {
        "n_trials": 4, "sampler": "random", "seed": 11, "space": SPACE,
        "pruner": {"type": "median", "args": {"n_startup_trials": 1}}})
    run_in_process(monkeypatch, capsys, "tune", "-c", config, "--n-trials", "2", check=True)  # "interrupted" after 2
    assert len(trials_table(tmp_path)) == 2
    run_in_process(monkeypatch, capsys, "tune", "-c", config, check=True)  # the rerun adds the missing 2
    assert [p.name for p in run_dirs(tmp_path / "saved")] == [f"trial-{n}" for n in range(4)]

    results = tmp_path / "saved" / "tune" / "Tiny"
    trials = trials_table(tmp_path)
    assert trials["state"].tolist() == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"]
    complete = trials[trials["state"] == "COMPLETE"]["value"].tolist()
    assert complete == sorted(complete) and trials["value"].iloc[0] == min(complete)

    best = json.loads((results / "best_config.json").read_text())
    assert "tune" not in best
    assert best["optimizer"]["args"]["lr"] == trials["params_optimizer.args.lr"].iloc[0]
    run_in_process(monkeypatch, capsys, "train", "-c", results / "best_config.json", "-o", "trainer.epochs=1",
                   "-o", f"trainer.save_dir={tmp_path / 'best'}", check=True)
    trained = load(only_run(tmp_path / "best", "Tiny") / "checkpoint-epoch1.pth")
    assert trained["config"]["optimizer"]["args"]["lr"] == best["optimizer"]["args"]["lr"]


# A model whose first construction in each process waits until both processes have built one,
# so each process is inside a trial at the same time: the test then cannot pass (or fail) by
# one process finishing all trials before the other has imported torch.
RENDEZVOUS_MODULE = """
import os, time
from pathlib import Path
from model.model import MnistModel

class RendezvousModel(MnistModel):
    def __init__(self, barrier_dir, parties=2):
        super().__init__()
        Path(barrier_dir, str(os.getpid())).touch()
        deadline = time.monotonic() + 240
        while len(os.listdir(barrier_dir)) < parties:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {os.listdir(barrier_dir)} reached the barrier")
            time.sleep(0.05)
"""


def run_two_tune_processes(tmp_path, mnist_dir, storage, timeout):
    """Two tune.py processes on one storage, each made to wait in its first trial until the other
    has built a model too, so that both really work on the study at the same time. Returns
    the finished processes and their outputs; both must exit 0."""
    (tmp_path / "rendezvous.py").write_text(RENDEZVOUS_MODULE)
    (tmp_path / "barrier").mkdir()
    rendezvous = {"type": "RendezvousModel", "module": "rendezvous", "args": {"barrier_dir": str(tmp_path / "barrier")}}
    config = tune_config(tmp_path, mnist_dir, {"n_trials": 4, "sampler": "random", "pruner": "none", "space": SPACE},
                         {"arch": rendezvous})
    command = [sys.executable, "tune.py", "-c", str(config), "--storage", storage, "-o", "trainer.epochs=1"]
    workers = [subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=script_env({"PYTHONPATH": str(tmp_path)})) for _ in range(2)]
    outputs = [worker.communicate(timeout=timeout)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert len(os.listdir(tmp_path / "barrier")) == 2  # two processes, each built a model
    return workers, outputs


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tmp_path, mnist_dir):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    workers, outputs = run_two_tune_processes(tmp_path, mnist_dir, storage, timeout=300)
    study = optuna.load_study(study_name="Tiny", storage=storage)
    # each trial's run folder records the process that trained it
    trained_by = [json.loads((run / "status.json").read_text())["pid"] for run in run_dirs(tmp_path / "saved")]
    assert sorted(set(trained_by)) == sorted(worker.pid for worker in workers), outputs
    assert len(trained_by) == len(study.trials)
    # each process stops once the study holds 4 finished trials; the other may be mid-trial then
    assert len(study.trials) in (4, 5)
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


# A callback that sends this process SIGTERM at the end of epoch 1, once (a preempted worker)
STOP_ONCE_MODULE = """
import os, signal
from pathlib import Path
from trainer.callback import Callback

class StopOnce(Callback):
    def __init__(self, marker):
        self.marker = Path(marker)

    def on_epoch_end(self, trainer, epoch, log):
        if epoch == 1 and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGTERM)
"""


def test_a_trial_stopped_by_a_signal_is_queued_again_and_continues_from_its_checkpoint(tmp_path, mnist_dir,
                                                                                       monkeypatch):
    (tmp_path / "stoponce.py").write_text(STOP_ONCE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = json.loads(tune_config(tmp_path, mnist_dir, {"n_trials": 1, "sampler": "random", "seed": 1,
                                                          "pruner": "none", "space": SPACE},
                                    {"data_loader.args.limit": 128, "callbacks": [
                                        {"type": "StopOnce", "module": "stoponce",
                                         "args": {"marker": str(tmp_path / "stopped")}}]}).read_text())
    with pytest.raises(TrainingStopped):
        tune(config)
    study = optuna.load_study(study_name="Tiny", storage=f"sqlite:///{tmp_path / 'saved/tune/Tiny/study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]  # the stopped trial, queued again

    tune(config)  # the same command again
    stopped, retry = optuna.load_study(study_name="Tiny",
                                       storage=f"sqlite:///{tmp_path / 'saved/tune/Tiny/study.db'}").trials
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == stopped.params
    checkpoint = tmp_path / "saved" / "models" / "Tiny" / "trial-0" / "checkpoint-epoch1.pth"
    assert retry.user_attrs["resumed_from"] == str(checkpoint)
    retry_run = tmp_path / "saved" / "models" / "Tiny" / "trial-1"
    assert sorted(p.name for p in retry_run.glob("checkpoint-epoch*.pth")) == ["checkpoint-epoch2.pth"]
    assert retry.intermediate_values.keys() == {1, 2}  # epoch 1 inherited, epoch 2 reported by the retry


def synthetic_study(storage, name="Tiny"):
    """A study whose value depends on the learning rate alone, not on the weight decay."""
    study = optuna.create_study(study_name=name, storage=storage)
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    decay = optuna.distributions.FloatDistribution(1e-6, 1e-3, log=True)
    for index in range(12):
        params = {"optimizer.args.lr": 10 ** (-4 + 3 * index / 11),
                  "optimizer.args.weight_decay": 10 ** (-6 + (index * 7 % 12) / 4)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions={"optimizer.args.lr": lr,
                                                  "optimizer.args.weight_decay": decay},
                                                  value=(index - 5) ** 2 / 10))
    return study


def test_importance_of_an_existing_study_names_the_parameter_that_mattered(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tune_config(tmp_path, mnist_dir, {"space": SPACE})
    results = tmp_path / "saved" / "tune" / "Tiny"
    results.mkdir(parents=True)
    synthetic_study(f"sqlite:///{results / 'study.db'}")
    code, _ = run_in_process(monkeypatch, capsys, "tune", "-c", config, "--importance")
    assert code == 0
    table = pd.read_csv(results / "importance.csv")
    assert table["parameter"].tolist() == ["optimizer.args.lr", "optimizer.args.weight_decay"]
    assert table["importance"].sum() == pytest.approx(1.0) and table["importance"].iloc[0] > 0.8
    assert (results / "importance.png").stat().st_size > 0

    code, captured = run_in_process(monkeypatch, capsys, "tune", "-c", config, "--importance", "--study-name", "Other")
    assert code == 2 and captured.err.startswith("error: ")


@pytest.mark.slow
def test_under_torchrun_rank_zero_samples_each_trial_and_every_rank_trains_and_prunes_it(tmp_path, mnist_dir):
    config = tune_config(tmp_path, mnist_dir, {
        "n_trials": 2, "sampler": "random", "seed": 11, "space": SPACE,  # draws 0.003, then 1e-6
        "pruner": {"type": "median", "args": {"n_startup_trials": 1}}}, {"data_loader.args.limit": 128})
    result = run_script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "tune.py", "-c", config,
                        check=True)
    assert result.stdout.count("Study 'Tiny': 2 trials") == 1  # rank 0 alone reports
    study = optuna.load_study(study_name="Tiny", storage=f"sqlite:///{tmp_path / 'saved/tune/Tiny/study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert [t.params["optimizer.args.lr"] for t in study.trials] == [0.003, 0.000001]
    complete, pruned = run_dirs(tmp_path / "saved")
    assert torch.load(complete / "checkpoint-epoch2.pth", weights_only=True)["world_size"] == 2
    # every rank stopped the pruned trial after epoch 1 (a rank that trained on would hang the run)
    assert sorted(p.name for p in pruned.glob("checkpoint-epoch*.pth")) == ["checkpoint-epoch1.pth"]
