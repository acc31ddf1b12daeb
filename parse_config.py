"""ConfigParser: the pytorch-template API over the config pipeline in config/ (reading, overrides,
schema checks, pre-run checks, building objects, run folders)."""
import argparse
import logging
import os
from datetime import datetime
from pathlib import Path

from config.cli import add_common_arguments, option_dest, parse_command_line  # noqa: F401 (add_common_arguments: public here)
from config.instantiate import bind, instantiate, named_callable
from config.overrides import parse_override
from config.sources import apply_modification
from config.validation import Problems, check_config, fill_defaults, settings_view
from logger import console_logging, setup_logging
from logger.writers import check_writers
from run.folder import RunFolder, open_run_folder
from run.record import write_run_record
from run.resume import check_not_finished, check_resumes_newest, load_source
from trainer.preflight import check_before_run
from trainer.speed import apply_backend_flags
from utils import ConfigError, dist
from utils.checkpoint import load_checkpoint

# sections the pre-run checks need in their declared shape
STRUCTURE = ("arch", "data_loader", "optimizer", "loss", "metrics", "lr_scheduler", "trainer")
LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


class ConfigParser:
    def __init__(self, config, resume=None, modification=None, run_id=None, *,
                 create_dirs=True, init_weights=None, trusted=True, preflight=False, checkpoint=None):
        """
        config: dict of settings (the contents of config.json).
        resume: checkpoint to resume training from (epochs, optimizer, everything).
        modification: {'key;path' or 'key.path': value} applied before validation.
        run_id: name of the run folder; default a timestamp.
        create_dirs: make the run folders, save the config and log to info.log now; without it
            the caller does that with make_run_dirs() once everything is built (train.py).
        init_weights: checkpoint whose weights start a fresh run (fine-tuning).
        trusted: False for a config that came out of a checkpoint (limits `"module"` keys).
        preflight: also resolve every entry and check its arguments (config/preflight.py).
        checkpoint: the already loaded file of `resume` or `init_weights`, if there is one.
        Every problem found is reported in one ConfigError, before anything is written.
        """
        self._config = apply_modification(config, modification or {})
        self.resume = Path(resume) if resume is not None else None
        self.init_weights = Path(init_weights) if init_weights is not None else None
        self.trusted = trusted
        self._checkpoint = checkpoint
        self._check(preflight)
        self.log_levels = LOG_LEVELS
        self.run_folder = None  # the RunFolder, once make_run_dirs made (or reopened) it
        self.run_id = run_id
        self.cli_args = None  # the parsed command line, when built by from_args
        self.continued_run = None  # the RunFolder when resuming goes on in the run's own folders
        self.resumes_run = False  # built by from_source: a resume goes on in the run's folder...
        self.new_run = False  # ...unless this (--new-run) asks for a new one
        self.run_lock = None
        self.command = None  # what started the run, for its record (default: this process's command line)
        if create_dirs:
            self.make_run_dirs(run_id)
        else:
            console_logging()

    def _check(self, preflight):
        """Schema checks, defaults, then (optionally) the checks that build objects; one report."""
        problems = Problems()
        check_config(self._config, problems)
        fill_defaults(self._config)
        if preflight and not problems.about_exactly(*STRUCTURE):
            check_before_run(self, problems)
        problems.raise_if_any()

    @classmethod
    def from_args(cls, args, options=(), create_dirs=True, argv=None, prefer_best=False):
        """Build from the command line (`argv`, default sys.argv): -c config, -r checkpoint or
        run folder, -d devices, the custom `options` (--lr, --bs) and any number of
        `-o key.path=value`. `args` is the parser, or the namespace that
        config.cli.parse_command_line made of it. Every mistake found here leaves no run folder behind.
        `prefer_best`: -r RUN_FOLDER means the run's model_best.pth when it has one."""
        if isinstance(args, argparse.ArgumentParser):
            args = parse_command_line(args, options, argv)
        if args.device is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = args.device
        modification = {opt.target: getattr(args, option_dest(opt.flags)) for opt in options}
        modification.update(_override_modification(args.override))
        parser = cls.from_source(args.config, args.resume, modification, trust=args.trust,
                                 new_run=getattr(args, "new_run", False), prefer_best=prefer_best)
        parser.cli_args = args
        if create_dirs:
            parser.make_run_dirs()
        return parser

    @classmethod
    def from_source(cls, config, resume=None, modification=None, trust=False, new_run=False, prefer_best=False):
        """What `-c CONFIG -r RESUME -o ...` asks for, checked (pre-run checks included), with no
        run folder yet: `config` a file path or a dict, `resume` a checkpoint, a run folder or
        "auto". A resume continues the run in its own folder unless `new_run`; `prefer_best`
        takes a run folder's model_best.pth (evaluation)."""
        source = load_source(config, resume, modification, prefer_best)
        # every mistake found here leaves no run folder behind
        parser = cls(source.config, source.resume, modification, create_dirs=False,
                     init_weights=source.init_weights, trusted=source.trusted or trust,
                     preflight=True, checkpoint=source.checkpoint)
        parser.resumes_run, parser.new_run = True, new_run
        return parser

    def make_run_dirs(self, run_id=None):
        """Create (or, when resuming, reopen) the run folders, save the config there, log to
        info.log and lock the run. A resume continues in the checkpoint's own folders unless
        --new-run was given; a run that has already finished is refused."""
        check_writers(self)  # only a run that writes logs starts the writers (W&B needs a login)
        # from the command line (train.py -r) or api.run a run goes on in its own folder; code
        # that builds a ConfigParser with `resume` itself gets a new folder, as before
        if self.resume is not None and self.resumes_run:
            check_not_finished(self.resume, self.checkpoint, self._config)
            if not self.new_run:
                self.continued_run = RunFolder.containing(self.resume)
        self.run_folder, self.run_lock = open_run_folder(
            self._config, self._config["trainer"]["save_dir"], self._config["name"], run_id or self.run_id,
            self.continued_run, self._check_resumes_newest)
        self.run_id = self.run_folder.run_id
        if not dist.is_main_process():
            console_logging()
            return
        setup_logging(self.run_folder.log_dir)
        if self.continued_run is not None:
            logging.getLogger("config").info(
                f"Resuming run {self.run_folder.models_dir} from {self.resume} at "
                f"{datetime.now().astimezone().isoformat(timespec='seconds')}")
        self._write_record()

    def _write_record(self):
        """record.json: a new part for this start; a resume is compared with the record of the
        run it continues (its own folder, or the source run of --new-run)."""
        source = self.continued_run or (RunFolder.containing(self.resume) if self.resume is not None else None)
        # the record holds the backend flags this run trains with (the trainer sets the same ones)
        trainer = self._config["trainer"]
        apply_backend_flags(trainer.get("cudnn_benchmark", False), trainer.get("deterministic", False))
        write_run_record(self.run_folder.models_dir, self._config, self.command, self.resume,
                         source.models_dir if source is not None else None)

    def _check_resumes_newest(self, folder):
        """Under the run's lock, before a reopened run folder is written to."""
        if self.continued_run is not None:
            check_resumes_newest(self.resume, self.checkpoint, folder)
            folder.remove_stale_temp_files()

    def release_run_lock(self):
        if self.run_lock is not None:
            self.run_lock.release()

    @property
    def checkpoint(self):
        """The file of `resume` (or else `init_weights`), loaded once and shared by the checks,
        the trainer and test.py; None when there is neither."""
        path = self.resume or self.init_weights
        if self._checkpoint is None and path is not None:
            self._checkpoint = load_checkpoint(path, mmap=True)
        return self._checkpoint

    def init_obj(self, name, module, *args, **kwargs):
        """Instantiate config[name] = {"type": T, "args": {...}} as module.T(*args, **args_from_config,
        **kwargs); the caller's kwargs win. T is looked up in `module`, then in torch."""
        return instantiate(self[name], *args, key_path=name, module=module, trusted=self.trusted, **kwargs)

    def init_ftn(self, name, module, *args, **kwargs):
        """Like init_obj, but return a function with the arguments bound (functools.partial)."""
        return bind(self[name], *args, key_path=name, module=module, trusted=self.trusted, **kwargs)

    def init_loss(self, module=None):
        return named_callable(self["loss"], "loss", module, self.trusted)

    def init_metrics(self, module=None):
        metrics = [named_callable(entry, f"metrics.{i}", module, self.trusted)
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
    def settings(self):
        """The declared settings, filled in, as attributes: settings.seed, settings.trainer.amp."""
        return settings_view(self._config)

    @property
    def save_dir(self):
        """The run's checkpoint folder, <save_dir>/models/<name>/<run_id> (None before it exists)."""
        return self.run_folder.models_dir if self.run_folder is not None else None

    @property
    def log_dir(self):
        """The run's log folder, <save_dir>/log/<name>/<run_id> (None before it exists)."""
        return self.run_folder.log_dir if self.run_folder is not None else None


def _override_modification(overrides):
    """The `-o key.path=value` flags as a modification for `_apply_modification`."""
    modification = {}
    for text in overrides or []:
        keys, value, force = parse_override(text)
        modification[(tuple(keys), force)] = value
    return modification
