"""What the figures draw, read back from matplotlib's objects: curves.png's grid and colours, the
compare figure's best-epoch lines, the ROC and PR curves' axes."""
import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from data_loader.task import Task
from evaluation import plots
from evaluation.curves import curves_figure, grid_shape
from evaluation.report import write_report
from utils.monitor import Monitor


@pytest.mark.parametrize("panels", range(1, 13))
def test_the_grid_leaves_no_row_mostly_empty(panels):
    rows, columns = grid_shape(panels)
    assert rows * columns >= panels and rows * columns - panels < math.ceil(columns / 2)


def history(metrics, epochs=4):
    frame = pd.DataFrame({"epoch": range(1, epochs + 1), "lr": [0.01] * epochs})
    for name in metrics:
        frame[name] = [1.0 / (e + 1) for e in range(epochs)]
        frame[f"val_{name}"] = [1.2 / (e + 1) for e in range(epochs)]
    return frame


def test_one_run_draws_training_and_validation_in_two_colours():
    figure = curves_figure([("run", history(["loss", "accuracy"]), Monitor("min val_loss"))])
    loss_panel = figure.axes[0]
    colours = {line.get_label(): line.get_color() for line in loss_panel.get_lines()}
    assert colours["train"] != colours["validation"]
    plt.close(figure)


def test_compare_marks_a_runs_best_epoch_only_where_it_has_data():
    runs = [("a", history(["loss", "f1"]), Monitor("min val_loss")), ("b", history(["loss"]), Monitor("min val_loss"))]
    figure = curves_figure(runs)
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_title()}
    vertical = {title: [line for line in ax.get_lines() if len(set(line.get_xdata())) == 1]
                for title, ax in panels.items()}
    assert len(vertical["loss"]) == 2 and len(vertical["f1"]) == 1  # run b has no f1: no line of it there
    plt.close(figure)


def test_roc_and_pr_curves_stand_clear_of_the_frame_and_name_the_positive_class(tmp_path):
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 2, (100,), generator=generator).float()
    scores = (targets * 2 + torch.randn(100, generator=generator)).unsqueeze(1)
    drawn = {}
    original = plots.save_figure

    def keep(figure, path):
        drawn[path.name] = (figure.axes[0].get_xlim(), figure.axes[0].get_ylim(), figure.axes[0].get_title())
        original(figure, path)

    plots.save_figure = keep
    try:
        write_report(tmp_path, scores, targets, Task("binary", ("healthy", "sick")))
    finally:
        plots.save_figure = original
    for name in ("roc.png", "pr.png"):
        (x_low, x_high), (y_low, y_high), title = drawn[name]
        assert x_low < 0 and x_high > 1 and y_low < 0 and y_high > 1  # a curve along an edge is not on the frame
        assert "'sick'" in title
