"""train.py --dry-run builds everything, shows it, trains nothing and writes no run folder."""
from conftest import tiny_config
from reliability_helpers import run_in_process


def test_dry_run_shows_config_parameters_and_one_batch(tmp_path, mnist_dir, monkeypatch, capsys):
    config = tiny_config(tmp_path, mnist_dir, {"arch.freeze": ["conv1.*"]})
    _, result = run_in_process(monkeypatch, capsys, "train", "-c", config, "--dry-run", "-o", "optimizer.args.lr=0.01",
                               check=True)
    out = result.out
    assert '"lr": 0.01' in out and f'"save_dir": "{tmp_path / "saved"}"' in out  # resolved config
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("    ") and line.split()}
    # module, output shape per sample, parameters, trains, forward FLOPs per sample
    assert rows["conv1"] == ["conv1", "[10,", "24,", "24]", "260", "frozen", "288.00", "k"]
    assert rows["fc2"] == ["fc2", "[10]", "510", "yes", "1.00", "k"]
    assert rows["total"] == ["total", "21,840", "961.00", "k"]
    assert "    parameters: 21,580 trainable, 260 frozen" in out
    assert "data    (32, 1, 28, 28) torch.float32" in out and "output  (32, 10) torch.float32" in out
    assert "Saving checkpoint" not in out and "    val_loss" not in out  # no epoch ran
    assert not (tmp_path / "saved").exists()
