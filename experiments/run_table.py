"""The table of runs.py: one row per run folder, with the config keys in which each run
differs from the first row."""
import json
import os

import pandas as pd

from .run_info import read_run

# where a run is, not how it was trained: left out of the differences
LOCATION_KEYS = ("trainer.save_dir",)


def flatten(config, prefix=""):
    """{"optimizer.args.lr": 0.001, ...}; lists stay whole values."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(config, reference):
    """'key=value' for each key whose value differs from `reference` (or exists in one only)."""
    mine, theirs = flatten(config), flatten(reference)
    keys = sorted(k for k in set(mine) | set(theirs) if k not in LOCATION_KEYS and mine.get(k, KeyError)
                  != theirs.get(k, KeyError))
    return ", ".join(f"{k}={json.dumps(mine[k]) if k in mine else '(absent)'}" for k in keys)


def run_rows(folders):
    """One dict per run folder (the columns of the table)."""
    rows = []
    for folder in folders:
        info = read_run(folder)
        best, best_epoch = info.best()
        metric = info.monitor.key
        status = f"{info.status} by {info.stop_signal}" if info.stop_signal else info.status
        row = {"name": info.name, "run_id": info.run_id, "status": status, "epochs": info.epochs_done,
               "monitor": metric or "-", "best": best, "best_epoch": best_epoch,
               **{f"test_{k}": v for k, v in info.test.items()},
               "duration_s": round(info.seconds, 1) if info.seconds is not None else None,
               "commit": info.commit, "data": info.data_fingerprint,
               "sweep_member": _sweep_member(info.sweep, info.run), "path": _shown_path(info.folder),
               "_info": info}
        rows.append(row)
    return rows


def build_table(folders, name=None, sort=None, descending=False):
    """The runs as a DataFrame; `sort` is a column or a logged metric (its value at the best epoch)."""
    rows = [row for row in run_rows(folders) if name is None or row["name"] == name]
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    if sort is not None:
        key = table[sort] if sort in table else table["_info"].map(lambda info: info.value_at_best(sort))
        if sort not in table and key.isna().all():
            raise ValueError(sort)
        table = table.assign(_key=key).sort_values("_key", ascending=not descending, na_position="last")
        table = table.drop(columns="_key").reset_index(drop=True)
    reference = table["_info"].iloc[0].config
    table["differs_from_first"] = [differences(info.config, reference) or "-" for info in table["_info"]]
    return table.drop(columns="_info")


def _sweep_member(sweep, run):
    """'<sweep id>/<member folder>' for a sweep member (whose save_dir is its member folder),
    else '-'."""
    if not sweep:
        return "-"
    sweep_folder = sweep.rpartition("#")[0]
    return f"{os.path.basename(sweep_folder.rstrip('/'))}/{run.save_dir.name}"


def _shown_path(folder):
    relative = os.path.relpath(folder)
    return str(folder) if relative.startswith("..") else relative
