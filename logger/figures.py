"""matplotlib figures as pixels for the experiment writers, and the lock that keeps drawings on
different threads apart (curves.png is drawn on a worker thread; matplotlib is not thread-safe)."""
import threading

import numpy as np

DRAWING = threading.RLock()  # held by every drawing of the project while it uses matplotlib


def figure_pixels(figure):
    """`figure` drawn at its own size and dpi, as height x width x 3 uint8 RGB. An array (a
    figure drawn already) passes through, so a figure sent to several writers is drawn once."""
    if isinstance(figure, np.ndarray):
        return figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with DRAWING:
        canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
