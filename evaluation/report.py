"""The evaluation report. Class tasks: per-class precision, recall, F1 and support with macro and
weighted averages (CSV and JSON), a confusion matrix, the most confidently wrong samples and,
for binary tasks, ROC and precision-recall curves. Regression: see regression_report.py. All
counting is done by torchmetrics. Each figure also goes to the experiment writer (TensorBoard,
W&B, MLflow) as <tag_prefix>/<name>."""
from pathlib import Path

import pandas as pd
import torch
from torchmetrics import classification as tmc

from logger.figures import DRAWING
from utils import write_json

from . import plots
from .outputs import DEFAULT_THRESHOLD, output_names, predict_labels, probabilities
from .regression_report import write_regression_report
from .report_figures import ReportFigures


def write_report(out_dir, outputs, targets, task, wrong=None, writer=None, threshold=DEFAULT_THRESHOLD,
                 source_rows=None, tag_prefix="test", step=None):
    """Write the report files of a run's `task` (data_loader/task.py) into `out_dir`; return the
    JSON summary as a dict. `source_rows(positions)`: the evaluated samples at those positions
    as written in their files (a DataFrame with an "input" column), when the loader knows them.
    `writer` (a logger writer) gets each figure as `<tag_prefix>/<name>` at `step`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = ReportFigures(out_dir, writer, tag_prefix, step)
    with DRAWING:  # curves.png may be drawing on its worker thread
        if task.kind == "regression":
            summary = write_regression_report(out_dir, task.original_units(outputs), task.original_units(targets),
                                              output_names(task, outputs.shape[1]), source_rows, figures)
        else:
            summary = _class_report(figures, outputs, targets, task, wrong, threshold, source_rows)
    write_json(summary, out_dir / "report.json")
    return summary


def _class_report(figures, outputs, targets, task, wrong, threshold, source_rows):
    out_dir, kind = figures.out_dir, task.kind
    probs = probabilities(outputs, kind)
    labels, _ = predict_labels(probs, kind, threshold)
    targets = targets.reshape(labels.shape).long()
    num_classes = probs.shape[1] if kind != "binary" else 2
    names = output_names(task, num_classes)
    table = per_class_table(labels, targets, num_classes, names, kind)
    table.to_csv(out_dir / "classes.csv", index=False)
    summary = {"task": kind, "samples": len(targets), "threshold": threshold if kind != "classification" else None,
               "classes": table.to_dict(orient="records")}
    if kind != "multilabel":
        summary["accuracy"] = float((labels == targets).float().mean())
        matrix = tmc.MulticlassConfusionMatrix(num_classes)(labels, targets)
        figures.save(plots.confusion_figure(matrix.numpy(), names), "confusion_matrix")
    if kind == "binary":
        summary["binary"] = binary_curves(figures, probs.squeeze(1), targets, names[1])
    if wrong is not None:
        summary["wrong_samples"] = write_wrong_samples(figures, wrong, names, kind, source_rows)
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


def binary_curves(figures, probs, targets, positive):
    """ROC and PR PNGs of the `positive` class; returns AUC, average precision and the
    F1-maximising threshold."""
    fpr, tpr, _ = tmc.BinaryROC()(probs, targets)
    auc = float(tmc.BinaryAUROC()(probs, targets))
    precision, recall, thresholds = tmc.BinaryPrecisionRecallCurve()(probs, targets)
    average_precision = float(tmc.BinaryAveragePrecision()(probs, targets))
    # the curve has one more point than thresholds (recall 0 at precision 1): drop it
    f1 = 2 * precision[:-1] * recall[:-1] / (precision[:-1] + recall[:-1]).clamp_min(1e-12)
    best_at = int(f1.argmax())
    best = {"threshold": float(thresholds[best_at]), "f1": float(f1[best_at]),
            "precision": float(precision[best_at]), "recall": float(recall[best_at])}
    positives = int(targets.sum())
    figures.save(plots.roc_figure(fpr.numpy(), tpr.numpy(), auc, positive), "roc")
    figures.save(plots.pr_figure(precision.numpy(), recall.numpy(), average_precision, best, positive,
                                 positives / max(len(targets), 1)), "pr")
    return {"positive_class": positive, "roc_auc": auc, "average_precision": average_precision,
            "best_f1_threshold": best}


def write_wrong_samples(figures, wrong, names, task, source_rows=None):
    """An image grid for image inputs; a CSV either way, each row naming its sample as predict.py
    does (the file, or "<file> line <N>" with the row's values as written) when `source_rows`
    knows it."""
    if wrong is None or len(wrong["index"]) == 0:
        return {"count": 0}
    out_dir = figures.out_dir
    positions = wrong["index"].tolist()
    rows = pd.DataFrame({"confidence": wrong["score"].tolist(),
                         "target": [_label_text(t, names, task) for t in wrong["target"]],
                         "predicted": [_label_text(p, names, task) for p in wrong["predicted"]]})
    sources = source_rows(positions) if source_rows is not None else None
    if sources is not None:
        located = pd.concat([sources[["input"]], rows, sources.drop(columns="input")], axis=1)
    else:
        located = pd.concat([pd.DataFrame({"input": [f"sample {p}" for p in positions]}), rows], axis=1)
    inputs = wrong["input"]
    if inputs.dim() >= 3:
        titles = [f"{Path(str(name)).name}\ntrue {r.target}, pred {r.predicted} ({r.confidence:.2f})"
                  for name, r in zip(located["input"], rows.itertuples())]
        figures.save(plots.wrong_samples_figure(inputs.float().numpy(), titles), "wrong_samples")
        located.to_csv(out_dir / "wrong_samples.csv", index=False)
        return {"count": len(rows), "file": "wrong_samples.png"}
    if sources is None:  # a custom loader: the model's inputs are all there is
        features = pd.DataFrame(inputs.reshape(len(rows), -1).float().numpy()).add_prefix("input_")
        located = pd.concat([located, features], axis=1)
    located.to_csv(out_dir / "wrong_samples.csv", index=False)
    return {"count": len(rows), "file": "wrong_samples.csv"}


def _label_text(label, names, task):
    if task == "multilabel":
        return "|".join(name for name, on in zip(names, label.tolist()) if on) or "(none)"
    return names[int(label)]
