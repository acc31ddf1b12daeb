"""Figures through the experiment writers (add_figure on every writer, the report's figures) and
curves.png drawn on its worker thread."""
import errno

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_loader.task import Task
from evaluation.curves_drawer import CurvesDrawer
from evaluation.report import write_report
from logger import MultiWriter, NullWriter, TensorboardWriter
from logger.figures import figure_pixels
from logger.mlflow_writer import MlflowWriter
from logger.wandb_writer import WandbWriter
from utils.monitor import Monitor
from utils.write_faults import WriteFailed


def small_figure():
    figure = Figure(figsize=(2, 1), dpi=50)
    figure.subplots().plot([0, 1], [1, 0])
    return figure


class RecordingWriter(NullWriter):
    enabled = True

    def __init__(self):
        super().__init__()
        self.figures = []

    def add_figure(self, tag, figure, step=None):
        self.figures.append((tag, figure, step))


def test_figure_pixels_are_the_figure_drawn_at_its_size_and_an_array_passes_through():
    pixels = figure_pixels(small_figure())
    assert pixels.shape == (50, 100, 3) and pixels.dtype == np.uint8
    assert pixels.min() < 128 < pixels.max()  # a dark line on white
    assert figure_pixels(pixels) is pixels


def test_tensorboard_writer_logs_a_figure_as_an_image(tmp_path):
    writer = TensorboardWriter(tmp_path)
    writer.add_figure("report/figure", small_figure(), step=7)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    (image,) = events.Images("report/figure")
    assert (image.step, image.width, image.height) == (7, 100, 50)


def test_multi_writer_draws_a_figure_once_for_all_writers():
    first, second = RecordingWriter(), RecordingWriter()
    MultiWriter([first, second, NullWriter()]).add_figure("curves", small_figure(), 3)
    (tag, pixels, step), = first.figures
    assert (tag, step) == ("curves", 3) and isinstance(pixels, np.ndarray)
    assert second.figures[0][1] is pixels


def test_wandb_writer_logs_a_figure_as_an_image_at_its_step():
    class Wandb:
        Image = staticmethod(lambda pixels: ("image", pixels.shape))

    class Run:
        logged = []

        def log(self, row):
            self.logged.append(row)

    writer = WandbWriter.__new__(WandbWriter)  # no wandb.init: the run is a recorder
    NullWriter.__init__(writer)
    writer.wandb, writer.run = Wandb(), Run()
    writer.add_figure("validation/confusion_matrix", small_figure(), step=12)
    assert writer.run.logged == [{"validation/confusion_matrix": ("image", (50, 100, 3)), "step": 12}]


def test_mlflow_writer_logs_a_figure_as_a_png_artifact():
    class Client:
        images = []

        def log_image(self, run_id, image, artifact_file):
            self.images.append((run_id, image.shape, artifact_file))

    writer = MlflowWriter.__new__(MlflowWriter)  # no tracking store: the client is a recorder
    NullWriter.__init__(writer)
    writer.client, writer.run_id = Client(), "run-1"
    writer.add_figure("test/roc", small_figure())
    assert writer.client.images == [("run-1", (50, 100, 3), "figures/test/roc.png")]


def test_report_figures_go_to_the_writer_under_their_prefix(tmp_path):
    scores = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [1.0], [-0.2]])
    targets = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    writer = RecordingWriter()
    write_report(tmp_path, scores, targets, Task("binary", ("other", "zero")), writer=writer,
                 tag_prefix="validation", step=36)
    drawn = {tag: (step, figure_pixels(figure).shape) for tag, figure, step in writer.figures}
    assert set(drawn) == {"validation/confusion_matrix", "validation/roc", "validation/pr"}
    assert all(step == 36 for step, _ in drawn.values())
    for name in ("confusion_matrix", "roc", "pr"):  # the PNGs are written as before
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


HISTORY = [{"epoch": epoch, "loss": 1 / epoch, "val_loss": 1.2 / epoch, "lr": 0.01} for epoch in (1, 2, 3)]


def test_curves_drawer_writes_each_drawing_in_order_and_returns_the_last_pixels(tmp_path, monkeypatch):
    import evaluation.curves

    drawn, write_curves = [], evaluation.curves.write_curves

    def recording_write_curves(runs, path):
        drawn.append(len(runs[0][1]))
        return write_curves(runs, path)

    monkeypatch.setattr(evaluation.curves, "write_curves", recording_write_curves)
    drawer = CurvesDrawer(tmp_path / "curves.png", "run", Monitor("min val_loss"))
    history = HISTORY[:1]
    drawer.draw(history)
    history.append(HISTORY[1])  # the trainer goes on: the drawing has its own copy
    drawer.draw(history)
    pixels = drawer.finish()
    assert drawn == [1, 2] and drawer.drawn_epochs == 2
    with Image.open(tmp_path / "curves.png") as png:
        assert np.array_equal(np.asarray(png.convert("RGB")), pixels)
    assert drawer.finish() is pixels  # nothing new was drawn


def test_curves_drawer_raises_the_error_of_a_drawing(tmp_path, monkeypatch):
    import evaluation.curves

    def full_disk(runs, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluation.curves, "write_curves", full_disk)
    drawer = CurvesDrawer(tmp_path / "curves.png", "run", Monitor("min val_loss"))
    drawer.draw(HISTORY)
    with pytest.raises(WriteFailed, match="curves.png"):
        drawer.finish()
