"""Scaffold a new project: `python new_project.py ../MyProject` copies this framework without
version control, outputs, data, caches or the virtual environment."""
import shutil
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent
IGNORED = [".git", ".venv", "venv", "saved", "__pycache__", ".pytest_cache", ".ruff_cache",
           "*.pyc", "*.egg-info", "wandb", ".ipynb_checkpoints"]


def ignore(folder, names):
    """Skip IGNORED everywhere and the contents of the top-level data/ folder."""
    skipped = set(shutil.ignore_patterns(*IGNORED)(folder, names))
    if Path(folder).resolve() == (SOURCE / "data").resolve():
        skipped.update(names)
    return skipped


def main(argv):
    if len(argv) != 2:
        print("usage: python new_project.py ../NewProjectName", file=sys.stderr)
        return 2
    target = Path(argv[1]).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        print(f"error: '{target}' already exists and is not empty. Choose a new folder name, or "
              "empty or remove that folder first; nothing was copied.", file=sys.stderr)
        return 2
    if SOURCE == target or SOURCE in target.parents:
        print(f"error: '{target}' is inside this project; choose a folder outside it.", file=sys.stderr)
        return 2
    shutil.copytree(SOURCE, target, ignore=ignore, dirs_exist_ok=True)
    (target / "data").mkdir(exist_ok=True)
    print(f"New project initialized at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
