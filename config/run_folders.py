"""The run folders, made once the config is checked and everything is built:
save_dir/models/<name>/<run_id>/ (config.json, checkpoints) and save_dir/log/<name>/<run_id>/
(info.log, metrics.csv, events). Under DDP, rank 0 makes them and the other ranks follow."""
import logging
from datetime import datetime
from pathlib import Path

from logger import setup_logging
from utils import ConfigError, dist, write_json
from utils.run_folder import check_resumes_newest, remove_stale_temp_files
from utils.run_lock import RunLock
from utils.write_faults import write_site

logger = logging.getLogger("config")


def make_run_folders(config, name, save_dir, run_id=None, continued_run=None, resume=None, checkpoint=None):
    """Create the folders (or, with `continued_run`, reopen the run's own ones), lock the run,
    save `config` there and log to info.log; return (run_id, models folder, log folder, lock).
    `resume` and `checkpoint`: the path and loaded file a continued run goes on from. Under DDP,
    rank 0 does it and the other ranks follow (their lock is None)."""
    save_dir = Path(save_dir)
    dist.barrier()  # DDP: every rank has resolved `-r auto` before rank 0 adds a new run folder
    if not dist.is_main_process():
        return _follow_main_process()
    try:
        models_dir, log_dir, lock = _open_run_folders(config, save_dir / "models" / name, save_dir / "log" / name,
                                                      run_id, continued_run, resume, checkpoint)
    except ConfigError as err:
        dist.broadcast_object({"error": str(err)})  # the other ranks stop with the same message
        raise
    dist.broadcast_object({"save_dir": str(models_dir), "log_dir": str(log_dir)})
    setup_logging(log_dir)
    if continued_run is not None:
        logger.info(f"Resuming run {models_dir} from {resume} at "
                    f"{datetime.now().astimezone().isoformat(timespec='seconds')}")
    return models_dir.name, models_dir, log_dir, lock


def _open_run_folders(config, models_root, log_root, run_id, continued_run, resume, checkpoint):
    if continued_run is not None:
        models_dir, log_dir = continued_run.save_dir, continued_run.log_dir
    else:
        with write_site(models_root):
            models_dir = _make_unused_dir(models_root, run_id or datetime.now().strftime(r"%m%d_%H%M%S"))
        log_dir = log_root / models_dir.name
    lock = RunLock(models_dir).acquire()  # before anything in the folder is written
    if continued_run is not None:
        try:
            check_resumes_newest(resume, checkpoint, continued_run)
        except ConfigError:
            lock.release()
            raise
        remove_stale_temp_files(continued_run)
    with write_site(log_dir):
        log_dir.mkdir(parents=True, exist_ok=True)
    with write_site(models_dir / "config.json"):
        write_json(config, models_dir / "config.json")
    return models_dir, log_dir, lock


def _follow_main_process():
    """DDP ranks > 0: create nothing, take rank 0's run folders (their clocks and the folders
    that already exist may differ) and log only warnings, so each line appears once."""
    folders = dist.broadcast_object(None)
    if "error" in folders:
        raise ConfigError(folders["error"])
    models_dir, log_dir = Path(folders["save_dir"]), Path(folders["log_dir"])
    console_logging()
    return models_dir.name, models_dir, log_dir, None


def console_logging():
    """Log to the console only (no run folder yet, or none at all). Under DDP, ranks > 0 log
    only warnings, so that each line appears once."""
    setup_logging(None)
    if not dist.is_main_process():
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)


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
