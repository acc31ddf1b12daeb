"""The run folders, made once the config is checked and everything is built:
save_dir/models/<name>/<run_id>/ (config.json, checkpoints) and save_dir/log/<name>/<run_id>/
(info.log, metrics.csv, events). Under DDP, rank 0 makes them and the other ranks follow."""
import logging
from datetime import datetime
from pathlib import Path

from logger import setup_logging
from utils import dist, write_json


def make_run_folders(config, name, save_dir, run_id=None):
    """Create the folders, save `config` there and log to info.log; return (run_id, models
    folder, log folder)."""
    save_dir = Path(save_dir)
    dist.barrier()  # DDP: every rank has resolved `-r auto` before rank 0 adds a new run folder
    if not dist.is_main_process():
        return _follow_main_process(save_dir, name)
    run_id = run_id or datetime.now().strftime(r"%m%d_%H%M%S")
    models_dir = _make_unused_dir(save_dir / "models" / name, run_id)
    run_id = dist.broadcast_object(models_dir.name)
    log_dir = save_dir / "log" / name / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    write_json(config, models_dir / "config.json")
    setup_logging(log_dir)
    return run_id, models_dir, log_dir


def _follow_main_process(save_dir, name):
    """DDP ranks > 0: create nothing, take rank 0's run id (their clocks and the folders that
    already exist may differ) and log only warnings, so each line appears once."""
    run_id = dist.broadcast_object(None)
    console_logging()
    return run_id, save_dir / "models" / name / run_id, save_dir / "log" / name / run_id


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
