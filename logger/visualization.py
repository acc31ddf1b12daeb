"""Experiment writers behind one small interface. `NullWriter` is the disabled writer: every
method exists and does nothing, so the trainer never checks whether logging is on."""
import importlib
import logging
import threading

from utils.write_faults import resource_error, write_site

from .figures import figure_pixels


class NullWriter:
    enabled = False

    def __init__(self):
        self.step = 0
        self.mode = ""
        self.steps_before_resume = 0

    def resume_after(self, steps_done):
        """The run resumes after `steps_done` training batches (the step of every later record
        is higher)."""
        self.steps_before_resume = steps_done

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

    def add_figure(self, tag, figure, step=None):
        """A matplotlib figure (or its pixels from logger.figures.figure_pixels) as an image."""

    def add_hparams(self, hparams, metrics):
        pass

    def flush(self):
        pass

    def close(self):
        pass


class TensorboardWriter(NullWriter):
    """TensorBoard events in `log_dir`. The event file is opened at the first write, so that a
    resumed run can first say where it resumes (`resume_after`): TensorBoard then drops the
    events that the interrupted process wrote after its last checkpoint (the writer's
    purge_step), and no step is duplicated or goes backwards."""
    enabled = True

    def __init__(self, log_dir, logger=None, enabled=True):
        super().__init__()
        logger = logger or logging.getLogger(__name__)
        self.log_dir, self.module, self.writer, self.purge_step = log_dir, None, None, None
        self.events = f"{log_dir}/events.out.tfevents.*"  # the file's name is chosen when it is opened
        if enabled:
            try:
                self.module = importlib.import_module("torch.utils.tensorboard")
            except ImportError:
                logger.warning(
                    "TensorBoard is enabled in config.json (trainer.tensorboard) but the "
                    "'tensorboard' package is not installed: pip install tensorboard, or set "
                    "trainer.tensorboard to false."
                )
        self.enabled = self.module is not None
        if self.enabled:
            _install_thread_hook()

    def resume_after(self, steps_done):
        super().resume_after(steps_done)
        self.purge_step = steps_done + 1  # events at later steps came from the interrupted process

    def _summary_writer(self):
        if self.writer is None and self.module is not None:
            with write_site(self.events):
                self.writer = self.module.SummaryWriter(str(self.log_dir), purge_step=self.purge_step)
        return self.writer

    def _tag(self, tag):
        return f"{tag}/{self.mode}" if self.mode else tag

    def add_scalar(self, tag, value, step=None):
        if not self.enabled:
            return
        if step is None:
            tag, step = self._tag(tag), self.step
        with write_site(self.events):
            self._summary_writer().add_scalar(tag, value, step)

    def add_image(self, tag, image, step=None):
        if self.enabled:
            with write_site(self.events):
                self._summary_writer().add_image(tag, image, self.step if step is None else step)

    def add_histogram(self, tag, values, step=None, bins="auto"):
        if self.enabled:
            with write_site(self.events):
                self._summary_writer().add_histogram(tag, values, self.step if step is None else step, bins=bins)

    def add_figure(self, tag, figure, step=None):
        if self.enabled:
            pixels = figure_pixels(figure)
            with write_site(self.events):
                self._summary_writer().add_image(tag, pixels, self.step if step is None else step, dataformats="HWC")

    def add_hparams(self, hparams, metrics):
        if self.enabled:
            with write_site(self.events):
                self._summary_writer().add_hparams(hparams, metrics, run_name=".")

    def flush(self):
        if self.writer is not None:
            with write_site(self.events):
                self.writer.flush()

    def close(self):
        if self.writer is not None:
            writer, self.writer, self.module = self.writer, None, None
            with write_site(self.events):
                writer.close()


def _quiet_writer_thread_errors(hook_args):
    """TensorBoard writes from a thread; a full disk there is raised again, with a clear message,
    in the training thread at the next write, so the thread's own traceback is left out."""
    if not (type(hook_args.thread).__name__ == "_AsyncWriterThread" and resource_error(hook_args.exc_value)):
        _quiet_writer_thread_errors.default(hook_args)


def _install_thread_hook():
    if threading.excepthook is not _quiet_writer_thread_errors:
        _quiet_writer_thread_errors.default = threading.excepthook
        threading.excepthook = _quiet_writer_thread_errors

