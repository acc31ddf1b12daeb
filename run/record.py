"""record.json in a run folder: what produced the run. One part per start of the run (the
first, then each resume in the same folder), each with the command line, the git state, the
packages, torch/CUDA/cuDNN, the hardware, the thread counts, the determinism flags and a
fingerprint of the data. Larger pieces go beside it in record/: the uncommitted diff
(code-<part>.patch), `pip freeze` (pip-freeze-<part>.txt) and the data's file list
(data-files-<part>.tsv); a part whose piece equals an earlier part's points to that file.
A resume whose code, data or packages differ from the run's last part is told what changed."""
import hashlib
import json
import logging
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path

from utils import dist
from utils.io import atomic_open, write_json
from utils.write_faults import write_site

from . import data_fingerprint, environment

RECORD_FILE = "record.json"
RECORD_DIR = "record"
SHOWN_NAMES = 3  # changed files or packages named in a warning; the rest are counted
DATA_CHANGE_WORDS = {"added": "added", "removed": "removed", "resized": "of another size",
                     "touched": "with only another modification time"}

logger = logging.getLogger("record")


def default_command():
    """The command line of this process, as typed: `python train.py -c config.json`."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(".py"):
        argv = ["python", os.path.basename(argv[0]) if Path(argv[0]).parent == Path(".") else argv[0], *argv[1:]]
    return shlex.join(argv)


def read_record(models_dir):
    """The record of a run folder (None when it has none or it cannot be read)."""
    try:
        return json.loads((Path(models_dir) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None


def last_part(models_dir):
    record = read_record(models_dir)
    return record["parts"][-1] if record and record.get("parts") else None


def write_run_record(models_dir, config, command=None, resumed_from=None, previous_dir=None):
    """Add this start of the run to `models_dir`/record.json. `previous_dir`: the run folder
    whose record the start continues (the same folder on a resume, the source run's for a new
    run branched off a checkpoint). Returns the sentences that say what changed since that
    record's last part (empty for a new run), which are also logged as a warning."""
    models_dir = Path(models_dir)
    record = read_record(models_dir) or {"parts": []}
    part, pieces = _collect(len(record["parts"]), config, command, resumed_from)
    _attach_pieces(models_dir, record["parts"], part, pieces)
    record["parts"].append(part)
    with write_site(models_dir / RECORD_FILE):
        write_json(record, models_dir / RECORD_FILE)
    changes = []
    previous = last_part(previous_dir) if previous_dir is not None and Path(previous_dir) != models_dir \
        else (record["parts"][-2] if len(record["parts"]) > 1 else None)
    if previous is not None and resumed_from is not None:
        changes = describe_changes(previous, previous_dir or models_dir, part, pieces)
        if changes:
            logger.warning("This resume differs from what produced the run (see "
                           f"{models_dir / RECORD_FILE}): " + "; ".join(changes) + ".")
    return changes


def _collect(number, config, command, resumed_from):
    """(part `number`, {piece: text}) for this process now."""
    git, patch = environment.git_state()
    data, rows = data_fingerprint.fingerprint(config.get("data_loader"))
    freeze = environment.installed_packages()
    part = {
        "part": number,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command or default_command(),
        "cwd": os.getcwd(),
        "resumed_from": str(resumed_from) if resumed_from is not None else None,
        "code": {"git": git, "source_sha256": environment.source_fingerprint()},
        "packages": {**environment.torch_versions(), "count": len(freeze)},
        "hardware": environment.hardware(),
        "world_size": dist.world_size(),
        "threads": environment.threads(),
        "determinism": {**environment.determinism_flags(), "seed": config.get("seed")},
        "data": data,
    }
    pieces = {"patch": patch or None, "freeze": "".join(f"{line}\n" for line in freeze),
              "data_files": data_fingerprint.rows_to_text(rows)}
    return part, pieces


PIECES = {"patch": ("code", "code-{}.patch"), "freeze": ("packages", "pip-freeze-{}.txt"),
          "data_files": ("data", "data-files-{}.tsv")}


def _attach_pieces(models_dir, earlier_parts, part, pieces):
    """Write each piece to record/ (or point to an earlier part's identical file); the part
    keeps the file's path relative to the run folder and the piece's hash."""
    for name, (section, pattern) in PIECES.items():
        text = pieces[name]
        if text is None:
            part[section][name] = None
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        same = [p[section][name] for p in earlier_parts
                if (p.get(section, {}).get(name) or {}).get("sha256") == digest]
        relative = same[0]["file"] if same else f"{RECORD_DIR}/{pattern.format(part['part'])}"
        if not same:
            path = models_dir / relative
            with write_site(path):
                path.parent.mkdir(exist_ok=True)
                with atomic_open(path, "wt") as handle:
                    handle.write(text)
        part[section][name] = {"file": relative, "sha256": digest}


def describe_changes(previous, previous_dir, current, pieces):
    """Sentences naming what differs between two parts: the code, the data, the packages."""
    changes = []
    code_change = _code_change(previous["code"], current["code"])
    if code_change:
        changes.append(code_change)
    if previous["data"]["sha256"] != current["data"]["sha256"]:
        changes.append(_data_change(previous, previous_dir, current, pieces["data_files"]))
    changes += _package_changes(previous, previous_dir, current, pieces["freeze"])
    return changes


def _code_change(before, after):
    old, new = before.get("git"), after.get("git")
    if old and new:
        if old["commit"] != new["commit"]:
            return f"the code changed: git commit {old['commit'][:10]} -> {new['commit'][:10]}"
        if old.get("patch_sha256") != new.get("patch_sha256"):
            return (f"the code changed: the uncommitted changes on commit {new['commit'][:10]} differ "
                    f"(record/ holds both patches)")
        return None
    if before.get("source_sha256") != after.get("source_sha256"):
        return "the code changed: the project's Python files differ"
    return None


def _data_change(previous, previous_dir, current, current_text):
    listed = (previous["data"].get("data_files") or {}).get("file")
    try:
        before = data_fingerprint.rows_from_text((Path(previous_dir) / listed).read_text()) if listed else None
    except (OSError, ValueError):
        before = None
    if before is None:
        return f"the data changed: fingerprint {previous['data']['sha256']} -> {current['data']['sha256']}"
    diff = data_fingerprint.changed_files(before, data_fingerprint.rows_from_text(current_text))
    described = [f"{len(paths)} file(s) {DATA_CHANGE_WORDS[kind]} ({_some(paths)})" for kind, paths in diff.items()
                 if paths]
    return "the data changed: " + (", ".join(described) or "the data folders differ")


def _package_changes(previous, previous_dir, current, current_freeze):
    changes = []
    for key in ("torch", "cuda", "cudnn", "python"):
        if previous["packages"].get(key) != current["packages"].get(key):
            changes.append(f"{key} {previous['packages'].get(key)} -> {current['packages'].get(key)}")
    listed = (previous["packages"].get("freeze") or {}).get("file")
    if listed and previous["packages"]["freeze"]["sha256"] != current["packages"]["freeze"]["sha256"]:
        try:
            before = set((Path(previous_dir) / listed).read_text().splitlines())
        except OSError:
            return changes
        after = set(current_freeze.splitlines())
        if before != after:
            changes.append(f"installed packages changed: {_some(sorted(after - before))} installed, "
                           f"{_some(sorted(before - after))} gone")
    return changes


def _some(names):
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "") if names else "none"
