"""Which hyperparameters mattered: Optuna's fANOVA importance over the study's complete trials,
as a table (importance.csv, and lines for the console) and a bar chart (importance.png)."""
from pathlib import Path

import optuna

from utils import ConfigError, atomic_write_csv

MIN_COMPLETE_TRIALS = 2
BAR_WIDTH = 30  # characters of the longest bar in the console table


def param_importances(study):
    """{parameter: share of the objective's variance it explains}, largest first; they sum to 1."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_COMPLETE_TRIALS:
        raise ConfigError(f"study '{study.study_name}' has {len(complete)} complete trial(s); the importance of "
                          f"its parameters needs at least {MIN_COMPLETE_TRIALS}. Run more trials first.")
    if not any(trial.params for trial in complete):
        raise ConfigError(f"study '{study.study_name}' has no parameters to rank.")
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # seeded: the same study, the same table
    try:
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError) as err:  # e.g. every complete trial has the same value
        raise ConfigError(f"the parameters of study '{study.study_name}' cannot be ranked yet: "
                          f"{err} Its complete trials must differ in their values and parameters.") from None
    return {name: float(value) for name, value in importances.items()}


def importance_lines(importances, study):
    n_complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    width = max(len(name) for name in importances)
    top = max(importances.values()) or 1.0
    lines = [f"Hyperparameter importance (fANOVA over {n_complete} complete trials of '{study.study_name}'):"]
    lines += [f"    {name:<{width}}  {value:6.1%}  {'#' * round(BAR_WIDTH * value / top)}"
              for name, value in importances.items()]
    return lines


def write_importance(study, results_dir):
    """importance.csv and importance.png in `results_dir`; returns (csv path, png path, lines)."""
    import pandas as pd

    importances = param_importances(study)
    results_dir = Path(results_dir)
    csv_path, png_path = results_dir / "importance.csv", results_dir / "importance.png"
    atomic_write_csv(pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())}),
                     csv_path)
    _plot(importances, study, png_path)
    return csv_path, png_path, importance_lines(importances, study)


def _plot(importances, study, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]  # the most important at the top
    values = [importances[name] for name in names]
    n_complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    figure, axes = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)))
    bars = axes.barh(names, values, color="tab:blue")
    axes.bar_label(bars, labels=[f"{value:.1%}" for value in values], padding=3)
    axes.set_xlim(0, max(values) * 1.2 or 1)
    axes.set_xlabel("importance (share of the objective's variance, fANOVA)")
    axes.set_title(f"Study '{study.study_name}': {n_complete} complete trials")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
