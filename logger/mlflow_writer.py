"""MLflow behind the writer interface. Each run of the framework is one MLflow run: the
resolved config as params, every scalar as a metric (the epoch or batch step as its step),
config.json, the best checkpoint's path and the figures (figures/<tag>.png) as artifacts, and
the run id (and sweep, for a sweep member) as tags. With no "tracking_uri" the run goes to MLflow's default local store,
the one `mlflow ui` opens when started in the same folder."""
import os
import tempfile
import time
from pathlib import Path

from run.checkpoints import best_checkpoint
from run.status import SWEEP_ENV
from utils import ConfigError

from .figures import figure_pixels
from .hparams import config_hparams
from .visualization import NullWriter

SETTINGS = ("tracking_uri", "experiment")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


class MlflowWriter(NullWriter):
    enabled = True

    def __init__(self, config, settings):
        super().__init__()
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ConfigError(f"trainer.mlflow.{unknown[0]} is not an MLflow setting; the settings are "
                              f"{', '.join(SETTINGS)} (and enabled).")
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("the config has a trainer.mlflow section but the 'mlflow' package is not "
                              "installed: pip install mlflow, or remove the section.") from None
        self.Metric = Metric
        self.client = MlflowClient(tracking_uri=settings.get("tracking_uri"))
        self.run_folder = config.save_dir
        self.pending = []  # metrics waiting for the next flush (one database write per epoch)
        experiment = settings.get("experiment") or config["name"]
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        tags = {"run_id": config.run_id, "run_folder": str(config.save_dir)}
        sweep = os.environ.get(SWEEP_ENV)
        if sweep:
            tags["sweep"], _, tags["sweep_member"] = sweep.rpartition("#")
        self.run_id = self.client.create_run(experiment_id, run_name=config.run_id, tags=tags).info.run_id
        params = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in config_hparams(config.config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        self.client.log_artifact(self.run_id, str(config.save_dir / "config.json"))

    def add_scalar(self, tag, value, step=None):
        step = self.step if step is None else step
        self.pending.append(self.Metric(tag, float(value), int(time.time() * 1000), int(step)))

    def add_figure(self, tag, figure, step=None):
        """An artifact figures/<tag>.png; a later figure with the same tag replaces it."""
        self.client.log_image(self.run_id, figure_pixels(figure), artifact_file=f"figures/{tag}.png")

    def add_hparams(self, hparams, metrics):
        for key, value in metrics.items():
            self.add_scalar(key, value, 0)

    def flush(self):
        for start in range(0, len(self.pending), 1000):  # MLflow takes at most 1000 metrics per call
            self.client.log_batch(self.run_id, metrics=self.pending[start:start + 1000])
        self.pending = []

    def close(self):
        if self.run_id is None:
            return
        self.flush()
        best = best_checkpoint(self.run_folder)
        if best is not None:
            self.client.set_tag(self.run_id, "best_checkpoint", str(best.resolve()))
            with tempfile.TemporaryDirectory() as folder:
                note = Path(folder) / "best_checkpoint.txt"
                note.write_text(f"{best.resolve()}\n")
                self.client.log_artifact(self.run_id, str(note))
        self.client.set_terminated(self.run_id)
        self.run_id = None
