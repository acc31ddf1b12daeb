"""The evaluation report of a regression task, in the data's units: MAE, RMSE and R² per target
(torchmetrics), predicted-vs-true and residual plots, and the samples with the largest residuals
together with their rows as written in the input files."""
import pandas as pd
import torch
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

from . import plots
from .report_figures import ReportFigures

WORST_RESIDUALS = 16


def target_metrics(predicted, true, names):
    """One dict per target: mae, rmse, r2, the true values' mean and std, the samples."""
    rows = []
    for column, name in enumerate(names):
        p, t = predicted[:, column], true[:, column]
        rows.append({"target": name, "mae": float(mean_absolute_error(p, t)),
                     "rmse": float(mean_squared_error(p, t, squared=False)),
                     "r2": float(r2_score(p, t)) if len(t) > 1 else float("nan"),
                     "true_mean": float(t.mean()), "true_std": float(t.std(unbiased=False)), "samples": len(t)})
    return rows


def worst_residuals(predicted, true, names, count=WORST_RESIDUALS):
    """(positions, DataFrame) of the `count` samples whose residual is largest, measured per target
    in units of that target's standard deviation, so several targets rank together."""
    residual = true - predicted
    spread = true.std(dim=0, unbiased=False).clamp_min(1e-12)
    score = (residual.abs() / spread).amax(dim=1)
    order = score.argsort(descending=True)[:count]
    table = {"residual_score": score[order].tolist()}
    for column, name in enumerate(names):
        table[f"true_{name}"] = true[order, column].tolist()
        table[f"predicted_{name}"] = predicted[order, column].tolist()
        table[f"residual_{name}"] = residual[order, column].tolist()
    return order.tolist(), pd.DataFrame(table)


def write_regression_report(out_dir, predicted, true, names, source_rows=None, figures=None):
    """Write targets.csv, predicted_vs_true.png, residuals.png and worst_residuals.csv into
    `out_dir`; return the report's summary. `predicted` and `true` are (N, targets) tensors in
    the data's units; `source_rows(positions)` gives the samples' rows as written; `figures`
    (a ReportFigures) also sends the figures to an experiment writer."""
    figures = figures or ReportFigures(out_dir)
    predicted, true = predicted.float().reshape(len(predicted), -1), true.float().reshape(len(true), -1)
    per_target = target_metrics(predicted, true, names)
    pd.DataFrame(per_target).to_csv(out_dir / "targets.csv", index=False)
    r2 = [row["r2"] for row in per_target]
    figures.save(plots.predicted_vs_true_figure(predicted.numpy(), true.numpy(), names, r2), "predicted_vs_true")
    figures.save(plots.residuals_figure(predicted.numpy(), true.numpy(), names), "residuals")
    positions, worst = worst_residuals(predicted, true, names)
    sources = source_rows(positions) if source_rows is not None else None
    if sources is not None:
        worst = pd.concat([sources[["input"]], worst, sources.drop(columns="input")], axis=1)
    else:
        worst.insert(0, "input", [f"sample {p}" for p in positions])
    worst.to_csv(out_dir / "worst_residuals.csv", index=False)
    return {"task": "regression", "samples": len(true), "targets": per_target,
            "mae": _mean(per_target, "mae"), "rmse": _mean(per_target, "rmse"), "r2": _mean(per_target, "r2"),
            "worst_residuals": {"count": len(worst), "file": "worst_residuals.csv"}}


def _mean(rows, key):
    return float(torch.tensor([row[key] for row in rows]).mean())
