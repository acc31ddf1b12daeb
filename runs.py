"""List, compare and plot runs: every run folder under the given folders (default saved/),
sweep members and tune.py trials included.

    python runs.py [saved/] [--name NAME] [--sort val_loss] [--desc] [--csv]
    python runs.py --plot val_loss RUN [RUN ...] [--out curves.png]
"""
import argparse
import sys
from pathlib import Path

import pandas as pd

from experiments.run_plot import plot_runs
from experiments.run_table import build_table
from run.folder import RunFolder, find_run_folders
from utils import ConfigError, main_guard


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="List, compare and plot training runs")
    parser.add_argument("paths", nargs="*", default=None,
                        help="folders to search for runs (default saved/); with --plot: the runs to plot "
                             "(run folders, or run ids found under saved/)")
    parser.add_argument("--name", help="only runs of this experiment name")
    parser.add_argument("--sort", metavar="KEY",
                        help="sort by a column (status, epochs, best, duration_s, test_accuracy...) or by a "
                             "logged metric's value at each run's best epoch (val_loss, val_accuracy...)")
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument("--csv", action="store_true", help="print CSV (all columns) instead of a table")
    parser.add_argument("--plot", metavar="METRIC", help="overlay this metric's curves of the given runs in a PNG")
    parser.add_argument("--out", default=None, help="PNG file for --plot (default runs_<METRIC>.png)")
    parser.add_argument("--root", default="saved/", help="where --plot looks up run ids (default saved/)")
    return parser.parse_args(argv)


def list_runs(args):
    roots = args.paths or ["saved/"]
    for root in roots:
        if not Path(root).exists():
            raise ConfigError(f"'{root}' does not exist. Pass the folder that holds your runs (the config's "
                              "trainer.save_dir, default saved/).")
    try:
        table = build_table(find_run_folders(roots), args.name, args.sort, args.desc)
    except ValueError as err:
        raise ConfigError(f"--sort {err}: no such column, and no run logs a metric of that name.") from None
    if table.empty:
        print(f"No runs{' named ' + args.name if args.name else ''} under {', '.join(roots)}.")
        return
    if args.csv:
        table.to_csv(sys.stdout, index=False)
        return
    shown = table.drop(columns=["path"]).apply(_shown_column)
    with pd.option_context("display.max_colwidth", 80, "display.width", 250):
        print(shown.to_string(index=False))


def _shown_column(column):
    """Numbers with 4 significant digits, missing values as "-" (as text, so no column changes type
    in place)."""
    if pd.api.types.is_float_dtype(column):
        return column.map(lambda v: "-" if pd.isna(v) else f"{v:.4g}")
    return column.map(lambda v: "-" if v is None or (isinstance(v, float) and pd.isna(v)) else v)


def plot(args):
    if not args.paths:
        raise ConfigError("--plot METRIC needs the runs to plot: run folders, or run ids of runs under --root.")
    folders = [_find_run(text, args.root) for text in args.paths]
    out = Path(args.out or f"runs_{args.plot.replace('/', '_')}.png")
    missing = plot_runs(folders, args.plot, out)
    if len(missing) == len(folders):
        raise ConfigError(f"none of the runs logs '{args.plot}' in its metrics.csv; pick a column of it "
                          "(loss, val_loss, val_accuracy, lr, ...).")
    for run in missing:
        print(f"warning: {run.models_dir} has no '{args.plot}' column; left out of the plot.", file=sys.stderr)
    print(f"Saved {out}")


def _find_run(text, root):
    """The RunFolder of a run folder's path, or of a run id under `root`."""
    run = RunFolder.containing(text)
    if run is not None and run.config_file.is_file():
        return run
    matches = [run for run in find_run_folders([root]) if run.run_id == text] if Path(root).is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"run id '{text}' names {len(matches)} runs under {root}: "
                          f"{', '.join(str(run.models_dir) for run in matches)}. Pass the run folder instead.")
    raise ConfigError(f"'{text}' is neither a run folder (<save_dir>/models/<name>/<run_id>, with a config.json) "
                      f"nor the id of a run under {root}.")


@main_guard
def run():
    args = parse_args()
    if args.plot:
        plot(args)
    else:
        list_runs(args)


if __name__ == "__main__":
    run()
