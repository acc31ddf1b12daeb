"""A run's folders and the paths of every file a run writes:

    <save_dir>/models/<name>/<run_id>/   config.json, checkpoints, status.json, train.lock,
                                         record.json and record/ (what produced the run),
                                         skipped_samples.txt, validation_report/
    <save_dir>/log/<name>/<run_id>/      info.log, metrics.csv, curves.png, TensorBoard events,
                                         profile/ (trainer.profile)

Everything that finds or names a run's files asks a RunFolder. Making one is `create` (a new
run, with an unused run id) or `reopen` (a resumed run going on in its own folders), both under
the run's lock; under DDP rank 0 makes the folders and the other ranks take its paths."""
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from utils import dist
from utils.dcp import remove_checkpoint
from utils.errors import ConfigError
from utils.io import write_json
from utils.write_faults import write_site

from .lock import LOCK_NAME, RunLock
from .record import RECORD_DIR, RECORD_FILE
from .status import STATUS_FILE

MODELS, LOGS = "models", "log"
CONFIG_FILE = "config.json"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"
INFO_LOG = "info.log"
SKIPPED_SAMPLES = "skipped_samples.txt"
VALIDATION_REPORT = "validation_report"
PROFILE_DIR = "profile"


@dataclass(frozen=True)
class RunFolder:
    models_dir: Path  # <save_dir>/models/<name>/<run_id>
    log_dir: Path  # <save_dir>/log/<name>/<run_id>

    @classmethod
    def at(cls, save_dir, name, run_id):
        save_dir = Path(save_dir)
        return cls(save_dir / MODELS / name / run_id, save_dir / LOGS / name / run_id)

    @classmethod
    def containing(cls, path):
        """The run that a checkpoint file, a models folder or a log folder belongs to; None for
        a path outside the layout (a checkpoint copied elsewhere)."""
        path = Path(path).resolve()
        for folder in (path, path.parent):
            if folder.parent.parent.name in (MODELS, LOGS):
                return cls.at(folder.parents[2], folder.parent.name, folder.name)
        return None

    @staticmethod
    def runs_dir(save_dir, name):
        """<save_dir>/models/<name>: the runs of one experiment."""
        return Path(save_dir) / MODELS / str(name)

    @property
    def name(self):
        return self.models_dir.parent.name

    @property
    def run_id(self):
        return self.models_dir.name

    @property
    def save_dir(self):
        return self.models_dir.parents[2]

    def checkpoint(self, filename):
        return self.models_dir / filename

    @property
    def config_file(self):
        return self.models_dir / CONFIG_FILE

    @property
    def status_file(self):
        return self.models_dir / STATUS_FILE

    @property
    def lock_file(self):
        return self.models_dir / LOCK_NAME

    @property
    def record_file(self):
        return self.models_dir / RECORD_FILE

    @property
    def record_dir(self):
        return self.models_dir / RECORD_DIR

    @property
    def profile_dir(self):
        return self.log_dir / PROFILE_DIR

    @property
    def skipped_samples(self):
        return self.models_dir / SKIPPED_SAMPLES

    @property
    def validation_report_dir(self):
        return self.models_dir / VALIDATION_REPORT

    @property
    def metrics_csv(self):
        return self.log_dir / METRICS_CSV

    @property
    def curves_png(self):
        return self.log_dir / CURVES_PNG

    @property
    def info_log(self):
        return self.log_dir / INFO_LOG

    def remove_stale_temp_files(self):
        """Temp files and folders of saves that a killed process left half-written. A sharded
        checkpoint folder that a kill caught in the instant of its replacement (see
        utils.dcp.publish) goes back under its name. Only called under the run's lock: no live
        process is writing them."""
        for folder in (self.models_dir, self.log_dir):
            for temp in folder.glob(".*.tmp"):
                if temp.name.endswith(".old.tmp") and temp.is_dir() and not (folder / temp.name[1:-8]).exists():
                    temp.rename(folder / temp.name[1:-8])
                else:
                    remove_checkpoint(temp)


def find_run_folders(roots):
    """Every run under `roots` (a run folder, or folders holding runs at any depth), oldest
    config.json first."""
    found = set()
    for root in map(Path, roots):
        configs = [root / CONFIG_FILE] if (root / CONFIG_FILE).is_file() else root.rglob(CONFIG_FILE)
        for config in configs:
            if config.parent.parent.parent.name == MODELS:
                found.add(config.parent.resolve())
    return [RunFolder.containing(folder) for folder in sorted(found, key=lambda p: (p / CONFIG_FILE).stat().st_mtime)]


def newest_run_folder(runs_dir):
    """The run of `runs_dir` (<save_dir>/models/<name>) whose config.json was written last, or None."""
    runs = [p for p in Path(runs_dir).glob("*") if (p / CONFIG_FILE).is_file()]
    newest = max(runs, key=lambda p: (p / CONFIG_FILE).stat().st_mtime, default=None)
    return RunFolder.containing(newest) if newest is not None else None


def test_result_file(checkpoint_path, test_set=None):
    """What test.py writes for a checkpoint: <checkpoint>_test.json beside it for the run's own
    test data, <checkpoint>_test-<test_set>.json for another test set."""
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(f"{checkpoint_path.stem}_test{_suffix(test_set)}.json")


def report_dir(checkpoint_path, test_set=None):
    """The evaluation report test.py writes for a checkpoint: <checkpoint>_report/ beside it, or
    <checkpoint>_report-<test_set>/ for another test set."""
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(f"{checkpoint_path.stem}_report{_suffix(test_set)}")


def _suffix(test_set):
    return f"-{test_set}" if test_set else ""


def open_run_folder(config, save_dir, name, run_id=None, continued=None, before_writing=None):
    """Create a new run folder (`continued` None) or reopen `continued`, take its lock, write
    `config` as its config.json; return (RunFolder, lock). `before_writing(folder)` runs under the
    lock before anything is written and may raise ConfigError. Under DDP, rank 0 does this and
    the other ranks take its folder (their lock is None)."""
    dist.barrier()  # DDP: every rank has resolved `-r auto` before rank 0 adds a new run folder
    if not dist.is_main_process():
        return _follow_main_process()
    try:
        folder, lock = _open_locked(save_dir, name, run_id, continued, before_writing)
        with write_site(folder.log_dir):
            folder.log_dir.mkdir(parents=True, exist_ok=True)
        with write_site(folder.config_file):
            write_json(config, folder.config_file)
    except ConfigError as err:
        dist.broadcast_object({"error": str(err)})  # the other ranks stop with the same message
        raise
    dist.broadcast_object({"models_dir": str(folder.models_dir), "log_dir": str(folder.log_dir)})
    return folder, lock


def _open_locked(save_dir, name, run_id, continued, before_writing):
    if continued is None:
        runs_dir = RunFolder.runs_dir(save_dir, name)
        with write_site(runs_dir):
            models_dir = _make_unused_dir(runs_dir, run_id or datetime.now().strftime(r"%m%d_%H%M%S"))
        folder = RunFolder.at(save_dir, name, models_dir.name)
    else:
        folder = continued
    lock = RunLock(folder.models_dir).acquire()  # before anything in the folder is written
    if before_writing is not None:
        try:
            before_writing(folder)
        except ConfigError:
            lock.release()
            raise
    return folder, lock


def _follow_main_process():
    """DDP ranks > 0: create nothing and take rank 0's run folder (their clocks and the folders
    that already exist may differ)."""
    folders = dist.broadcast_object(None)
    if "error" in folders:
        raise ConfigError(folders["error"])
    return RunFolder(Path(folders["models_dir"]), Path(folders["log_dir"])), None


def _make_unused_dir(parent, run_id):
    """Create parent/run_id, or run_id_1, run_id_2... when two runs start in the same second."""
    parent.mkdir(parents=True, exist_ok=True)
    candidate, suffix = run_id, 1
    while True:
        try:
            (parent / candidate).mkdir()
            return parent / candidate
        except FileExistsError:
            candidate, suffix = f"{run_id}_{suffix}", suffix + 1
