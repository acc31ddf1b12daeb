"""The table of runs.py: one row per run folder, with the config keys in which each run
differs from the first row."""
import json
import os

import pandas as pd

from .run_info import read_run

# where a run is, and what it measured from its data, not how it was trained: left out of the differences
LOCATION_KEYS = ("trainer.save_dir",)
RECORDED_KEYS = ("class_names", "target_names", "data_loader.args.preprocessing", "data_loader.args.target_scaling")
MAX_DIFFERENCES = 8  # keys shown per run; the rest are counted


def flatten(config, prefix=""):
    """{"optimizer.args.lr": 0.001, ...}; lists stay whole values, empty objects add no key."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _compared(key):
    return key not in LOCATION_KEYS and not any(key == k or key.startswith(k + ".") for k in RECORDED_KEYS)


def differences(config, reference):
    """'key=value' for each key whose value differs from `reference` (or exists in one only); at
    most MAX_DIFFERENCES of them, then how many more."""
    mine, theirs = flatten(config), flatten(reference)
    keys = sorted(k for k in set(mine) | set(theirs)
                  if _compared(k) and mine.get(k, KeyError) != theirs.get(k, KeyError))
    shown = [f"{k}={_short(json.dumps(mine[k])) if k in mine else '(absent)'}" for k in keys[:MAX_DIFFERENCES]]
    more = f", ... ({len(keys) - MAX_DIFFERENCES} more)" if len(keys) > MAX_DIFFERENCES else ""
    return ", ".join(shown) + more


def _short(text, limit=40):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_rows(folders):
    """One dict per run folder (the columns of the table)."""
    rows = []
    for folder in folders:
        info = read_run(folder)
        best, best_epoch = info.best()
        metric = info.monitor.key
        status = f"{info.status} by {info.stop_signal}" if info.stop_signal else info.status
        row = {"name": info.name, "run_id": info.run_id, "task": info.config.get("task", "-"), "status": status,
               "epochs": info.epochs_done,
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
    # each run against the first run of its own experiment: two experiments' configs differ everywhere
    first_of_name = {}
    for info in table["_info"]:
        first_of_name.setdefault(info.name, info.config)
    table["differs_from_first"] = [differences(info.config, first_of_name[info.name]) or "-"
                                   for info in table["_info"]]
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
