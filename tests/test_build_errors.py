"""Mistakes that only show when an object is built (after preflight) still end in one clear
message and exit code 2, not a traceback."""
import pytest

from conftest import tiny_config
from reliability_helpers import run_train_in_process


def test_a_value_the_constructor_refuses_names_the_section(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"optimizer.args.lr": -1})
    code, output = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2
    assert "error: optimizer: Adam rejected its arguments (Invalid learning rate: -1" in output.err
    assert "Traceback" not in output.err


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"])
def test_a_damaged_pretrained_weight_file_is_a_clear_error(tmp_path, mnist_dir, monkeypatch, capsys, content):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(content)
    config = tiny_config(tmp_path, mnist_dir, {"arch.pretrained": str(weights)})
    code, output = run_train_in_process(monkeypatch, capsys, "-c", config)
    assert code == 2
    assert f"'{weights}' is truncated, corrupt or not a PyTorch checkpoint" in output.err
    assert "Traceback" not in output.err
