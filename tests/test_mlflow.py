"""The MLflow writer, offline: a local SQLite tracking store in the test folder."""
import json
import sys

import pytest

import train
from conftest import tiny_config
from parse_config import ConfigParser
from run.status import SWEEP_ENV
from utils import ConfigError


def train_in_process(config_path):
    config = ConfigParser.from_args(train.make_arg_parser()[0], argv=["-c", str(config_path)])
    train.main(config)
    return config


@pytest.mark.slow  # MLflow creates its database tables on first use: about 20 s here
@pytest.mark.curves  # the learning curves are an artifact
def test_mlflow_run_has_params_metrics_artifacts_and_tags(tmp_path, mnist_dir, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # MLflow keeps a SQLite store's artifacts in ./mlruns
    monkeypatch.setenv(SWEEP_ENV, "saved/sweeps/Tiny/1127_101010#3")
    config = train_in_process(tiny_config(tmp_path, mnist_dir, {
        "trainer.mlflow": {"tracking_uri": uri, "experiment": "template-tests"}}))

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("template-tests").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.args.lr"] == "0.002" and run.data.params["name"] == "Tiny"
    assert run.data.tags["run_id"] == config.run_id
    assert run.data.tags["sweep"] == "saved/sweeps/Tiny/1127_101010" and run.data.tags["sweep_member"] == "3"
    assert run.data.tags["best_checkpoint"] == str((config.save_dir / "model_best.pth").resolve())
    val_loss = client.get_metric_history(run.info.run_id, "loss/valid")
    # one value per epoch, at the writers' common step: training batches done (12 per epoch here)
    assert sorted(m.step for m in val_loss) == [12, 24]
    history = json.loads((config.save_dir / "status.json").read_text())
    assert history["status"] == "finished"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"config.json", "best_checkpoint.txt", "figures"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "figures")] == ["figures/curves.png"]
    logged_config = client.download_artifacts(run.info.run_id, "config.json", str(tmp_path / "download"))
    assert json.loads(open(logged_config).read()) == config.config
    assert list((tmp_path / "mlruns").rglob("best_checkpoint.txt"))


def test_unknown_mlflow_setting_names_the_key(tmp_path, mnist_dir):
    config = tiny_config(tmp_path, mnist_dir, {"trainer.mlflow": {"tracking_url": "sqlite:///x.db"}})
    with pytest.raises(ConfigError, match="trainer.mlflow.tracking_url is not an MLflow setting"):
        train_in_process(config)


def test_missing_mlflow_package_says_what_to_install(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    monkeypatch.setitem(sys.modules, "mlflow.entities", None)
    with pytest.raises(ConfigError, match="pip install mlflow"):
        train_in_process(tiny_config(tmp_path, mnist_dir, {"trainer.mlflow": True}))
