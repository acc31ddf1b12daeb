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

import optuna

import train
from parse_config import ConfigParser
from trainer.callback import Callback
from tuning.finder_commands import batch_size_find, lr_find
from tuning.importance import MIN_COMPLETE_TRIALS, write_importance
from tuning.lr_finder import RULES
from tuning.space import apply_values, parse_space, suggest
from tuning.study import (
    FINISHED,
    HEARTBEAT_DEFAULTS,
    check_settings,
    count_finished,
    default_storage,
    load_existing_study,
    open_study,
    results_folder,
    study_name_of,
    summary_lines,
    target_trials,
    write_results,
)
from tuning.trials import (
    agree,
    announce_end,
    announce_trial,
    retried_checkpoint,
    retry_stopped_trial,
    trials_from_rank_zero,
)
from utils import ConfigError, dist, main_guard
from utils.errors import TrainingStopped
from utils.monitor import Monitor


def tune(base_config, storage=None, study_name=None, n_trials=None):
    """Run trials until the study holds `tune.n_trials` finished ones; return the study, the
    monitored key and the paths of the results CSV and best config. Under torchrun, ranks > 0
    train the trials that rank 0 samples and return None for the study."""
    base_config = copy.deepcopy(base_config)
    settings = base_config.pop("tune", None)
    check_settings(settings)
    space = parse_space(settings.get("space"), base_config)
    monitor = Monitor(base_config["trainer"]["monitor"])
    if not monitor.enabled:
        raise ConfigError("trainer.monitor is 'off'; tuning needs a metric to optimise, e.g. 'min val_loss'.")
    if not dist.is_main_process():
        follow_rank_zero(base_config, monitor.key)
        return None, monitor.key, None, None
    target = n_trials or target_trials(settings, space)
    study_name = study_name_of(base_config | {"tune": settings}, study_name)
    results_dir = results_folder(base_config, study_name)
    results_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(storage or default_storage(results_dir), study_name, monitor.direction, settings, space)
    search(study, target, base_config, space, monitor.key, settings)
    announce_end()  # after a stop signal or an error the other ranks end on their own
    csv_path, best_path = write_results(study, base_config, results_dir)
    return study, monitor.key, csv_path, best_path


def search(study, target, base_config, space, metric, settings):
    """study.optimize until the study holds `target` finished trials. A trial that a stop signal
    ended is queued again (it continues from its stop checkpoint when the search goes on)."""
    remaining = target - count_finished(study)
    if remaining <= 0:
        return
    running = []  # the number of the trial in progress
    objective = make_objective(base_config, space, metric, running)
    try:
        # MaxTrialsCallback stops this process once all processes together reach the target
        study.optimize(objective, n_trials=remaining, catch=(ConfigError,),
                       callbacks=[optuna.study.MaxTrialsCallback(target, states=FINISHED)])
    except TrainingStopped:
        if running:
            retry_stopped_trial(study, running[-1], settings.get("max_retry", HEARTBEAT_DEFAULTS["max_retry"]))
        raise


def make_objective(base_config, space, metric, running):
    def objective(trial):
        running.append(trial.number)
        values = {key: suggest(trial, key, spec) for key, spec in space.items()}
        resume = retried_checkpoint(trial)  # a retry continues the earlier attempt's training
        announce_trial(trial.number, values, resume)
        config = trial_config(base_config, values, trial.number, resume)
        trial.set_user_attr("run_dir", str(config.save_dir))
        if resume is not None:
            trial.set_user_attr("resumed_from", str(resume))
        console_warnings_only()  # Optuna prints one line per trial; the trial's info.log has the rest
        trainer = train.main(config, callbacks=[ReportToOptuna(trial, metric)])
        return trainer.monitor_best
    return objective


def trial_config(base_config, values, number, resume):
    return ConfigParser(apply_values(base_config, values), resume=resume, run_id=f"trial-{number}")


def follow_rank_zero(base_config, metric):
    """Ranks > 0 under torchrun: train each trial that rank 0 announces, with rank 0."""
    for message in trials_from_rank_zero():
        config = trial_config(base_config, message["values"], message["number"], message["resume"])
        console_warnings_only()
        try:
            train.main(config, callbacks=[ReportToOptuna(None, metric)])
        except (optuna.TrialPruned, ConfigError):  # rank 0 records the trial's outcome
            continue


def console_warnings_only():
    """Raise the console handlers to WARNING; the file handlers (info.log) keep everything."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


class ReportToOptuna(Callback):
    """Gives Optuna the monitored value after each epoch; raising TrialPruned ends the run. Under
    torchrun rank 0 (the only one with a `trial`) decides and every rank stops together."""

    def __init__(self, trial, metric):
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, trainer, epoch, log):
        prune = False
        if self.trial is not None:
            self.trial.report(log[self.metric], epoch)
            prune = self.trial.should_prune()
        if agree(prune):
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
    parser.add_argument("--importance", action="store_true",
                        help="only write the hyperparameter importance (table and plot) of the existing study")
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
    if args.importance:
        return print_importance(base.config, args.storage, args.study_name)
    with dist.distributed_session():  # under torchrun: every trial trains on all processes
        try:
            study, metric, csv_path, best_path = tune(base.config, args.storage, args.study_name, args.n_trials)
        except TrainingStopped as stop:
            raise TrainingStopped("Search stopped; the interrupted trial is recorded as failed and queued again. "
                                  "Continue the study (that trial from its checkpoint) with the same command: "
                                  f"python tune.py {shlex.join(sys.argv[1:])}", stop.exit_code) from None
    if study is None:  # a rank > 0 of a torchrun search
        return
    print("\n".join(summary_lines(study, metric, csv_path, best_path)))
    if best_path is None:
        raise ConfigError("no trial of the study completed.")
    print_study_importance(study, csv_path.parent)


def print_study_importance(study, results_dir):
    """The importance table at the end of a search, once there are trials to compare."""
    if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) < MIN_COMPLETE_TRIALS:
        return
    try:
        csv_path, png_path, lines = write_importance(study, results_dir)
    except ConfigError as reason:  # not enough variation yet: say so, the search itself succeeded
        print(f"No importance table: {reason}")
        return
    print("\n".join(lines + [f"Importance: {csv_path}, {png_path}"]))


def print_importance(config, storage, study_name):
    """--importance: the table and plot of an existing study, from the same storage options."""
    study, results_dir = load_existing_study(config, storage, study_name)
    csv_path, png_path, lines = write_importance(study, results_dir)
    print("\n".join(lines))
    print(f"Saved {csv_path} and {png_path}")


def run_finders(config, args):
    if args.find_batch_size:
        _, _, lines = batch_size_find(config, args.bs_steps, args.max_memory_mb, args.max_batch_size)
        print("\n".join(lines))
    if args.lr_find:
        _, _, lines = lr_find(config, *args.lr_range, args.lr_steps, args.lr_rule, args.out)
        print("\n".join(lines))


if __name__ == "__main__":
    run()
