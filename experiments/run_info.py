"""What a run folder tells about its run, read from the files the trainer writes: config.json,
status.json (see utils/run_status.py), metrics.csv in the log folder, and the *_test.json
files of test.py."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from utils.run_status import read_status, run_seconds

TEST_RESULT = "model_best_test.json"


@dataclass
class RunInfo:
    folder: Path
    config: dict
    status: str
    history: pd.DataFrame
    seconds: float | None
    sweep: str | None
    test: dict = field(default_factory=dict)

    @property
    def name(self):
        return self.config.get("name", self.folder.parent.name)

    @property
    def run_id(self):
        return self.folder.name

    @property
    def monitor(self):
        """(mode, metric) of trainer.monitor, or (None, None) when off."""
        monitor = self.config.get("trainer", {}).get("monitor", "off")
        return tuple(monitor.split()) if monitor != "off" else (None, None)

    @property
    def epochs_done(self):
        return int(self.history["epoch"].max()) if "epoch" in self.history else 0

    def best(self):
        """(best monitored value, its epoch), or (None, None)."""
        mode, metric = self.monitor
        if metric is None or metric not in self.history or self.history[metric].isna().all():
            return None, None
        row = self.history[metric].idxmin() if mode == "min" else self.history[metric].idxmax()
        return float(self.history.loc[row, metric]), int(self.history.loc[row, "epoch"])

    def value_at_best(self, key):
        """The logged `key` at the best epoch (the last epoch when nothing is monitored)."""
        if key not in self.history or self.history.empty:
            return None
        _, epoch = self.best()
        rows = self.history[self.history["epoch"] == epoch] if epoch is not None else self.history.tail(1)
        return float(rows[key].iloc[-1])


def log_dir_of(run_folder):
    """<save_dir>/models/<name>/<run_id> -> <save_dir>/log/<name>/<run_id>."""
    run_folder = Path(run_folder)
    return run_folder.parents[2] / "log" / run_folder.parent.name / run_folder.name


def read_run(run_folder):
    run_folder = Path(run_folder)
    config = json.loads((run_folder / "config.json").read_text())
    metrics_csv = log_dir_of(run_folder) / "metrics.csv"
    history = pd.read_csv(metrics_csv) if metrics_csv.is_file() else pd.DataFrame()
    record = read_status(run_folder)
    test_path = run_folder / TEST_RESULT
    test = json.loads(test_path.read_text()) if test_path.is_file() else {}
    test = {key: value for key, value in test.items()
            if isinstance(value, (int, float)) and key not in ("epoch", "samples")}
    status = record["status"] if record else _status_without_record(run_folder, config, history)
    return RunInfo(folder=run_folder, config=config, status=status, history=history,
                   seconds=run_seconds(record) if record else None,
                   sweep=record.get("sweep") if record else None, test=test)


def _status_without_record(run_folder, config, history):
    """Runs from before status.json existed: judged by their checkpoints and metrics."""
    if any(run_folder.glob("checkpoint-epoch*-step*.pth")):
        return "stopped"
    if not history.empty and int(history["epoch"].max()) >= config.get("trainer", {}).get("epochs", 0):
        return "finished"
    return "unknown"


def find_runs(roots):
    """Every run folder under `roots`: <...>/models/<name>/<run_id>/config.json."""
    folders = set()
    for root in map(Path, roots):
        if (root / "config.json").is_file() and root.parent.parent.name == "models":
            folders.add(root.resolve())
            continue
        for config in root.rglob("config.json"):
            if config.parent.parent.parent.name == "models":
                folders.add(config.parent.resolve())
    return sorted(folders, key=lambda p: (p / "config.json").stat().st_mtime)
