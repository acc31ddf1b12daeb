"""The run's config as hyperparameters (TensorBoard's hparams, MLflow params), and the one
hyperparameter record a run writes at its end."""


def config_hparams(config, prefix=""):
    """The config flattened to {"optimizer.args.lr": 0.001, ...} with values TensorBoard's
    hparams accept (numbers, strings, bools; lists and null as text)."""
    flat = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(config_hparams(value, f"{path}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[path] = value
        else:
            flat[path] = str(value)
    return flat


def log_final_hparams(writer, config, history, monitor_metric=None, monitor_best=None):
    """One hyperparameter record per run: the config and the last epoch's numbers (and the
    best monitored value) as its metrics."""
    if not history:
        return
    metrics = {f"final/{key}": value for key, value in history[-1].items()
               if key != "epoch" and isinstance(value, (int, float))}
    if monitor_metric is not None:
        metrics[f"best/{monitor_metric}"] = monitor_best
    writer.add_hparams(config_hparams(config), metrics)
