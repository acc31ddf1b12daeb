"""new_project.py: a clean copy that trains and passes its own tests."""
import json

import pytest

from conftest import PROJECT_ROOT, only_run, run_script, tiny_config


@pytest.mark.slow
def test_new_project_is_clean_trains_and_passes_its_tests(tmp_path, mnist_dir):
    target = tmp_path / "MyProject"
    result = run_script("new_project.py", target, check=True)
    assert str(target) in result.stdout
    copied = {p.relative_to(target).as_posix() for p in target.rglob("*")}
    for unwanted in (".git", ".venv", "saved", ".pytest_cache", ".ruff_cache"):
        assert unwanted not in copied
    assert not [p for p in copied if "__pycache__" in p or p.endswith(".pyc")]
    assert (target / "data").is_dir() and not any((target / "data").iterdir())
    for needed in ("train.py", "test.py", "parse_config.py", "config.json", "README.md", "Makefile",
                   ".ci/run", "base/base_trainer.py", "tests/conftest.py", "logger/logger_config.json"):
        assert needed in copied, needed

    config = tiny_config(tmp_path, mnist_dir, {"trainer.epochs": 1})
    run_script("train.py", "-c", config, cwd=target, check=True)
    assert json.loads((only_run(tmp_path / "saved") / "config.json").read_text())["trainer"]["epochs"] == 1
    own_tests = run_script("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_config.py",
                           "tests/test_smoke.py", cwd=target)
    assert own_tests.returncode == 0, own_tests.stdout[-3000:]  # 0: tests ran and passed (none would be 5)


def test_new_project_refuses_a_non_empty_target(tmp_path):
    target = tmp_path / "Taken"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = run_script("new_project.py", target)
    assert result.returncode == 2
    assert "already exists and is not empty" in result.stderr and "nothing was copied" in result.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_new_project_refuses_a_target_inside_the_project():
    result = run_script("new_project.py", PROJECT_ROOT / "saved" / "inner")
    assert result.returncode == 2 and "inside this project" in result.stderr
    assert not (PROJECT_ROOT / "saved" / "inner").exists()
