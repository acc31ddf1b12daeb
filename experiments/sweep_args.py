"""train.py's sweep flags, and telling a sweep command from a single run. Only argparse and a
file check: train.py decides this (and answers --help) before it imports torch."""
import argparse
from pathlib import Path

from utils.errors import ConfigError

MANIFEST = "sweep.json"


def is_sweep_dir(path):
    return path is not None and (Path(path) / MANIFEST).is_file()


SWEEP_ONLY_FLAGS = ("jobs", "member", "prepare_only", "test")


def add_sweep_arguments(parser):
    group = parser.add_argument_group("sweeps (see docs/experiments.md)")
    group.add_argument("-m", "--multirun", nargs="+", metavar="KEY=V1,V2",
                       help="run the grid of these values, each combination as its own run, e.g. "
                            "-m optimizer.args.lr=1e-3,1e-2 seed=1,2,3")
    group.add_argument("--jobs", type=int, default=None, help="sweep members to run at a time (default 1)")
    group.add_argument("--member", type=int, default=None,
                       help="with -r SWEEP_FOLDER: run only the member with this index (a SLURM array task)")
    group.add_argument("--test", action="store_true",
                       help="run test.py on each finished member's model_best.pth; the summary adds its results")
    group.add_argument("--prepare-only", action="store_true",
                       help="write the sweep folder and print the sbatch command that runs it, run nothing")


def is_sweep_command(argv):
    """True for `-m ...` or `-r <sweep folder>`; sweep-only flags elsewhere are an error."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("-r", "--resume")
    add_sweep_arguments(early)
    known = early.parse_known_args(argv)[0]
    if known.multirun or is_sweep_dir(known.resume):
        return True
    given = [f"--{flag.replace('_', '-')}" for flag in SWEEP_ONLY_FLAGS if getattr(known, flag) not in (None, False)]
    if given:
        raise ConfigError(f"{', '.join(given)} applies to sweeps only: add -m KEY=V1,V2 to start one, or "
                          "-r SWEEP_FOLDER to continue one.")
    return False
