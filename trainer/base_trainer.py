import signal
import time
from abc import abstractmethod

from config.schema import declare_trainer_settings
from config.validation import Problems, check_section, fill_section, section_view
from data_loader.task import task_of_run
from logger.hparams import log_final_hparams
from logger.writers import make_writer
from run.checkpoints import CheckpointPolicy, check_checkpoint_policy, is_rolling_file, rolling_checkpoints
from run.folder import RunFolder
from utils import ConfigError, dist, unwrap_model
from utils.checkpoint import Key, load_checkpoint, whole_checkpoint
from utils.errors import PartFailed, TrainingStopped
from utils.io import atomic_write_rows
from utils.monitor import Monitor
from utils.resource_faults import explain_resource_fault
from utils.seed import get_rng_states, set_rng_states
from utils.state import StateParts
from utils.write_faults import WriteFailed, write_site

from . import checkpoint_io
from .callback import CallbackList, EarlyStopping, EpochFunction
from .fsdp import is_sharded
from .speed import explain_nondeterministic_operation
from .template_names import TemplateNames

NOT_METRICS = ("epoch", "lr")  # epoch-log keys written to TensorBoard under their own name
# curves.png takes about a second of CPU to draw (on a worker thread): during training it is
# redrawn at an epoch's end at most this often, and always after the last epoch
CURVES_REDRAW_SECONDS = 60


class StopRequested(Exception):
    """Raised inside an epoch when a stop signal arrived; carries the batches done so far."""

    def __init__(self, epoch, batches_done):
        super().__init__(f"stop requested in epoch {epoch} after {batches_done} batches")
        self.epoch, self.batches_done = epoch, batches_done


class BaseTrainer(TemplateNames):
    """The epoch loop: monitoring, best model, early stopping, checkpoints, resume and stop
    signals. Subclasses implement `_train_epoch(epoch) -> dict of epoch results`.

    A subclass that reads trainer keys of its own declares them, so that they are checked, get
    their defaults and appear as `self.settings.<key>` like the built-in ones:

        extra_settings = (Setting("warmup_epochs", int, 0, "epochs of warm-up", minimum=0),)
    """

    extra_settings = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        declare_trainer_settings(cls.__dict__.get("extra_settings", ()), cls.__name__)

    def __init__(self, model, criterion, metric_ftns, optimizer, config):
        self.config = config
        self.settings = self._trainer_settings(config["trainer"])
        self.logger = config.get_logger("trainer", self.settings.verbosity)
        self.model = model
        self.criterion = criterion
        self.metric_ftns = metric_ftns
        self.optimizer = optimizer

        self.epochs = self.settings.epochs
        self.save_period = self.settings.save_period
        self.keep_last = self.settings.keep_last
        self.monitor = Monitor(self.settings.monitor)
        self.early_stopping = EarlyStopping(self.settings.early_stop)  # a callback, added last in train()
        self.should_stop = False  # set by a callback (early stopping) to end training after this epoch
        check_checkpoint_policy(config["trainer"])
        # .pth files, or .dcp folders that every process writes its shards into (FSDP)
        self.checkpoint_policy = CheckpointPolicy(config.save_dir, self.settings, self.monitor,
                                                  checkpoint_io.checkpoint_suffix(model))
        self.validates_in_epoch = False  # Trainer: the monitor is updated by validations inside epochs

        self.start_epoch = 1
        self.resume_batches_done = 0  # >0 when resuming inside an epoch
        self.history = []
        self.curves_drawn_at = time.monotonic()
        self.curves_drawer = None  # draws curves.png on a worker thread (the main process of a run with a log folder)
        self.checkpoint_dir = config.save_dir
        # None for a trainer without a run folder (a config built with create_dirs=False)
        self.run_folder = RunFolder(config.save_dir, config.log_dir) if config.save_dir is not None else None
        self.last_checkpoint = getattr(config, "resume", None)  # named in error messages: resume from here
        self.writer = make_writer(config, self.logger)  # a NullWriter except on rank 0
        self.stop_signal = None
        self.callbacks = CallbackList()  # base.Callback objects: the config's "callbacks" and the built-in ones
        # plain functions called as callback(epoch, log) after each epoch's checkpoint, like a
        # Callback's on_epoch_end (kept for code written against them); may raise to end training
        self.epoch_callbacks = []
        self.state_parts = StateParts()  # what a checkpoint holds besides epoch, history and config
        self._register_state_parts()

    def _register_state_parts(self):
        parts = self.state_parts
        parts.register(Key.STATE_DICT, save=lambda: checkpoint_io.model_state(self.model),
                       load=lambda weights, _: checkpoint_io.load_model_state(self.model, weights, self.config.resume))
        parts.register(Key.OPTIMIZER, save=lambda: checkpoint_io.optimizer_state(self.model, self.optimizer),
                       load=lambda state, checkpoint: checkpoint_io.load_optimizer_state(self.model, self.optimizer,
                                                                                         state, checkpoint))
        parts.register(Key.LR_SCHEDULER, save=self._scheduler_state, load=self._load_scheduler_state)
        parts.register(Key.MONITOR_BEST, save=lambda: self.monitor.best,
                       load=lambda best, _: self.monitor.load_state_dict({"best": best}))
        parts.register(Key.EPOCHS_SINCE_IMPROVEMENT, save=lambda: self.early_stopping.epochs_since_improvement,
                       load=lambda count, _: setattr(self.early_stopping, "epochs_since_improvement", count))
        if self.checkpoint_policy.top_k is not None:
            parts.register(Key.TOP_K, self.checkpoint_policy.top_k)
        parts.register(Key.RNG_STATES, save=get_rng_states, load=lambda states, _: set_rng_states(states))
        parts.register(Key.CALLBACKS, save=self.callbacks.state_dict,
                       load=lambda states, _: self.callbacks.load_state_dict(states, self.logger))
        # None where the loader names no classes; read by test.py and predict.py, not on resume
        parts.register(Key.CLASS_NAMES, save=lambda: self.config.config.get("class_names"),
                       load=lambda names, _: None)
        # the task, the regression targets' names and scaling (data_loader/task.py), where recorded
        if self.config.config.get("task"):
            task_entries = task_of_run(self.config).checkpoint_entries()
            for key, value in task_entries.items():
                parts.register(key, save=lambda value=value: value, load=lambda _value, _checkpoint: None)

    def _scheduler_state(self):
        lr_scheduler = getattr(self, "lr_scheduler", None)  # set by subclasses after this __init__
        return lr_scheduler.state_dict() if lr_scheduler is not None else None

    def _load_scheduler_state(self, state, checkpoint):
        lr_scheduler = getattr(self, "lr_scheduler", None)
        if lr_scheduler is not None and state is not None:
            lr_scheduler.load_state_dict(state)

    def _trainer_settings(self, trainer_config):
        """The trainer section with this class's extra keys checked and filled in (the built-in
        keys were checked when the config was read)."""
        extra = [setting for cls in type(self).__mro__ for setting in cls.__dict__.get("extra_settings", ())]
        problems = Problems()
        check_section(trainer_config, "trainer", problems, extra, unknown_keys=False)
        problems.raise_if_any()
        fill_section(trainer_config, extra)
        return section_view(trainer_config, "trainer")

    @abstractmethod
    def _train_epoch(self, epoch):
        """Train one epoch; return a dict like {"loss": ..., "val_loss": ..., "lr": ...}."""
        raise NotImplementedError

    def train(self):
        """Full training logic."""
        try:
            self._train_epochs()
        except WriteFailed as fault:  # a full disk, a quota, a read-only folder
            raise fault.with_checkpoint(self.last_checkpoint) from fault
        except RuntimeError as err:  # GPU out of memory, a data-loader worker killed
            explained = explain_resource_fault(err, self.config, self.last_checkpoint)
            if explained is None:
                raise
            raise explained from err

    def _train_epochs(self):
        for function in self.epoch_callbacks:
            self.callbacks.append(EpochFunction(function))
        self.callbacks.append(self.early_stopping)  # last: it acts after the others saw the epoch
        self.callbacks.check_state_keys()
        self._load_start_weights()
        self.callbacks.fire("on_fit_start", self)
        previous_handlers = self._install_signal_handlers()
        finished = False
        try:
            for epoch in range(self.start_epoch, self.epochs + 1):
                self.callbacks.fire("on_epoch_start", self, epoch)
                try:
                    result = self._train_epoch(epoch)
                except StopRequested as stop:
                    self._stop_inside_epoch(stop)
                except PartFailed as failure:  # a config-built object raised; out of memory has its own hints
                    explained = (explain_resource_fault(failure.error, self.config, self.last_checkpoint)
                                 or explain_nondeterministic_operation(failure.error, self.last_checkpoint)) \
                        if isinstance(failure.error, RuntimeError) else None
                    raise (explained or ConfigError(self._failure_message(failure, epoch))) from failure.error
                if self._end_epoch(epoch, result):
                    break
                if self._agree_on_stop() and epoch < self.epochs:  # collective first: every rank calls it
                    self._stop_after_epoch(epoch)
            self.callbacks.fire("on_fit_end", self)
            self._finish_training()
            log_final_hparams(self.writer, self.config.config, self.history,
                              self.monitor_metric, self.monitor_best)
            self._finish_curves()
            finished = True
        finally:
            if not finished:
                self._finish_curves_of_a_stopped_run()
            self._restore_signal_handlers(previous_handlers)
            try:
                self.writer.close()
            except WriteFailed:
                if finished:  # otherwise the error that ended training is the one to report
                    raise

    def _finish_training(self):
        """After the last epoch, before the writers close: what a subclass completes the run with."""

    def _steps_done(self, epoch, batches_done):
        """Training batches done at this point of the run: the step of TensorBoard records."""
        return (epoch - 1) * getattr(self, "len_epoch", 1) + batches_done

    def _failure_message(self, failure, epoch):
        """A config-built object raised during the epoch: which section, what, and what is safe."""
        saved = rolling_checkpoints(self.checkpoint_dir) if self.checkpoint_dir is not None else []
        where = (f"The last good checkpoint is {saved[-1]} (resume with: python train.py -r {saved[-1]})"
                 if saved else "No checkpoint was written before it")
        return (f"{failure.section} failed in epoch {epoch}: {type(failure.error).__name__}: {failure.error}. "
                f"The run stopped. {where}. Fix the object that the config's \"{failure.section}\" section "
                "builds (run with --debug for the traceback).")

    def _end_epoch(self, epoch, result):
        """Log the epoch, update best/early stop, save. Returns True to stop training."""
        log = {"epoch": epoch, **result}
        self._log_epoch(log)
        # with validations inside the epoch, they updated the monitor and saved the best model
        improved = False if self.validates_in_epoch else self._update_monitor(log)
        stopping = self.should_stop
        last = epoch == self.epochs or stopping
        if last or time.monotonic() - self.curves_drawn_at >= CURVES_REDRAW_SECONDS:
            self._write_curves()  # drawn on a worker thread while the checkpoint is written
        periodic = epoch % self.save_period == 0 or last
        self._save_point(epoch, periodic=periodic, best=improved, monitored=None if self.validates_in_epoch else log)
        self.callbacks.fire("on_epoch_end", self, epoch, log)
        return stopping

    def _log_epoch(self, log):
        self.history.append(dict(log))
        for key, value in log.items():
            self.logger.info(f"    {key:15s}: {value}")
        # validations inside epochs were written at the step of the validation that measured them
        written = {key: value for key, value in log.items()
                   if key != "epoch" and not (key.startswith("val_") and self.validates_in_epoch)}
        self._write_scalars(written, self._steps_done(log["epoch"] + 1, 0))  # step: batches done at the epoch's end
        if self.config.log_dir is not None and dist.is_main_process():
            with write_site(self.run_folder.metrics_csv):
                atomic_write_rows(self.history, self.run_folder.metrics_csv)

    def _write_scalars(self, values, step):
        """Log values to the writers: <metric>/train, <metric>/valid for val_<metric>, learning_rate."""
        for key, value in values.items():
            if key in NOT_METRICS or key.startswith("lr_"):
                self.writer.add_scalar(f"learning_rate{key[2:]}" if key.startswith("lr") else key, value, step)
            elif key.startswith("val_"):
                self.writer.add_scalar(f"{key[4:]}/valid", value, step)
            else:
                self.writer.add_scalar(f"{key}/train", value, step)
        self.writer.flush()

    def _write_curves(self):
        """Start drawing curves.png (next to metrics.csv) on a worker thread: the learning curves
        so far, best epoch marked. Training goes on meanwhile."""
        self.curves_drawn_at = time.monotonic()
        if self.config.log_dir is None or not dist.is_main_process() or not self.history:
            return
        if self.curves_drawer is None:
            from evaluation.curves_drawer import CurvesDrawer

            self.curves_drawer = CurvesDrawer(self.run_folder.curves_png, self.config.run_id or "", self.monitor)
        self.curves_drawer.draw(self.history)

    def _finish_curves(self):
        """Wait until curves.png shows the whole run (drawing it unless the newest drawing
        does), then send the figure to the writers."""
        if self.curves_drawer is None or self.curves_drawer.drawn_epochs != len(self.history):
            self._write_curves()
        if self.curves_drawer is None:
            return
        pixels = self.curves_drawer.finish()
        if pixels is not None:
            self.writer.add_figure("curves", pixels, self._steps_done(self.history[-1]["epoch"] + 1, 0))

    def _finish_curves_of_a_stopped_run(self):
        """Training ended early (a stop signal, an error): draw what it did, never hiding why it ended."""
        try:
            self._finish_curves()
        except Exception as err:  # the error that ended training is the one to report
            self.logger.warning(f"curves.png was not updated: {type(err).__name__}: {err}")

    def _update_monitor(self, log):
        """Return True when the monitored value improved this epoch."""
        if not self.monitor.enabled:
            return False
        if self.monitor.key not in log:
            raise ConfigError(
                f"trainer.monitor is '{self.monitor}', but '{self.monitor.key}' is not logged; "
                f"logged keys: {', '.join(k for k in log if k != 'epoch')}. Monitor one of them, "
                "or set a validation split so val_* metrics exist."
            )
        improved = self.monitor.update(log[self.monitor.key])
        self.callbacks.fire("on_monitor_update", self, log["epoch"], improved)
        return improved

    # ---- checkpoints -------------------------------------------------------------------------
    def _checkpoint_state(self, epoch, batches_done=0):
        """Everything needed to continue exactly, as plain containers and tensors."""
        return {
            Key.ARCH: type(unwrap_model(self.model)).__name__,
            Key.EPOCH: epoch,
            Key.BATCHES_DONE: batches_done,  # >0: saved inside `epoch`, which is not finished
            **self.state_parts.state(),
            Key.HISTORY: self.history,
            Key.CONFIG: self.config.config,
        }

    def _save_point(self, epoch, batches_done=0, periodic=False, best=False, monitored=None):
        """Write, from one gathered state, the files the checkpoint policy names for this point of
        training (the periodic or step file, model_best, a top-k file when `monitored`, a log with
        the monitored value, ranks among the k best, checkpoint-last), then prune old ones."""
        names = self.checkpoint_policy.plan(epoch, batches_done, periodic, best, monitored)
        if not names:
            return
        state = self._checkpoint_state(epoch, batches_done)
        self._write_checkpoints(state, names)
        if best:
            self.logger.info(f"Saving current best: {self.checkpoint_dir / self.checkpoint_policy.best_name} "
                             f"({self.monitor_metric} {self.monitor_best:.6g})")

    def _write_checkpoints(self, state, names):
        """Write `state` under each of `names` (checkpoint-last as a hard link to the file before
        it), then let the policy prune; returns the path of the last file."""
        written = None
        for name in names:
            same_as = written if name == self.checkpoint_policy.last_name else None
            written = self._save_checkpoint_file(state, name, same_as=same_as)
        if dist.is_main_process():
            self.checkpoint_policy.prune()
        return written

    def _save_checkpoint(self, epoch, save_best=False):
        """pytorch-template API: write checkpoint-epoch<N>.pth (and model_best.pth)."""
        policy = self.checkpoint_policy
        names = [policy.step_name(epoch)] + ([policy.best_name] if save_best else [])
        self._write_checkpoints(self._checkpoint_state(epoch), names)

    def _save_checkpoint_file(self, state, filename, same_as=None):
        """Write `state` to `filename` atomically (a file by rank 0, or a sharded folder by every
        rank); `same_as`: a checkpoint already holding it."""
        path = self.checkpoint_dir / filename
        with write_site(path):
            checkpoint_io.write_checkpoint(self.model, state, path, same_as)
        if dist.is_main_process():
            if is_rolling_file(filename):
                self.last_checkpoint = path  # a point to resume from (top-k files may be deleted)
            if filename not in (self.checkpoint_policy.best_name, self.checkpoint_policy.last_name):
                self.logger.info(f"Saving checkpoint: {path} ...")  # the best is announced with its value
        dist.barrier()  # DDP: no rank goes on (or exits after a stop) before the file is complete
        return path

    def _load_start_weights(self):
        if self.config.resume is not None:
            self._resume_checkpoint(self.config.resume)
        elif getattr(self.config, "init_weights", None) is not None:
            checkpoint_io.load_model_state(self.model, self.config.checkpoint[Key.STATE_DICT],
                                           self.config.init_weights)
            self.logger.info(f"Fine-tuning: weights loaded from {self.config.init_weights}; "
                             "optimizer, schedule and epochs start fresh.")

    def _resume_checkpoint(self, resume_path):
        """Continue from `resume_path` (the file the config already read): each registered part
        gets its piece of it."""
        self.logger.info(f"Loading checkpoint: {resume_path} ...")
        same_file = resume_path == self.config.resume and self.config.checkpoint is not None
        checkpoint = self.config.checkpoint if same_file else load_checkpoint(resume_path)
        if not is_sharded(self.model):  # a sharded checkpoint read whole, as a .pth file holds it
            checkpoint = whole_checkpoint(checkpoint)
        saved_config = checkpoint[Key.CONFIG]
        if saved_config["arch"] != self.config["arch"]:
            self.logger.warning("Warning: Architecture configuration given in config file is different from "
                                "that of checkpoint. This may yield an exception while state_dict is being loaded.")
        skip = set()
        if saved_config["optimizer"]["type"] != self.config["optimizer"]["type"]:
            self.logger.warning("Warning: Optimizer type given in config file is different from that of "
                                "checkpoint. Optimizer parameters not being resumed.")
            skip.add(Key.OPTIMIZER)
        self.state_parts.load(checkpoint, skip)
        self.history = list(checkpoint.get(Key.HISTORY, []))
        batches_done = self._resumed_batches_done(checkpoint)
        if batches_done:
            self.start_epoch, self.resume_batches_done = checkpoint[Key.EPOCH], batches_done
            where = f"epoch {self.start_epoch} after batch {batches_done}"
        else:
            self.start_epoch = checkpoint[Key.EPOCH] + 1
            where = f"epoch {self.start_epoch}"
        self.writer.resume_after(self._steps_done(self.start_epoch, self.resume_batches_done))
        self.logger.info(f"Checkpoint loaded. Resume training from {where}")

    def _resumed_batches_done(self, checkpoint):
        """The batches of the checkpoint's epoch that this process has done (0: it finished)."""
        return checkpoint.get(Key.BATCHES_DONE, 0)

    # ---- stop signals ------------------------------------------------------------------------
    def _install_signal_handlers(self):
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[signum] = signal.signal(signum, self._on_stop_signal)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return previous

    def _restore_signal_handlers(self, previous):
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _agree_on_stop(self):
        """True when a stop signal arrived (under DDP: on any rank). Each rank must stop after
        the same step, or the others wait forever in the next gradient all-reduce, so the
        signal numbers are max-reduced: one small collective, which is why the trainer asks
        only every few steps."""
        signum = dist.max_over_ranks(self.stop_signal or 0)
        if signum:
            self.stop_signal = signum
        return bool(signum)

    def _on_stop_signal(self, signum, frame):
        if self.stop_signal is not None and signum == signal.SIGINT:
            # second Ctrl-C: leave at once; main_guard names the run folder to resume from
            raise KeyboardInterrupt(getattr(self, "checkpoint_dir", None))
        self.stop_signal = signum
        self.logger.warning(f"Received {signal.Signals(signum).name}: finishing the current step, "
                            "then saving a checkpoint. Press Ctrl-C again to exit at once.")

    def _stop_inside_epoch(self, stop):
        state = self._checkpoint_state(stop.epoch, batches_done=stop.batches_done)
        filename = self.checkpoint_policy.step_name(stop.epoch, stop.batches_done)
        last = [self.checkpoint_policy.last_name] if self.settings.save_last else []
        self._write_checkpoints(state, [filename] + last)
        self._exit_after_stop(filename)

    def _stop_after_epoch(self, epoch):
        path = self.checkpoint_dir / self.checkpoint_policy.step_name(epoch)
        if not dist.broadcast_object(path.exists()):  # rank 0's view: other nodes may not share the disk
            self._write_checkpoints(self._checkpoint_state(epoch), [path.name])
        self._exit_after_stop(path.name)

    def _exit_after_stop(self, filename):
        path = self.checkpoint_dir / filename
        raise TrainingStopped(
            f"Training stopped by {signal.Signals(self.stop_signal).name}. Resume with:\n"
            f"    python train.py -r {path}", 128 + self.stop_signal)
