"""Learning curves of one or several runs, overlaid: python plot.py RUN_DIR [RUN_DIR ...].
A run folder is saved/log/<name>/<run_id> (where metrics.csv is) or saved/models/<name>/<run_id>."""
import argparse
from pathlib import Path

from evaluation.curves import default_curves_path, read_run, write_curves
from utils import ConfigError, main_guard


def main(run_dirs, output=None):
    runs = []
    for run_dir in run_dirs:
        run = read_run(run_dir)
        if run is None:
            raise ConfigError(f"'{run_dir}' holds no metrics.csv. Pass a run folder: saved/log/<name>/<run_id> "
                              "or saved/models/<name>/<run_id> of a run that finished at least one epoch.")
        runs.append(run)
    if output is None:
        output = default_curves_path(run_dirs[0]) if len(runs) == 1 else Path("curves.png")
    write_curves(runs, output)
    print(f"Learning curves of {len(runs)} run(s) written to {output}")
    return Path(output)


@main_guard
def run():
    parser = argparse.ArgumentParser(description="Plot the learning curves of one or several runs.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (several: overlaid)")
    parser.add_argument("-o", "--output", default=None,
                        help="PNG to write (default: curves.png next to metrics.csv for one run, "
                             "./curves.png for several)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    args = parser.parse_args()
    main(args.run_dirs, args.output)


if __name__ == "__main__":
    run()
