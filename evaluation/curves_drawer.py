"""curves.png drawn on a worker thread, so that an epoch never waits for matplotlib: the trainer
hands over a copy of its history and goes on; `finish` waits until every drawing is written.
The drawings run one at a time, in the order they were asked for."""
from concurrent.futures import ThreadPoolExecutor

from logger.figures import DRAWING
from utils.write_faults import write_site


class CurvesDrawer:
    def __init__(self, path, label, monitor):
        """`path`: curves.png of the run; `label`: the run's name in the figure; `monitor`: the
        Monitor whose best epoch is marked."""
        self.path, self.label, self.monitor = path, label, monitor
        self.executor, self.drawings = None, []
        self.drawn_epochs = 0  # history rows of the newest drawing asked for
        self.pixels = None  # of the newest drawing written

    def draw(self, history):
        """Draw `history` (the list of epoch logs) in the background. An error of an earlier
        drawing (a full disk) is raised here."""
        self._collect(lambda drawing: drawing.done())
        self.drawn_epochs = len(history)
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curves")
        rows = [dict(row) for row in history]  # a copy: the trainer appends meanwhile
        self.drawings.append(self.executor.submit(self._draw, rows))

    def finish(self):
        """Wait until every drawing is written; return the pixels of the newest (None when
        nothing was drawn) for the experiment writers. Raises the error of a drawing."""
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        self._collect(lambda drawing: True)
        return self.pixels

    def _collect(self, ready):
        """Forget the drawings for which `ready` is true, keeping the pixels of the last; raise an error."""
        for drawing in [d for d in self.drawings if ready(d)]:
            self.drawings.remove(drawing)
            error = drawing.exception()  # waits for a running drawing
            if error is not None:
                raise error
            self.pixels = drawing.result()

    def _draw(self, rows):
        import pandas as pd

        from evaluation import curves  # matplotlib: imported on this thread, when first drawn

        with DRAWING, write_site(self.path):
            return curves.write_curves([(self.label, pd.DataFrame(rows), self.monitor)], self.path)

