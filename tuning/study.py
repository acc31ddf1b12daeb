"""The Optuna study of a "tune" section: sampler, pruner, storage, and the results files."""
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages.journal import JournalFileBackend

from config.resolve import check_call_args
from utils import ConfigError, atomic_write_csv, write_json

from .space import apply_values, grid_size, grid_values

SAMPLERS = {"grid": optuna.samplers.GridSampler, "random": optuna.samplers.RandomSampler,
            "tpe": optuna.samplers.TPESampler}
PRUNERS = {"median": optuna.pruners.MedianPruner, "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "none": optuna.pruners.NopPruner}
# the pip package that provides a database driver module SQLAlchemy asks for
DRIVER_PACKAGES = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pymysql": "PyMySQL",
                   "mysqldb": "mysqlclient"}
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
JOURNAL_PREFIX = "journal:"
SETTINGS = ("space", "n_trials", "sampler", "pruner", "seed", "study_name", "heartbeat_interval", "grace_period",
            "max_retry")
# a database storage: each running trial writes a heartbeat; a trial whose heartbeat is older than
# the grace period (its worker died) is marked failed and queued again with the same parameters
HEARTBEAT_DEFAULTS = {"heartbeat_interval": 60, "grace_period": 180, "max_retry": 3}
# Optuna 4.9 renamed RetryFailedTrialCallback and RDBStorage's failed_trial_callback
if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
    RETRY_CALLBACK, RETRY_ARGUMENT = optuna.storages.RetryHeartbeatStaleTrialCallback, "heartbeat_stale_trial_callback"
else:
    RETRY_CALLBACK, RETRY_ARGUMENT = optuna.storages.RetryFailedTrialCallback, "failed_trial_callback"


def check_settings(settings):
    """The "tune" section: a dict of known settings (a typo must not silently fall back to a default)."""
    if not isinstance(settings, dict):
        raise ConfigError('the config has no "tune" section; add one with a "space" (see '
                          'docs/experiments.md; configs/mnist_tune.json has one).')
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"tune.{unknown[0]} is not a tune setting; the settings are {', '.join(SETTINGS)}.")
    seed = settings.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"tune.seed is {seed!r}; it must be an integer or null.")
    for key in HEARTBEAT_DEFAULTS:
        value = settings.get(key, HEARTBEAT_DEFAULTS[key])
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"tune.{key} is {value!r}; it must be a whole number of at least 1, or null "
                              f"(default {HEARTBEAT_DEFAULTS[key]}).")


def _name_and_args(entry, key_path, choices):
    """A sampler/pruner entry: a bare name or {"type": name, "args": {...}}."""
    name, args = (entry, {}) if isinstance(entry, str) else (entry.get("type"), entry.get("args", {}))
    if name not in choices:
        raise ConfigError(f"{key_path} is {name!r}; use one of {', '.join(choices)}.")
    if not isinstance(args, dict):
        raise ConfigError(f"{key_path}.args must be a dict of {choices[name].__name__} arguments.")
    return name, dict(args)


def make_sampler(tune, space, trials_so_far=0):
    """tune.seed makes the draws reproducible. A resumed study offsets it by the trials it
    already holds, or it would replay the first run's draws. Leave it out when several
    processes share a study, or they would all draw the same values."""
    name, args = _name_and_args(tune.get("sampler", "tpe"), "tune.sampler", SAMPLERS)
    if tune.get("seed") is not None:
        args.setdefault("seed", tune["seed"] + trials_so_far)
    if name == "grid":
        args["search_space"] = grid_values(space)
    check_call_args(SAMPLERS[name], (), args, "tune.sampler")
    return SAMPLERS[name](**args)


def make_pruner(tune):
    name, args = _name_and_args(tune.get("pruner", "median"), "tune.pruner", PRUNERS)
    check_call_args(PRUNERS[name], (), args, "tune.pruner")
    return PRUNERS[name](**args)


def target_trials(tune, space):
    """How many finished (complete or pruned) trials the study should reach."""
    n_trials = tune.get("n_trials")
    if n_trials is None:
        sampler = tune.get("sampler", "tpe")
        is_grid = sampler == "grid" or (isinstance(sampler, dict) and sampler.get("type") == "grid")
        return grid_size(grid_values(space)) if is_grid else 20
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ConfigError(f"tune.n_trials is {n_trials!r}; it must be a positive integer.")
    return n_trials


def default_storage(results_dir):
    return f"sqlite:///{(Path(results_dir) / 'study.db').resolve()}"


def study_name_of(base_config, study_name=None):
    return study_name or (base_config.get("tune") or {}).get("study_name") or base_config["name"]


def results_folder(base_config, study_name):
    """<save_dir>/tune/<study name>/: trials.csv, best_config.json, importance, the default storage."""
    return Path(base_config["trainer"]["save_dir"]) / "tune" / study_name


def load_existing_study(base_config, storage=None, study_name=None):
    """(study, results folder) of a study that exists already, from the same options as the search."""
    study_name = study_name_of(base_config, study_name)
    results_dir = results_folder(base_config, study_name)
    if storage is None and not (results_dir / "study.db").is_file():
        raise ConfigError(f"there is no study '{study_name}' in {results_dir}. Run the search first, or give "
                          "the --storage and --study-name it ran with.")
    try:
        study = optuna.load_study(study_name=study_name, storage=_make_storage(storage or default_storage(results_dir)))
    except KeyError:
        raise ConfigError(f"the storage holds no study named '{study_name}'; pass the --study-name it ran "
                          "with.") from None
    results_dir.mkdir(parents=True, exist_ok=True)
    return study, results_dir


def open_study(storage_url, study_name, direction, settings, space):
    """Create the study or join the existing one of that name (an interrupted search, or
    another process working on it)."""
    sampler, pruner = make_sampler(settings, space), make_pruner(settings)  # settings errors before any file
    storage = _make_storage(storage_url, settings)
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if study.trials:
        study.sampler = make_sampler(settings, space, len(study.trials))
    return study


def _make_storage(url, settings=None):
    """journal:PATH -> Optuna's journal file (for a file system that several machines share,
    such as NFS, where SQLite's locking is unreliable); a database URL -> RDBStorage, with
    heartbeats unless tune.heartbeat_interval is null."""
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):])
        if not path.parent.is_dir():
            raise ConfigError(f"--storage {url}: the folder '{path.parent}' does not exist; create it first.")
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return _database_storage(url, heartbeat_options(settings or {})) if "://" in url else url


def heartbeat_options(settings):
    """RDBStorage's heartbeat arguments from the "tune" section ({} when the interval is null)."""
    values = {key: settings.get(key, default) for key, default in HEARTBEAT_DEFAULTS.items()}
    if values["heartbeat_interval"] is None:
        return {}
    # the retry inherits the reported epochs, so the pruner judges it like the trial it repeats
    with warnings.catch_warnings():  # Optuna marks the retry callback experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RETRY_CALLBACK(max_retry=values["max_retry"], inherit_intermediate_values=True)
    return {"heartbeat_interval": values["heartbeat_interval"],
            "grace_period": values["grace_period"] or 2 * values["heartbeat_interval"], RETRY_ARGUMENT: retry}


def _database_storage(url, heartbeat=None, attempts=3):
    """RDBStorage for `url`. Processes that start on a new database together all try to create
    its tables; the ones that lose the race fail once and find the tables on the next try."""
    # several processes on one SQLite file: wait for the write lock instead of failing
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite:") else None
    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():  # Optuna marks heartbeats experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **(heartbeat or {}))
        except ImportError:  # SQLAlchemy imports the URL's database driver only now
            driver = sqlalchemy.engine.make_url(url).get_dialect().driver
            raise ConfigError(
                f"--storage {_without_password(url)}: its database driver '{driver}' is not installed. "
                f"Install it (pip install {DRIVER_PACKAGES.get(driver, driver)}), name an installed "
                "driver in the URL (e.g. postgresql+psycopg2://...), or use a sqlite:/// URL.") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            if attempt == attempts:
                raise ConfigError(
                    f"--storage {_without_password(url)}: cannot open the study database "
                    f"({str(err.orig if getattr(err, 'orig', None) else err).strip().splitlines()[0]}). "
                    "Check the URL, that the server is running and that the database exists.") from None
            time.sleep(attempt)


def _without_password(url):
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def count_finished(study):
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def write_results(study, base_config, results_dir):
    """trials.csv (best first) and best_config.json; return their paths (best_config None when
    no trial completed)."""
    results_dir = Path(results_dir)
    frame = study.trials_dataframe()
    if "value" in frame:
        ascending = study.direction == optuna.study.StudyDirection.MINIMIZE
        frame = frame.sort_values("value", ascending=ascending, na_position="last")
    csv_path = results_dir / "trials.csv"
    atomic_write_csv(frame, csv_path)
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return csv_path, None
    best_path = results_dir / "best_config.json"
    write_json(apply_values(base_config, study.best_trial.params), best_path)
    return csv_path, best_path


def summary_lines(study, metric, csv_path, best_path):
    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {state.name.lower(): states.count(state) for state in optuna.trial.TrialState if state in states}
    lines = [f"Study '{study.study_name}': {len(states)} trials ("
             + ", ".join(f"{n} {state}" for state, n in counts.items()) + ")"]
    if best_path is not None:
        best = study.best_trial
        lines.append(f"Best trial {best.number}: {metric} = {best.value:.6g}")
        lines += [f"    {key} = {value}" for key, value in best.params.items()]
        if best.user_attrs.get("run_dir"):
            lines.append(f"    run folder: {best.user_attrs['run_dir']}")
        lines.append(f"Best config: {best_path}  (train it: python train.py -c {best_path})")
    else:
        lines.append("No trial completed, so there is no best config; see the trial errors above.")
    lines.append(f"All trials: {csv_path}")
    return lines
