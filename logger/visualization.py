"""Experiment writers behind one small interface. `NullWriter` is the disabled writer: every
method exists and does nothing, so the trainer never checks whether logging is on."""
import importlib
import logging


class NullWriter:
    enabled = False

    def __init__(self):
        self.step = 0
        self.mode = ""

    def set_step(self, step, mode="train"):
        """pytorch-template API: later calls without `step` use this step and tag suffix."""
        self.step, self.mode = step, mode

    def add_scalar(self, tag, value, step=None):
        pass

    def add_scalars(self, values, step, suffix=""):
        """Write each `name: value` of a dict as the scalar `name{suffix}`."""
        for name, value in values.items():
            self.add_scalar(f"{name}{suffix}", value, step)

    def add_image(self, tag, image, step=None):
        pass

    def add_histogram(self, tag, values, step=None, bins="auto"):
        pass

    def add_hparams(self, hparams, metrics):
        pass

    def flush(self):
        pass

    def close(self):
        pass


class TensorboardWriter(NullWriter):
    enabled = True

    def __init__(self, log_dir, logger=None, enabled=True):
        super().__init__()
        logger = logger or logging.getLogger(__name__)
        self.writer = None
        if enabled:
            try:
                module = importlib.import_module("torch.utils.tensorboard")
                self.writer = module.SummaryWriter(str(log_dir))
            except ImportError:
                logger.warning(
                    "TensorBoard is enabled in config.json (trainer.tensorboard) but the "
                    "'tensorboard' package is not installed: pip install tensorboard, or set "
                    "trainer.tensorboard to false."
                )
        self.enabled = self.writer is not None

    def _tag(self, tag):
        return f"{tag}/{self.mode}" if self.mode else tag

    def add_scalar(self, tag, value, step=None):
        if self.writer is None:
            return
        if step is None:
            tag, step = self._tag(tag), self.step
        self.writer.add_scalar(tag, value, step)

    def add_image(self, tag, image, step=None):
        if self.writer is not None:
            self.writer.add_image(tag, image, self.step if step is None else step)

    def add_histogram(self, tag, values, step=None, bins="auto"):
        if self.writer is not None:
            self.writer.add_histogram(tag, values, self.step if step is None else step, bins=bins)

    def add_hparams(self, hparams, metrics):
        if self.writer is not None:
            self.writer.add_hparams(hparams, metrics, run_name=".")

    def flush(self):
        if self.writer is not None:
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
