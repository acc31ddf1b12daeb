"""Sharing a study: tune.py across processes on a real PostgreSQL server, which the test starts (initdb and
pg_ctl on a temporary folder and a free port on 127.0.0.1) and stops again. Without the
server binaries the test is skipped, except in CI (CI=true), where that is a failure. And
Optuna's journal file, for a file system that several machines share."""
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psycopg2
import pytest
import torch
from optuna.storages.journal import JournalFileBackend
from test_tune import SPACE, run_two_tune_processes, tune_config

from conftest import PROJECT_ROOT, run_dirs, script_env
from run.status import read_status
from tune import tune
from utils import ConfigError


def server_binaries():
    """The folder holding initdb and pg_ctl (PATH, then Debian's /usr/lib/postgresql/<v>/bin)."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def unavailable(reason):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run this test (.ci/run installs the server)")
    pytest.skip(reason)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres_url():
    bin_dir = server_binaries()
    if bin_dir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql to run this test")
    user = None
    folder = Path(tempfile.mkdtemp(prefix="pg-test-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' user to run the server as")
        os.chown(folder, account.pw_uid, account.pw_gid)
        user = "postgres"
    port, data = free_port(), folder / "data"

    def pg(*args):
        return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=folder, user=user, check=True,
                              capture_output=True, text=True, timeout=120)

    try:
        pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        pg("pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
           "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_one_postgresql_study(tmp_path, mnist_dir, postgres_url):
    workers, _ = run_two_tune_processes(tmp_path, mnist_dir, postgres_url, timeout=600)

    # the trial table, read from the server itself
    with psycopg2.connect(postgres_url.replace("+psycopg2", "")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                       "WHERE s.study_name = 'Tiny' ORDER BY t.number")
        rows = cursor.fetchall()
    # each process stops once the study holds 4 finished trials; the other may be mid-trial then
    assert len(rows) in (4, 5)
    assert [number for number, _ in rows] == list(range(len(rows)))  # no number twice, none missing
    assert {state for _, state in rows} == {"COMPLETE"}
    study = optuna.load_study(study_name="Tiny", storage=postgres_url)
    assert len({json.dumps(t.params) + str(t.number) for t in study.trials}) == len(rows)

    # one run folder per trial, and both processes trained some of them
    runs = run_dirs(tmp_path / "saved")
    assert [run.name for run in runs] == [f"trial-{n}" for n in range(len(rows))]
    statuses = [json.loads((run / "status.json").read_text()) for run in runs]
    assert {s["status"] for s in statuses} == {"finished"}
    assert {s["pid"] for s in statuses} == {w.pid for w in workers}


def test_journal_storage_on_a_file_holds_the_study(tmp_path, mnist_dir):
    config = json.loads(tune_config(tmp_path, mnist_dir, {"n_trials": 2, "sampler": "grid", "space": SPACE},
                                    {"trainer.epochs": 1}).read_text())
    journal = tmp_path / "shared" / "study.journal"
    journal.parent.mkdir()
    tune(config, storage=f"journal:{journal}")
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="Tiny", storage=storage).trials
    assert sorted(t.params["optimizer.args.lr"] for t in trials) == sorted(SPACE["optimizer.args.lr"]["choices"])
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_journal_storage_in_a_missing_folder_is_a_config_error(tmp_path, mnist_dir):
    config = json.loads(tune_config(tmp_path, mnist_dir, {"n_trials": 1, "space": SPACE}).read_text())
    with pytest.raises(ConfigError, match="does not exist; create it first"):
        tune(config, storage=f"journal:{tmp_path / 'nowhere' / 'study.journal'}")


# A model that, in a worker started with HOLD_MARKER set, stops in the forward pass of its training
# batch number `hold_after + 1` (after epoch 1's checkpoint) and waits there until it is killed.
HOLD_MODULE = """
import os, time
from pathlib import Path
from model.model import MnistModel

class HoldModel(MnistModel):
    def __init__(self, hold_after):
        super().__init__()
        self.hold_after, self.training_batches = hold_after, 0

    def forward(self, x):
        if self.training and os.environ.get("HOLD_MARKER"):
            self.training_batches += 1
            if self.training_batches > self.hold_after:
                Path(os.environ["HOLD_MARKER"]).touch()
                while True:
                    time.sleep(1)
        return super().forward(x)
"""


def trial_table(url):
    with psycopg2.connect(url.replace("+psycopg2", "")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                       "WHERE s.study_name = 'Tiny' ORDER BY t.number")
        return cursor.fetchall()


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_by_its_heartbeat_and_retried_from_its_checkpoint(
        tmp_path, mnist_dir, postgres_url):
    (tmp_path / "holdmodel.py").write_text(HOLD_MODULE)
    grace = 2
    config = tune_config(tmp_path, mnist_dir, {"n_trials": 1, "sampler": "random", "pruner": "none", "space": SPACE,
                                               "heartbeat_interval": 1, "grace_period": grace, "max_retry": 1},
                         {"arch": {"type": "HoldModel", "module": "holdmodel", "args": {"hold_after": 6}},
                          "data_loader.args.limit": 128, "trainer.epochs": 3})  # 3 batches per epoch
    command = [sys.executable, "tune.py", "-c", str(config), "--storage", postgres_url]
    marker = tmp_path / "held"
    first = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=script_env({"PYTHONPATH": str(tmp_path), "HOLD_MARKER": str(marker)}))
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():  # the worker is in epoch 3 of trial 0, epochs 1 and 2 saved
            assert first.poll() is None and time.monotonic() < deadline, first.communicate(timeout=5)[0]
            time.sleep(0.1)
        assert trial_table(postgres_url) == [(0, "RUNNING")]
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait(timeout=30)
    killed_at = time.monotonic()
    dead_run = tmp_path / "saved" / "models" / "Tiny" / "trial-0"
    assert read_status(dead_run)["status"] == "crashed"  # status.json said running; its process is gone

    time.sleep(max(0.0, killed_at + grace + 1 - time.monotonic()))  # its heartbeat is stale now
    second = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                            env=script_env({"PYTHONPATH": str(tmp_path)}))
    assert second.returncode == 0, second.stdout + second.stderr

    assert trial_table(postgres_url) == [(0, "FAIL"), (1, "COMPLETE")]
    dead, retry = optuna.load_study(study_name="Tiny", storage=postgres_url).trials
    assert retry.params == dead.params and retry.system_attrs["failed_trial"] == 0
    newest = dead_run / "checkpoint-epoch2.pth"
    assert retry.user_attrs["resumed_from"] == str(newest)  # it went on from the dead trial's last save
    retry_run = tmp_path / "saved" / "models" / "Tiny" / "trial-1"
    assert sorted(p.name for p in retry_run.glob("checkpoint-epoch*.pth")) == ["checkpoint-epoch3.pth"]
    history = torch.load(retry_run / "checkpoint-epoch3.pth", weights_only=True)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert json.loads((retry_run / "record.json").read_text())["parts"][0]["resumed_from"] == str(newest)
    assert retry.value == min(row["val_loss"] for row in history)
