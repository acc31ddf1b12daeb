"""Hyperparameter search with Optuna over the config's "tune" section. Each trial is a normal
training run (its own run folder, trial-<n>) that reports every epoch's monitored value, so the
pruner can stop poor trials early. The study lives in a database (default SQLite under
saved/tune/<study name>/), so a rerun resumes it and several processes can share it.

    python tune.py -c config.json [--storage URL] [--study-name NAME] [--n-trials N]

Two finders run instead of a search (no "tune" section needed, no run folder made):

    python tune.py --lr-find -c config.json            # LR range test, plot + suggested lr
    python tune.py --find-batch-size -c config.json    # largest batch size that fits
"""
import argparse
import copy
import logging
import shlex
import sys
from pathlib import Path

import optuna

import train
from parse_config import ConfigParser
from trainer.callback import Callback
from tuning.finder_commands import batch_size_find, lr_find
from tuning.lr_finder import RULES
from tuning.space import apply_values, parse_space, suggest
from tuning.study import (
    check_settings,
    count_finished,
    default_storage,
    open_study,
    summary_lines,
    target_trials,
    write_results,
)
from utils import ConfigError, main_guard
from utils.errors import TrainingStopped
from utils.monitor import Monitor


def tune(base_config, storage=None, study_name=None, n_trials=None):
    """Run trials until the study holds `tune.n_trials` finished ones; return the study and the
    paths of the results CSV and best config."""
    base_config = copy.deepcopy(base_config)
    settings = base_config.pop("tune", None)
    check_settings(settings)
    space = parse_space(settings.get("space"), base_config)
    monitor = Monitor(base_config["trainer"]["monitor"])
    if not monitor.enabled:
        raise ConfigError("trainer.monitor is 'off'; tuning needs a metric to optimise, e.g. 'min val_loss'.")
    target = n_trials or target_trials(settings, space)
    study_name = study_name or settings.get("study_name") or base_config["name"]
    results_dir = Path(base_config["trainer"]["save_dir"]) / "tune" / study_name
    results_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(storage or default_storage(results_dir), study_name, monitor.direction, settings, space)
    remaining = target - count_finished(study)
    if remaining > 0:
        objective = make_objective(base_config, space, monitor.key)
        # MaxTrialsCallback stops this process once all processes together reach the target
        study.optimize(objective, n_trials=remaining, catch=(ConfigError,),
                       callbacks=[optuna.study.MaxTrialsCallback(target, states=(
                           optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))])
    csv_path, best_path = write_results(study, base_config, results_dir)
    return study, monitor.key, csv_path, best_path


def make_objective(base_config, space, metric):
    def objective(trial):
        values = {key: suggest(trial, key, spec) for key, spec in space.items()}
        config = ConfigParser(apply_values(base_config, values), run_id=f"trial-{trial.number}")
        trial.set_user_attr("run_dir", str(config.save_dir))
        console_warnings_only()  # Optuna prints one line per trial; the trial's info.log has the rest
        trainer = train.main(config, callbacks=[ReportToOptuna(trial, metric)])
        return trainer.monitor_best
    return objective


def console_warnings_only():
    """Raise the console handlers to WARNING; the file handlers (info.log) keep everything."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


class ReportToOptuna(Callback):
    """Gives Optuna the monitored value after each epoch; raising TrialPruned ends the run."""

    def __init__(self, trial, metric):
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, trainer, epoch, log):
        self.trial.report(log[self.metric], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.metric} {log[self.metric]:.6g})")


def parse_args():
    parser = argparse.ArgumentParser(description="Hyperparameter search over the config's 'tune' section, or "
                                                 "the learning-rate and batch-size finders")
    parser.add_argument("-c", "--config", required=True,
                        help="config file; the search needs its 'tune' section, --lr-find and "
                             "--find-batch-size do not")
    parser.add_argument("-d", "--device", default=None, help="indices of GPUs to enable")
    parser.add_argument("--storage", default=None,
                        help="where the study lives, to share it between processes and machines: a database URL "
                             "(sqlite:///..., postgresql://user@host/db) or journal:PATH (a journal file on a "
                             "shared file system); default sqlite under saved/tune/<name>/")
    parser.add_argument("--study-name", default=None, help="default: tune.study_name or the config's name")
    parser.add_argument("--n-trials", type=int, default=None,
                        help="finished trials the study should reach (default: tune.n_trials)")
    finders = parser.add_argument_group("finders (instead of a search)")
    finders.add_argument("--lr-find", action="store_true",
                         help="sweep the learning rate exponentially on a copy of the model and suggest one")
    finders.add_argument("--lr-range", nargs=2, type=float, default=(1e-7, 10.0), metavar=("START", "END"),
                         help="learning rates of the sweep's first and last step (default 1e-7 10)")
    finders.add_argument("--lr-steps", type=int, default=100, help="steps of the LR sweep (default 100)")
    finders.add_argument("--lr-rule", choices=RULES, default="valley",
                         help="valley: fastai's rule (default); steepest: fastest descent before the minimum")
    finders.add_argument("--out", default=None,
                         help="folder for lr_find.png/.csv (default <save_dir>/lr_find/<name>)")
    finders.add_argument("--find-batch-size", action="store_true",
                         help="double the batch size, then binary-search, until it runs out of memory")
    finders.add_argument("--bs-steps", type=int, default=3, help="training steps per batch size (default 3)")
    finders.add_argument("--max-memory-mb", type=float, default=None,
                         help="peak memory cap in MB: on CPU the process's peak resident memory, on CUDA the "
                              "peak tensor memory; a size above it counts as out of memory")
    finders.add_argument("--max-batch-size", type=int, default=None,
                         help="largest size to try (default: the training set's size)")
    parser.set_defaults(resume=None)
    base = ConfigParser.from_args(parser, create_dirs=False)
    return base, parser.parse_args()


@main_guard
def run():
    base, args = parse_args()
    if args.lr_find or args.find_batch_size:
        return run_finders(base, args)
    try:
        study, metric, csv_path, best_path = tune(base.config, args.storage, args.study_name, args.n_trials)
    except TrainingStopped as stop:
        raise TrainingStopped("Search stopped; the interrupted trial is recorded as failed. Continue the "
                              f"study with the same command: python tune.py {shlex.join(sys.argv[1:])}",
                              stop.exit_code) from None
    print("\n".join(summary_lines(study, metric, csv_path, best_path)))
    if best_path is None:
        raise ConfigError("no trial of the study completed.")


def run_finders(config, args):
    if args.find_batch_size:
        _, _, lines = batch_size_find(config, args.bs_steps, args.max_memory_mb, args.max_batch_size)
        print("\n".join(lines))
    if args.lr_find:
        _, _, lines = lr_find(config, *args.lr_range, args.lr_steps, args.lr_rule, args.out)
        print("\n".join(lines))


if __name__ == "__main__":
    run()
