"""The evaluation report: per-class precision, recall, F1 and support with macro and weighted
averages (CSV and JSON), a confusion matrix, the most confidently wrong samples and, for
binary tasks, ROC and precision-recall curves. All counting is done by torchmetrics. Each
figure also goes to the experiment writers (TensorBoard, W&B, MLflow) as <tag_prefix>/<name>."""
from pathlib import Path

import pandas as pd
import torch
from torchmetrics import classification as tmc

from logger.figures import DRAWING
from logger.visualization import NullWriter
from utils import write_json

from . import plots
from .outputs import DEFAULT_THRESHOLD, predict_labels, probabilities, task_of


class ReportFigures:
    """Where the report's figures go: a PNG in the report folder, and the writer."""

    def __init__(self, out_dir, writer, tag_prefix, step):
        self.out_dir, self.writer, self.tag_prefix, self.step = out_dir, writer or NullWriter(), tag_prefix, step

    def save(self, figure, name):
        """Write `figure` as <name>.png and to the writer (then close it)."""
        self.writer.add_figure(f"{self.tag_prefix}/{name}", figure, self.step)
        plots.save_figure(figure, self.out_dir / f"{name}.png")


def write_report(out_dir, outputs, targets, class_names_source, wrong=None, writer=None,
                 threshold=DEFAULT_THRESHOLD, tag_prefix="test", step=None):
    """Write the report files into `out_dir`; return the JSON summary as a dict.
    `class_names_source(count)` gives the names once the number of classes is known; `writer`
    (a logger writer) gets each figure as `<tag_prefix>/<name>` at `step`."""
    with DRAWING:  # curves.png may be drawing on its worker thread
        return _write_report(Path(out_dir), outputs, targets, class_names_source, wrong,
                             ReportFigures(Path(out_dir), writer, tag_prefix, step), threshold)


def _write_report(out_dir, outputs, targets, class_names_source, wrong, figures, threshold):
    out_dir.mkdir(parents=True, exist_ok=True)
    task = task_of(outputs, targets)
    probs = probabilities(outputs, task)
    labels, _ = predict_labels(probs, task, threshold)
    targets = targets.reshape(labels.shape).long()
    num_classes = probs.shape[1] if task != "binary" else 2
    names = class_names_source(num_classes)
    table = per_class_table(labels, targets, num_classes, names, task)
    table.to_csv(out_dir / "classes.csv", index=False)
    summary = {"task": task, "samples": len(targets), "threshold": threshold if task != "multiclass" else None,
               "classes": table.to_dict(orient="records")}
    if task != "multilabel":
        summary["accuracy"] = float((labels == targets).float().mean())
        matrix = tmc.MulticlassConfusionMatrix(num_classes)(labels, targets)
        figures.save(plots.confusion_figure(matrix.numpy(), names), "confusion_matrix")
    if task == "binary":
        summary["binary"] = binary_curves(figures, probs.squeeze(1), targets)
    if wrong is not None:
        summary["wrong_samples"] = write_wrong_samples(figures, wrong, names, task)
    write_json(summary, out_dir / "report.json")
    return summary


def per_class_table(labels, targets, num_classes, names, task):
    """Rows: one per class (label), then "macro avg" and "weighted avg"."""
    if task == "multilabel":
        make = {"precision": tmc.MultilabelPrecision, "recall": tmc.MultilabelRecall, "f1": tmc.MultilabelF1Score}
        kwargs, support = {"num_labels": num_classes}, targets.sum(dim=0)
    else:
        make = {"precision": tmc.MulticlassPrecision, "recall": tmc.MulticlassRecall, "f1": tmc.MulticlassF1Score}
        kwargs, support = {"num_classes": num_classes}, torch.bincount(targets, minlength=num_classes)
    rows = {"class": [*names, "macro avg", "weighted avg"]}
    for column, metric_class in make.items():
        per_class = metric_class(average=None, **kwargs)(labels, targets)
        macro = metric_class(average="macro", **kwargs)(labels, targets)
        weighted = metric_class(average="weighted", **kwargs)(labels, targets)
        rows[column] = [*per_class.tolist(), float(macro), float(weighted)]
    total = int(support.sum())
    rows["support"] = [*support.long().tolist(), total, total]
    return pd.DataFrame(rows)


def binary_curves(figures, probs, targets):
    """ROC and PR PNGs; returns AUC, average precision and the F1-maximising threshold."""
    fpr, tpr, _ = tmc.BinaryROC()(probs, targets)
    auc = float(tmc.BinaryAUROC()(probs, targets))
    precision, recall, thresholds = tmc.BinaryPrecisionRecallCurve()(probs, targets)
    average_precision = float(tmc.BinaryAveragePrecision()(probs, targets))
    # the curve has one more point than thresholds (recall 0 at precision 1): drop it
    f1 = 2 * precision[:-1] * recall[:-1] / (precision[:-1] + recall[:-1]).clamp_min(1e-12)
    best_at = int(f1.argmax())
    best = {"threshold": float(thresholds[best_at]), "f1": float(f1[best_at]),
            "precision": float(precision[best_at]), "recall": float(recall[best_at])}
    figures.save(plots.roc_figure(fpr.numpy(), tpr.numpy(), auc), "roc")
    figures.save(plots.pr_figure(precision.numpy(), recall.numpy(), average_precision, best), "pr")
    return {"roc_auc": auc, "average_precision": average_precision, "best_f1_threshold": best}


def write_wrong_samples(figures, wrong, names, task):
    """An image grid for image inputs, CSV rows (with the input's values) otherwise."""
    out_dir = figures.out_dir
    if wrong is None or len(wrong["index"]) == 0:
        return {"count": 0}
    rows = pd.DataFrame({"index": wrong["index"].tolist(), "confidence": wrong["score"].tolist(),
                         "target": [_label_text(t, names, task) for t in wrong["target"]],
                         "predicted": [_label_text(p, names, task) for p in wrong["predicted"]]})
    inputs = wrong["input"]
    if inputs.dim() >= 3:
        titles = [f"#{r.index} true {r.target}\npred {r.predicted} ({r.confidence:.2f})" for r in rows.itertuples()]
        figures.save(plots.wrong_samples_figure(inputs.float().numpy(), titles), "wrong_samples")
        rows.to_csv(out_dir / "wrong_samples.csv", index=False)
        return {"count": len(rows), "file": "wrong_samples.png"}
    features = pd.DataFrame(inputs.reshape(len(rows), -1).float().numpy()).add_prefix("input_")
    pd.concat([rows, features], axis=1).to_csv(out_dir / "wrong_samples.csv", index=False)
    return {"count": len(rows), "file": "wrong_samples.csv"}


def _label_text(label, names, task):
    if task == "multilabel":
        return "|".join(name for name, on in zip(names, label.tolist()) if on) or "(none)"
    return names[int(label)]
