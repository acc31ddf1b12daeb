"""Choosing the experiment writers from the config, and fanning one writer call out to several.
TensorBoard (trainer.tensorboard) is the default; Weights & Biases joins it when the config has
a "wandb" section (in trainer or at the top level) that is not switched off, and MLflow when
trainer.mlflow is set."""
import logging

from utils import dist

from .figures import figure_pixels
from .visualization import NullWriter, TensorboardWriter


class MultiWriter(NullWriter):
    """Passes every call to each of `writers`; enabled when any of them is."""

    def __init__(self, writers):
        super().__init__()
        self.writers = list(writers)
        self.enabled = any(w.enabled for w in self.writers)

    def set_step(self, step, mode="train"):
        super().set_step(step, mode)
        for writer in self.writers:
            writer.set_step(step, mode)

    def resume_after(self, steps_done):
        super().resume_after(steps_done)
        for writer in self.writers:
            writer.resume_after(steps_done)

    def add_scalar(self, tag, value, step=None):
        for writer in self.writers:
            writer.add_scalar(tag, value, step)

    def add_image(self, tag, image, step=None):
        for writer in self.writers:
            writer.add_image(tag, image, step)

    def add_histogram(self, tag, values, step=None, bins="auto"):
        for writer in self.writers:
            writer.add_histogram(tag, values, step, bins)

    def add_figure(self, tag, figure, step=None):
        if self.enabled:
            pixels = figure_pixels(figure)  # drawn once for all writers
            for writer in self.writers:
                writer.add_figure(tag, pixels, step)

    def add_hparams(self, hparams, metrics):
        for writer in self.writers:
            writer.add_hparams(hparams, metrics)

    def flush(self):
        for writer in self.writers:
            writer.flush()

    def close(self):
        for writer in self.writers:
            writer.close()


def wandb_settings(config):
    """The "wandb" section as a dict, or None when W&B is not configured or is off."""
    settings = config.settings
    return _enabled_section(settings.trainer.wandb if settings.trainer.wandb is not None else settings.wandb)


def mlflow_settings(config):
    """The trainer.mlflow section as a dict ({} for `true`), or None when absent or off."""
    return _enabled_section(config.settings.trainer.mlflow)


def _enabled_section(entry):
    """A writer's section (true, or a dict with an optional "enabled") as a dict without
    "enabled"; None when it is absent or switched off."""
    if entry is True:
        entry = {}
    if not isinstance(entry, dict) or not entry.get("enabled", True):
        return None
    return {k: v for k, v in entry.items() if k != "enabled"}


def check_writers(config):
    """Problems an experiment writer would hit when it starts, found before any run folder."""
    settings = wandb_settings(config)
    if settings is not None:
        from .wandb_writer import check_wandb_login

        check_wandb_login(settings)


def make_writer(config, logger=None):
    """The writer for a run: TensorBoard, plus W&B and MLflow when configured. A run without a log folder
    (dry run, test.py) gets the NullWriter."""
    logger = logger or logging.getLogger(__name__)
    if config.log_dir is None or not dist.is_main_process():  # DDP: rank 0 writes for all
        return NullWriter()
    writers = [TensorboardWriter(config.log_dir, logger, config.settings.trainer.tensorboard)]
    settings = wandb_settings(config)
    if settings is not None:
        from .wandb_writer import WandbWriter

        writers.append(WandbWriter(config, settings))
    settings = mlflow_settings(config)
    if settings is not None:
        from .mlflow_writer import MlflowWriter

        writers.append(MlflowWriter(config, settings))
    return writers[0] if len(writers) == 1 else MultiWriter(writers)
