"""Where the report's figures go: a PNG in the report folder, and the experiment writer."""
from logger.visualization import NullWriter

from . import plots


class ReportFigures:
    def __init__(self, out_dir, writer=None, tag_prefix="test", step=None):
        """`writer` (a logger writer) gets each figure as `<tag_prefix>/<name>` at `step`."""
        self.out_dir, self.writer, self.tag_prefix, self.step = out_dir, writer or NullWriter(), tag_prefix, step

    def save(self, figure, name):
        """Write `figure` as <name>.png and to the writer (then close it)."""
        self.writer.add_figure(f"{self.tag_prefix}/{name}", figure, self.step)
        plots.save_figure(figure, self.out_dir / f"{name}.png")
