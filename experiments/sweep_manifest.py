"""A sweep folder: sweep.json (the manifest: grid, members, how they were made) and one folder
per member holding its config, its console output and its own save_dir, in which the member
is an ordinary run:

    <save_dir>/sweeps/<name>/<sweep_id>/sweep.json, summary.csv
        003-lr=0.01-seed=2/member_config.json, output.log,
                           models/<name>/<run_id>/..., log/<name>/<run_id>/...
"""
import json
import sys
from datetime import datetime
from pathlib import Path

from run.checkpoints import find_newest_run_checkpoint
from run.folder import RunFolder, newest_run_folder
from run.status import read_status
from utils import ConfigError, write_json

from .sweep_args import MANIFEST, is_sweep_dir  # noqa: F401 (public here)

MEMBER_CONFIG = "member_config.json"
MEMBER_OUTPUT = "output.log"


def new_sweep_dir(save_dir, name):
    """An unused <save_dir>/sweeps/<name>/<timestamp> path (created by write_sweep)."""
    parent = Path(save_dir) / "sweeps" / name
    stamp = datetime.now().strftime(r"%m%d_%H%M%S")
    candidate, suffix = parent / stamp, 1
    while candidate.exists():
        candidate, suffix = parent / f"{stamp}_{suffix}", suffix + 1
    return candidate


def write_sweep(sweep_dir, grid, members, configs, repeat_keys, run_test):
    """Create the sweep folder: the manifest and each member's folder and config."""
    sweep_dir.mkdir(parents=True)
    entries = []
    for index, (folder, values) in enumerate(members):
        (sweep_dir / folder).mkdir()
        write_json(configs[index], sweep_dir / folder / MEMBER_CONFIG)
        entries.append({"index": index, "folder": folder, "values": values})
    manifest = {"name": configs[0]["name"], "created": datetime.now().isoformat(timespec="seconds"),
                "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "grid": grid,
                "repeat_keys": list(repeat_keys), "monitor": configs[0]["trainer"].get("monitor", "off"),
                "run_test": run_test, "members": entries}
    write_json(manifest, sweep_dir / MANIFEST)
    return manifest


def read_manifest(sweep_dir):
    path = Path(sweep_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        manifest = err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), list) or "grid" not in manifest:
        problem = manifest if isinstance(manifest, Exception) else "no members or grid"
        raise ConfigError(f"'{path}' is not a readable sweep manifest ({problem}). Pass a folder made by "
                          "train.py -m, e.g. saved/sweeps/<name>/<sweep_id>.")
    return manifest


def member_config_path(sweep_dir, member):
    return Path(sweep_dir) / member["folder"] / MEMBER_CONFIG


def member_runs_dir(sweep_dir, member, name):
    """A member's runs: its folder is the save_dir of its config."""
    return RunFolder.runs_dir(Path(sweep_dir) / member["folder"], name)


def member_state(sweep_dir, member, name):
    """(state, RunFolder): state is "pending" (never started), or the status of the member's
    newest run (a resume may have added one): finished, stopped, crashed, running. A run folder
    without a status is "crashed" (it failed before training began)."""
    run = newest_run_folder(member_runs_dir(sweep_dir, member, name))
    if run is None:
        return "pending", None
    record = read_status(run.models_dir)
    return (record or {}).get("status", "crashed"), run


def resumable_checkpoint(sweep_dir, member, name):
    """The newest valid checkpoint among the member's runs, or None."""
    return find_newest_run_checkpoint(member_runs_dir(sweep_dir, member, name))
