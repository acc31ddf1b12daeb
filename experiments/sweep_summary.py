"""The summary of a sweep: for each setting (the grid values other than seeds and folds), the
mean and standard deviation over its repeats of the best monitored value and of the test
results (when test.py ran). Written as summary.csv and printed as a table."""
import json

import pandas as pd

from utils import atomic_write_csv
from utils.monitor import Monitor

from .run_info import read_run
from .sweep_manifest import member_state

SUMMARY = "summary.csv"


def member_results(sweep_dir, manifest):
    """One row per finished member: its grid values, best monitored value, test results."""
    rows = []
    for member in manifest["members"]:
        state, run = member_state(sweep_dir, member, manifest["name"])
        if state != "finished":
            continue
        info = read_run(run)
        best, _ = info.best()
        values = {key: value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
                  for key, value in member["values"].items()}  # lists group by their text
        rows.append({**values, "best": best, **{f"test_{k}": v for k, v in info.test.items()}})
    return pd.DataFrame(rows)


def summarize(results, manifest):
    """Group the member rows by setting; columns <value>_mean and <value>_std (sample std, n-1)."""
    repeat = set(manifest.get("repeat_keys", ()))
    setting_keys = [key.lstrip("+") for key in manifest["grid"] if key.lstrip("+") not in repeat]
    if results.empty:
        return pd.DataFrame()
    value_columns = [c for c in results.columns if c == "best" or c.startswith("test_")]
    metric = Monitor(manifest.get("monitor", "off")).key or "off"
    grouped = results.groupby(setting_keys, sort=False, dropna=False) if setting_keys \
        else results.groupby(lambda _: "all")
    table = grouped[value_columns].agg(["mean", "std"])
    table.columns = [f"{'best_' + metric if col == 'best' else col}_{stat}" for col, stat in table.columns]
    table.insert(0, "runs", grouped.size())
    return table.reset_index() if setting_keys else table.reset_index(drop=True)


def write_summary(sweep_dir, manifest):
    """Write summary.csv; return (the table as text, its path), or (None, None) with no finished member."""
    table = summarize(member_results(sweep_dir, manifest), manifest)
    if table.empty:
        return None, None
    path = sweep_dir / SUMMARY
    atomic_write_csv(table, path)
    return format_table(table), path


def format_table(table):
    """'mean ± std' cells for each *_mean/*_std pair."""
    shown = pd.DataFrame(index=table.index)
    for column in table.columns:
        if column.endswith("_std"):
            continue
        if column.endswith("_mean"):
            std = table[column[:-5] + "_std"]
            shown[column[:-5]] = [_mean_std(m, s) for m, s in zip(table[column], std)]
        else:
            shown[column] = table[column]
    return shown.to_string(index=False)


def _mean_std(mean, std):
    if pd.isna(mean):
        return "-"
    return f"{mean:.4g}" if pd.isna(std) else f"{mean:.4g} ± {std:.2g}"
