import sys

import numpy as np
import torch
from tqdm import tqdm

from data_loader.task import task_of_run
from evaluation.evaluate import CollectedOutputs, evaluate_into, to_device
from evaluation.metrics import PassMetrics, metric_units
from run.checkpoints import SWA_CHECKPOINT
from utils import ConfigError, dist, unwrap_model
from utils.checkpoint import Key
from utils.device import autocast_context
from utils.errors import blame, blamed_iter
from utils.monitor import scheduler_monitor
from utils.seed import get_rng_states, seed_everything, set_rng_states

from . import fsdp
from .amp import make_grad_scaler
from .averaging import WeightAverage
from .base_trainer import BaseTrainer, StopRequested
from .profiling import make_profiler
from .schedules import scheduler_interval
from .speed import apply_backend_flags, maybe_compile
from .step_events import StepSchedule, summed_over_ranks
from .swa import StochasticWeightAverage


class Trainer(BaseTrainer):
    """What one training and one validation epoch do with batches."""

    def __init__(self, model, criterion, metric_ftns, optimizer, config, device,
                 data_loader, valid_data_loader=None, lr_scheduler=None, len_epoch=None):
        super().__init__(model, criterion, metric_ftns, optimizer, config)
        settings = self.settings
        self.device = device
        self.data_loader = data_loader
        self.iteration_based = len_epoch is not None
        self.batches_per_pass = len(data_loader)
        self.len_epoch = len(data_loader) if len_epoch is None else len_epoch
        self.valid_data_loader = valid_data_loader
        self.do_validation = self.valid_data_loader is not None
        self.lr_scheduler = lr_scheduler
        # "step": the scheduler steps after every optimizer step instead of after the epoch
        self.scheduler_per_step = lr_scheduler is not None and scheduler_interval(config) == "step"
        self.log_step = settings.log_step or int(np.sqrt(data_loader.batch_size))
        self.image_period = settings.image_period
        self.histogram_period = settings.histogram_period
        self.amp = settings.amp
        self.accum_steps = settings.accum_steps
        self.clip_grad_norm = settings.clip_grad_norm
        self.on_nonfinite = settings.on_nonfinite
        self.non_blocking = settings.non_blocking and device.type == "cuda"
        self.channels_last = settings.channels_last
        self.autocast = lambda: autocast_context(self.amp, device)
        self.scaler = make_grad_scaler(self.amp, device)
        apply_backend_flags(settings.cudnn_benchmark, settings.deterministic)
        if self.channels_last:  # weights too: a 1-channel input alone does not switch the convolutions
            self.model.to(memory_format=torch.channels_last)
        # the average is taken of the bare module, before compile and without DDP's wrapper
        self.weight_average = WeightAverage(unwrap_model(self.model), settings.ema) if settings.ema else None
        self.swa = StochasticWeightAverage(unwrap_model(self.model), optimizer, settings.swa, settings.ema) \
            if settings.swa else None
        self.model = maybe_compile(self.model, settings.compile, device)
        self.sharded = fsdp.is_sharded(self.model)
        self.show_progress = settings.verbosity > 0 and sys.stderr.isatty() and dist.is_main_process()

        # function metrics: sample-weighted averages of per-batch values (train_metrics and
        # valid_metrics, the template's MetricTrackers); torchmetrics classes: stateful epoch
        # metrics, exact over the epoch (F1, AUC)
        self.task = task_of_run(config)  # what the outputs mean: the report and the metrics' units
        original_units = metric_units(config)
        self.train_pass = PassMetrics(self.metric_ftns, device, original_units)
        self.valid_pass = PassMetrics(self.metric_ftns, device, original_units)
        self.train_metrics, self.train_epoch_metrics = self.train_pass.tracker, self.train_pass.epoch_metrics
        self.valid_metrics, self.valid_epoch_metrics = self.valid_pass.tracker, self.valid_pass.epoch_metrics
        # trainer.validation_report: the evaluation report of the last validation epoch
        self.validation_report = settings.validation_report and self.do_validation
        self.last_validation = None
        # trainer.val_every_n_steps / save_every_n_steps: validations and saves inside epochs
        self.step_schedule = StepSchedule(settings, self.len_epoch, self.accum_steps)
        self.validates_in_epoch = self.do_validation and self.step_schedule.validate_every is not None
        self.step_validation = None  # the val_* values of this epoch's latest validation inside it
        # trainer.profile: torch.profiler over a few steps; else a no-op
        self.profiler = make_profiler(settings.profile, self.run_folder, device, self.logger, self.len_epoch,
                                      dist.is_main_process())
        self._register_trainer_state()

    # ---- training ----------------------------------------------------------------------------
    def _train_epoch(self, epoch):
        """Train one epoch, validate, step the scheduler; return the epoch's log dict."""
        self.model.train()
        if self.swa is not None:
            self.swa.start_epoch_if_active(epoch)
        skip = self.resume_batches_done if epoch == self.start_epoch else 0
        if not skip:
            self.train_pass.reset()
            self.step_validation = None
        first_bad_step = torch.tensor(-1, device=self.device)  # stays on device: no per-step sync
        progress = tqdm(total=self.len_epoch, initial=skip, desc=f"epoch {epoch}", leave=False,
                        disable=not self.show_progress, dynamic_ncols=True)
        for batch_idx, (data, target) in self.profiler.batches(self._epoch_batches(epoch, skip)):
            with self.profiler.range("data"):
                data, target = self._to_device(data), target.to(self.device, non_blocking=self.non_blocking)
            loss, output = self._train_step(data, target, batch_idx)
            # a Python scalar, not torch.tensor(batch_idx, device=...): that is a blocking copy
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), batch_idx, first_bad_step)
            self.train_pass.update(loss, output, target)
            if batch_idx % self.log_step == 0 or batch_idx == self.len_epoch - 1:
                self._check_finite(first_bad_step, epoch)  # the host-device sync of the logging step
                self.train_epoch_metrics.flush()  # queued metric updates run where the loop waits anyway
                self._log_step(epoch, batch_idx, data, progress)
            progress.update(1)
            self.profiler.step()
            if self._at_step_boundary(batch_idx) and self._after_optimizer_step(epoch, batch_idx + 1, first_bad_step):
                break  # early stopping ended training at this validation: the epoch ends here
            if self._stop_check_due(batch_idx) and self._agree_on_stop():
                progress.close()
                self._check_finite(first_bad_step, epoch)  # never save a checkpoint of a broken model
                self.train_metrics.all_reduce()  # the checkpoint keeps the totals of all ranks
                raise StopRequested(epoch, batch_idx + 1)
        progress.close()
        self.profiler.end_epoch()
        self._check_finite(first_bad_step, epoch)
        if self.swa is not None and self.swa.active(epoch):
            self.swa.end_epoch(unwrap_model(self.model))
        self.train_metrics.all_reduce()  # DDP: every rank logs and decides on all ranks' samples
        log = self.train_metrics.result()
        log.update(self.train_epoch_metrics.compute())  # a collective under DDP
        log.update(self._learning_rates())
        if self.validates_in_epoch:
            log.update(self.step_validation or {})  # validated inside the epoch, maybe not in this one
            self._write_histograms(epoch)
        elif self.do_validation:
            log.update({f"val_{k}": v for k, v in self._valid_epoch(epoch).items()})
        self.callbacks.fire("on_validation_end", self, epoch, log)
        self._step_scheduler(log)
        return log

    def _train_step(self, data, target, batch_idx):
        """Forward, backward and (at the end of an accumulation window) the optimizer step."""
        if isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            # DDP all-reduces gradients in every backward; inside an accumulation window that is
            # wasted traffic, so sync only on the window's last micro-batch (nanoGPT's flag; the
            # no_sync() context does the same but must wrap forward and backward).
            self.model.require_backward_grad_sync = self._at_step_boundary(batch_idx)
        elif self.sharded:  # FSDP: the same for its gradient reduce-scatter
            fsdp.set_gradient_sync(self.model, self._at_step_boundary(batch_idx))
        with self.profiler.range("forward"), self.autocast():
            with blame("arch"):
                output = self.model(data)
            with blame("loss"):
                loss = self.criterion(output, target)
        with self.profiler.range("backward"), blame("arch"):  # backward runs the model's autograd functions
            self.scaler.scale(loss / self.accum_steps).backward()
        if self._at_step_boundary(batch_idx):
            with self.profiler.range("optimizer"):
                self._optimizer_step(batch_idx)
            self.callbacks.fire("on_step_end", self, batch_idx, loss.detach(), output.detach(), target)
        return loss.detach(), output.detach()

    def _optimizer_step(self, batch_idx):
        """Clip, step (unless the gradients are skipped), zero, average, step a per-step schedule."""
        if self.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        if self.on_nonfinite == "skip":
            self._skip_nonfinite_gradients(batch_idx)
        with blame("optimizer"):
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.weight_average is not None:
            self.weight_average.update(unwrap_model(self.model))
        if self.scheduler_per_step and not self._swa_sets_lr():
            self.lr_scheduler.step()

    def _after_optimizer_step(self, epoch, batches_done, first_bad_step):
        """The validation and the save that the step schedule puts after `batches_done` batches of
        `epoch`. A validation inside an epoch does what the epoch's end does without it: it is
        logged at its training step, updates the monitor (model_best, top-k, early stopping) and
        steps ReduceLROnPlateau; the epoch's row then carries its last validation. Returns True
        when early stopping ends training here."""
        validate = self.validates_in_epoch and self.step_schedule.validation_due(epoch, batches_done)
        save = self.step_schedule.save_due(epoch, batches_done)
        if not (validate or save):
            return False
        self._check_finite(first_bad_step, epoch)  # a sync; never validate or save a broken model
        with summed_over_ranks(self.train_metrics):
            monitored = self._validate_inside_epoch(epoch, batches_done) if validate else None
            improved = monitored is not None and self._update_monitor(monitored)
            if monitored is not None:
                self._step_scheduler(monitored, at_validation=True)
            self._save_point(epoch, batches_done, periodic=save, best=improved, monitored=monitored)
        return validate and self.should_stop

    def _validate_inside_epoch(self, epoch, batches_done):
        """Validate, write the values at this training step; return them with the training
        averages so far (the monitor may watch either)."""
        values = {f"val_{key}": value for key, value in self._validate().items()}
        self.model.train()
        self.step_validation = values
        self._write_scalars(values, self._steps_done(epoch, batches_done))
        self.logger.info(f"Validation at epoch {epoch}, batch {batches_done}: "
                         + ", ".join(f"{key} {value:.6g}" for key, value in values.items()))
        return {"epoch": epoch, **self.train_metrics.result(), **values}

    def _at_step_boundary(self, batch_idx):
        return (batch_idx + 1) % self.accum_steps == 0 or batch_idx == self.len_epoch - 1

    def _stop_check_due(self, batch_idx):
        """A single process checks for a stop signal after every optimizer step. Under DDP the
        ranks must agree (a collective), so only every log_step-th optimizer step and the last
        one of the epoch: a signal waits at most log_step optimizer steps."""
        if not self._at_step_boundary(batch_idx):
            return False
        if not dist.is_distributed():
            return True
        return (batch_idx // self.accum_steps) % self.log_step == 0 or batch_idx == self.len_epoch - 1

    def _skip_nonfinite_gradients(self, batch_idx):
        """on_nonfinite "skip": drop this step's gradients when any is NaN/Inf (one sync)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().float().norm() for g in grads])).all():
            self.optimizer.zero_grad(set_to_none=True)
            self.logger.warning(f"Non-finite gradients at step {batch_idx}: optimizer step skipped "
                                "(trainer.on_nonfinite is \"skip\").")

    def _check_finite(self, first_bad_step, epoch):
        if self.on_nonfinite == "skip":
            return
        # DDP: every rank calls this at the same steps; agreeing keeps one rank from stopping
        # alone while the others wait in the next gradient all-reduce
        bad_step = dist.max_over_ranks(int(first_bad_step))
        if bad_step >= 0:
            raise ConfigError(
                f"the training loss became NaN/Inf in epoch {epoch} at step {bad_step}. Training "
                "stopped; the last checkpoint and model_best.pth are from before. Lower the "
                "learning rate, enable trainer.clip_grad_norm, or set trainer.on_nonfinite to \"skip\"."
            )

    def _epoch_batches(self, epoch, skip):
        """Yield (batch_idx, batch) for this epoch, starting after `skip` batches. The order
        depends only on the seed and the position, which makes a resumed epoch identical."""
        if self.iteration_based:  # epochs of len_epoch batches cut from one endless stream
            data_pass, offset = divmod((epoch - 1) * self.len_epoch + skip, self.batches_per_pass)
        else:
            data_pass, offset = epoch, skip
        batch_idx = skip
        while batch_idx < self.len_epoch:
            for batch in self._loader_from(data_pass, offset):
                yield batch_idx, batch
                batch_idx += 1
                if batch_idx == self.len_epoch:
                    return
            data_pass, offset = data_pass + 1, 0

    def _loader_from(self, data_pass, offset):
        if hasattr(self.data_loader, "set_epoch"):
            self.data_loader.set_epoch(data_pass, offset)
            return blamed_iter(self.data_loader, "data_loader")
        sampler = getattr(self.data_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # e.g. DistributedSampler
            sampler.set_epoch(data_pass)
        iterator = blamed_iter(self.data_loader, "data_loader")
        for _ in range(offset):
            next(iterator)
        return iterator

    def _to_device(self, data):
        return to_device(data, self.device, self.non_blocking, self.channels_last)

    def _log_step(self, epoch, batch_idx, data, progress):
        step = self._steps_done(epoch, batch_idx + 1)
        loss = self.train_metrics.avg("loss")
        self.writer.add_scalar("train_step/loss", loss, step)
        if self.scheduler_per_step:
            self.writer.add_scalar("train_step/lr", self.optimizer.param_groups[0]["lr"], step)
        progress.set_postfix(loss=f"{loss:.4f}")
        if not self.show_progress:
            self.logger.debug(f"Train Epoch: {epoch} {self._progress(batch_idx)} Loss: {loss:.6f}")
        if batch_idx == 0 and self.writer.enabled and epoch % self.image_period == 0 and data.dim() == 4:
            from torchvision.utils import make_grid  # torchvision: only for image data

            self.writer.add_image("input", make_grid(data[:64].float().cpu(), nrow=8, normalize=True), step)

    def _progress(self, batch_idx):
        return f"[{batch_idx + 1}/{self.len_epoch} ({100.0 * (batch_idx + 1) / self.len_epoch:.0f}%)]"

    def _learning_rates(self):
        groups = self.optimizer.param_groups
        rates = {"lr": groups[0]["lr"]}
        rates.update({f"lr_group{i}": g["lr"] for i, g in enumerate(groups) if i > 0})
        return rates

    def _swa_sets_lr(self):
        """From trainer.swa.start_epoch on, SWALR replaces the configured scheduler."""
        return self.swa is not None and self.swa.scheduler is not None

    def _step_scheduler(self, log, at_validation=False):
        """Step an epoch-interval scheduler at the epoch's end; ReduceLROnPlateau after each
        validation inside epochs, when trainer.val_every_n_steps puts them there."""
        if self._swa_sets_lr():
            if not at_validation:
                self.swa.scheduler.step()
            return
        if self.lr_scheduler is None or self.scheduler_per_step:
            return
        plateau = isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if at_validation != (plateau and self.validates_in_epoch):
            return
        if plateau:
            metric = scheduler_monitor(self.settings.monitor).key
            if metric not in log:
                raise ConfigError(f"lr_scheduler is ReduceLROnPlateau, which steps on '{metric}', "
                                  "but that is not logged. Set trainer.monitor to a logged metric.")
            with blame("lr_scheduler"):
                self.lr_scheduler.step(log[metric])
        else:
            with blame("lr_scheduler"):
                self.lr_scheduler.step()

    # ---- validation --------------------------------------------------------------------------
    def _valid_epoch(self, epoch):
        results = self._validate()
        self._write_histograms(epoch)
        return results

    def _write_histograms(self, epoch):
        # a sharded model's weights are spread over the processes; rank 0 alone cannot draw them
        if self.writer.enabled and epoch % self.histogram_period == 0 and not self.sharded:
            for name, param in self.model.named_parameters():
                self.writer.add_histogram(f"params/{name}", param.detach().float().cpu(),
                                          self._steps_done(epoch + 1, 0))

    def _validate(self):
        """One pass over the validation data; returns {metric: value} (without the val_ prefix)."""
        self.model.eval()
        self.valid_pass.reset()
        # DDP: evaluate with the wrapped module. Unpadded validation shards can give the ranks
        # different numbers of batches, and DDP's forward may run collectives (buffer broadcast)
        # that would then wait forever for a rank that has already finished.
        model = self.model.module if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) else self.model
        if self.weight_average is not None:
            model = self.weight_average.eval_model(model)
            model.eval()
        if self.swa is not None:
            model = self.swa.eval_model(model)
            model.eval()
        collected = CollectedOutputs(task_kind=self.task.kind) if self.validation_report else None
        # sharded: every forward pass is a collective, so each rank runs as many as the rank with
        # the most validation batches (agreed before the pass, not inside it)
        most_batches = dist.max_over_ranks(len(self.valid_data_loader)) if self.sharded else 0
        # every rank evaluates with rank 0's batch-norm statistics, those its checkpoint holds (under
        # DDP too: a run resumed from a checkpoint saved after an epoch's last step must validate
        # as the uninterrupted run did)
        dist.share_buffers(unwrap_model(model))
        evaluate_into(self.valid_pass, model, self.valid_data_loader, self.criterion, self.device, self.settings,
                      on_batch=collected.update if collected is not None else None)
        if self.sharded:  # unpadded shards: the ranks may have run different numbers of batches
            fsdp.repeat_forward_passes(model, most_batches - len(self.valid_data_loader), self._any_batch)
        self.last_validation = collected
        self.valid_metrics.all_reduce()  # DDP: each rank saw its share; sum totals and counts
        return self.valid_pass.result()

    def _any_batch(self):
        """An input batch of this rank (validation data, or training data when it has none)."""
        loader = self.valid_data_loader if len(self.valid_data_loader) else self.data_loader
        return self._to_device(next(iter(loader))[0])

    def train(self):
        try:
            super().train()
        finally:
            self.profiler.close()

    def _finish_training(self):
        """After the last epoch, while the writers are open: the SWA model, the validation report."""
        if self.swa is not None:
            self._finish_swa()
        if self.validation_report:
            self._write_validation_report()

    def _finish_swa(self):
        """Recompute the average's batch-norm statistics over one epoch of training data and
        write it, with the rest of the last epoch's state, to model_swa.pth."""
        if not self.swa.updates:
            self.logger.warning(f"trainer.swa: training ended before epoch {self.swa.start_epoch}, so no weights "
                                f"were averaged and no {SWA_CHECKPOINT} is written.")
            return
        last_epoch = self.history[-1]["epoch"]
        batches = (self._to_device(data) for _, (data, _) in self._epoch_batches(last_epoch, 0))
        # update_bn runs the model in training mode (dropout draws random numbers): the saved
        # random states stay those of the last epoch's end
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            self.swa.recompute_batch_norm(batches)
        self._save_checkpoint_file(self._checkpoint_state(last_epoch), SWA_CHECKPOINT)
        self.logger.info(f"The SWA model (the average of {self.swa.updates} epochs, batch-norm statistics "
                         f"recomputed) is {self.checkpoint_dir / SWA_CHECKPOINT}; evaluate it with: "
                         f"python test.py -r {self.checkpoint_dir / SWA_CHECKPOINT}")

    def _write_validation_report(self):
        """The evaluation report of the last validation epoch, in <run>/validation_report/.
        DDP: every rank's outputs are gathered (a collective); rank 0 writes."""
        outputs, targets, wrong = self.last_validation.result()
        if dist.is_distributed():
            parts = dist.all_gather_object((outputs, targets))
            outputs, targets = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if not dist.is_main_process():
            return
        from evaluation.report import write_report  # matplotlib and torchmetrics: only when asked

        out_dir = self.run_folder.validation_report_dir
        write_report(out_dir, outputs, targets, self.task, wrong, writer=self.writer,
                     source_rows=self._validation_sample_rows(), tag_prefix="validation",
                     step=self._steps_done(self.history[-1]["epoch"] + 1, 0))
        self.logger.info(f"Evaluation report of the last validation epoch in {out_dir}")

    def _validation_sample_rows(self):
        """The validation samples' rows as their files hold them (single process: positions in
        the validation pass are positions in the loader's validation indices)."""
        describe = getattr(self.data_loader, "describe_samples", None)
        indices = getattr(self.data_loader, "valid_indices", None)
        if describe is None or indices is None or dist.is_distributed():
            return None
        return lambda positions: describe([indices[p] for p in positions])

    # ---- checkpoint parts --------------------------------------------------------------------
    def _register_trainer_state(self):
        parts = self.state_parts
        parts.register(Key.GRAD_SCALER, save=lambda: self.scaler.state_dict() if self.scaler.is_enabled() else None,
                       load=self._load_grad_scaler)
        parts.register(Key.TRAIN_METRICS, save=self.train_metrics.state,
                       load=lambda state, checkpoint: self._load_partial_epoch(self.train_metrics, state, checkpoint))
        # a collective under DDP
        parts.register(Key.TRAIN_EPOCH_METRICS, save=self.train_epoch_metrics.state,
                       load=lambda state, checkpoint: self._load_partial_epoch(self.train_epoch_metrics, state,
                                                                               checkpoint))
        if self.validates_in_epoch:
            parts.register(Key.STEP_VALIDATION, save=lambda: self.step_validation,
                           load=lambda values, _: setattr(self, "step_validation", values))
        parts.register(Key.WORLD_SIZE, save=dist.world_size, load=self._check_world_size)
        # a loader that keeps its own position (streaming shards); every rank's is the same
        parts.register(Key.DATA_LOADER, load=self._load_data_loader_state,
                       save=lambda: self.data_loader.state_dict() if self._loader_keeps_position() else None)
        # every rank holds the same average (its updates follow the all-reduced weights)
        parts.register(Key.EMA, save=lambda: self.weight_average.state_dict() if self.weight_average else None,
                       load=self._load_weight_average)
        parts.register(Key.SWA, save=lambda: self.swa.state_dict() if self.swa else None, load=self._load_swa)
        # DDP: each rank draws its own dropout masks; keep every rank's stream, not only rank 0's
        # (a collective: every rank builds the checkpoint state).
        parts.register(Key.RANK_RNG_STATES, load=lambda states, _: self._load_rank_rng_state(states),
                       save=lambda: dist.all_gather_object(get_rng_states()) if dist.is_distributed() else None)

    def _load_grad_scaler(self, state, checkpoint):
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)

    def _loader_keeps_position(self):
        """True for a loader that saves where its epoch stands and resumes there (set_epoch
        tells it which batch the trainer is at)."""
        return all(hasattr(self.data_loader, name) for name in ("state_dict", "load_state_dict", "set_epoch"))

    def _load_data_loader_state(self, state, checkpoint):
        if state is not None and self._loader_keeps_position():
            self.data_loader.load_state_dict(state)

    def _resumed_batches_done(self, checkpoint):
        """After a change of world size, a loader that keeps its position says which of its
        batches the rest of the epoch starts at."""
        batches_done = super()._resumed_batches_done(checkpoint)
        resume_batches = getattr(self.data_loader, "resume_batches", None)
        return resume_batches(batches_done) if batches_done and resume_batches is not None else batches_done

    def _check_world_size(self, saved_world_size, checkpoint):
        if self._loader_keeps_position():
            return  # it shares out the rest of the epoch again: every remaining sample once
        if checkpoint.get(Key.BATCHES_DONE) and saved_world_size != dist.world_size() and dist.is_main_process():
            self.logger.warning(
                f"This checkpoint was saved inside an epoch by {saved_world_size} "
                f"process(es) and is resumed by {dist.world_size()}: the rest of that epoch starts at "
                f"batch {checkpoint[Key.BATCHES_DONE]} of the new per-rank shards, so some samples of "
                "the epoch are seen twice or not at all. Epoch-end checkpoints resume exactly.")

    def _load_partial_epoch(self, tracker, state, checkpoint):
        """Metric totals of a checkpoint saved inside an epoch. They are already summed over the
        old ranks: give them to one rank only."""
        if checkpoint.get(Key.BATCHES_DONE) and state and dist.is_main_process():
            tracker.load_state(state)

    def _load_weight_average(self, state, checkpoint):
        if self.weight_average is None:
            return
        if state is None:  # a checkpoint from a run without EMA: the average starts from here
            self.logger.warning("trainer.ema is on but the checkpoint has no averaged weights; the average "
                                "starts from the resumed weights.")
            self.weight_average.averaged.module.load_state_dict(unwrap_model(self.model).state_dict())
            return
        self.weight_average.load_state_dict(state)

    def _load_swa(self, state, checkpoint):
        if self.swa is None:
            return
        if state is None:  # a checkpoint from a run without SWA
            self.logger.warning("trainer.swa is on but the checkpoint has no SWA state; averaging starts at "
                                f"epoch {self.swa.start_epoch} or, if that has passed, at the next epoch's end.")
            return
        self.swa.load_state_dict(state)

    def _load_rank_rng_state(self, rank_states):
        """Under DDP, continue this rank's own random stream (BaseTrainer restored rank 0's on
        every rank); a rank the checkpoint has no stream for starts a fresh one of its own."""
        if not dist.is_distributed():
            return
        if rank_states and dist.rank() < len(rank_states):
            set_rng_states(rank_states[dist.rank()])
        elif not dist.is_main_process():
            seed_everything(self.config["seed"] + dist.rank())
