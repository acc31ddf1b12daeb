"""All of configuration: reading config.json, command-line overrides, validation, resolving
`{"type", "args"}` entries to objects, and the run folders."""
import argparse
import functools
import json
import logging
import os
from datetime import datetime
from pathlib import Path

from logger import setup_logging
from logger.writers import check_writers
from utils import ConfigError, dist, write_json
from utils.checkpoint import find_latest_checkpoint, find_newest_run_checkpoint, load_checkpoint
from utils.config_bases import resolve_bases
from utils.config_checks import parse_override, set_by_path, validate_config
from utils.epoch_metrics import is_stateful_metric
from utils.preflight import check_before_run
from utils.resolve import TORCH_FALLBACKS, check_call_args, resolve_type
from utils.run_folder import check_not_finished, check_resumes_newest, folders_of_checkpoint, remove_stale_temp_files
from utils.run_lock import RunLock
from utils.write_faults import write_site

DEFAULT_SEED = 123
logger = logging.getLogger(__name__)


class ConfigParser:
    def __init__(self, config, resume=None, modification=None, run_id=None, *,
                 create_dirs=True, init_weights=None, trusted=True):
        """
        config: dict of settings (the contents of config.json).
        resume: checkpoint to resume training from (epochs, optimizer, everything).
        modification: {'key;path' or 'key.path': value} applied before validation.
        run_id: name of the run folder; default a timestamp.
        create_dirs: make the run folders, save the config and log to info.log (train.py).
        init_weights: checkpoint whose weights start a fresh run (fine-tuning).
        trusted: False for a config that came out of a checkpoint (limits `"module"` keys).
        """
        self._config = _apply_modification(config, modification or {})
        validate_config(self._config)
        self._config.setdefault("seed", DEFAULT_SEED)
        self._config.setdefault("n_gpu", 1)
        self.resume = Path(resume) if resume is not None else None
        self.init_weights = Path(init_weights) if init_weights is not None else None
        self.trusted = trusted
        self.log_levels = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
        self._save_dir = self._log_dir = None
        self.run_id = run_id
        self.continued_run = None  # RunFolders when resuming goes on in the run's own folders
        self.run_lock = None
        if create_dirs:
            self.make_run_dirs(run_id)
        else:
            setup_logging(None)

    @classmethod
    def from_args(cls, args, options=(), create_dirs=True, argv=None):
        """Build from the command line (`argv`, default sys.argv): -c config, -r checkpoint or
        run folder, -d devices, the custom `options` (--lr, --bs) and any number of
        `-o key.path=value`."""
        for opt in options:
            args.add_argument(*opt.flags, default=None, type=opt.type)
        add_common_arguments(args)
        if isinstance(args, argparse.ArgumentParser):
            args = args.parse_args(argv)
        if args.device is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = args.device
        config, resume, init_weights, trusted = _load_config_and_checkpoint(args)
        modification = {opt.target: getattr(args, _dest(opt.flags)) for opt in options}
        modification.update(_override_modification(args.override))
        parser = cls(config, resume, modification, create_dirs=False,
                     init_weights=init_weights, trusted=trusted or args.trust)
        check_before_run(parser)  # every mistake found here leaves no run folder behind
        if create_dirs:  # training (test.py and --dry-run make no folders and may read finished runs)
            check_writers(parser)  # only a run that writes logs starts the writers (W&B needs a login)
            if parser.resume is not None:
                check_not_finished(parser.resume, parser.config)
                if not getattr(args, "new_run", False):
                    parser.continued_run = folders_of_checkpoint(parser.resume)
            parser.make_run_dirs()
        return parser

    def make_run_dirs(self, run_id=None):
        """Create (or, when resuming, reopen) the run folders and lock the run; DDP rank 0 does
        it and the other ranks follow."""
        save_dir = Path(self._config["trainer"]["save_dir"])
        name = self._config["name"]
        dist.barrier()  # DDP: every rank has resolved `-r auto` before rank 0 adds a new run folder
        if not dist.is_main_process():
            return self._follow_main_process_run_dirs()
        try:
            self._open_run_dirs(save_dir / "models" / name, save_dir / "log" / name, run_id)
        except ConfigError as err:
            dist.broadcast_object({"error": str(err)})  # the other ranks stop with the same message
            raise
        dist.broadcast_object({"save_dir": str(self._save_dir), "log_dir": str(self._log_dir)})
        setup_logging(self._log_dir)
        if self.continued_run is not None:
            logger.info(f"Resuming run {self._save_dir} from {self.resume} at "
                        f"{datetime.now().astimezone().isoformat(timespec='seconds')}")

    def _open_run_dirs(self, models_dir, log_root, run_id):
        if self.continued_run is not None:
            self._save_dir, self._log_dir = self.continued_run.save_dir, self.continued_run.log_dir
        else:
            with write_site(models_dir):
                self._save_dir = _make_unused_dir(models_dir, run_id or datetime.now().strftime(r"%m%d_%H%M%S"))
            self._log_dir = log_root / self._save_dir.name
        self.run_id = self._save_dir.name
        self.run_lock = RunLock(self._save_dir).acquire()  # before anything in the folder is written
        if self.continued_run is not None:
            try:
                check_resumes_newest(self.resume, self.continued_run)
            except ConfigError:
                self.release_run_lock()
                raise
            remove_stale_temp_files(self.continued_run)
        with write_site(self._log_dir):
            self._log_dir.mkdir(parents=True, exist_ok=True)
        with write_site(self._save_dir / "config.json"):
            write_json(self._config, self._save_dir / "config.json")

    def release_run_lock(self):
        if self.run_lock is not None:
            self.run_lock.release()

    def _follow_main_process_run_dirs(self):
        """DDP ranks > 0: create nothing, take rank 0's run folders (their clocks and the folders
        that already exist may differ) and log only warnings, so each line appears once."""
        folders = dist.broadcast_object(None)
        if "error" in folders:
            raise ConfigError(folders["error"])
        self._save_dir, self._log_dir = Path(folders["save_dir"]), Path(folders["log_dir"])
        self.run_id = self._save_dir.name
        setup_logging(None)
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)

    def init_obj(self, name, module, *args, **kwargs):
        """Instantiate config[name] = {"type": T, "args": {...}} as module.T(*args, **args_from_config,
        **kwargs). T is looked up in `module`, then in the torch namespace for the section."""
        entry = self[name]
        obj_type = resolve_type(entry, name, module, TORCH_FALLBACKS.get(name, ()), self.trusted)
        config_args = dict(entry.get("args", {}))
        overlap = set(config_args) & set(kwargs)
        if overlap:
            raise ConfigError(f"{name}.args sets {', '.join(sorted(overlap))}, which the code passes "
                              "itself; remove it from the config.")
        config_args.update(kwargs)
        check_call_args(obj_type, args, config_args, name)
        try:
            return obj_type(*args, **config_args)
        except ValueError as err:  # the constructor refused a value (torch's own checks say which)
            raise ConfigError(f"{name}: {entry['type']} rejected its arguments ({err}). Fix "
                              f"{name}.args in the config.") from err

    def init_ftn(self, name, module, *args, **kwargs):
        """Like init_obj, but return a function with the arguments bound (functools.partial)."""
        entry = self[name]
        fn = resolve_type(entry, name, module, TORCH_FALLBACKS.get(name, ()), self.trusted)
        config_args = dict(entry.get("args", {}))
        config_args.update(kwargs)
        return functools.partial(fn, *args, **config_args)

    def init_callable(self, entry, key_path, module, section):
        """A loss or metric entry (bare name or {"type", "args", "name"}) as a callable with a
        `__name__`. Classes (torch.nn.CrossEntropyLoss) are instantiated with the args."""
        target = resolve_type(entry, key_path, module, TORCH_FALLBACKS.get(section, ()), self.trusted)
        config_args = dict(entry.get("args", {})) if isinstance(entry, dict) else {}
        check_call_args(target, (), config_args, key_path, partial=not isinstance(target, type))
        if isinstance(target, type):
            try:
                fn = target(**config_args)
            except ValueError as err:  # the class refused a value (torchmetrics' checks say which)
                raise ConfigError(f"{key_path}: {target.__name__} rejected its arguments ({err}). Fix "
                                  f"{key_path}.args in the config.") from err
            if is_stateful_metric(fn) and "validate_args" not in config_args and hasattr(fn, "validate_args"):
                # torchmetrics' argument checks read values back from the GPU: a host-device
                # sync every step. An entry's args can switch them back on.
                fn.validate_args = False
        else:
            fn = functools.partial(target, **config_args)
        default_name = entry if isinstance(entry, str) else entry["type"]
        fn.__name__ = entry.get("name", default_name) if isinstance(entry, dict) else default_name
        return fn

    def init_loss(self, module):
        return self.init_callable(self["loss"], "loss", module, "loss")

    def init_metrics(self, module):
        metrics = [self.init_callable(entry, f"metrics.{i}", module, "metrics")
                   for i, entry in enumerate(self["metrics"])]
        names = [m.__name__ for m in metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"metrics: the name(s) {', '.join(duplicates)} appear twice; give each "
                              "entry a distinct \"name\".")
        return metrics

    def get_logger(self, name, verbosity=2):
        if verbosity not in self.log_levels:
            raise ConfigError(f"verbosity option {verbosity} is invalid. Valid options are {list(self.log_levels)}.")
        logger = logging.getLogger(name)
        logger.setLevel(self.log_levels[verbosity])
        return logger

    def __getitem__(self, name):
        return self._config[name]

    def __contains__(self, name):
        return name in self._config

    def get(self, name, default=None):
        return self._config.get(name, default)

    @property
    def config(self):
        return self._config

    @property
    def save_dir(self):
        return self._save_dir

    @property
    def log_dir(self):
        return self._log_dir


def add_common_arguments(parser):
    """Flags shared by train.py and test.py (the template's -c/-r/-d are added by the scripts)."""
    parser.add_argument("-o", "--override", action="append", metavar="KEY.PATH=VALUE",
                        help="set any config key, e.g. -o optimizer.args.lr=0.01 (value parsed as "
                             "JSON where it parses); prefix the key with + to add a new key")
    parser.add_argument("--trust", action="store_true",
                        help="allow a checkpoint's config to import modules outside the project and torch")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")


def _override_modification(overrides):
    """The `-o key.path=value` flags as a modification for `_apply_modification`."""
    modification = {}
    for text in overrides or []:
        keys, value, force = parse_override(text)
        modification[(tuple(keys), force)] = value
    return modification


def _dest(flags):
    """argparse's attribute name for the option: its first long flag."""
    long_flags = [flag for flag in flags if flag.startswith("--")] or flags
    return long_flags[0].lstrip("-").replace("-", "_")


def _load_config_and_checkpoint(args):
    """-c alone: new run. -r alone: resume with the checkpoint's config. -c and -r: fine-tune,
    i.e. weights from the checkpoint, everything else from the new config. -c and -r auto:
    resume the newest run of the config's name, or start the first one."""
    if args.config is None and args.resume is None:
        raise ConfigError("no config given. Add -c config.json to start a run, or -r CHECKPOINT to resume one.")
    if args.resume == "auto":
        return _auto_resume(args.config, _override_modification(args.override))
    checkpoint_path = _resolve_resume_path(args.resume) if args.resume else None
    if args.config is not None:
        config = _read_config_file(args.config)
        return config, None, checkpoint_path, True
    return _checkpoint_config(checkpoint_path), checkpoint_path, None, False


def _auto_resume(config_path, modification):
    """Restarting the same command after a crash or preemption continues the newest run. The
    run is looked up by the name and save_dir that the overrides give."""
    if config_path is None:
        raise ConfigError("-r auto needs -c CONFIG to know which run name to look for.")
    config = _read_config_file(config_path)
    lookup = _apply_modification(config, modification)
    runs_dir = Path(lookup.get("trainer", {}).get("save_dir", "saved/")) / "models" / str(lookup.get("name", ""))
    checkpoint_path = find_newest_run_checkpoint(runs_dir)
    if checkpoint_path is None:
        logger.warning(f"-r auto: no checkpoint in '{runs_dir}' yet; starting a new run from {config_path}.")
        return config, None, None, True
    return _checkpoint_config(checkpoint_path), checkpoint_path, None, False


def _checkpoint_config(checkpoint_path):
    checkpoint = load_checkpoint(checkpoint_path, mmap=True)
    config = checkpoint.get("config") or _read_config_file(checkpoint_path.parent / "config.json")
    return json.loads(json.dumps(config))


def _resolve_resume_path(resume):
    path = Path(resume)
    if path.is_dir():
        return find_latest_checkpoint(path)
    if not path.exists():
        raise ConfigError(f"resume path '{path}' does not exist. Pass a checkpoint .pth file, a run "
                          "folder under saved/models/, or 'auto' (with -c) for the newest run.")
    return path


def _read_config_file(path):
    """The config file at `path` with its bases (its "base" key) merged under it."""
    return resolve_bases(_read_json_object(path), path, _read_json_object)


def _read_json_object(path):
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist. Check the path given to -c.") from None
    except OSError as err:
        raise ConfigError(f"config file '{path}' cannot be read: {err.strerror}.") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"config file '{path}' is not valid JSON: {err.msg} at line {err.lineno}, column "
            f"{err.colno}. Fix the file (a trailing comma or a missing quote is the usual cause)."
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file '{path}' must hold a JSON object at the top level.")
    return config


def _apply_modification(config, modification):
    config = json.loads(json.dumps(config))  # a private, plain copy
    for target, value in modification.items():
        if value is None:
            continue
        if isinstance(target, tuple):  # from -o: (keys, force)
            keys, force = target
            set_by_path(config, list(keys), value, force=force)
        else:  # template style 'optimizer;args;lr' (or dotted)
            keys = target.replace(";", ".").split(".")
            set_by_path(config, keys, value, force=True, source="option")
    return config


def _make_unused_dir(parent, run_id):
    """Create parent/run_id, or run_id_1, run_id_2... when two runs start in the same second."""
    parent.mkdir(parents=True, exist_ok=True)
    candidate, suffix = run_id, 1
    while True:
        try:
            (parent / candidate).mkdir()
            return parent / candidate
        except FileExistsError:
            candidate, suffix = f"{run_id}_{suffix}", suffix + 1
