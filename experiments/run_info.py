"""What a run folder tells about its run, read from the files the trainer writes: config.json,
status.json (see run/status.py), metrics.csv in the log folder, and what test.py wrote for
model_best.pth."""
import json
from dataclasses import dataclass, field

import pandas as pd

from run.checkpoints import best_checkpoint, has_step_checkpoint
from run.folder import RunFolder, test_result_file
from run.record import last_part
from run.status import read_status, run_seconds
from utils.monitor import Monitor


@dataclass
class RunInfo:
    run: RunFolder
    config: dict
    status: str
    history: pd.DataFrame
    seconds: float | None
    sweep: str | None
    test: dict = field(default_factory=dict)
    stop_signal: str | None = None  # for a stopped run: the signal that stopped it
    record: dict | None = None  # the last part of record.json: what produced the run (latest start)

    @property
    def folder(self):
        """The run's models folder (<save_dir>/models/<name>/<run_id>)."""
        return self.run.models_dir

    @property
    def name(self):
        return self.config.get("name", self.run.name)

    @property
    def run_id(self):
        return self.run.run_id

    @property
    def monitor(self):
        return Monitor.of_config(self.config)

    @property
    def epochs_done(self):
        return int(self.history["epoch"].max()) if "epoch" in self.history else 0

    def best(self):
        """(best monitored value, its epoch), or (None, None)."""
        row = self.monitor.best_row(self.history)
        if row is None:
            return None, None
        return float(self.history.loc[row, self.monitor.key]), int(self.history.loc[row, "epoch"])

    @property
    def commit(self):
        """The git commit of the run's latest start, shortened, with "+dirty" for uncommitted
        changes; "no git" outside a checkout; None for a run without a record."""
        if self.record is None:
            return None
        git = self.record["code"].get("git")
        if git is None:
            return "no git"
        return git["commit"][:10] + ("+dirty" if git["dirty"] else "")

    @property
    def data_fingerprint(self):
        return self.record["data"]["sha256"] if self.record is not None else None

    def value_at_best(self, key):
        """The logged `key` at the best epoch (the last epoch when nothing is monitored)."""
        if key not in self.history or self.history.empty:
            return None
        _, epoch = self.best()
        rows = self.history[self.history["epoch"] == epoch] if epoch is not None else self.history.tail(1)
        return float(rows[key].iloc[-1])


def read_run(run):
    """The RunInfo of `run`, a RunFolder or the path of its models folder."""
    run = run if isinstance(run, RunFolder) else RunFolder.containing(run)
    config = json.loads(run.config_file.read_text())
    history = pd.read_csv(run.metrics_csv) if run.metrics_csv.is_file() else pd.DataFrame()
    record = read_status(run.models_dir)
    best = best_checkpoint(run.models_dir)
    test_path = test_result_file(best) if best is not None else None
    test = json.loads(test_path.read_text()) if test_path is not None and test_path.is_file() else {}
    test = {key: value for key, value in test.items()
            if isinstance(value, (int, float)) and key not in ("epoch", "samples")}
    status = record["status"] if record else _status_without_record(run.models_dir, config, history)
    return RunInfo(run=run, config=config, status=status, history=history,
                   seconds=run_seconds(record) if record else None,
                   sweep=record.get("sweep") if record else None, test=test,
                   stop_signal=record.get("signal") if record else None, record=last_part(run.models_dir))


def _status_without_record(run_folder, config, history):
    """Runs from before status.json existed: judged by their checkpoints and metrics."""
    if has_step_checkpoint(run_folder):
        return "stopped"
    if not history.empty and int(history["epoch"].max()) >= config.get("trainer", {}).get("epochs", 0):
        return "finished"
    return "unknown"

