"""After training: evaluation outputs, the evaluation report, learning curves and predictions."""
