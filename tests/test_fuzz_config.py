"""The config reader and the -o override parser, fuzzed through train.py's real entry point (in
this process; the training loop itself is replaced by a no-op). Config files: damaged copies of a
valid config, random JSON, a byte-order mark, bytes that are not UTF-8, nesting thousands deep,
numbers of thousands of digits, files over the size limit. Overrides: random key paths (existing
ones, new ones, list indices, '+' prefixes) with random values. Every case exits 0 or 2, prints
no traceback, names the culprit on exit 2 and leaves no run folder then; nothing else on disk
changes. Keys that name folders to write to are not generated: a random one would be obeyed."""
import itertools
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import train
from config.schema import MAX_CONFIG_FILE_BYTES
from conftest import tiny_config
from fuzz_helpers import FolderSnapshot, fuzz_settings, mutated
from reliability_helpers import run_train_in_process

_cases = itertools.count()
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# keys whose random values would write or download elsewhere: folders, "download", and sections holding them
ELSEWHERE = re.compile(r"(dir|download)$|^(trainer|data_loader|data_loader\.args)$")


@pytest.fixture
def valid_config(tmp_path, mnist_dir):
    """The tiny config's bytes, its runs saved under "saved" in the working folder."""
    config = json.loads(tiny_config(tmp_path, mnist_dir).read_text())
    config["trainer"]["save_dir"] = "saved"
    return json.dumps(config, indent=2).encode()


@pytest.fixture
def no_training(monkeypatch):
    """train.py builds and checks everything and makes the run folder; the epochs are skipped."""
    monkeypatch.setattr(train.Trainer, "train", lambda self: None)


def key_paths(tree, prefix=""):
    """Every key path of a config, e.g. "trainer.epochs", "metrics.0"."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, value in items:
        path = f"{prefix}{key}"
        yield path
        yield from key_paths(value, path + ".")


@st.composite
def config_bytes(draw, valid):
    kind = draw(st.sampled_from(["damaged", "damaged", "random json", "bom", "not utf-8", "deep", "long number",
                                 "too large", "top level not an object"]))
    if kind == "damaged":
        return draw(mutated(valid))
    if kind == "random json":
        return json.dumps(draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6))).encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + valid
    if kind == "not utf-8":
        at = draw(st.integers(0, len(valid)))
        return valid[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9t\xe9"])) + valid[at:]
    if kind == "deep":
        depth = draw(st.integers(500, 100_000))
        return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "long number":
        return b'{"name": "x", "seed": ' + b"7" * draw(st.integers(4000, 20_000)) + b"}"
    if kind == "too large":
        return valid[:-1] + b', "padding": "' + b"x" * MAX_CONFIG_FILE_BYTES + b'"}'
    return json.dumps(draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))).encode()


def check_outcome(code, output, save_dir, snapshot, culprits):
    assert code in (0, 2), output.err
    assert "Traceback" not in output.err + output.out
    if code == 2:
        assert not (save_dir / "models").exists(), "a failed start left a run folder"
        assert any(culprit in output.err for culprit in culprits), output.err
    changed = snapshot.changes()
    assert all(part in ("models", "log") for name in changed for part in name.split("/")[1:2]), changed


@fuzz_settings(40)
@given(data=st.data())
def test_a_hostile_config_file_runs_or_is_named(tmp_path, valid_config, monkeypatch, capsys, no_training, data):
    case = tmp_path / f"case{next(_cases)}"
    case.mkdir()
    config = case / "config.json"
    config.write_bytes(data.draw(config_bytes(valid_config)))
    snapshot = FolderSnapshot(case)
    monkeypatch.chdir(case)  # where "saved" is
    code, output = run_train_in_process(monkeypatch, capsys, "-c", config)
    try:
        keys = list(key_paths(json.loads(config.read_bytes().decode("utf-8-sig"))))
    except (ValueError, RecursionError):
        keys = []
    # a problem with the file names the file; one with its content names a key path or section
    check_outcome(code, output, case / "saved", snapshot, [str(config), *keys, "name", "arch", "trainer"])


@st.composite
def override(draw, existing_keys):
    key = draw(st.sampled_from(existing_keys) | st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                                          max_size=20))
    if draw(st.booleans()):
        key = draw(st.sampled_from(existing_keys)) + "." + key
    if draw(st.integers(0, 3)) == 0:
        key = "+" + key
    value = draw(st.sampled_from(["json", "text"]))
    raw = json.dumps(draw(JSON_VALUES)) if value == "json" else draw(st.text(max_size=12))
    return key, f"{key}={raw}" if draw(st.integers(0, 9)) else key  # sometimes no "=" at all


@fuzz_settings(50)
@given(data=st.data())
def test_hostile_overrides_run_or_are_named(tmp_path, valid_config, monkeypatch, capsys, no_training, data):
    case = tmp_path / f"case{next(_cases)}"
    case.mkdir()
    config = case / "config.json"
    config.write_bytes(valid_config)
    existing = sorted(key_paths(json.loads(config.read_text())))
    overrides = data.draw(st.lists(override(existing).filter(lambda o: not ELSEWHERE.search(o[0].lstrip("+"))),
                                   min_size=1, max_size=3))
    snapshot = FolderSnapshot(case)
    monkeypatch.chdir(case)  # a relative path in a value stays in this case's folder
    argv = ["-c", config]
    for _, text in overrides:
        argv += ["-o", text]
    code, output = run_train_in_process(monkeypatch, capsys, *argv)
    # the override's text, its key path or a section on that path
    keys = [text.partition("=")[0].lstrip("+") for _, text in overrides]  # as -o reads them
    # a value starting with "-" is refused by argparse itself, which names the option
    culprits = ["argument -o/--override"] + [f"override '{text}'" for _, text in overrides] + [
        ".".join(key.split(".")[:depth]) for key in keys for depth in range(1, key.count(".") + 2)]
    check_outcome(code, output, case / "saved", snapshot, [c for c in culprits if c])
