"""Weights & Biases behind the writer interface. Each run of the framework is one W&B run, kept
in the run's log folder unless WANDB_DIR says otherwise; WANDB_MODE=offline (or "mode":
"offline" in the section) needs no account or network."""
import os

import numpy as np

from utils import ConfigError

from .figures import figure_pixels
from .visualization import NullWriter

OFFLINE_MODES = ("offline", "disabled", "dryrun")


def import_wandb():
    try:
        import wandb
    except ImportError:
        raise ConfigError("the config has a \"wandb\" section but the 'wandb' package is not "
                          "installed: pip install wandb, or remove the section.") from None
    return wandb


def check_wandb_login(settings):
    """Before any run folder exists: an online W&B run needs a login (a key from `wandb login`
    or WANDB_API_KEY). Offline runs need none."""
    wandb = import_wandb()
    if settings.get("mode", os.environ.get("WANDB_MODE")) in OFFLINE_MODES:
        return
    try:
        wandb.login(verify=False)
    except Exception as err:  # wandb raises its UsageError (or a prompt fails) without a key
        raise ConfigError(
            f"trainer.wandb: Weights & Biases is switched on, but it cannot log in ({err}). Run "
            "`wandb login` once, set WANDB_API_KEY, or keep the runs offline with WANDB_MODE=offline "
            "(or \"mode\": \"offline\" in the wandb section) and upload them later with `wandb sync`."
        ) from None


class WandbWriter(NullWriter):
    enabled = True

    def __init__(self, config, settings):
        super().__init__()
        self.wandb = import_wandb()
        # console="off": W&B must not wrap stdout, which the logging handlers write to
        run_dir = os.environ.get("WANDB_DIR", str(config.log_dir))
        self.run = self.wandb.init(name=config.run_id, dir=run_dir, config=config.config,
                                   settings=self.wandb.Settings(console="off"), **settings)

    def add_scalar(self, tag, value, step=None):
        # one W&B history row per call; `step` travels as a field because batch steps and
        # epochs are different x-axes, which W&B's single monotonic step cannot hold
        self.run.log({tag: value, "step": self.step if step is None else step})

    def add_image(self, tag, image, step=None):
        self.run.log({tag: self.wandb.Image(image), "step": self.step if step is None else step})

    def add_figure(self, tag, figure, step=None):
        self.run.log({tag: self.wandb.Image(figure_pixels(figure)), "step": self.step if step is None else step})

    def add_histogram(self, tag, values, step=None, bins="auto"):
        histogram = np.histogram(np.asarray(values), bins=bins)
        self.run.log({tag: self.wandb.Histogram(np_histogram=histogram),
                      "step": self.step if step is None else step})

    def add_hparams(self, hparams, metrics):
        self.run.summary.update(metrics)

    def close(self):
        if self.run is not None:
            self.run.finish()
            self.run = None
